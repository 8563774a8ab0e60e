#define LOG_PREFIX "fabric"
#include "fabric.h"

#include "facct.h"
#include "fbatch.h"
#include "ftcp.h"
#include "log.h"
#include "rq.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <libvdeplug.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/sockios.h>
#include <unistd.h>

#define SEND_RING	32	/* batches queued per peer normally: 2 MiB */
#define SPILL_RING	128	/* hard bound while the VM is stuck: 8 MiB */
#define RING_SLOTS	(SPILL_RING + 2)	/* + the filling batch and a marker */
/* TCP: the socket buffers hold what is on its way, so the rings can be
 * short, which bounds a rank's memory with hundreds of peers. */
#define TCP_SEND_RING	4	/* 256 KiB per peer */
#define TCP_SPILL_RING	16	/* 1 MiB per peer */
#define MAC_SLOTS	4096
#define VM_READ_BUDGET	512	/* frames read from the VM per progress call */
#define VM_MMSG		32	/* frames moved per system call on the VM link */
/* A batch holds at least this many frames of the largest size, so reading
 * that many per batch of room left can push no ring past its bound. */
#define BATCH_MIN_FRAMES ((FABRIC_BATCH_MAX - FBATCH_HDR) / (FBATCH_REC_HDR + FABRIC_FRAME_MAX))
_Static_assert(BATCH_MIN_FRAMES >= 1, "a batch must hold a largest frame");

#define TAG_BATCH	101
#define TAG_CREDIT	102

/* The batch wire format is in fbatch.h. */

struct out_batch {
	uint8_t *buf;		/* FBATCH_HDR + body; owned by the ring slot */
	uint32_t len;		/* bytes used, header included */
	uint16_t nrec;
	MPI_Request req;
};

struct rx_slot {
	uint8_t *buf;
	MPI_Request req;
	bool complete;		/* MPI finished it; frames may remain */
	uint32_t len;		/* message length once complete */
	uint32_t off;		/* next record to deliver */
	bool checked;		/* header and CRC verified */
};

struct peer {
	int rank;
	/* sending to this peer */
	struct out_batch fill;		/* batch being filled */
	struct out_batch ring[RING_SLOTS];	/* oldest first, from head */
	int head, count, inflight;
	int credits;
	uint32_t tx_seq;
	/* receiving from this peer */
	struct rx_slot rx[FABRIC_WINDOW];
	int rx_head;
	uint32_t rx_seq;
	uint32_t credits_owed;
	uint32_t credit_in;
	MPI_Request credit_in_req;
	uint32_t credit_out;
	MPI_Request credit_out_req;
	/* TCP channel: rx[0] is the batch being read, allocated to its size */
	uint8_t thdr[FBATCH_HDR];	/* its header, until the body is known */
	uint32_t tgot;			/* bytes of it read */
	uint32_t tnext;			/* bytes of the next header read with it */
	uint32_t tx_off;		/* bytes of the ring's head batch written */
	bool tx_sealed;			/* the head batch has its sequence number */
	bool tx_blocked;		/* the socket took no more: wait for POLLOUT */
	bool closed;			/* the peer closed (only while quiescing) */
	bool wr_shut;			/* TCP: we sent the peer all and shut our side */
	uint8_t ring_max, spill_max;	/* this channel's bounds of count */
	struct fabric_peer_stats st;
};

struct fabric;

/* What differs between the channels (MPI messages or TCP sockets); the
 * routing, queues, delivery and checkpoint support above them are one. */
struct chan_ops {
	const char *name;
	int (*open)(struct fabric *f, const struct fabric_opts *o);
	int (*progress_rx)(struct fabric *f, bool *busy);
	int (*progress_tx)(struct fabric *f, bool *busy);
	int (*pollfd)(struct fabric *f, struct pollfd *pfd);	/* 0 or 1 */
	int (*poll_timeout)(const struct fabric *f, double now_s,
			    double last_busy_s, int spin_us);
	bool (*in_flight)(const struct fabric *f);
	int (*quiesce)(struct fabric *f, int timeout_ms);
};

struct fabric {
	const struct chan_ops *ops;
	struct ftcp *tcp;		/* the TCP channel's mesh, or NULL */
	MPI_Comm comm;
	int rank, size;
	VDECONN *vde;
	int vm_fd;
	bool vm_attached;
	bool vm_blocked;		/* last write to the VM hit EAGAIN */
	bool stalled;			/* a peer's queue is full */
	bool quiescing;			/* shutting down: no new sends */
	bool vm_eof;			/* the VM closed its end of the link */
	bool held;			/* checkpoint: frames go to rq, not the VM */
	bool draining;			/* checkpoint: read the VM past the bound */
	bool link_empty;		/* the last read found the VM link empty */
	struct rq *rq;			/* frames for the VM, delivered first */
	size_t cut_left;		/* of them, still to deliver from the last cut */
	struct peer *peers;
	uint8_t *vmbuf;			/* VM_MMSG frames read from the VM at once */
	uint8_t **spare;		/* free batch buffers */
	int nspare, spare_cap;
	uint64_t mac_key[MAC_SLOTS];	/* 0 = empty; else mac | 1 << 48 */
	int16_t mac_rank[MAC_SLOTS];
	fabric_marker_cb marker_cb;
	void *marker_ctx;
	int rr_next;			/* round-robin start for delivery */
	struct fabric_stats st;
	struct facct *acct;		/* exact per-peer accounting (facct.h) */
};

/* ---- MAC learning ------------------------------------------------------ */

static uint64_t mac_of(const uint8_t *p)
{
	return (uint64_t)p[0] << 40 | (uint64_t)p[1] << 32 | (uint64_t)p[2] << 24 |
	       (uint64_t)p[3] << 16 | (uint64_t)p[4] << 8 | p[5];
}

static unsigned mac_slot(uint64_t mac)
{
	return (unsigned)((mac * 0x9e3779b97f4a7c15ull) >> 52) & (MAC_SLOTS - 1);
}

static void mac_learn(struct fabric *f, const uint8_t *src, int rank)
{
	uint64_t key = mac_of(src) | 1ull << 48;
	unsigned i = mac_slot(key);

	if (src[0] & 1)		/* a multicast source is bogus: never learn it */
		return;
	for (int n = 0; n < MAC_SLOTS; n++, i = (i + 1) & (MAC_SLOTS - 1)) {
		if (f->mac_key[i] == key || f->mac_key[i] == 0) {
			f->mac_key[i] = key;
			f->mac_rank[i] = (int16_t)rank;
			return;
		}
	}
	/* table full: the frame is flooded instead, which is still correct */
}

static int mac_lookup(const struct fabric *f, const uint8_t *dst)
{
	uint64_t key = mac_of(dst) | 1ull << 48;
	unsigned i = mac_slot(key);

	for (int n = 0; n < MAC_SLOTS; n++, i = (i + 1) & (MAC_SLOTS - 1)) {
		if (f->mac_key[i] == key)
			return f->mac_rank[i];
		if (f->mac_key[i] == 0)
			return -1;
	}
	return -1;
}

/* ---- buffers ----------------------------------------------------------- */

static uint8_t *buf_get(struct fabric *f)
{
	if (f->nspare)
		return f->spare[--f->nspare];
	return malloc(FABRIC_BATCH_MAX);
}

static void buf_put(struct fabric *f, uint8_t *buf)
{
	if (f->nspare < f->spare_cap)
		f->spare[f->nspare++] = buf;
	else
		free(buf);
}

