/* fabric: the virtual cluster's Ethernet, forwarded between ranks over MPI.
 *
 * Each rank owns one VM link (a libvdeplug connection to its QEMU) and a
 * channel to every other rank (full mesh).  Frames from the VM go to the
 * rank that owns the destination MAC (learned from source addresses seen on
 * each channel); broadcast, multicast and unknown destinations go to every
 * other rank.
 *
 * THE PROMISE (the checkpoint protocol depends on it):
 *   For every ordered pair of ranks (A, B), the channel A->B is FIFO and
 *   reliable.  Every record A enqueues for B -- a data frame or a marker --
 *   is delivered to B exactly once and in the order A enqueued it.  Nothing
 *   is dropped silently: when B or its VM is slow, A's bounded queue for B
 *   fills and A stops reading frames from its own VM (backpressure), which
 *   in turn stalls that VM's transmit path.  (One exception keeps stock
 *   QEMU from deadlocking, see peer_can_take() in fabric.c: while a rank's
 *   own VM takes no frames, the bound is raised to a larger spill bound.)  A marker enqueued with
 *   fabric_send_marker() therefore arrives after every frame A took from its
 *   VM before the call.
 *
 * How: records are packed into batches (at most FABRIC_BATCH_MAX bytes,
 * fbatch.h); every batch carries a per-channel sequence number and a CRC32C
 * that the receiver checks.  Two channels carry them (--fabric):
 *   tcp (default): one TCP connection per pair of ranks (ftcp.h: set up
 *     over MPI, each end proves it belongs to the job), batches back to
 *     back; the sockets are waited on in the rank's event loop, so an idle
 *     rank sleeps and a frame wakes it.  TCP's window is the credit: B
 *     reads A's socket only once it has delivered (or queued) the batch
 *     before (it reads at most the next batch's header with it), so a
 *     slow B fills A's socket, then A's ring.
 *   mpi: each batch one MPI message on one tag and communicator, so MPI's
 *     non-overtaking rule keeps them in order.  Flow control is by credit:
 *     B keeps FABRIC_WINDOW receive buffers posted for A, and A sends a
 *     batch only while it holds a credit; B returns a credit after it has
 *     copied the batch's frames into its bounded delivery queue.  MPI has
 *     no descriptor: a rank polls (see fabric_poll_timeout).
 *
 * NO DEADLOCK: every wait in the frame path.  (Moved here from
 * qemu-patches/README.md.)  A frame from guest A to guest B passes these
 * stages, and each can wait only on the next one:
 *   1. Guest A's TX ring (virtio-net, 256 descriptors): the guest stops its
 *      queue when the ring is full and waits for QEMU A.  Waits on 2.
 *   2. QEMU A's TX (vde_receive()).  With qemu-patches 0004 it never
 *      blocks: when the link is full the frame waits in the net layer and
 *      a write watch resumes it, while QEMU's main loop goes on serving its
 *      RX (6) and QMP.  Waits on 3.
 *   3. Link A, VM to rank.  Room appears when rank A reads, which it does
 *      while every peer's send ring has room (mpi 32 batches, tcp 4); while
 *      its own VM takes no frames, or while draining for a checkpoint, up
 *      to the spill bound (mpi 128, tcp 16).  Waits on 4.
 *   4. Rank A's send ring for B.  mpi: sent while A holds credits from B,
 *      which B returns when it has copied the batch into its delivery
 *      queue.  tcp: written (non-blocking) while A's socket buffer has
 *      room, which appears when B reads the socket, which B does once its
 *      previous batch from A is delivered or queued.  Waits on 5.
 *   5. Rank B's delivery (the batch being delivered), written to link B
 *      with MSG_DONTWAIT (sendmmsg, a run of frames at a time); while a checkpoint holds B (fabric_hold), frames
 *      go to the receive queue (rq, in memory, saved by the checkpoint)
 *      instead, so a held rank never waits here.  Waits on 6.
 *   6. QEMU B's RX (0003): it reads link B while its VM runs and the guest
 *      has receive buffers posted.  Waits on 7.
 *   7. Guest B's RX ring: the driver reposts buffers from NAPI whatever its
 *      sockets do (a full socket drops the packet, it does not hold the
 *      buffer).  Waits on guest B's CPU only.
 * No stage waits on a stage before it, so the waits form a chain that ends
 * at a guest's CPU, not a cycle.  Places that could close one, each cut:
 *   - QEMU's main loop serves both directions.  A stock QEMU blocked in a
 *     TX send() cannot do 6 or answer QMP: 2 would wait on 3 while 6 of the
 *     same QEMU waits on 2, and two VMs sending to each other could
 *     deadlock.  0004 removes the edge.  With stock QEMU the fabric cuts
 *     it: a rank whose VM takes no frames (vm_blocked) reads on into the
 *     spill bound, which unblocks its QEMU.  Residual risk with stock QEMU:
 *     every peer's ring at its spill bound (mpi: 128 batches, 8 MiB; tcp:
 *     16 batches, 1 MiB, plus the socket buffers) while the VMs stay
 *     blocked.
 *   - Rank B's reading (4 -> 5) never depends on B's own sending: the
 *     event loop reads and writes each socket (or MPI request)
 *     independently and without blocking, and credits (mpi) or reads (tcp)
 *     follow delivery, never anything B sends.  A marker goes on the ring
 *     past the bound (fabric_send_marker), so a cut never waits on 3.
 *   - A stopped VM (checkpoint: stop, drain, marker, migrate) takes and
 *     sends no frames; the rank holds (5 goes to rq), so peers' batches
 *     keep being read; `stop` is answered at once (0004) or while the rank
 *     reads link A (stock).
 *   - The event loop itself waits only in epoll on the descriptors of 3, 4
 *     (tcp sockets, through the mesh's epoll descriptor) and 5, with a
 *     timeout (fabric_poll_timeout) for MPI, which has none.
 *
 * Frames that reach a rank whose VM has gone (powered off) are discarded and
 * counted: a switch port with nothing plugged in.
 *
 * Threading: one thread (the rank's event loop, vcluster-launch/loop.h)
 * calls everything here.  vccp-rank/ sees the fabric only through the
 * launcher's struct vccp_fabric_ops.
 */