/* ---- sending ----------------------------------------------------------- */

/* Stock QEMU writes to its vde link from its main loop with a blocking
 * send, so a QEMU whose link is full cannot read the frames waiting for it
 * either.  Were two ranks to stop reading their VMs while each VM waits on
 * the other, nothing would move again.  So while our own VM is not taking
 * frames (its loop is stuck in that send), reading goes on into a larger
 * spill bound, which frees QEMU's loop to drain its receive side. */
static bool peer_can_take(const struct peer *p, bool spill)
{
	return p->count < (spill ? p->spill_max : p->ring_max);
}

/* Move the filling batch onto the send ring.  The caller made sure there
 * is room (peer_can_take). */
static void push_fill(struct peer *p)
{
	int slot = (p->head + p->count) % RING_SLOTS;

	p->ring[slot] = p->fill;
	p->count++;
	memset(&p->fill, 0, sizeof(p->fill));
}

static int add_record(struct fabric *f, struct peer *p, uint8_t type,
		      const void *data, uint16_t len)
{
	if (p->fill.buf && p->fill.len + FBATCH_REC_HDR + len > FABRIC_BATCH_MAX)
		push_fill(p);
	if (!p->fill.buf) {
		p->fill.buf = buf_get(f);
		if (!p->fill.buf)
			return -ENOMEM;
		p->fill.len = FBATCH_HDR;
		p->fill.nrec = 0;
	}
	uint8_t *r = p->fill.buf + p->fill.len;
	r[0] = type;
	r[1] = 0;
	vcfmt_put_be16(r + 2, len);
	memcpy(r + FBATCH_REC_HDR, data, len);
	p->fill.len += FBATCH_REC_HDR + len;
	p->fill.nrec++;
	return 0;
}

/* One line naming the peer and MPI's reason; -EIO. */
static int mpi_fault(int peer, const char *what, int rc)
{
	char s[MPI_MAX_ERROR_STRING];
	int len = 0;

	MPI_Error_string(rc, s, &len);
	pr_err("%s to/from rank %d failed: %s", what, peer, s);
	return -EIO;
}

static int post_sends(struct fabric *f, struct peer *p, bool *busy)
{
	if (f->quiescing)
		goto retire;

	/* A partly filled batch goes out as soon as the wire is free: low
	 * latency when idle, larger batches when credits are short. */
	if (p->fill.nrec && p->inflight == p->count && p->credits > 0 &&
	    peer_can_take(p, false))
		push_fill(p);

	while (p->credits > 0 && p->inflight < p->count) {
		struct out_batch *b = &p->ring[(p->head + p->inflight) % RING_SLOTS];
		uint16_t give = p->credits_owed > 0xffff ? 0xffff : (uint16_t)p->credits_owed;

		fbatch_seal(b->buf, b->len, p->tx_seq, give, b->nrec);
		int r = MPI_Isend(b->buf, (int)b->len, MPI_BYTE, p->rank, TAG_BATCH,
				  f->comm, &b->req);
		if (r != MPI_SUCCESS)
			return mpi_fault(p->rank, "sending a batch", r);
		p->credits_owed -= give;
		p->tx_seq++;
		p->credits--;
		p->inflight++;
		*busy = true;
	}

retire:
	/* Retire completed sends, oldest first. */
	while (p->inflight > 0) {
		struct out_batch *b = &p->ring[p->head];
		int done = 0;
		MPI_Test(&b->req, &done, MPI_STATUS_IGNORE);
		if (!done)
			break;
		buf_put(f, b->buf);
		b->buf = NULL;
		p->head = (p->head + 1) % RING_SLOTS;
		p->count--;
		p->inflight--;
		*busy = true;
	}

	/* Return credits on their own when no batch will carry them soon. */
	if (!f->quiescing && p->credits_owed && p->credit_out_req == MPI_REQUEST_NULL &&
	    (p->credits_owed >= FABRIC_WINDOW / 2 || p->inflight == p->count)) {
		p->credit_out = p->credits_owed;
		p->credits_owed = 0;
		int rc = MPI_Isend(&p->credit_out, 1, MPI_UINT32_T, p->rank, TAG_CREDIT,
				   f->comm, &p->credit_out_req);
		if (rc != MPI_SUCCESS)
			return mpi_fault(p->rank, "returning credits", rc);
		*busy = true;
	}
	if (p->credit_out_req != MPI_REQUEST_NULL) {
		int done = 0;
		MPI_Test(&p->credit_out_req, &done, MPI_STATUS_IGNORE);
	}
	return 0;
}

static int route_frame(struct fabric *f, const uint8_t *frame, uint16_t len)
{
	int dst = frame[0] & 1 ? -1 : mac_lookup(f, frame);
	int r;

	mac_learn(f, frame + 6, f->rank);
	if (dst == f->rank)
		return 0;	/* to itself: a switch never sends it back */
	if (dst < 0)
		f->st.frames_flooded++;
	for (int i = 0; i < f->size; i++) {
		if (i == f->rank || (dst >= 0 && i != dst))
			continue;
		struct peer *p = &f->peers[i];
		r = add_record(f, p, FBATCH_FRAME, frame, len);
		if (r < 0)
			return r;
		p->st.frames_tx++;
		p->st.bytes_tx += len;
		facct_tx(f->acct, i, len);
	}
	return 0;
}

static bool all_peers_can_take(const struct fabric *f, bool spill)
{
	for (int i = 0; i < f->size; i++)
		if (i != f->rank && !peer_can_take(&f->peers[i], spill))
			return false;
	return true;
}

/* How many frames the VM link may yield before the rings are checked
 * again (at least 1: the caller checked there is room). */
static int vm_read_room(const struct fabric *f, bool spill)
{
	int room = VM_MMSG;

	for (int i = 0; i < f->size; i++) {
		const struct peer *p = &f->peers[i];
		int b = (spill ? p->spill_max : p->ring_max) - p->count;

		if (i != f->rank && b * BATCH_MIN_FRAMES < room)
			room = b * BATCH_MIN_FRAMES;
	}
	return room > 0 ? room : 1;
}

/* Whether reading the VM may go on now, and into the spill bound. */
static bool vm_may_read(struct fabric *f, bool *spilling)
{
	*spilling = false;
	if (all_peers_can_take(f, false)) {
		f->stalled = false;
		return true;
	}
	if (!f->stalled)
		f->st.backpressure_stalls++;
	f->stalled = true;
	if ((!f->vm_blocked && !f->draining) || !all_peers_can_take(f, true))
		return false;
	*spilling = true;
	return true;
}

/* Up to max frames from the VM link in one system call (recvmmsg on the
 * seqpacket socket: one frame per message, as libvdeplug's seqpacket
 * transport sends them).  Each buffer has one byte more than the largest
 * frame: a longer one shows as FABRIC_FRAME_MAX + 1 bytes and is refused,
 * never cut.  Returns the count, -EAGAIN when empty, -EPIPE at its end. */
static int vm_recv(struct fabric *f, struct mmsghdr *mm, struct iovec *iov, int max)
{
	for (int k = 0; k < max; k++) {
		iov[k].iov_base = f->vmbuf + (size_t)k * (FABRIC_FRAME_MAX + 1);
		iov[k].iov_len = FABRIC_FRAME_MAX + 1;
		memset(&mm[k].msg_hdr, 0, sizeof(mm[k].msg_hdr));
		mm[k].msg_hdr.msg_iov = &iov[k];
		mm[k].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		int n = recvmmsg(f->vm_fd, mm, (unsigned)max, MSG_DONTWAIT, NULL);
		if (n > 0)
			return n;
		if (n == 0 || errno == ECONNRESET || errno == EPIPE)
			return -EPIPE;
		if (errno != EINTR)
			return -errno;
	}
}