#ifndef VC_FABRIC_H
#define VC_FABRIC_H

#include <mpi.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

struct rq;

#define FABRIC_BATCH_MAX	(64 * 1024)
#define FABRIC_WINDOW		16
#define FABRIC_FRAME_MAX	(9 * 1024 + 18)	/* jumbo frame + header */

struct fabric;
struct vdeconn;

struct fabric_peer_stats {
	uint64_t frames_tx, bytes_tx;	/* to that rank */
	uint64_t frames_rx, bytes_rx;	/* from that rank */
	uint32_t queued_batches;	/* waiting for a credit or in flight */
	uint32_t credits;		/* batches we may still send */
};

struct fabric_stats {
	uint64_t frames_from_vm, bytes_from_vm;
	uint64_t frames_to_vm, bytes_to_vm;
	uint64_t frames_flooded;	/* broadcast, multicast or unknown */
	uint64_t frames_discarded;	/* arrived with no VM to take them */
	uint64_t backpressure_stalls;	/* times reading the VM was paused */
	uint64_t spill_reads;		/* frames read past the normal bound */
	uint64_t frames_from_rq;	/* delivered from the receive queue */
	uint64_t frames_from_cut;	/* of those, queued at a cut or restored */
	uint64_t unarmed_passes;	/* tcp: passes that left work no event announces */
	uint32_t rq_frames;		/* in the receive queue now */
	uint32_t deliver_queue_bytes;	/* waiting to be written to the VM */
	uint32_t deliver_queue_max;	/* high-water mark */
	int npeers;			/* = MPI size */
};

/* Called for each marker that arrives, in channel order. */
typedef void (*fabric_marker_cb)(void *ctx, int from_rank, uint64_t epoch);

/* The channel between ranks: batches as MPI messages, or on TCP
 * connections (ftcp.h) waited on in the rank's event loop. */
enum fabric_transport { FABRIC_MPI, FABRIC_TCP };
#define FABRIC_DEFAULT	FABRIC_TCP

struct fabric_opts {
	enum fabric_transport transport;
	const char *addr;	/* TCP: address to listen on; NULL: the hostname's */
};

/* "tcp" or "mpi".  0 or -EINVAL. */
int fabric_parse_transport(const char *s, enum fabric_transport *t);

/* Create the fabric over comm (dup'ed inside).  vm_fd is the rank's end of
 * the VM link, a SOCK_SEQPACKET socket that carries one frame per message
 * (libvdeplug's seqpacket transport); the fabric takes ownership and opens
 * it with vde_open(); vm_fd < 0: a spare rank, no VM (frames that reach it
 * are counted as gone).  Collective over comm.  NULL with errno on failure.
 * o NULL: FABRIC_DEFAULT with its defaults. */
struct fabric *fabric_create_with(MPI_Comm comm, int vm_fd, const struct fabric_opts *o);
struct fabric *fabric_create(MPI_Comm comm, int vm_fd);	/* o = NULL */
const char *fabric_transport_name(const struct fabric *f);
void fabric_destroy(struct fabric *f);	/* NULL is fine; not collective */

void fabric_set_marker_cb(struct fabric *f, fabric_marker_cb cb, void *ctx);

/* Fill pfd with the VM link's descriptor and the events the fabric waits
 * for (POLLIN when it can take frames, POLLOUT when frames wait to be
 * delivered).  Returns the number of entries used (0 or 1). */
int fabric_pollfd(struct fabric *f, struct pollfd *pfd);