/* Take one frame of len bytes from the VM: count it, route it. */
static int vm_frame(struct fabric *f, const uint8_t *frame, size_t len, bool spilling)
{
	if (spilling)
		f->st.spill_reads++;
	if (facct_from_vm(f->acct, len, FABRIC_FRAME_MAX) != FACCT_OK)
		return 0;	/* runt or oversize: refused and counted */
	f->st.frames_from_vm++;
	f->st.bytes_from_vm += (uint64_t)len;
	return route_frame(f, frame, (uint16_t)len);
}

static int read_vm(struct fabric *f, bool *busy)
{
	struct mmsghdr mm[VM_MMSG];
	struct iovec iov[VM_MMSG];
	bool spilling;

	for (int done = 0; done < VM_READ_BUDGET;) {
		if (!vm_may_read(f, &spilling))
			return 0;
		int want = vm_read_room(f, spilling);
		int n = vm_recv(f, mm, iov, want);
		if (n == -EAGAIN || n == -EWOULDBLOCK) {
			f->link_empty = true;
			return 0;
		}
		f->link_empty = false;
		if (n == -EPIPE) {
			/* QEMU closed its end; its exit is handled by the
			 * launcher.  Stop polling a descriptor at EOF. */
			pr_debug("VM link closed");
			f->vm_eof = true;
			f->link_empty = true;
			return 0;
		}
		if (n < 0) {
			pr_errno(n, "reading from the VM link");
			return n;
		}
		*busy = true;
		for (int k = 0; k < n; k++) {
			if (mm[k].msg_len == 0) {	/* end of file after frames */
				f->vm_eof = true;
				f->link_empty = true;
				return 0;
			}
			int r = vm_frame(f, iov[k].iov_base, mm[k].msg_len, spilling);
			if (r < 0)
				return r;
		}
		done += n;
		/* Fewer than asked: the link is (nearly) empty, and POLLIN
		 * says when more comes; only a drain must see it empty. */
		if (n < want && !f->draining)
			return 0;
	}
	return 0;
}

/* ---- receiving --------------------------------------------------------- */

static int post_rx(struct fabric *f, struct peer *p, struct rx_slot *s)
{
	s->complete = false;
	s->checked = false;
	s->off = FBATCH_HDR;
	s->len = 0;
	return MPI_Irecv(s->buf, FABRIC_BATCH_MAX, MPI_BYTE, p->rank, TAG_BATCH,
			 f->comm, &s->req) == MPI_SUCCESS ? 0 : -EIO;
}

static int check_batch(struct fabric *f, struct peer *p, struct rx_slot *s)
{
	char why[128];
	uint16_t credits;

	if (fbatch_check(s->buf, s->len, p->rx_seq, &credits, why, sizeof(why)) < 0) {
		pr_err("batch from rank %d: %s", p->rank, why);
		return -EBADMSG;
	}
	p->rx_seq++;
	p->credits += credits;
	s->checked = true;
	return 0;
}

#define VM_RETRY 1

/* After a failed write of frames from rank `from` to the VM link (errno
 * set): VM_RETRY (interrupted), 0 when the link is full (vm_blocked),
 * -EPIPE when the VM has gone (the first frame counted as gone, even off
 * the receive queue: it was written after the VM went; its exit is the
 * launcher's business), or -errno, said here.  A seqpacket socketpair
 * whose other end closed gives EPIPE; ECONNRESET and ECONNREFUSED are the
 * same news from other kernels or socket kinds. */
static int vm_write_error(struct fabric *f, int from, bool from_rq)
{
	int e = errno;

	if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
		f->vm_blocked = true;
		return 0;
	}
	if (e == EINTR)
		return VM_RETRY;
	if (e == EPIPE || e == ECONNRESET || e == ECONNREFUSED) {
		f->st.frames_discarded++;
		facct_gone(f->acct, from, from_rq);
		return -EPIPE;
	}
	pr_errno(e, "writing to the VM link");
	return -e;
}

/* Write one frame (from rank `from`, off the receive queue or not) to the
 * VM.  1 written (or dropped because QEMU has gone: its exit is handled by
 * the launcher), 0 the link is full, -errno. */
static int vm_write(struct fabric *f, int from, bool from_rq, const uint8_t *frame,
		    uint16_t len)
{
	for (;;) {
		ssize_t n = vde_send(f->vde, frame, len, MSG_DONTWAIT);
		if (n >= 0) {
			f->st.frames_to_vm++;
			f->st.bytes_to_vm += len;
			facct_delivered(f->acct, from, from_rq);
			return 1;
		}
		int r = vm_write_error(f, from, from_rq);
		if (r != VM_RETRY)
			return r == -EPIPE ? 1 : r;	/* gone: the frame is done */
	}
}

/* Count n frames written to the VM from rank `from`. */
static void count_to_vm(struct fabric *f, int from, const struct iovec *iov, int n)
{
	for (int k = 0; k < n; k++) {
		f->st.frames_to_vm++;
		f->st.bytes_to_vm += iov[k].iov_len;
		facct_delivered(f->acct, from, false);
	}
}

/* Write frames to the VM in one system call (sendmmsg: one message per
 * frame).  Returns how many left, 0 when the link is full (vm_blocked), or
 * -errno; a VM that has gone takes the first as gone (its exit is
 * handled by the launcher). */