/* Every descriptor the fabric waits on (at most FABRIC_POLLFDS): the VM
 * link as above, and with TCP the mesh's epoll descriptor (POLLIN: a peer
 * socket is ready, or a connection arrives).  Returns the count. */
#define FABRIC_POLLFDS	2
int fabric_pollfds(struct fabric *f, struct pollfd *pfd, int max);
/* The channel's own descriptor (constant for the fabric's life; wait for
 * readability), or -1 (MPI). */
int fabric_net_fd(struct fabric *f);

/* Do all work that can be done now without blocking: read frames from the
 * VM, send batches, complete receives, deliver frames.  Sets *busy when
 * anything moved.  Returns 0 or a negative errno for a fatal fault (a
 * corrupt or out-of-order batch: the promise above would be broken). */
int fabric_progress(struct fabric *f, bool *busy);

/* Stop taking frames from the VM and delivering to it (the VM has gone).
 * Frames still arriving are discarded; credits keep flowing so peers never
 * block on this rank. */
void fabric_detach_vm(struct fabric *f);

/* Checkpoint support (see vccp-rank/).
 *
 * fabric_hold(f, true): frames that arrive for the VM are appended to the
 * receive queue instead of being written to it.  fabric_hold(f, false):
 * the queue is written to the VM first, in order; frames arriving while it
 * is not empty queue behind it, so nothing overtakes.
 *
 * fabric_drain_vm(f, true): read the (paused) VM's link to the end even past
 * the queue bound; fabric_vm_link_empty() says when a read found it empty.
 */
void fabric_hold(struct fabric *f, bool hold);
void fabric_drain_vm(struct fabric *f, bool drain);
bool fabric_vm_link_empty(const struct fabric *f);
/* Bytes written to the VM link that QEMU has not read yet (SIOCOUTQ). */
int fabric_vm_unread(const struct fabric *f);
struct rq *fabric_rq(struct fabric *f);
/* Queue a frame of the rank's own for its VM (behind the receive queue). */
int fabric_inject(struct fabric *f, const void *frame, uint16_t len);
/* Replace the receive queue (restore); the fabric takes ownership. */
void fabric_set_rq(struct fabric *f, struct rq *q);
/* Take the receive queue (the caller owns it; the fabric goes on with an
 * empty one), and give it back: its frames go before any queued since.
 * NULL when out of memory. */
struct rq *fabric_take_rq(struct fabric *f);
void fabric_put_rq(struct fabric *f, struct rq *q);

/* Enqueue a marker for every other rank, behind every frame already taken
 * from the VM.  0 or -errno. */
int fabric_send_marker(struct fabric *f, uint64_t epoch);

/* How long the caller's poll() may sleep.  MPI: 0 while sends are in
 * flight or within spin_us of the last activity (MPI has no descriptor to
 * wake us, so a sleeping rank delays frames from its peers), else 1 ms.
 * TCP: every wait is on a descriptor of fabric_pollfds(), so 20 ms, which
 * only bounds how late the caller's own MPI requests are polled; 0 when
 * the last pass left work that no descriptor announces (never expected:
 * counted in fabric_stats.unarmed_passes) or frames queued for the VM;
 * and, only when spin_us > 0 is asked for, 0 within spin_us of the last
 * activity, after giving way (sched_yield) to whatever else is runnable
 * on the core (bench/fabric/README.md: the wake-up a spin saves, and what
 * spinning costs on a shared machine).  spin_us < 0: the channel's default
 * (MPI 200 us, TCP 0: no spin).  last_busy is the caller's monotonic time
 * of the last pass that moved anything. */
#define FABRIC_SPIN_DEFAULT	(-1)
int fabric_poll_timeout(const struct fabric *f, double now_s, double last_busy_s,
			int spin_us);

/* True while sends are on the wire: MPI completes them only when called,
 * so the caller should keep calling rather than sleep. */
bool fabric_in_flight(const struct fabric *f);

/* True when nothing waits to be sent or completed (used before shutdown). */
bool fabric_idle(const struct fabric *f);

/* Shut the channels down: stop sending, let sends in flight complete, meet
 * every rank, cancel the receives.  Collective; call on every rank after
 * all VMs have gone and before MPI_Finalize.  0, or -ETIMEDOUT when a peer
 * did not come within timeout_ms (then MPI should be aborted, not ended). */
int fabric_quiesce(struct fabric *f, int timeout_ms);

void fabric_get_stats(const struct fabric *f, struct fabric_stats *st);
/* The exact per-peer accounting (facct.h): the VC-ACCT lines. */
struct facct;
const struct facct *fabric_acct(const struct fabric *f);
/* The epoch a restore loaded the receive queue from (for those lines). */
void fabric_set_restored_epoch(struct fabric *f, uint64_t epoch);
void fabric_get_peer_stats(const struct fabric *f, int peer,
			   struct fabric_peer_stats *st);

#endif