static int vm_send(struct fabric *f, int from, struct iovec *iov, int n)
{
	struct mmsghdr mm[VM_MMSG];

	for (int k = 0; k < n; k++) {
		memset(&mm[k].msg_hdr, 0, sizeof(mm[k].msg_hdr));
		mm[k].msg_hdr.msg_iov = &iov[k];
		mm[k].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		int sent = sendmmsg(f->vm_fd, mm, (unsigned)n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (sent > 0)
			return sent;
		int r = vm_write_error(f, from, false);
		if (r != VM_RETRY)
			return r;
	}
}

/* The frames of p's batch from s->off that go straight to the VM, up to
 * VM_MMSG in one system call.  1 when some moved (or were discarded),
 * 0 when the link is full, -errno. */
static int deliver_run(struct fabric *f, struct peer *p, struct rx_slot *s)
{
	struct iovec iov[VM_MMSG];
	size_t next[VM_MMSG];
	char why[128];
	int n = fbatch_frames(s->buf, s->len, s->off, FACCT_RUNT_MAX + 1, FABRIC_FRAME_MAX,
			      iov, next, VM_MMSG, why, sizeof(why));

	if (n < 0) {
		pr_err("batch from rank %d: %s", p->rank, why);
		return -EBADMSG;
	}
	int sent = vm_send(f, p->rank, iov, n);
	if (sent == -EPIPE)
		sent = 1;	/* the first went nowhere and was counted */
	else if (sent <= 0)
		return sent;
	else
		count_to_vm(f, p->rank, iov, sent);
	for (int k = 0; k < sent; k++) {
		mac_learn(f, (const uint8_t *)iov[k].iov_base + 6, p->rank);
		p->st.frames_rx++;
		p->st.bytes_rx += iov[k].iov_len;
		facct_rx(f->acct, p->rank, iov[k].iov_len, FABRIC_FRAME_MAX);
	}
	s->off = (uint32_t)next[sent - 1];
	return 1;
}

/* A frame record that does not go straight to the VM: refused (runt or
 * oversize), discarded (no VM), or queued (held, or behind the queue). */
static int deliver_other(struct fabric *f, struct peer *p, const struct fbatch_rec *rec)
{
	uint16_t len = rec->len;

	if (facct_classify(len, FABRIC_FRAME_MAX) != FACCT_OK) {
		/* refused, counted by facct_rx below */
	} else if (!f->vm_attached) {
		mac_learn(f, rec->data + 6, p->rank);
		f->st.frames_discarded++;
		facct_discarded(f->acct, p->rank, false);
	} else {
		/* held for a checkpoint, or behind frames that are: queue
		 * it, in arrival order */
		mac_learn(f, rec->data + 6, p->rank);
		if (rq_push(f->rq, p->rank, rec->data, len) < 0)
			return -ENOMEM;
		facct_queued(f->acct, p->rank);
	}
	p->st.frames_rx++;
	p->st.bytes_rx += len;
	facct_rx(f->acct, p->rank, len, FABRIC_FRAME_MAX);
	return 0;
}

/* Deliver what the slot holds, in order: runs of frames to the VM, one
 * system call each; a marker only once every frame before it has gone to
 * the VM or the receive queue (the checkpoint's cut relies on it).
 * Returns 1 when the slot is finished, 0 when the VM cannot take more
 * now, or -errno. */
static int deliver_slot(struct fabric *f, struct peer *p, struct rx_slot *s)
{
	while (s->off < s->len) {
		struct fbatch_rec rec;
		char why[128];
		int r;

		if (fbatch_record(s->buf, s->len, s->off, &rec, why, sizeof(why)) < 0) {
			pr_err("batch from rank %d: %s", p->rank, why);
			return -EBADMSG;
		}
		if (rec.type == FBATCH_MARKER) {
			facct_marker_rcvd(f->acct, p->rank, vcfmt_get_be64(rec.data));
			if (f->marker_cb)
				f->marker_cb(f->marker_ctx, p->rank, vcfmt_get_be64(rec.data));
		} else if (f->vm_attached && !f->held && !rq_count(f->rq) &&
			   facct_classify(rec.len, FABRIC_FRAME_MAX) == FACCT_OK) {
			r = deliver_run(f, p, s);
			if (r <= 0)
				return r;
			continue;	/* deliver_run moved s->off */
		} else {
			r = deliver_other(f, p, &rec);
			if (r < 0)
				return r;
		}
		s->off = (uint32_t)rec.next;
	}
	return 1;
}

static int progress_rx(struct fabric *f, struct peer *p, bool *busy)
{
	for (;;) {
		struct rx_slot *s = &p->rx[p->rx_head];
		int r;

		if (!s->complete) {
			int done = 0;
			MPI_Status st;
			int rc = MPI_Test(&s->req, &done, &st);
			if (rc != MPI_SUCCESS)
				return mpi_fault(p->rank, "receiving a batch", rc);
			if (!done)
				break;
			int count;
			MPI_Get_count(&st, MPI_BYTE, &count);
			s->complete = true;
			s->len = (uint32_t)count;
			*busy = true;
		}
		if (!s->checked) {
			r = check_batch(f, p, s);
			if (r < 0)
				return r;
		}
		if (f->vm_blocked && f->vm_attached)
			break;
		r = deliver_slot(f, p, s);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		*busy = true;
		r = post_rx(f, p, s);
		if (r < 0)
			return r;
		p->credits_owed++;
		p->rx_head = (p->rx_head + 1) % FABRIC_WINDOW;
	}

	/* Credits sent on their own. */
	for (;;) {
		int done = 0;
		MPI_Test(&p->credit_in_req, &done, MPI_STATUS_IGNORE);
		if (!done)
			break;
		p->credits += (int)p->credit_in;
		*busy = true;
		int rc = MPI_Irecv(&p->credit_in, 1, MPI_UINT32_T, p->rank, TAG_CREDIT,
				   f->comm, &p->credit_in_req);
		if (rc != MPI_SUCCESS)
			return mpi_fault(p->rank, "receiving credits", rc);
	}
	return 0;
}

/* ---- public ------------------------------------------------------------ */

/* ---- the MPI channel ---------------------------------------------------- */

static int mpi_open(struct fabric *f, const struct fabric_opts *o)
{
	int r;

	for (int i = 0; i < f->size; i++) {
		struct peer *p = &f->peers[i];
		if (i == f->rank)
			continue;
		p->credits = FABRIC_WINDOW;
		for (int k = 0; k < FABRIC_WINDOW; k++) {
			p->rx[k].buf = malloc(FABRIC_BATCH_MAX);
			if (!p->rx[k].buf)
				return -ENOMEM;
			r = post_rx(f, p, &p->rx[k]);
			if (r < 0)
				return r;
		}
		if (MPI_Irecv(&p->credit_in, 1, MPI_UINT32_T, i, TAG_CREDIT, f->comm,
			      &p->credit_in_req) != MPI_SUCCESS)
			return -EIO;
	}
	return 0;
}

static int mpi_progress_rx(struct fabric *f, bool *busy)
{
	for (int k = 0; k < f->size; k++) {
		int i = (f->rr_next + k) % f->size;
		if (i == f->rank)
			continue;
		int r = progress_rx(f, &f->peers[i], busy);
		if (r < 0)
			return r;
	}
	f->rr_next = (f->rr_next + 1) % f->size;
	return 0;
}

static int mpi_progress_tx(struct fabric *f, bool *busy)
{
	for (int i = 0; i < f->size; i++) {
		if (i == f->rank)
			continue;
		int r = post_sends(f, &f->peers[i], busy);
		if (r < 0)
			return r;
	}
	return 0;
}

static int mpi_pollfd(struct fabric *f, struct pollfd *pfd)
{
	return 0;	/* MPI has no descriptor */
}

static bool mpi_in_flight(const struct fabric *f)
{
	for (int i = 0; i < f->size; i++)
		if (i != f->rank && f->peers[i].inflight)
			return true;
	return false;
}

static int mpi_poll_timeout(const struct fabric *f, double now_s, double last_busy_s,
			    int spin_us)
{
	if (mpi_in_flight(f) || (now_s - last_busy_s) * 1e6 < spin_us)
		return 0;
	return 1;
}

static int mpi_quiesce(struct fabric *f, int timeout_ms);

static const struct chan_ops mpi_ops = {
	.name = "mpi", .open = mpi_open, .progress_rx = mpi_progress_rx,
	.progress_tx = mpi_progress_tx, .pollfd = mpi_pollfd,
	.poll_timeout = mpi_poll_timeout, .in_flight = mpi_in_flight,
	.quiesce = mpi_quiesce,
};

/* ---- the TCP channel ----------------------------------------------------
 *
 * The same batches (fbatch.h) back to back on one TCP connection per pair
 * of ranks (ftcp.h): TCP keeps them in order and reliable, and its window
 * is the credit.  A batch is written from the send ring as soon as the
 * socket takes it; a rank that cannot deliver a batch to its VM stops
 * reading that peer's socket, so the peer's socket fills, then its ring,
 * then it stops reading its own VM: the same backpressure as credits give.
 * The credits field of a batch is 0.  A receive buffer exists only while a
 * batch is being read or delivered, sized to it. */

#define TCP_SETUP_MS	60000	/* for the whole mesh to connect */
#define TCP_RX_BUDGET	16	/* batches read from one peer per pass */
#define TCP_MPI_NAP_MS	20	/* MPI's standing receives are polled this often */

static int tcp_gone(struct fabric *f, struct peer *p, ssize_t err)
{
	if (f->quiescing) {	/* it finished before us: nothing more to say */
		p->closed = true;
		return 0;
	}
	if (err == -EPIPE)
		pr_err("rank %d closed its fabric connection", p->rank);
	else
		pr_errno((int)err, "fabric connection with rank %d", p->rank);
	return (int)err;
}

static void tcp_rx_done(struct peer *p)
{
	struct rx_slot *s = &p->rx[0];

	free(s->buf);
	s->buf = NULL;
	s->complete = s->checked = false;
	s->len = 0;
	/* what the last read took of the next batch's header */
	p->tgot = p->tnext;
	p->tnext = 0;
}

/* The header is whole: make the batch's buffer (room for the next header
 * too, read with the body to save a system call per batch). */
static int tcp_rx_start(struct peer *p)
{
	struct rx_slot *s = &p->rx[0];
	uint32_t body = vcfmt_get_be32(p->thdr + 16);

	if (body > FABRIC_BATCH_MAX - FBATCH_HDR) {
		pr_err("batch from rank %d: body length %u, at most %u", p->rank,
		       body, FABRIC_BATCH_MAX - FBATCH_HDR);
		return -EBADMSG;
	}
	s->len = FBATCH_HDR + body;
	s->buf = malloc(s->len + FBATCH_HDR);
	if (!s->buf)
		return -ENOMEM;
	memcpy(s->buf, p->thdr, FBATCH_HDR);
	s->off = FBATCH_HDR;
	return 0;
}

/* Read p's socket towards a whole batch: its header, then its body and
 * whatever of the next header follows.  1 when the batch is whole and more
 * may follow, 2 when it is whole and the socket gave less than asked, 0
 * when it is not whole and the socket gave less than asked (drained for
 * now: level-triggered epoll reports it again when more comes, so no read
 * is wasted on EAGAIN), or -errno. */
static int tcp_read_batch(struct fabric *f, struct peer *p, bool *busy)
{
	struct rx_slot *s = &p->rx[0];
	ssize_t k;
	int r;

	if (p->tgot < FBATCH_HDR) {
		size_t want = FBATCH_HDR - p->tgot;
		k = ftcp_recv(f->tcp, p->rank, p->thdr + p->tgot, want);
		if (k <= 0)
			return k ? tcp_gone(f, p, k) : 0;
		p->tgot += (uint32_t)k;
		*busy = true;
		if ((size_t)k < want)
			return 0;
	}
	if (!s->buf && (r = tcp_rx_start(p)) < 0)
		return r;
	if (p->tgot < s->len) {
		size_t want = s->len - p->tgot + FBATCH_HDR;
		k = ftcp_recv(f->tcp, p->rank, s->buf + p->tgot, want);
		if (k <= 0)
			return k ? tcp_gone(f, p, k) : 0;
		p->tgot += (uint32_t)k;
		*busy = true;
		if (p->tgot < s->len)
			return 0;
		p->tnext = p->tgot - s->len;
		memcpy(p->thdr, s->buf + s->len, p->tnext);
		p->tgot = s->len;
		s->complete = true;
		return (size_t)k < want ? 2 : 1;
	}
	s->complete = true;
	return 1;
}

/* Deliver p's whole batch, then read on, at most TCP_RX_BUDGET batches.
 * The budget stops only reading, never between reading a batch and
 * delivering it: a batch left whole and undelivered when the VM could
 * take it would have no event to wake the loop (its socket is not
 * watched while a batch waits, the VM link is watched for writing only
 * when it is full), and sat until the nap ran out -- 220 such passes in
 * a 100,000-frame stream of 1500 bytes, the 10 ms stalls of bench/fabric. */
static int tcp_rx(struct fabric *f, struct peer *p, bool *busy)
{
	struct rx_slot *s = &p->rx[0];
	bool drained = false;
	int r;

	for (int n = 0;; n++) {
		if (s->complete) {
			if (!s->checked) {
				r = check_batch(f, p, s);
				if (r < 0)
					return r;
			}
			if (f->vm_blocked && f->vm_attached)
				return 0;
			r = deliver_slot(f, p, s);
			if (r <= 0)
				return r;
			tcp_rx_done(p);
			*busy = true;
		}
		if (p->closed || drained || n == TCP_RX_BUDGET)
			return 0;
		r = tcp_read_batch(f, p, busy);
		if (r <= 0)
			return r;
		drained = r == 2;
	}
}

static int tcp_progress_rx(struct fabric *f, bool *busy)
{
	int ready[64], n, r;

	n = ftcp_ready(f->tcp, ready, 64);
	if (n < 0)
		return n;
	for (int k = 0; k < n; k++) {
		struct peer *p = &f->peers[ready[k]];
		p->tx_blocked = false;	/* writable, or readable: try both */
		r = tcp_rx(f, p, busy);
		if (r < 0)
			return r;
	}
	/* Batches held back while the VM was full. */
	if (!f->vm_blocked || !f->vm_attached) {
		for (int i = 0; i < f->size; i++) {
			if (i == f->rank || !f->peers[i].rx[0].complete)
				continue;
			r = tcp_rx(f, &f->peers[i], busy);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int tcp_tx(struct fabric *f, struct peer *p, bool *busy)
{
	for (;;) {
		/* A partly filled batch goes out as soon as the socket has
		 * taken everything before it: low latency when idle, larger
		 * batches when the socket is full. */
		if (p->count == 0 && p->fill.nrec)
			push_fill(p);
		if (p->count == 0)
			return 0;
		struct out_batch *b = &p->ring[p->head];
		if (!p->tx_sealed) {	/* once: a write may take nothing */
			fbatch_seal(b->buf, b->len, p->tx_seq++, 0, b->nrec);
			p->tx_sealed = true;
		}
		ssize_t k = ftcp_send(f->tcp, p->rank, b->buf + p->tx_off, b->len - p->tx_off);
		if (k < 0)
			return tcp_gone(f, p, k);
		p->tx_off += (uint32_t)k;
		if (p->tx_off < b->len) {
			p->tx_blocked = true;
			return 0;
		}
		*busy = true;
		buf_put(f, b->buf);
		b->buf = NULL;
		p->head = (p->head + 1) % RING_SLOTS;
		p->count--;
		p->tx_off = 0;
		p->tx_sealed = false;
	}
}

static int tcp_progress_tx(struct fabric *f, bool *busy)
{
	for (int i = 0; i < f->size; i++) {
		struct peer *p = &f->peers[i];
		if (i == f->rank)
			continue;
		if (!p->wr_shut && !p->tx_blocked && (p->count || p->fill.nrec)) {
			int r = tcp_tx(f, p, busy);
			if (r < 0)
				return r;
		}
		/* Read a peer only while its last batch is delivered: a full
		 * VM leaves the batch in place and the socket unread. */
		ftcp_want(f->tcp, i, !p->closed && !p->rx[0].complete,
			  !p->wr_shut && p->tx_blocked);
	}
	return 0;
}

static int tcp_open(struct fabric *f, const struct fabric_opts *o)
{
	/* Each rank makes size-1 connections; oversubscribed ranks need
	 * longer: half a second more per rank. */
	f->tcp = ftcp_create(f->comm, o ? o->addr : NULL, TCP_SETUP_MS + 500 * f->size);
	if (!f->tcp)
		return -errno;
	for (int i = 0; i < f->size; i++)
		if (i != f->rank)
			ftcp_want(f->tcp, i, true, false);
	return 0;
}

static int tcp_pollfd(struct fabric *f, struct pollfd *pfd)
{
	pfd->fd = ftcp_fd(f->tcp);
	pfd->events = POLLIN;
	pfd->revents = 0;
	return 1;
}

/* Work that could be done now but that no descriptor will announce: a
 * whole batch waiting for a VM that is not full.  Never true after a pass
 * since tcp_rx() delivers every batch it reads; counted (unarmed_passes)
 * so that a lost wake-up shows in the statistics instead of as stalls. */
static bool tcp_unarmed(const struct fabric *f)
{
	if (f->vm_blocked && f->vm_attached)
		return false;
	for (int i = 0; i < f->size; i++)
		if (i != f->rank && f->peers[i].rx[0].complete)
			return true;
	return false;
}

static int tcp_poll_timeout(const struct fabric *f, double now_s, double last_busy_s,
			    int spin_us)
{
	/* Every wait of the TCP channel is on a descriptor (the VM link, the
	 * mesh's epoll set); the nap only bounds how late MPI's standing
	 * receives (control messages, checkpoint requests) are seen.  Work
	 * the caller made since the last pass (a release of the hold, an
	 * injected frame) has no descriptor to wake it: do it now. */
	if (f->vm_attached && !f->held && !f->vm_blocked && rq_count(f->rq))
		return 0;
	if (tcp_unarmed(f))
		return 0;
	/* No spin after traffic unless asked: measured on the shared 2-core
	 * machine, 50-200 us of plain spinning took the CPU the endpoints
	 * needed (one-way latency 3-8x worse); a spin that yields first saves
	 * the rank's wake-up and gives the core away whenever anything else
	 * can run, but still burns what is idle (bench/fabric/README.md). */
	if (spin_us > 0 && (now_s - last_busy_s) * 1e6 < spin_us) {
		sched_yield();
		return 0;
	}
	return TCP_MPI_NAP_MS;
}

static bool tcp_in_flight(const struct fabric *f)
{
	return false;	/* the kernel sends; we wait on the descriptor */
}

/* The VMs are gone.  Nobody may close before every rank is quiescing (a
 * running rank takes a closed connection for a fault), so first meet in a
 * non-blocking barrier, sending and reading (and counting as gone) all
 * along.  Then send each peer what is still queued, shut our side, and
 * read every peer to its end of file: after that no byte is on its way
 * anywhere, and the exit accounting balances exactly.  Past the deadline,
 * what is still queued is counted unsent. */
static void count_unsent(struct fabric *f, struct peer *p);

static bool tcp_all_ended(struct fabric *f, bool barrier_done)
{
	bool ended = true;

	for (int i = 0; i < f->size; i++) {
		struct peer *p = &f->peers[i];
		if (i == f->rank)
			continue;
		if (barrier_done && !p->wr_shut && !p->count && !p->fill.nrec) {
			ftcp_shutdown_wr(f->tcp, i);	/* a failure: its EOF comes anyway */
			p->wr_shut = true;
		}
		if (!p->wr_shut || !p->closed)
			ended = false;
	}
	return ended;
}

static int tcp_quiesce(struct fabric *f, int timeout_ms)
{
	double deadline = MPI_Wtime() + timeout_ms / 1000.0;
	MPI_Request barrier = MPI_REQUEST_NULL;
	int done = 0;
	bool busy;

	if (MPI_Ibarrier(f->comm, &barrier) != MPI_SUCCESS)
		return -EIO;
	while (MPI_Wtime() < deadline) {
		if (fabric_progress(f, &busy) < 0)
			return -EIO;
		if (!done)
			MPI_Test(&barrier, &done, MPI_STATUS_IGNORE);
		if (tcp_all_ended(f, done))
			return 0;
		if (busy)
			continue;
		struct pollfd pfd = { .fd = ftcp_fd(f->tcp), .events = POLLIN };
		poll(&pfd, 1, 1);
	}
	for (int i = 0; i < f->size; i++)
		if (i != f->rank && !f->peers[i].wr_shut)
			count_unsent(f, &f->peers[i]);
	return -ETIMEDOUT;
}

static const struct chan_ops tcp_ops = {
	.name = "tcp", .open = tcp_open, .progress_rx = tcp_progress_rx,
	.progress_tx = tcp_progress_tx, .pollfd = tcp_pollfd,
	.poll_timeout = tcp_poll_timeout, .in_flight = tcp_in_flight,
	.quiesce = tcp_quiesce,
};

/* ---- public ------------------------------------------------------------ */

int fabric_parse_transport(const char *s, enum fabric_transport *t)
{
	if (!strcmp(s, "tcp"))
		*t = FABRIC_TCP;
	else if (!strcmp(s, "mpi"))
		*t = FABRIC_MPI;
	else
		return -EINVAL;
	return 0;
}

struct fabric *fabric_create(MPI_Comm comm, int vm_fd)
{
	return fabric_create_with(comm, vm_fd, NULL);
}

struct fabric *fabric_create_with(MPI_Comm comm, int vm_fd, const struct fabric_opts *o)
{
	struct fabric *f = calloc(1, sizeof(*f));
	char url[32];
	int r;

	if (!f) {
		errno = ENOMEM;
		return NULL;
	}
	f->ops = (o ? o->transport : FABRIC_DEFAULT) == FABRIC_TCP ? &tcp_ops : &mpi_ops;
	MPI_Comm_dup(comm, &f->comm);
	MPI_Comm_set_errhandler(f->comm, MPI_ERRORS_RETURN);
	MPI_Comm_rank(f->comm, &f->rank);
	MPI_Comm_size(f->comm, &f->size);
	f->st.npeers = f->size;
	f->vm_fd = vm_fd;

	/* A spare rank (vm_fd < 0) has no VM: a switch port with nothing
	 * plugged in, which still forwards and counts like every other. */
	if (vm_fd >= 0) {
		/* Room for bursts between two progress calls on the VM link. */
		int sz = 1 << 20;
		setsockopt(vm_fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(vm_fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		fcntl(vm_fd, F_SETFL, fcntl(vm_fd, F_GETFL) | O_NONBLOCK);
		snprintf(url, sizeof(url), "seqpacket://%d", vm_fd);
		f->vde = vde_open(url, "vcluster-fabric", NULL);
		if (!f->vde) {
			r = -errno;
			pr_errno(r, "vde_open(%s)", url);
			goto fail;
		}
		f->vm_attached = true;
	}
	f->rq = rq_create();
	f->acct = facct_create(f->rank, f->size);
	/* One id for this run on every rank, so that the VC-ACCT lines of runs
	 * appended to the same logs (a restore) are told apart. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t run = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
	MPI_Bcast(&run, 1, MPI_UINT64_T, 0, f->comm);
	if (f->acct)
		facct_set_run(f->acct, run);
	f->vmbuf = malloc((size_t)VM_MMSG * (FABRIC_FRAME_MAX + 1));
	/* TCP: buffers leave for the socket at once, few spares are needed */
	f->spare_cap = f->ops == &tcp_ops ? 32 : 4 * f->size + 16;
	f->spare = calloc((size_t)f->spare_cap, sizeof(*f->spare));
	f->peers = calloc((size_t)f->size, sizeof(*f->peers));
	if (!f->vmbuf || !f->spare || !f->peers || !f->rq || !f->acct) {
		r = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < f->size; i++) {
		struct peer *p = &f->peers[i];
		p->rank = i;
		p->ring_max = f->ops == &tcp_ops ? TCP_SEND_RING : SEND_RING;
		p->spill_max = f->ops == &tcp_ops ? TCP_SPILL_RING : SPILL_RING;
		p->credit_in_req = MPI_REQUEST_NULL;
		p->credit_out_req = MPI_REQUEST_NULL;
		for (int k = 0; k < FABRIC_WINDOW; k++)
			p->rx[k].req = MPI_REQUEST_NULL;
	}
	/* Collective: every rank opens the same channel (an error on one
	 * rank still lets the others' collectives of the open complete). */
	r = f->ops->open(f, o);
	int ok = r == 0, all_ok = 0;
	MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, f->comm);
	if (r == 0 && !all_ok)
		r = -ENETDOWN;
	if (r < 0)
		goto fail;
	/* Every rank has posted its receives before anyone sends. */
	MPI_Barrier(f->comm);
	return f;
fail:
	fabric_destroy(f);
	errno = -r;
	return NULL;
}

const char *fabric_transport_name(const struct fabric *f)
{
	return f->ops->name;
}

void fabric_set_marker_cb(struct fabric *f, fabric_marker_cb cb, void *ctx)
{
	f->marker_cb = cb;
	f->marker_ctx = ctx;
}

int fabric_pollfd(struct fabric *f, struct pollfd *pfd)
{
	if (!f->vm_attached || f->vm_eof)
		return 0;
	pfd->fd = f->vm_fd;
	pfd->events = 0;
	pfd->revents = 0;
	/* A read that stalled on a full ring is watched again as soon as the
	 * ring has room: a pass can end with the ring emptied into an idle
	 * socket (no POLLOUT to wait for) and the stall not yet cleared. */
	if (!f->stalled || all_peers_can_take(f, false) || f->vm_blocked || f->draining)
		pfd->events |= POLLIN;
	if (f->vm_blocked)
		pfd->events |= POLLOUT;
	return 1;
}

int fabric_net_fd(struct fabric *f)
{
	struct pollfd p;

	return f->ops->pollfd(f, &p) ? p.fd : -1;
}

int fabric_pollfds(struct fabric *f, struct pollfd *pfd, int max)
{
	int n = 0;

	if (max > n && fabric_pollfd(f, &pfd[n]))
		n++;
	if (max > n && f->ops->pollfd(f, &pfd[n]))
		n++;
	return n;
}

/* Frames of the receive queue go to the VM first, oldest first. */
static int deliver_rq(struct fabric *f, bool *busy)
{
	int from;
	const uint8_t *frame;
	uint16_t len;

	while (rq_peek(f->rq, &from, &frame, &len) == 0) {
		int w = vm_write(f, from, true, frame, len);
		if (w <= 0)
			return w;
		if (from != f->rank) {	/* not one of our own (clock) frames */
			f->st.frames_from_rq++;
			if (f->cut_left)
				f->st.frames_from_cut++;
		}
		if (f->cut_left)
			f->cut_left--;
		rq_pop(f->rq);
		*busy = true;
	}
	return 0;
}

int fabric_progress(struct fabric *f, bool *busy)
{
	int r;

	*busy = false;
	/* Writing to the VM is retried every call; a POLLOUT wake-up or
	 * the next pass finds room. */
	f->vm_blocked = false;
	if (f->vm_attached && !f->held && rq_count(f->rq)) {
		r = deliver_rq(f, busy);
		if (r < 0)
			return r;
	}
	r = f->ops->progress_rx(f, busy);
	if (r < 0)
		return r;
	if (f->vm_attached && !f->vm_eof) {
		r = read_vm(f, busy);
		if (r < 0)
			return r;
	}
	r = f->ops->progress_tx(f, busy);
	if (r < 0)
		return r;
	/* The sends may have made the room a stalled read waits for; the VM
	 * link is not watched for reading while stalled, so read it now
	 * rather than at the next wake-up. */
	if (f->stalled && f->vm_attached && !f->vm_eof && all_peers_can_take(f, false)) {
		r = read_vm(f, busy);
		if (r < 0)
			return r;
		r = f->ops->progress_tx(f, busy);
	}
	if (f->ops == &tcp_ops && tcp_unarmed(f))
		f->st.unarmed_passes++;
	return r;
}

/* Empty q, counting each frame as discarded (the VM has gone). */
static void discard_rq(struct fabric *f, struct rq *q)
{
	int from;
	const uint8_t *frame;
	uint16_t len;

	while (rq_peek(q, &from, &frame, &len) == 0) {
		facct_discarded(f->acct, from, true);
		rq_pop(q);
	}
}

void fabric_detach_vm(struct fabric *f)
{
	f->vm_attached = false;
	f->vm_blocked = false;
	if (f->rq)
		discard_rq(f, f->rq);
	f->cut_left = 0;
}

void fabric_hold(struct fabric *f, bool hold)
{
	f->held = hold;
}

void fabric_drain_vm(struct fabric *f, bool drain)
{
	f->draining = drain;
	f->link_empty = false;
}

bool fabric_vm_link_empty(const struct fabric *f)
{
	return f->link_empty || f->vm_eof || !f->vm_attached;
}

int fabric_vm_unread(const struct fabric *f)
{
	int n = 0;

	if (!f->vm_attached || f->vm_eof || ioctl(f->vm_fd, SIOCOUTQ, &n) < 0)
		return 0;
	return n;
}

struct rq *fabric_rq(struct fabric *f)
{
	return f->rq;
}

int fabric_inject(struct fabric *f, const void *frame, uint16_t len)
{
	if (!f->vm_attached)
		return -ENODEV;
	int r = rq_push(f->rq, f->rank, frame, len);
	if (r == 0)
		facct_queued(f->acct, f->rank);
	return r;
}

void fabric_set_rq(struct fabric *f, struct rq *q)
{
	struct rq *counted = rq_create();
	int from = 0;
	const uint8_t *frame;
	uint16_t len;

	/* Count the restored frames by their sender: they were sent in the
	 * run that was checkpointed, and are delivered in this one. */
	while (counted && rq_peek(q, &from, &frame, &len) == 0) {
		if (rq_push(counted, from, frame, len) < 0)
			break;
		facct_restored(f->acct, from);
		rq_pop(q);
	}
	if (!counted || rq_count(q)) {
		/* Losing either half would lose frames silently; the
		 * checkpoint stays on disk for another try. */
		fprintf(stderr, "fabric: rank %d: out of memory loading the receive "
			"queue; stopping rather than lose frames\n", f->rank);
		abort();
	}
	rq_destroy(q);
	q = counted;
	discard_rq(f, f->rq);
	rq_destroy(f->rq);
	f->rq = q;
	f->cut_left = rq_count(q);
}

struct rq *fabric_take_rq(struct fabric *f)
{
	struct rq *fresh = rq_create(), *q = f->rq;

	if (!fresh)
		return NULL;
	f->rq = fresh;
	return q;
}

void fabric_put_rq(struct fabric *f, struct rq *q)
{
	if (!q)
		return;
	/* What the cut queued is what was saved: frames a peer sent after
	 * its own resume, queued meanwhile, go behind and are not counted. */
	f->cut_left = rq_count(q);
	if (rq_splice(q, f->rq) < 0) {
		/* Dropping either queue would lose frames silently; the last
		 * good checkpoint stays on disk for a restore. */
		fprintf(stderr, "fabric: rank %d: out of memory joining the receive "
			"queues; stopping rather than lose frames\n", f->rank);
		abort();
	}
	rq_destroy(f->rq);
	f->rq = q;
}

int fabric_send_marker(struct fabric *f, uint64_t epoch)
{
	uint8_t e[8];

	vcfmt_put_be64(e, epoch);
	for (int i = 0; i < f->size; i++) {
		if (i == f->rank)
			continue;
		/* A marker may exceed the ring bound by one batch: it must
		 * never wait behind the VM it is cutting. */
		int r = add_record(f, &f->peers[i], FBATCH_MARKER, e, sizeof(e));
		if (r < 0)
			return r;
	}
	facct_marker_sent(f->acct, epoch);
	return 0;
}

int fabric_poll_timeout(const struct fabric *f, double now_s, double last_busy_s,
			int spin_us)
{
	if (spin_us < 0)
		spin_us = f->ops == &tcp_ops ? 0 : 200;
	return f->ops->poll_timeout(f, now_s, last_busy_s, spin_us);
}

bool fabric_in_flight(const struct fabric *f)
{
	return f->ops->in_flight(f);
}

bool fabric_idle(const struct fabric *f)
{
	for (int i = 0; i < f->size; i++) {
		const struct peer *p = &f->peers[i];
		if (i != f->rank && (p->count || p->fill.nrec))
			return false;
	}
	return true;
}

/* Accounting at shutdown: the frame records of a batch, either one that
 * arrived as its receive was cancelled (received from p after the VM had
 * gone: counted as gone) or, unsent, one that never left for p. */
static void count_batch(struct fabric *f, struct peer *p, const uint8_t *b, size_t len,
			bool unsent)
{
	struct fbatch_rec rec;
	char why[128];

	for (size_t off = FBATCH_HDR; off < len; off = rec.next) {
		if (fbatch_record(b, len, off, &rec, why, sizeof(why)) < 0)
			return;
		if (rec.type != FBATCH_FRAME)
			continue;
		if (unsent) {
			facct_unsent(f->acct, p->rank, rec.len);
			continue;
		}
		facct_rx(f->acct, p->rank, rec.len, FABRIC_FRAME_MAX);
		if (facct_classify(rec.len, FABRIC_FRAME_MAX) == FACCT_OK) {
			f->st.frames_discarded++;
			facct_discarded(f->acct, p->rank, false);
		}
	}
}

static void count_unsent(struct fabric *f, struct peer *p)
{
	for (int k = p->inflight; k < p->count; k++) {
		const struct out_batch *b = &p->ring[(p->head + k) % RING_SLOTS];
		count_batch(f, p, b->buf, b->len, true);
	}
	if (p->fill.buf && p->fill.nrec)
		count_batch(f, p, p->fill.buf, p->fill.len, true);
}

/* No rank may cancel its receives while a peer's send to it is still in
 * flight.  So: stop starting sends (the VMs are gone, queued frames have
 * nowhere to go), finish the sends already started while still receiving,
 * then meet everyone in a non-blocking barrier, receiving all along.  Once
 * the barrier completes no message is in flight anywhere. */
int fabric_quiesce(struct fabric *f, int timeout_ms)
{
	fabric_detach_vm(f);
	f->quiescing = true;
	return f->ops->quiesce(f, timeout_ms);
}

static int mpi_quiesce(struct fabric *f, int timeout_ms)
{
	double deadline = MPI_Wtime() + timeout_ms / 1000.0;
	MPI_Request barrier = MPI_REQUEST_NULL;
	bool busy;
	int done = 0;

	while (MPI_Wtime() < deadline) {
		if (fabric_progress(f, &busy) < 0)
			return -EIO;
		if (barrier == MPI_REQUEST_NULL) {
			bool sending = false;
			for (int i = 0; i < f->size; i++) {
				struct peer *p = &f->peers[i];
				if (i == f->rank)
					continue;
				if (p->credit_out_req != MPI_REQUEST_NULL) {
					int d = 0;
					MPI_Test(&p->credit_out_req, &d, MPI_STATUS_IGNORE);
				}
				if (p->inflight || p->credit_out_req != MPI_REQUEST_NULL)
					sending = true;
			}
			if (!sending)
				MPI_Ibarrier(f->comm, &barrier);
			continue;
		}
		MPI_Test(&barrier, &done, MPI_STATUS_IGNORE);
		if (done)
			break;
	}
	if (!done)
		return -ETIMEDOUT;
	for (int i = 0; i < f->size; i++) {
		struct peer *p = &f->peers[i];
		if (i == f->rank)
			continue;
		count_unsent(f, p);
		for (int k = 0; k < FABRIC_WINDOW; k++) {
			if (p->rx[k].req != MPI_REQUEST_NULL) {
				MPI_Status st;
				int cancelled = 0, n = 0;

				MPI_Cancel(&p->rx[k].req);
				MPI_Wait(&p->rx[k].req, &st);
				MPI_Test_cancelled(&st, &cancelled);
				if (!cancelled && MPI_Get_count(&st, MPI_BYTE, &n) == MPI_SUCCESS)
					count_batch(f, p, p->rx[k].buf, (size_t)n, false);
			}
		}
		if (p->credit_in_req != MPI_REQUEST_NULL) {
			MPI_Cancel(&p->credit_in_req);
			MPI_Wait(&p->credit_in_req, MPI_STATUS_IGNORE);
		}
	}
	return 0;
}

void fabric_destroy(struct fabric *f)
{
	if (!f)
		return;
	if (f->peers) {
		for (int i = 0; i < f->size; i++) {
			struct peer *p = &f->peers[i];
			free(p->fill.buf);
			for (int k = 0; k < RING_SLOTS; k++)
				free(p->ring[k].buf);
			for (int k = 0; k < FABRIC_WINDOW; k++)
				free(p->rx[k].buf);
		}
		free(f->peers);
	}
	for (int i = 0; i < f->nspare; i++)
		free(f->spare[i]);
	ftcp_destroy(f->tcp);
	rq_destroy(f->rq);
	facct_destroy(f->acct);
	free(f->spare);
	free(f->vmbuf);
	if (f->vde)
		vde_close(f->vde);
	else if (f->vm_fd >= 0)
		close(f->vm_fd);
	if (f->comm != MPI_COMM_NULL && f->comm)
		MPI_Comm_free(&f->comm);
	free(f);
}

void fabric_get_stats(const struct fabric *f, struct fabric_stats *st)
{
	*st = f->st;
	st->rq_frames = (uint32_t)rq_count(f->rq);
	uint32_t q = 0;
	for (int i = 0; i < f->size; i++) {
		const struct peer *p = &f->peers[i];
		if (i == f->rank)
			continue;
		for (int k = 0; k < FABRIC_WINDOW; k++)
			if (p->rx[k].complete)
				q += p->rx[k].len - p->rx[k].off;
	}
	st->deliver_queue_bytes = q;
}

void fabric_get_peer_stats(const struct fabric *f, int peer,
			   struct fabric_peer_stats *st)
{
	const struct peer *p = &f->peers[peer];
	*st = p->st;
	st->queued_batches = (uint32_t)p->count + (p->fill.nrec ? 1 : 0);
	st->credits = p->credits < 0 ? 0 : (uint32_t)p->credits;
}

const struct facct *fabric_acct(const struct fabric *f)
{
	return f->acct;
}

void fabric_set_restored_epoch(struct fabric *f, uint64_t epoch)
{
	facct_set_restored_epoch(f->acct, epoch);
}
