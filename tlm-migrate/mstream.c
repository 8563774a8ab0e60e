/* mstream: N parallel streams of framed, checksummed chunks.
 *
 * One engine, several transports: a struct ms_ops per transport and role
 * (TCP sender, TCP receiver, file writer, file reader) opens the N channels
 * and moves bytes; framing, CRCs, queues, threads and the stop path are
 * shared.  The format is in README.md next to this file.
 */
#define LOG_PREFIX "mstream"
#include "mstream.h"
#include "log.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- wire format --------------------------------------------------------
 *
 * Every message starts with magic, version, header length and kind, all
 * big-endian, and carries a CRC32C of its header in the header's last four
 * bytes.  A chunk adds a trailer: CRC32C over header and payload.
 */
enum {
	MS_KIND_HELLO = 1,	/* sender -> receiver, first on each stream */
	MS_KIND_REPLY = 2,	/* receiver -> sender: hello accepted/refused */
	MS_KIND_CHUNK = 3,	/* sender -> receiver */
	MS_KIND_ENDACK = 4,	/* receiver -> sender: end-of-stream processed */
};

/* Offsets shared by every message. */
#define MS_OFF_MAGIC	0
#define MS_OFF_VERSION	4
#define MS_OFF_HDRLEN	6
#define MS_OFF_KIND	8

/* Hello (40 bytes). */
#define MS_HELLO_INDEX		10
#define MS_HELLO_COUNT		12
#define MS_HELLO_SESSION	16	/* 14..15 and 24..35 reserved, zero */
#define MS_HELLO_CRC		36
#define MS_HELLO_SIZE		40

/* Reply and end acknowledgement (104 bytes). */
#define MS_REPLY_INDEX		10
#define MS_REPLY_STATUS		12	/* 0, or a positive errno */
#define MS_REPLY_SESSION	16
#define MS_REPLY_REASON		24	/* NUL-padded text */
#define MS_REPLY_REASON_LEN	76
#define MS_REPLY_CRC		100
#define MS_REPLY_SIZE		104

/* Chunk header (40 bytes), then payload, then a 4-byte CRC32C. */
#define MS_CHUNK_FLAGS		10
#define MS_CHUNK_TYPE		12
#define MS_CHUNK_TAG		16
#define MS_CHUNK_SEQ		24
#define MS_CHUNK_LEN		32
#define MS_CHUNK_CRC		36
#define MS_CHUNK_HDR_SIZE	40
#define MS_TRAILER_SIZE		4

#define MS_F_ALL	0x0001	/* one copy on every stream: a marker */
#define MS_F_END	0x0002	/* end of stream, no payload */
#define MS_F_KNOWN	(MS_F_ALL | MS_F_END)

_Static_assert(MS_HELLO_CRC + 4 == MS_HELLO_SIZE, "hello layout");
_Static_assert(MS_REPLY_REASON + MS_REPLY_REASON_LEN == MS_REPLY_CRC,
	       "reply layout");
_Static_assert(MS_REPLY_CRC + 4 == MS_REPLY_SIZE, "reply layout");
_Static_assert(MS_CHUNK_CRC + 4 == MS_CHUNK_HDR_SIZE, "chunk layout");
_Static_assert(MSTREAM_MAX_STREAMS <= UINT16_MAX, "index fits in 16 bits");
_Static_assert(MSTREAM_CHUNK_LIMIT <= UINT32_MAX - MS_CHUNK_HDR_SIZE,
	       "length fits in 32 bits");

/* ---- defaults and limits ------------------------------------------------ */

#define MS_DEF_QUEUE		4
#define MS_DEF_MAX_CHUNK	(4u << 20)
#define MS_DEF_TIMEOUT_MS	10000
#define MS_DEF_IO_TIMEOUT_MS	30000
#define MS_CONNECT_RETRY_MS	20	/* pause between refused connects */
#define MS_MAX_PENDING		(2 * MSTREAM_MAX_STREAMS)	/* unhelloed conns */
#define MS_ERR_MAX		1024

/* ---- state --------------------------------------------------------------- */

/* One queued chunk.  The payload belongs to whoever holds the struct: the
 * queue while queued, the stream thread while it writes it. */
struct ms_out {
	void *data;		/* malloc'd, NULL when len == 0 */
	uint32_t len;
	uint32_t type;
	uint64_t tag;
	uint16_t flags;		/* MS_F_* */
};

struct ms_chan {
	/* Set before the stream's thread starts, read-only afterwards. */
	struct mstream *ms;
	int idx;
	int fd;			/* socket or file, -1 until opened */
	char *name;		/* "host:port" of the peer, or the file path */

	/* Under ms->lock. */
	pthread_cond_t work;	/* sender: queue gained a chunk, or stop */
	struct ms_out *ring;	/* queue_depth slots (sender) */
	int head;		/* oldest queued slot */
	int count;		/* queued chunks */
	size_t load;		/* payload bytes queued or being written */
	bool busy;		/* the thread is writing a chunk */
	bool exited;		/* the thread has finished */
	bool ended;		/* end-of-stream written and confirmed / read */
	bool barrier_seen;	/* receiver: a marker arrived ... */
	uint64_t barrier_tag;	/* ... and this was the last one's tag */
	struct mstream_stats stats;

	/* Only the controlling thread. */
	pthread_t thread;
	bool started;		/* thread created and not yet joined */

	/* Only the stream's thread. */
	uint64_t seq;		/* next sequence number to write or expect */
	uint8_t *rbuf;		/* receive buffer, grown up to max_chunk */
	size_t rcap;
};

enum ms_role { MS_ROLE_NONE, MS_ROLE_SEND, MS_ROLE_RECV };
enum ms_state { MS_IDLE, MS_LISTENING, MS_RUNNING, MS_FINISHING, MS_DONE };

struct ms_ops;

struct mstream {
	/* Set by create and the open call, read-only while threads run. */
	struct mstream_opts o;
	const struct ms_ops *ops;
	enum ms_role role;
	uint64_t session;
	bool session_known;	/* receiver: session fixed or adopted */
	int nlisten;
	int lfd[MSTREAM_MAX_STREAMS];	/* listeners, -1 for duplicates */
	int lport[MSTREAM_MAX_STREAMS];
	struct ms_chan *ch;	/* o.nstreams channels */

	pthread_mutex_t lock;
	/* Under lock. */
	pthread_cond_t cond;	/* callers wait: slot free, idle, marker, exit */
	enum ms_state state;
	int err;		/* first error, 0 while none */
	char errmsg[MS_ERR_MAX];
	int rr;			/* round-robin cursor for ties */
	int nrunning;		/* stream threads not yet exited */

	/* Set once by ms_stop(); read without the lock by stream threads. */
	atomic_bool exiting;
};

/*
 * A transport.  open() fills fd and name of all o.nstreams channels (for
 * TCP this includes the hello exchange, which is collective on the receiving
 * side, hence one call for all); the stream threads then use the rest.
 */
struct ms_ops {
	const char *name;
	int (*open)(struct mstream *ms, const void *where, int n);
	/* Write all of iov; 0 or -errno. */
	int (*send)(struct ms_chan *ch, struct iovec *iov, int iovcnt);
	/* Read len bytes; 0 with *got == len, 0 with *got < len at EOF, or
	 * -errno with the bytes read so far in *got. */
	int (*recv)(struct ms_chan *ch, void *buf, size_t len, size_t *got);
	/* After the end-of-stream chunk: the sender waits for the confirmation,
	 * the receiver gives it.  0 or -errno (already recorded). */
	int (*finish)(struct ms_chan *ch);
	/* Wake a send or recv blocked on ch; any thread. */
	void (*abort)(struct ms_chan *ch);
	void (*close)(struct ms_chan *ch);
	/* How an early EOF reads in messages, and its error code. */
	const char *eof_mid;
	const char *eof_between;
	int eof_err;
};

/* ---- small helpers -------------------------------------------------------- */

static int64_t ms_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (< 0: none), as a poll() timeout. */
static int ms_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - ms_now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

static int64_t ms_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : ms_now_ms() + timeout_ms;
}

/* Wait on ms->cond until deadline (< 0: none); lock held.  0 or -ETIMEDOUT. */
static int ms_cond_wait(struct mstream *ms, int64_t deadline)
{
	struct timespec ts;

	if (deadline < 0) {
		pthread_cond_wait(&ms->cond, &ms->lock);
		return 0;
	}
	ts.tv_sec = deadline / 1000;
	ts.tv_nsec = (deadline % 1000) * 1000000;
	if (pthread_cond_timedwait(&ms->cond, &ms->lock, &ts) == ETIMEDOUT)
		return -ETIMEDOUT;
	return 0;
}

static bool ms_exiting(const struct mstream *ms)
{
	return atomic_load(&ms->exiting);
}

/* "host:port", with brackets when host is an IPv6 address. */
static void ms_addr_name(char *buf, size_t len, const char *host, unsigned port)
{
	if (strchr(host, ':'))
		snprintf(buf, len, "[%s]:%u", host, port);
	else
		snprintf(buf, len, "%s:%u", host, port);
}

static void ms_sockaddr_name(char *buf, size_t len,
			     const struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 1], serv[8];

	if (getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host,
			sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, len, "?");
		return;
	}
	ms_addr_name(buf, len, host, (unsigned)atoi(serv));
}

/* ---- stop path and errors ------------------------------------------------ */

/*
 * The only way streams stop early.  The exchange makes it run once; the
 * broadcasts happen under the lock, so a waiter that checked the flag just
 * before cannot miss them; the sockets are shut down last, after the caller
 * recorded why, so the kept error is the cause and not the fallout.
 */
static void ms_stop(struct mstream *ms)
{
	int i;

	if (atomic_exchange(&ms->exiting, true))
		return;
	pthread_mutex_lock(&ms->lock);
	for (i = 0; i < ms->o.nstreams; i++)
		pthread_cond_broadcast(&ms->ch[i].work);
	pthread_cond_broadcast(&ms->cond);
	pthread_mutex_unlock(&ms->lock);
	if (!ms->ops)
		return;
	for (i = 0; i < ms->o.nstreams; i++)
		ms->ops->abort(&ms->ch[i]);
}

/* Keep err and its reason if it is the first failure, then stop. */
__attribute__((format(printf, 3, 0)))
static int ms_vfail(struct mstream *ms, int err, const char *fmt, va_list ap)
{
	bool first = false;

	pthread_mutex_lock(&ms->lock);
	if (!ms->err) {
		ms->err = err;
		vsnprintf(ms->errmsg, sizeof(ms->errmsg), fmt, ap);
		first = true;
	}
	pthread_mutex_unlock(&ms->lock);
	/* errmsg is never written again once err is set. */
	if (first)
		pr_debug("%s", ms->errmsg);
	ms_stop(ms);
	return err;
}

__attribute__((format(printf, 3, 4)))
static int ms_fail(struct mstream *ms, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ms_vfail(ms, err, fmt, ap);
	va_end(ap);
	return err;
}

/* The same, prefixed "stream I (NAME): ". */
__attribute__((format(printf, 3, 4)))
static int ms_fail_ch(struct ms_chan *ch, int err, const char *fmt, ...)
{
	char msg[MS_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ms_fail(ch->ms, err, "stream %d (%s): %s", ch->idx,
		       ch->name ? ch->name : "?", msg);
}

void mstream_stop(struct mstream *ms)
{
	bool all_ended;
	int i;

	if (!ms)
		return;
	pthread_mutex_lock(&ms->lock);
	all_ended = ms->state >= MS_RUNNING;
	for (i = 0; all_ended && i < ms->o.nstreams; i++)
		all_ended = ms->ch[i].ended;
	pthread_mutex_unlock(&ms->lock);
	if (!all_ended)
		ms_fail(ms, -ECANCELED, "stopped by the caller");
	else
		ms_stop(ms);
}

int mstream_error(struct mstream *ms, char *buf, size_t len)
{
	int err;

	pthread_mutex_lock(&ms->lock);
	err = ms->err;
	if (buf && len)
		snprintf(buf, len, "%s", ms->errmsg);
	pthread_mutex_unlock(&ms->lock);
	return err;
}

uint64_t mstream_session(const struct mstream *ms)
{
	return ms->state >= MS_RUNNING ? ms->session : 0;
}

int mstream_stats(struct mstream *ms, int i, struct mstream_stats *st)
{
	if (i < 0 || i >= ms->o.nstreams)
		return -EINVAL;
	pthread_mutex_lock(&ms->lock);
	*st = ms->ch[i].stats;
	pthread_mutex_unlock(&ms->lock);
	return 0;
}

/* ---- encoding and checks ------------------------------------------------- */

static void ms_put_prefix(uint8_t *p, uint16_t size, uint16_t kind)
{
	vcfmt_put_be32(p + MS_OFF_MAGIC, VC_MAGIC_MSTREAM);
	vcfmt_put_be16(p + MS_OFF_VERSION, MSTREAM_WIRE_VERSION);
	vcfmt_put_be16(p + MS_OFF_HDRLEN, size);
	vcfmt_put_be16(p + MS_OFF_KIND, kind);
}

static void ms_put_crc(uint8_t *p, size_t size)
{
	vcfmt_put_be32(p + size - 4, vcfmt_crc32c(0, p, size - 4));
}

static void ms_encode_hello(uint8_t *p, int idx, int count, uint64_t session)
{
	memset(p, 0, MS_HELLO_SIZE);
	ms_put_prefix(p, MS_HELLO_SIZE, MS_KIND_HELLO);
	vcfmt_put_be16(p + MS_HELLO_INDEX, (uint16_t)idx);
	vcfmt_put_be16(p + MS_HELLO_COUNT, (uint16_t)count);
	vcfmt_put_be64(p + MS_HELLO_SESSION, session);
	ms_put_crc(p, MS_HELLO_SIZE);
}

static void ms_encode_reply(uint8_t *p, uint16_t kind, int idx, int status,
			    uint64_t session, const char *reason)
{
	memset(p, 0, MS_REPLY_SIZE);
	ms_put_prefix(p, MS_REPLY_SIZE, kind);
	vcfmt_put_be16(p + MS_REPLY_INDEX, (uint16_t)idx);
	vcfmt_put_be32(p + MS_REPLY_STATUS, (uint32_t)status);
	vcfmt_put_be64(p + MS_REPLY_SESSION, session);
	/* Truncated to fit, always NUL-terminated (the buffer is zeroed). */
	memcpy(p + MS_REPLY_REASON, reason,
	       strnlen(reason, MS_REPLY_REASON_LEN - 1));
	ms_put_crc(p, MS_REPLY_SIZE);
}

static void ms_encode_chunk_hdr(uint8_t *p, const struct ms_out *o,
				uint64_t seq)
{
	memset(p, 0, MS_CHUNK_HDR_SIZE);
	ms_put_prefix(p, MS_CHUNK_HDR_SIZE, MS_KIND_CHUNK);
	vcfmt_put_be16(p + MS_CHUNK_FLAGS, o->flags);
	vcfmt_put_be32(p + MS_CHUNK_TYPE, o->type);
	vcfmt_put_be64(p + MS_CHUNK_TAG, o->tag);
	vcfmt_put_be64(p + MS_CHUNK_SEQ, seq);
	vcfmt_put_be32(p + MS_CHUNK_LEN, o->len);
	ms_put_crc(p, MS_CHUNK_HDR_SIZE);
}

static const char *ms_kind_name(unsigned kind)
{
	switch (kind) {
	case MS_KIND_HELLO:
		return "hello";
	case MS_KIND_REPLY:
		return "hello reply";
	case MS_KIND_CHUNK:
		return "chunk";
	case MS_KIND_ENDACK:
		return "end acknowledgement";
	}
	return "unknown";
}

/*
 * Check the fields every message starts with, then its header CRC.  The
 * fields come first so a stray or newer peer is named for what it is; a
 * flipped bit elsewhere is caught by the CRC.  0 or -EBADMSG with why.
 */
static int ms_check_prefix(const uint8_t *p, size_t size, unsigned kind,
			   char *why, size_t whylen)
{
	uint32_t magic = vcfmt_get_be32(p + MS_OFF_MAGIC);
	unsigned version = vcfmt_get_be16(p + MS_OFF_VERSION);
	unsigned hdr_len = vcfmt_get_be16(p + MS_OFF_HDRLEN);
	unsigned got_kind = vcfmt_get_be16(p + MS_OFF_KIND);
	uint32_t crc = vcfmt_get_be32(p + size - 4);
	uint32_t want = vcfmt_crc32c(0, p, size - 4);

	if (magic != VC_MAGIC_MSTREAM)
		snprintf(why, whylen, "magic 0x%08x, expected 0x%08x (VCMS)",
			 magic, VC_MAGIC_MSTREAM);
	else if (version != MSTREAM_WIRE_VERSION)
		snprintf(why, whylen, "version %u, expected %u", version,
			 MSTREAM_WIRE_VERSION);
	else if (hdr_len != size)
		snprintf(why, whylen, "header length %u, expected %zu",
			 hdr_len, size);
	else if (got_kind != kind)
		snprintf(why, whylen, "message kind %u (%s), expected %u (%s)",
			 got_kind, ms_kind_name(got_kind), kind,
			 ms_kind_name(kind));
	else if (crc != want)
		snprintf(why, whylen, "%s header CRC32C 0x%08x, computed 0x%08x",
			 ms_kind_name(kind), crc, want);
	else
		return 0;
	return -EBADMSG;
}

/* Check a hello against this receiver; adopt its session if none is fixed
 * yet.  Returns the stream index, or -EPROTO with why. */
static int ms_check_hello(struct mstream *ms, const uint8_t *p, char *why,
			  size_t whylen)
{
	unsigned idx = vcfmt_get_be16(p + MS_HELLO_INDEX);
	unsigned count = vcfmt_get_be16(p + MS_HELLO_COUNT);
	uint64_t session = vcfmt_get_be64(p + MS_HELLO_SESSION);

	if (ms_check_prefix(p, MS_HELLO_SIZE, MS_KIND_HELLO, why, whylen))
		return -EPROTO;
	if (count != (unsigned)ms->o.nstreams) {
		snprintf(why, whylen, "stream count %u, expected %d", count,
			 ms->o.nstreams);
		return -EPROTO;
	}
	if (idx >= count) {
		snprintf(why, whylen, "stream index %u, expected below %u",
			 idx, count);
		return -EPROTO;
	}
	if (ms->session_known && session != ms->session) {
		snprintf(why, whylen, "session 0x%016llx, expected 0x%016llx",
			 (unsigned long long)session,
			 (unsigned long long)ms->session);
		return -EPROTO;
	}
	ms->session = session;
	ms->session_known = true;
	return (int)idx;
}

/* Check a reply or end acknowledgement for stream idx.  0, -EBADMSG for a
 * malformed one, or -EPROTO when the receiver refused (its reason in why). */
static int ms_check_reply(struct mstream *ms, const uint8_t *p, unsigned kind,
			  int idx, char *why, size_t whylen)
{
	unsigned got_idx = vcfmt_get_be16(p + MS_REPLY_INDEX);
	uint32_t status = vcfmt_get_be32(p + MS_REPLY_STATUS);
	uint64_t session = vcfmt_get_be64(p + MS_REPLY_SESSION);
	char reason[MS_REPLY_REASON_LEN];
	int r, i;

	r = ms_check_prefix(p, MS_REPLY_SIZE, kind, why, whylen);
	if (r)
		return r;
	if (status) {
		/* The text came from the network: keep it printable. */
		memcpy(reason, p + MS_REPLY_REASON, sizeof(reason));
		reason[sizeof(reason) - 1] = '\0';
		for (i = 0; reason[i]; i++)
			if (!isprint((unsigned char)reason[i]))
				reason[i] = '?';
		snprintf(why, whylen, "receiver refused: %s", reason);
		return -EPROTO;
	}
	if (got_idx != (unsigned)idx) {
		snprintf(why, whylen, "%s for stream %u, expected %d",
			 ms_kind_name(kind), got_idx, idx);
		return -EBADMSG;
	}
	if (session != ms->session) {
		snprintf(why, whylen, "%s session 0x%016llx, expected 0x%016llx",
			 ms_kind_name(kind), (unsigned long long)session,
			 (unsigned long long)ms->session);
		return -EBADMSG;
	}
	return 0;
}

/* ---- socket I/O --------------------------------------------------------
 *
 * Sockets are non-blocking; a wait is a poll() bounded either by a fixed
 * deadline (open step) or by io_timeout_ms since the last progress (stream
 * threads).  shutdown() from ms_stop() makes a pending poll() return.
 */

/* Deadline for the next wait: per-wait timeout tmo_ms when >= 0, else the
 * fixed deadline (< 0: none). */
static int64_t ms_wait_deadline(int64_t deadline, int tmo_ms)
{
	return tmo_ms >= 0 ? ms_now_ms() + tmo_ms : deadline;
}

static int sock_wait(int fd, short ev, int64_t deadline,
		     const atomic_bool *cancel)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r;

	for (;;) {
		if (cancel && atomic_load(cancel))
			return -ECANCELED;
		r = poll(&p, 1, ms_left(deadline));
		if (r > 0)
			return 0;	/* the next call says what happened */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Write all of iov.  MSG_NOSIGNAL: a dead peer is an -EPIPE, not SIGPIPE. */
static int sock_sendv(int fd, struct iovec *iov, int iovcnt, int64_t deadline,
		      int tmo_ms, const atomic_bool *cancel)
{
	struct msghdr mh = { 0 };
	ssize_t n;
	int r;

	while (iovcnt > 0) {
		if (iov->iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)iovcnt;
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			r = sock_wait(fd, POLLOUT,
				      ms_wait_deadline(deadline, tmo_ms), cancel);
			if (r)
				return r;
			continue;
		}
		while (n > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int sock_send(int fd, const void *buf, size_t len, int64_t deadline,
		     int tmo_ms, const atomic_bool *cancel)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return sock_sendv(fd, &iov, 1, deadline, tmo_ms, cancel);
}

/* Read len bytes; see ms_ops.recv for the result. */
static int sock_recv(int fd, void *buf, size_t len, size_t *got,
		     int64_t deadline, int tmo_ms, const atomic_bool *cancel)
{
	ssize_t n;
	int r;

	*got = 0;
	while (*got < len) {
		n = recv(fd, (char *)buf + *got, len - *got, MSG_DONTWAIT);
		if (n > 0) {
			*got += (size_t)n;
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		r = sock_wait(fd, POLLIN, ms_wait_deadline(deadline, tmo_ms),
			      cancel);
		if (r)
			return r;
	}
	return 0;
}

/* Socket options the caller asked for; failures only cost performance. */
static void sock_tune(struct mstream *ms, int fd, bool before_connect)
{
	int one = 1, sz = ms->o.sockbuf;

	if (sz > 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	if (ms->o.nodelay && !before_connect)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- TCP transport, both roles -------------------------------------------- */

static int tcp_send(struct ms_chan *ch, struct iovec *iov, int iovcnt)
{
	return sock_sendv(ch->fd, iov, iovcnt, -1, ch->ms->o.io_timeout_ms,
			  &ch->ms->exiting);
}

static int tcp_recv(struct ms_chan *ch, void *buf, size_t len, size_t *got)
{
	return sock_recv(ch->fd, buf, len, got, -1, ch->ms->o.io_timeout_ms,
			 &ch->ms->exiting);
}

static void tcp_abort(struct ms_chan *ch)
{
	if (ch->fd >= 0)
		shutdown(ch->fd, SHUT_RDWR);
}

static void fd_close(struct ms_chan *ch)
{
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
}

/* Sender, after its end-of-stream chunk: wait for the receiver to say it has
 * seen everything, so a 0 from mstream_finish() means delivered. */
static int tcp_send_finish(struct ms_chan *ch)
{
	struct mstream *ms = ch->ms;
	uint8_t ack[MS_REPLY_SIZE];
	char why[256];
	size_t got;
	int r;

	r = tcp_recv(ch, ack, sizeof(ack), &got);
	if (r == -ECANCELED)
		return r;
	if (r == -ETIMEDOUT)
		return ms_fail_ch(ch, r, "no end acknowledgement from the receiver within %d ms",
				  ms->o.io_timeout_ms);
	if (r)
		return ms_fail_ch(ch, r, "waiting for the end acknowledgement: %s",
				  strerror(-r));
	if (got < sizeof(ack))
		return ms_fail_ch(ch, -EPIPE, "peer closed before acknowledging the end of stream (%zu of %zu bytes)",
				  got, sizeof(ack));
	r = ms_check_reply(ms, ack, MS_KIND_ENDACK, ch->idx, why, sizeof(why));
	if (r)
		return ms_fail_ch(ch, r, "%s", why);
	shutdown(ch->fd, SHUT_RDWR);
	return 0;
}

/* Receiver, after the end-of-stream chunk and every callback before it. */
static int tcp_recv_finish(struct ms_chan *ch)
{
	struct mstream *ms = ch->ms;
	uint8_t ack[MS_REPLY_SIZE];
	int r;

	ms_encode_reply(ack, MS_KIND_ENDACK, ch->idx, 0, ms->session,
			"end of stream received");
	r = sock_send(ch->fd, ack, sizeof(ack), -1, ms->o.io_timeout_ms,
		      &ms->exiting);
	if (r == -ECANCELED)
		return r;
	if (r)
		return ms_fail_ch(ch, r, "sending the end acknowledgement: %s",
				  strerror(-r));
	shutdown(ch->fd, SHUT_WR);
	return 0;
}

/* ---- TCP sender: connect and hello --------------------------------------- */

static bool connect_retryable(int err)
{
	return err == ECONNREFUSED || err == ETIMEDOUT || err == ECONNRESET ||
	       err == EHOSTUNREACH || err == ENETUNREACH || err == EAGAIN;
}

/* Connect ch to a, retrying refused attempts until deadline.  Returns 0 with
 * ch->fd set, or the recorded error. */
static int tcp_connect_one(struct ms_chan *ch, const struct mstream_addr *a,
			   int64_t deadline)
{
	struct mstream *ms = ch->ms;
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV,
	};
	struct addrinfo *res, *ai;
	char port[8];
	int fd, r, last = 0, soerr;
	socklen_t sl;

	if (a->port == 0)
		return ms_fail_ch(ch, -EINVAL, "port 0 is not a destination");
	snprintf(port, sizeof(port), "%u", a->port);
	r = getaddrinfo(a->host, port, &hints, &res);
	if (r)
		return ms_fail_ch(ch, -EHOSTUNREACH, "resolve: %s",
				  r == EAI_SYSTEM ? strerror(errno) :
				  gai_strerror(r));
	for (;;) {
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype |
				    SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd < 0) {
				last = errno;
				continue;
			}
			sock_tune(ms, fd, true);
			r = connect(fd, ai->ai_addr, ai->ai_addrlen);
			if (r < 0 && errno == EINPROGRESS) {
				r = sock_wait(fd, POLLOUT, deadline, NULL);
				if (r == 0) {
					sl = sizeof(soerr);
					if (getsockopt(fd, SOL_SOCKET, SO_ERROR,
						       &soerr, &sl))
						soerr = errno;
					errno = soerr;
					r = soerr ? -1 : 0;
				} else {
					errno = -r;
					r = -1;
				}
			}
			if (r == 0) {
				freeaddrinfo(res);
				sock_tune(ms, fd, false);
				ch->fd = fd;
				return 0;
			}
			/* Our own deadline says less than the last refusal. */
			if (errno != ETIMEDOUT || !last)
				last = errno;
			close(fd);
			if (!connect_retryable(last)) {
				freeaddrinfo(res);
				return ms_fail_ch(ch, -last, "connect: %s",
						  strerror(last));
			}
		}
		if (ms_left(deadline) == 0)
			break;
		/* Nobody listens yet: the receiver may still be starting. */
		usleep(1000 * (useconds_t)(ms_left(deadline) < MS_CONNECT_RETRY_MS ?
					   ms_left(deadline) : MS_CONNECT_RETRY_MS));
	}
	freeaddrinfo(res);
	return ms_fail_ch(ch, -ETIMEDOUT, "connect: no listener accepted within %d ms (last error: %s)",
			  ms->o.timeout_ms, strerror(last ? last : ETIMEDOUT));
}

static int tcp_connect_open(struct mstream *ms, const void *where, int naddrs)
{
	const struct mstream_addr *addrs = where;
	int64_t deadline = ms_deadline(ms->o.timeout_ms);
	uint8_t hello[MS_HELLO_SIZE], reply[MS_REPLY_SIZE];
	char name[MSTREAM_HOST_MAX + 16], why[256];
	struct ms_chan *ch;
	size_t got;
	int i, r;

	for (i = 0; i < ms->o.nstreams; i++) {
		const struct mstream_addr *a = &addrs[i % naddrs];

		ch = &ms->ch[i];
		ms_addr_name(name, sizeof(name), a->host, a->port);
		ch->name = strdup(name);
		if (!ch->name)
			return ms_fail(ms, -ENOMEM, "out of memory");
		r = tcp_connect_one(ch, a, deadline);
		if (r)
			return r;
		ms_encode_hello(hello, i, ms->o.nstreams, ms->session);
		r = sock_send(ch->fd, hello, sizeof(hello), deadline, -1, NULL);
		if (r)
			return ms_fail_ch(ch, r, "sending hello: %s",
					  strerror(-r));
		r = sock_recv(ch->fd, reply, sizeof(reply), &got, deadline, -1,
			      NULL);
		if (r == -ETIMEDOUT)
			return ms_fail_ch(ch, r, "no hello reply within %d ms",
					  ms->o.timeout_ms);
		if (r)
			return ms_fail_ch(ch, r, "waiting for the hello reply: %s",
					  strerror(-r));
		if (got < sizeof(reply))
			return ms_fail_ch(ch, -EPIPE, "peer closed before replying to the hello (%zu of %zu bytes)",
					  got, sizeof(reply));
		r = ms_check_reply(ms, reply, MS_KIND_REPLY, i, why,
				   sizeof(why));
		if (r)
			return ms_fail_ch(ch, r, "%s", why);
	}
	return 0;
}

/* ---- TCP receiver: listen, accept and hello ------------------------------- */

int mstream_listen(struct mstream *ms, const struct mstream_addr *addrs,
		   int naddrs)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *res;
	char name[MSTREAM_HOST_MAX + 16], port[8];
	int i, j, fd, r, one = 1;

	if (ms->role != MS_ROLE_NONE || naddrs < 1 || naddrs > ms->o.nstreams)
		return -EINVAL;
	ms->role = MS_ROLE_RECV;
	for (i = 0; i < naddrs; i++) {
		const struct mstream_addr *a = &addrs[i];

		ms->lfd[i] = -1;
		ms->nlisten = i + 1;
		ms_addr_name(name, sizeof(name), a->host, a->port);
		/* The same endpoint twice is listened on once. */
		for (j = 0; j < i && a->port; j++)
			if (a->port == addrs[j].port &&
			    !strcmp(a->host, addrs[j].host))
				break;
		if (j < i && a->port) {
			ms->lport[i] = ms->lport[j];
			continue;
		}
		snprintf(port, sizeof(port), "%u", a->port);
		r = getaddrinfo(a->host, port, &hints, &res);
		if (r)
			return ms_fail(ms, -EADDRNOTAVAIL, "listen on %s: resolve: %s",
				       name, r == EAI_SYSTEM ? strerror(errno) :
				       gai_strerror(r));
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
			    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			freeaddrinfo(res);
			return ms_fail(ms, r, "listen on %s: socket: %s", name,
				       strerror(-r));
		}
		ms->lfd[i] = fd;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Accepted sockets inherit the buffer sizes; the receive
		 * window scale is fixed at the handshake, so set them now. */
		sock_tune(ms, fd, true);
		if (bind(fd, res->ai_addr, res->ai_addrlen) ||
		    listen(fd, ms->o.nstreams + 8)) {
			r = -errno;
			freeaddrinfo(res);
			return ms_fail(ms, r, "listen on %s: %s", name,
				       strerror(-r));
		}
		freeaddrinfo(res);
		sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl))
			return ms_fail(ms, -errno, "listen on %s: getsockname: %s",
				       name, strerror(errno));
		ms->lport[i] = ntohs(ss.ss_family == AF_INET6 ?
				     ((struct sockaddr_in6 *)&ss)->sin6_port :
				     ((struct sockaddr_in *)&ss)->sin_port);
	}
	ms->state = MS_LISTENING;
	return 0;
}

int mstream_listen_port(const struct mstream *ms, int i)
{
	if (ms->state < MS_LISTENING || i < 0 || i >= ms->nlisten)
		return -EINVAL;
	return ms->lport[i];
}

static void tcp_close_listeners(struct mstream *ms)
{
	int i;

	for (i = 0; i < ms->nlisten; i++) {
		if (ms->lfd[i] >= 0)
			close(ms->lfd[i]);
		ms->lfd[i] = -1;
	}
}

/* A connection accepted but not yet mapped: its hello is still arriving. */
struct ms_pending {
	int fd;
	size_t got;
	uint8_t hello[MS_HELLO_SIZE];
	char name[INET6_ADDRSTRLEN + 16];
};

/* A complete hello arrived on p: map it or refuse it (answering the peer
 * either way).  0 or the recorded error. */
static int tcp_take_hello(struct mstream *ms, struct ms_pending *p)
{
	uint8_t reply[MS_REPLY_SIZE];
	char why[256];
	struct ms_chan *ch;
	int idx, r;

	idx = ms_check_hello(ms, p->hello, why, sizeof(why));
	if (idx >= 0 && ms->ch[idx].fd >= 0) {
		snprintf(why, sizeof(why), "stream %d already connected from %s",
			 idx, ms->ch[idx].name);
		idx = -EPROTO;
	}
	if (idx < 0) {
		/* Best effort: the peer learns why before we hang up. */
		ms_encode_reply(reply, MS_KIND_REPLY, 0, EPROTO, ms->session,
				why);
		send(p->fd, reply, sizeof(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
		return ms_fail(ms, -EPROTO, "hello from %s refused: %s",
			       p->name, why);
	}
	ch = &ms->ch[idx];
	ch->name = strdup(p->name);
	if (!ch->name)
		return ms_fail(ms, -ENOMEM, "out of memory");
	ch->fd = p->fd;
	p->fd = -1;
	sock_tune(ms, ch->fd, false);
	ms_encode_reply(reply, MS_KIND_REPLY, idx, 0, ms->session, "welcome");
	r = sock_send(ch->fd, reply, sizeof(reply),
		      ms_deadline(ms->o.timeout_ms), -1, NULL);
	if (r)
		return ms_fail_ch(ch, r, "sending the hello reply: %s",
				  strerror(-r));
	return 0;
}

static int tcp_accept_open(struct mstream *ms, const void *where, int n)
{
	int64_t deadline = ms_deadline(ms->o.timeout_ms);
	struct pollfd pfd[MSTREAM_MAX_STREAMS + MS_MAX_PENDING];
	struct ms_pending *pend, *p;
	struct sockaddr_storage ss;
	int npend = 0, nmapped = 0, nfds, nl, i, r = 0, fd;
	socklen_t sl;
	ssize_t got;

	pend = calloc(MS_MAX_PENDING, sizeof(*pend));
	if (!pend)
		return ms_fail(ms, -ENOMEM, "out of memory");
	while (nmapped < ms->o.nstreams) {
		if (ms_left(deadline) == 0) {
			r = ms_fail(ms, -ETIMEDOUT, "accept: %d of %d streams connected within %d ms",
				    nmapped, ms->o.nstreams, ms->o.timeout_ms);
			goto out_close_pending;
		}
		nfds = 0;
		for (i = 0; i < ms->nlisten; i++)
			if (ms->lfd[i] >= 0)
				pfd[nfds++] = (struct pollfd){ ms->lfd[i], POLLIN, 0 };
		nl = nfds;
		for (i = 0; i < npend; i++)
			pfd[nfds++] = (struct pollfd){ pend[i].fd, POLLIN, 0 };
		if (poll(pfd, (nfds_t)nfds, ms_left(deadline)) < 0) {
			if (errno == EINTR)
				continue;
			r = ms_fail(ms, -errno, "accept: poll: %s",
				    strerror(errno));
			goto out_close_pending;
		}
		/* New connections: the first nl entries are listeners. */
		for (i = 0; i < nl; i++) {
			if (!pfd[i].revents)
				continue;
			sl = sizeof(ss);
			fd = accept4(pfd[i].fd, (struct sockaddr *)&ss, &sl,
				     SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno == EAGAIN || errno == EINTR ||
				    errno == ECONNABORTED)
					continue;
				r = ms_fail(ms, -errno, "accept: %s",
					    strerror(errno));
				goto out_close_pending;
			}
			if (npend == MS_MAX_PENDING) {
				close(fd);	/* a flood, not our sender */
				continue;
			}
			p = &pend[npend++];
			p->fd = fd;
			p->got = 0;
			ms_sockaddr_name(p->name, sizeof(p->name), &ss);
		}
		/* Hello bytes: try every pending connection, new ones too
		 * (non-blocking, so an idle one costs one EAGAIN). */
		for (i = 0; i < npend; i++) {
			p = &pend[i];
			got = recv(p->fd, p->hello + p->got,
				   sizeof(p->hello) - p->got, MSG_DONTWAIT);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got > 0)
				p->got += (size_t)got;
			if (got <= 0) {
				/* Gone before its hello: a probe, not a
				 * stream; forget it. */
				close(p->fd);
				pend[i--] = pend[--npend];
				continue;
			}
			if (p->got < sizeof(p->hello))
				continue;
			r = tcp_take_hello(ms, p);
			if (r)
				goto out_close_pending;
			pend[i--] = pend[--npend];
			nmapped++;
		}
	}
out_close_pending:
	for (i = 0; i < npend; i++)
		if (pend[i].fd >= 0)
			close(pend[i].fd);
	free(pend);
	tcp_close_listeners(ms);
	return r;
}

/* ---- file transport -------------------------------------------------------- */

static int file_writev(int fd, struct iovec *iov, int iovcnt)
{
	ssize_t n;

	while (iovcnt > 0) {
		n = writev(fd, iov, iovcnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int file_send(struct ms_chan *ch, struct iovec *iov, int iovcnt)
{
	return file_writev(ch->fd, iov, iovcnt);
}

static int fd_read_full(int fd, void *buf, size_t len, size_t *got)
{
	ssize_t n;

	*got = 0;
	while (*got < len) {
		n = read(fd, (char *)buf + *got, len - *got);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		*got += (size_t)n;
	}
	return 0;
}

static int file_recv(struct ms_chan *ch, void *buf, size_t len, size_t *got)
{
	if (ms_exiting(ch->ms)) {
		*got = 0;
		return -ECANCELED;
	}
	return fd_read_full(ch->fd, buf, len, got);
}

/* Regular files never block for long: the threads check exiting between
 * chunks, nothing to wake. */
static void file_abort(struct ms_chan *ch)
{
}

static int file_send_finish(struct ms_chan *ch)
{
	if (fsync(ch->fd))
		return ms_fail_ch(ch, -errno, "fsync: %s", strerror(errno));
	return 0;
}

/* The end marker must be the last thing in the file. */
static int file_recv_finish(struct ms_chan *ch)
{
	uint8_t extra[64];
	size_t got;
	int r;

	r = fd_read_full(ch->fd, extra, sizeof(extra), &got);
	if (r)
		return ms_fail_ch(ch, r, "read: %s", strerror(-r));
	if (got)
		return ms_fail_ch(ch, -EBADMSG, "%s%zu bytes after the end-of-stream marker",
				  got == sizeof(extra) ? "at least " : "", got);
	return 0;
}

static int file_create_open(struct mstream *ms, const void *where, int n)
{
	const char *const *paths = where;
	uint8_t hello[MS_HELLO_SIZE];
	struct iovec iov;
	struct ms_chan *ch;
	int i, r;

	for (i = 0; i < n; i++) {
		ch = &ms->ch[i];
		ch->name = strdup(paths[i]);
		if (!ch->name)
			return ms_fail(ms, -ENOMEM, "out of memory");
		ch->fd = open(paths[i], O_WRONLY | O_CREAT | O_TRUNC |
			      O_CLOEXEC, 0600);
		if (ch->fd < 0)
			return ms_fail_ch(ch, -errno, "create: %s",
					  strerror(errno));
		ms_encode_hello(hello, i, n, ms->session);
		iov = (struct iovec){ hello, sizeof(hello) };
		r = file_writev(ch->fd, &iov, 1);
		if (r)
			return ms_fail_ch(ch, r, "write hello: %s",
					  strerror(-r));
	}
	return 0;
}

static int file_read_open(struct mstream *ms, const void *where, int n)
{
	const char *const *paths = where;
	uint8_t hello[MS_HELLO_SIZE];
	char why[256];
	size_t got;
	int i, fd, idx, r;

	for (i = 0; i < n; i++) {
		fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return ms_fail(ms, -errno, "file %s: open: %s",
				       paths[i], strerror(errno));
		r = fd_read_full(fd, hello, sizeof(hello), &got);
		if (!r && got < sizeof(hello)) {
			snprintf(why, sizeof(why), "truncated hello (%zu of %zu bytes)",
				 got, sizeof(hello));
			r = -EBADMSG;
		} else if (r) {
			snprintf(why, sizeof(why), "read: %s", strerror(-r));
		} else {
			idx = ms_check_hello(ms, hello, why, sizeof(why));
			if (idx >= 0 && ms->ch[idx].fd >= 0) {
				snprintf(why, sizeof(why), "holds stream %d, as does %s",
					 idx, ms->ch[idx].name);
				idx = -EPROTO;
			}
			r = idx < 0 ? -EBADMSG : 0;
		}
		if (r) {
			close(fd);
			return ms_fail(ms, r, "file %s: %s", paths[i], why);
		}
		ms->ch[idx].fd = fd;
		ms->ch[idx].name = strdup(paths[i]);
		if (!ms->ch[idx].name)
			return ms_fail(ms, -ENOMEM, "out of memory");
	}
	return 0;
}

static const struct ms_ops tcp_send_ops = {
	.name = "tcp-send",
	.open = tcp_connect_open,
	.send = tcp_send,
	.recv = tcp_recv,
	.finish = tcp_send_finish,
	.abort = tcp_abort,
	.close = fd_close,
	.eof_mid = "peer closed mid-chunk",
	.eof_between = "peer closed before the end-of-stream marker",
	.eof_err = -EPIPE,
};

static const struct ms_ops tcp_recv_ops = {
	.name = "tcp-recv",
	.open = tcp_accept_open,
	.send = tcp_send,
	.recv = tcp_recv,
	.finish = tcp_recv_finish,
	.abort = tcp_abort,
	.close = fd_close,
	.eof_mid = "peer closed mid-chunk",
	.eof_between = "peer closed before the end-of-stream marker",
	.eof_err = -EPIPE,
};

static const struct ms_ops file_send_ops = {
	.name = "file-write",
	.open = file_create_open,
	.send = file_send,
	.recv = file_recv,
	.finish = file_send_finish,
	.abort = file_abort,
	.close = fd_close,
	.eof_mid = "file truncated mid-chunk",
	.eof_between = "file truncated: no end-of-stream marker",
	.eof_err = -EBADMSG,
};

static const struct ms_ops file_recv_ops = {
	.name = "file-read",
	.open = file_read_open,
	.send = file_send,
	.recv = file_recv,
	.finish = file_recv_finish,
	.abort = file_abort,
	.close = fd_close,
	.eof_mid = "file truncated mid-chunk",
	.eof_between = "file truncated: no end-of-stream marker",
	.eof_err = -EBADMSG,
};

/* ---- stream threads ---------------------------------------------------- */

static void ms_thread_exit(struct ms_chan *ch)
{
	struct mstream *ms = ch->ms;

	pthread_mutex_lock(&ms->lock);
	ch->exited = true;
	ms->nrunning--;
	pthread_cond_broadcast(&ms->cond);
	pthread_mutex_unlock(&ms->lock);
}

/* Frame and write one chunk; the CRC is computed here, on the stream's own
 * thread, so N streams checksum in parallel. */
static int ms_write_chunk(struct ms_chan *ch, const struct ms_out *o)
{
	uint8_t hdr[MS_CHUNK_HDR_SIZE], trailer[MS_TRAILER_SIZE];
	struct iovec iov[3];
	uint32_t crc;
	int r;

	ms_encode_chunk_hdr(hdr, o, ch->seq);
	crc = vcfmt_crc32c(0, hdr, sizeof(hdr));
	crc = vcfmt_crc32c(crc, o->data, o->len);
	vcfmt_put_be32(trailer, crc);
	iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	iov[1] = (struct iovec){ o->data, o->len };
	iov[2] = (struct iovec){ trailer, sizeof(trailer) };
	r = ch->ms->ops->send(ch, iov, 3);
	if (r == -ECANCELED || (r && ms_exiting(ch->ms)))
		return r;	/* fallout of a stop: the cause is kept */
	if (r == -ETIMEDOUT)
		return ms_fail_ch(ch, r, "send chunk seq %llu: no progress for %d ms",
				  (unsigned long long)ch->seq,
				  ch->ms->o.io_timeout_ms);
	if (r)
		return ms_fail_ch(ch, r, "send chunk seq %llu: %s",
				  (unsigned long long)ch->seq, strerror(-r));
	ch->seq++;
	return 0;
}

static void *ms_send_thread(void *arg)
{
	struct ms_chan *ch = arg;
	struct mstream *ms = ch->ms;
	struct ms_out out;
	int r;

	for (;;) {
		pthread_mutex_lock(&ms->lock);
		while (!ch->count && !ms_exiting(ms))
			pthread_cond_wait(&ch->work, &ms->lock);
		if (ms_exiting(ms)) {
			pthread_mutex_unlock(&ms->lock);
			break;
		}
		/* Hand-off: the slot's payload is now this thread's. */
		out = ch->ring[ch->head];
		ch->ring[ch->head].data = NULL;
		ch->head = (ch->head + 1) % ms->o.queue_depth;
		ch->count--;
		ch->busy = true;
		pthread_cond_broadcast(&ms->cond);	/* a slot is free */
		pthread_mutex_unlock(&ms->lock);

		r = ms_write_chunk(ch, &out);
		free(out.data);
		if (!r && (out.flags & MS_F_END))
			r = ms->ops->finish(ch);

		pthread_mutex_lock(&ms->lock);
		ch->busy = false;
		ch->load -= out.len;
		if (!r && !(out.flags & MS_F_END)) {
			ch->stats.chunks++;
			ch->stats.bytes += out.len;
		}
		if (!r && (out.flags & MS_F_END))
			ch->ended = true;
		pthread_cond_broadcast(&ms->cond);	/* flush waiters */
		pthread_mutex_unlock(&ms->lock);
		if (r || (out.flags & MS_F_END))
			break;
	}
	ms_thread_exit(ch);
	return NULL;
}

/* Read len bytes of the chunk with sequence ch->seq; mid says whether some
 * of it was read already.  0 or the recorded error. */
static int ms_read_exact(struct ms_chan *ch, void *buf, size_t len, bool mid,
			 const char *what)
{
	const struct ms_ops *ops = ch->ms->ops;
	unsigned long long seq = (unsigned long long)ch->seq;
	size_t got = 0;
	int r;

	r = ops->recv(ch, buf, len, &got);
	if (!r && got == len)
		return 0;
	if (r == -ECANCELED || ms_exiting(ch->ms))
		return r ? r : -ECANCELED;
	mid = mid || got > 0;
	if (!r && mid)
		return ms_fail_ch(ch, ops->eof_err, "%s (seq %llu: %zu of %zu %s bytes)",
				  ops->eof_mid, seq, got, len, what);
	if (!r)
		return ms_fail_ch(ch, ops->eof_err, "%s (after %llu chunks)",
				  ops->eof_between, seq);
	if (r == -ETIMEDOUT)
		return ms_fail_ch(ch, r, "peer silent for %d ms %s (seq %llu)",
				  ch->ms->o.io_timeout_ms,
				  mid ? "mid-chunk" : "between chunks", seq);
	return ms_fail_ch(ch, r, "receive chunk seq %llu: %s", seq,
			  strerror(-r));
}

/* Read, check and deliver one chunk.  1 after the end-of-stream chunk, 0 to
 * go on, or the recorded error. */
static int ms_recv_one(struct ms_chan *ch)
{
	struct mstream *ms = ch->ms;
	uint8_t hdr[MS_CHUNK_HDR_SIZE], trailer[MS_TRAILER_SIZE];
	unsigned long long seq = (unsigned long long)ch->seq, got_seq;
	struct mstream_chunk c;
	unsigned flags;
	uint32_t len, crc, want;
	char why[256];
	void *nbuf;
	int r;

	r = ms_read_exact(ch, hdr, sizeof(hdr), false, "header");
	if (r)
		return r;
	if (ms_check_prefix(hdr, sizeof(hdr), MS_KIND_CHUNK, why, sizeof(why)))
		return ms_fail_ch(ch, -EBADMSG, "chunk seq %llu: %s", seq, why);
	flags = vcfmt_get_be16(hdr + MS_CHUNK_FLAGS);
	got_seq = (unsigned long long)vcfmt_get_be64(hdr + MS_CHUNK_SEQ);
	len = vcfmt_get_be32(hdr + MS_CHUNK_LEN);
	if (got_seq != seq)
		return ms_fail_ch(ch, -EBADMSG, "chunk sequence %llu, expected %llu",
				  got_seq, seq);
	if (flags & ~MS_F_KNOWN)
		return ms_fail_ch(ch, -EBADMSG, "chunk seq %llu: flags 0x%04x, expected a subset of 0x%04x",
				  seq, flags, MS_F_KNOWN);
	/* Bound the length before allocating anything for it. */
	if (len > ms->o.max_chunk)
		return ms_fail_ch(ch, -EMSGSIZE, "chunk seq %llu: length %u exceeds the limit %u",
				  seq, len, ms->o.max_chunk);
	if ((flags & MS_F_END) && len)
		return ms_fail_ch(ch, -EBADMSG, "chunk seq %llu: end-of-stream marker with length %u, expected 0",
				  seq, len);
	if (len > ch->rcap) {
		nbuf = realloc(ch->rbuf, len);
		if (!nbuf)
			return ms_fail_ch(ch, -ENOMEM, "out of memory for a %u-byte chunk",
					  len);
		ch->rbuf = nbuf;
		ch->rcap = len;
	}
	r = ms_read_exact(ch, ch->rbuf, len, true, "payload");
	if (r)
		return r;
	r = ms_read_exact(ch, trailer, sizeof(trailer), true, "trailer");
	if (r)
		return r;
	crc = vcfmt_get_be32(trailer);
	want = vcfmt_crc32c(vcfmt_crc32c(0, hdr, sizeof(hdr)), ch->rbuf, len);
	if (crc != want)
		return ms_fail_ch(ch, -EBADMSG, "chunk seq %llu: CRC32C 0x%08x, computed 0x%08x",
				  seq, crc, want);
	ch->seq++;
	if (flags & MS_F_END)
		return 1;

	c = (struct mstream_chunk){
		.stream = ch->idx,
		.type = vcfmt_get_be32(hdr + MS_CHUNK_TYPE),
		.tag = vcfmt_get_be64(hdr + MS_CHUNK_TAG),
		.seq = seq,
		.all = flags & MS_F_ALL,
		.data = ch->rbuf,
		.len = len,
	};
	if (ms->o.recv_cb) {
		r = ms->o.recv_cb(ms->o.recv_arg, &c);
		if (r)
			return ms_fail_ch(ch, r < 0 ? r : -EIO, "receive callback failed on chunk seq %llu: %s",
					  seq, strerror(r < 0 ? -r : EIO));
	}
	pthread_mutex_lock(&ms->lock);
	ch->stats.chunks++;
	ch->stats.bytes += len;
	if (c.all) {
		/* After the callback: everything before the marker is done. */
		ch->barrier_seen = true;
		ch->barrier_tag = c.tag;
		pthread_cond_broadcast(&ms->cond);
	}
	pthread_mutex_unlock(&ms->lock);
	return 0;
}

static void *ms_recv_thread(void *arg)
{
	struct ms_chan *ch = arg;
	struct mstream *ms = ch->ms;
	int r;

	do {
		r = ms_exiting(ms) ? -ECANCELED : ms_recv_one(ch);
	} while (r == 0);
	if (r == 1 && ms->ops->finish(ch) == 0) {
		pthread_mutex_lock(&ms->lock);
		ch->ended = true;
		pthread_mutex_unlock(&ms->lock);
	}
	ms_thread_exit(ch);
	return NULL;
}

/* ---- handle ------------------------------------------------------------- */

struct mstream *mstream_create(const struct mstream_opts *opts)
{
	pthread_condattr_t ca;
	struct mstream *ms;
	int i;

	if (!opts || opts->nstreams < 1 ||
	    opts->nstreams > MSTREAM_MAX_STREAMS || opts->queue_depth < 0 ||
	    opts->max_chunk > MSTREAM_CHUNK_LIMIT || opts->timeout_ms < 0 ||
	    opts->sockbuf < 0) {
		errno = EINVAL;
		return NULL;
	}
	ms = calloc(1, sizeof(*ms));
	if (!ms)
		return NULL;
	ms->o = *opts;
	if (!ms->o.queue_depth)
		ms->o.queue_depth = MS_DEF_QUEUE;
	if (!ms->o.max_chunk)
		ms->o.max_chunk = MS_DEF_MAX_CHUNK;
	if (!ms->o.timeout_ms)
		ms->o.timeout_ms = MS_DEF_TIMEOUT_MS;
	if (!ms->o.io_timeout_ms)
		ms->o.io_timeout_ms = MS_DEF_IO_TIMEOUT_MS;
	else if (ms->o.io_timeout_ms < 0)
		ms->o.io_timeout_ms = -1;
	for (i = 0; i < MSTREAM_MAX_STREAMS; i++)
		ms->lfd[i] = -1;
	atomic_init(&ms->exiting, false);

	ms->ch = calloc((size_t)ms->o.nstreams, sizeof(*ms->ch));
	if (!ms->ch)
		goto out_free_ms;
	for (i = 0; i < ms->o.nstreams; i++) {
		struct ms_chan *ch = &ms->ch[i];

		ch->ms = ms;
		ch->idx = i;
		ch->fd = -1;
		ch->ring = calloc((size_t)ms->o.queue_depth, sizeof(*ch->ring));
		if (!ch->ring)
			goto out_free_rings;
		pthread_cond_init(&ch->work, NULL);
	}
	pthread_mutex_init(&ms->lock, NULL);
	/* Timed waits run on the monotonic clock: wall-clock steps during a
	 * migration must not stretch or cut a timeout. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ms->cond, &ca);
	pthread_condattr_destroy(&ca);
	return ms;

out_free_rings:
	while (i-- > 0) {
		pthread_cond_destroy(&ms->ch[i].work);
		free(ms->ch[i].ring);
	}
	free(ms->ch);
out_free_ms:
	free(ms);
	errno = ENOMEM;
	return NULL;
}

static void ms_join(struct mstream *ms)
{
	int i;

	for (i = 0; i < ms->o.nstreams; i++) {
		if (ms->ch[i].started)
			pthread_join(ms->ch[i].thread, NULL);
		ms->ch[i].started = false;
	}
}

void mstream_destroy(struct mstream *ms)
{
	int i, j;

	if (!ms)
		return;
	mstream_stop(ms);
	ms_join(ms);
	tcp_close_listeners(ms);
	for (i = 0; i < ms->o.nstreams; i++) {
		struct ms_chan *ch = &ms->ch[i];

		if (ms->ops)
			ms->ops->close(ch);
		else if (ch->fd >= 0)
			close(ch->fd);
		for (j = 0; j < ch->count; j++)
			free(ch->ring[(ch->head + j) % ms->o.queue_depth].data);
		free(ch->ring);
		free(ch->rbuf);
		free(ch->name);
		pthread_cond_destroy(&ch->work);
	}
	free(ms->ch);
	pthread_cond_destroy(&ms->cond);
	pthread_mutex_destroy(&ms->lock);
	free(ms);
}

/* Open every channel with ops, then start one thread each. */
static int ms_open(struct mstream *ms, const struct ms_ops *ops,
		   enum ms_role role, const void *where, int n)
{
	void *(*fn)(void *) = role == MS_ROLE_SEND ? ms_send_thread :
						     ms_recv_thread;
	int i, r;

	ms->ops = ops;
	ms->role = role;
	r = ops->open(ms, where, n);
	if (r)
		return r;
	pthread_mutex_lock(&ms->lock);
	ms->state = MS_RUNNING;
	pthread_mutex_unlock(&ms->lock);
	for (i = 0; i < ms->o.nstreams; i++) {
		pthread_mutex_lock(&ms->lock);
		ms->nrunning++;
		pthread_mutex_unlock(&ms->lock);
		r = pthread_create(&ms->ch[i].thread, NULL, fn, &ms->ch[i]);
		if (r) {
			pthread_mutex_lock(&ms->lock);
			ms->nrunning--;
			pthread_mutex_unlock(&ms->lock);
			return ms_fail(ms, -r, "starting stream %d: %s", i,
				       strerror(r));
		}
		ms->ch[i].started = true;
	}
	return 0;
}

static int ms_new_session(struct mstream *ms)
{
	uint64_t s = ms->o.session_id;

	/* A random id tells a stale sender's streams from this one's. */
	while (!s)
		if (getrandom(&s, sizeof(s), 0) != sizeof(s))
			return ms_fail(ms, -errno, "getrandom: %s",
				       strerror(errno));
	ms->session = s;
	ms->session_known = true;
	return 0;
}

int mstream_connect(struct mstream *ms, const struct mstream_addr *addrs,
		    int naddrs)
{
	int r;

	if (ms->role != MS_ROLE_NONE || !addrs || naddrs < 1 ||
	    naddrs > ms->o.nstreams)
		return -EINVAL;
	r = ms_new_session(ms);
	if (r)
		return r;
	return ms_open(ms, &tcp_send_ops, MS_ROLE_SEND, addrs, naddrs);
}

int mstream_open_files(struct mstream *ms, const char *const *paths, int n)
{
	int r;

	if (ms->role != MS_ROLE_NONE || !paths || n != ms->o.nstreams)
		return -EINVAL;
	r = ms_new_session(ms);
	if (r)
		return r;
	return ms_open(ms, &file_send_ops, MS_ROLE_SEND, paths, n);
}

int mstream_accept(struct mstream *ms)
{
	if (ms->role != MS_ROLE_RECV || ms->state != MS_LISTENING)
		return -EINVAL;
	if (ms->o.session_id) {
		ms->session = ms->o.session_id;
		ms->session_known = true;
	}
	return ms_open(ms, &tcp_recv_ops, MS_ROLE_RECV, NULL, 0);
}

int mstream_read_files(struct mstream *ms, const char *const *paths, int n)
{
	if (ms->role != MS_ROLE_NONE || !paths || n != ms->o.nstreams)
		return -EINVAL;
	if (ms->o.session_id) {
		ms->session = ms->o.session_id;
		ms->session_known = true;
	}
	return ms_open(ms, &file_recv_ops, MS_ROLE_RECV, paths, n);
}

/* ---- sending -------------------------------------------------------------- */

/*
 * Queue out on stream i, or on the least loaded stream with room when i < 0,
 * waiting while there is none.  Lock held.  On success the payload belongs
 * to the queue; otherwise it is still the caller's.
 */
static int ms_enqueue_locked(struct mstream *ms, int i, struct ms_out *out)
{
	int k, j, best;
	struct ms_chan *ch;

	for (;;) {
		if (ms->err)
			return ms->err;
		if (ms_exiting(ms))
			return -ECANCELED;
		best = -1;
		for (k = 0; k < ms->o.nstreams; k++) {
			j = (ms->rr + k) % ms->o.nstreams;
			if (i >= 0 && j != i)
				continue;
			ch = &ms->ch[j];
			if (ch->count == ms->o.queue_depth)
				continue;
			if (best < 0 || ch->load < ms->ch[best].load)
				best = j;
		}
		if (best >= 0)
			break;
		/* Backpressure: every queue is full. */
		ms_cond_wait(ms, -1);
	}
	ch = &ms->ch[best];
	ch->ring[(ch->head + ch->count) % ms->o.queue_depth] = *out;
	ch->count++;
	ch->load += out->len;
	if (i < 0)
		ms->rr = (best + 1) % ms->o.nstreams;
	pthread_cond_signal(&ch->work);
	return 0;
}

/* Lock held.  The kept error first: after a failure every call says why. */
static int ms_check_sending(struct mstream *ms)
{
	if (ms->err)
		return ms->err;
	if (ms->role != MS_ROLE_SEND || ms->state != MS_RUNNING)
		return -EINVAL;
	return 0;
}

int mstream_send_buf(struct mstream *ms, uint32_t type, uint64_t tag,
		     void *buf, size_t len)
{
	struct ms_out out = {
		.data = len ? buf : NULL,
		.len = (uint32_t)len,
		.type = type,
		.tag = tag,
	};
	int r;

	if (!len)
		free(buf);
	if (len > ms->o.max_chunk) {
		free(buf);
		return -EMSGSIZE;
	}
	pthread_mutex_lock(&ms->lock);
	r = ms_check_sending(ms);
	if (!r)
		r = ms_enqueue_locked(ms, -1, &out);
	pthread_mutex_unlock(&ms->lock);
	if (r)
		free(out.data);
	return r;
}

int mstream_send(struct mstream *ms, uint32_t type, uint64_t tag,
		 const void *buf, size_t len)
{
	void *copy = NULL;

	if (len > ms->o.max_chunk)
		return -EMSGSIZE;
	if (len) {
		copy = malloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, buf, len);
	}
	return mstream_send_buf(ms, type, tag, copy, len);
}

/* Queue a copy on every stream, in index order; lock held. */
static int ms_enqueue_all_locked(struct mstream *ms, uint16_t flags,
				 uint32_t type, uint64_t tag, const void *buf,
				 size_t len)
{
	struct ms_out out;
	int i, r;

	for (i = 0; i < ms->o.nstreams; i++) {
		out = (struct ms_out){
			.len = (uint32_t)len,
			.type = type,
			.tag = tag,
			.flags = flags,
		};
		if (len) {
			out.data = malloc(len);
			if (!out.data)
				return -ENOMEM;
			memcpy(out.data, buf, len);
		}
		r = ms_enqueue_locked(ms, i, &out);
		if (r) {
			free(out.data);
			return r;
		}
	}
	return 0;
}

int mstream_send_all(struct mstream *ms, uint32_t type, uint64_t tag,
		     const void *buf, size_t len)
{
	int r;

	if (len > ms->o.max_chunk)
		return -EMSGSIZE;
	pthread_mutex_lock(&ms->lock);
	r = ms_check_sending(ms);
	if (!r)
		r = ms_enqueue_all_locked(ms, MS_F_ALL, type, tag, buf, len);
	pthread_mutex_unlock(&ms->lock);
	return r;
}

int mstream_flush(struct mstream *ms)
{
	bool idle;
	int i, r;

	pthread_mutex_lock(&ms->lock);
	for (;;) {
		/* Checked on every wake-up: after a failure the threads are
		 * gone and nobody would signal "idle" again. */
		r = ms_check_sending(ms);
		if (r)
			break;
		idle = true;
		for (i = 0; i < ms->o.nstreams && idle; i++)
			idle = !ms->ch[i].count && !ms->ch[i].busy;
		if (idle)
			break;
		ms_cond_wait(ms, -1);
	}
	pthread_mutex_unlock(&ms->lock);
	return r;
}

int mstream_finish(struct mstream *ms)
{
	int r;

	pthread_mutex_lock(&ms->lock);
	r = ms_check_sending(ms);
	if (!r) {
		ms->state = MS_FINISHING;
		r = ms_enqueue_all_locked(ms, MS_F_END, 0, 0, NULL, 0);
	}
	/* Threads leave after their end chunk is confirmed, or on error. */
	while (!r && ms->nrunning > 0 && !ms->err)
		ms_cond_wait(ms, -1);
	if (!r)
		r = ms->err;
	pthread_mutex_unlock(&ms->lock);
	if (r)
		return r;
	ms_join(ms);
	pthread_mutex_lock(&ms->lock);
	ms->state = MS_DONE;
	pthread_mutex_unlock(&ms->lock);
	return 0;
}

/* ---- receiving ------------------------------------------------------------ */

/* Lock held.  The kept error first, as for sending. */
static int ms_check_receiving(struct mstream *ms)
{
	if (ms->err)
		return ms->err;
	if (ms->role != MS_ROLE_RECV || ms->state < MS_RUNNING)
		return -EINVAL;
	return 0;
}

int mstream_wait_barrier(struct mstream *ms, uint64_t tag, int timeout_ms)
{
	int64_t deadline = ms_deadline(timeout_ms);
	bool all, short_ended;
	int i, r;

	pthread_mutex_lock(&ms->lock);
	for (;;) {
		r = ms_check_receiving(ms);
		if (r)
			break;
		all = true;
		short_ended = false;
		for (i = 0; i < ms->o.nstreams; i++) {
			struct ms_chan *ch = &ms->ch[i];

			if (ch->barrier_seen && ch->barrier_tag >= tag)
				continue;
			all = false;
			short_ended |= ch->exited;
		}
		if (all)
			break;
		if (short_ended) {
			r = -ENODATA;
			break;
		}
		r = ms_cond_wait(ms, deadline);
		if (r)
			break;
	}
	pthread_mutex_unlock(&ms->lock);
	return r;
}

int mstream_wait(struct mstream *ms, int timeout_ms)
{
	int64_t deadline = ms_deadline(timeout_ms);
	int r = 0;

	pthread_mutex_lock(&ms->lock);
	r = ms_check_receiving(ms);
	if (r) {
		pthread_mutex_unlock(&ms->lock);
		return r;
	}
	while (!ms->err && ms->nrunning > 0 && !r)
		r = ms_cond_wait(ms, deadline);
	if (ms->err)
		r = ms->err;
	pthread_mutex_unlock(&ms->lock);
	if (r)
		return r;
	/* Every thread left without an error: each saw its end marker. */
	ms_join(ms);
	pthread_mutex_lock(&ms->lock);
	ms->state = MS_DONE;
	pthread_mutex_unlock(&ms->lock);
	return 0;
}

/* ---- address lists ----------------------------------------------------- */

/* Parse one trimmed entry s[0..len).  0 or -EINVAL with why. */
static int ms_parse_addr(const char *s, size_t len, struct mstream_addr *a,
			 char *why, size_t whylen)
{
	const char *host = s, *colon, *port;
	size_t hlen, plen, i;
	unsigned long v = 0;

	if (!len) {
		snprintf(why, whylen, "empty entry");
		return -EINVAL;
	}
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close) {
			snprintf(why, whylen, "missing ']'");
			return -EINVAL;
		}
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		if (colon == s + len || *colon != ':') {
			snprintf(why, whylen, "missing :PORT after ']'");
			return -EINVAL;
		}
	} else {
		colon = memchr(s, ':', len);
		if (!colon) {
			snprintf(why, whylen, "missing :PORT");
			return -EINVAL;
		}
		if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - s))) {
			snprintf(why, whylen, "an IPv6 address needs brackets, as in [::1]:7000");
			return -EINVAL;
		}
		hlen = (size_t)(colon - s);
	}
	port = colon + 1;
	plen = len - (size_t)(port - s);
	if (!hlen) {
		snprintf(why, whylen, "missing host");
		return -EINVAL;
	}
	if (hlen >= MSTREAM_HOST_MAX) {
		snprintf(why, whylen, "host longer than %d bytes",
			 MSTREAM_HOST_MAX - 1);
		return -EINVAL;
	}
	for (i = 0; i < hlen; i++) {
		if (isspace((unsigned char)host[i]) || host[i] == ',' ||
		    host[i] == '[' || host[i] == ']' || host[i] == '#') {
			snprintf(why, whylen, "bad character '%c' in host",
				 host[i]);
			return -EINVAL;
		}
	}
	for (i = 0; i < plen && plen <= 5; i++) {
		if (!isdigit((unsigned char)port[i]))
			break;
		v = v * 10 + (unsigned long)(port[i] - '0');
	}
	if (!plen || plen > 5 || i < plen || v > 65535) {
		snprintf(why, whylen, "bad port \"%.*s\" (expected 0-65535)",
			 (int)plen, port);
		return -EINVAL;
	}
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	a->port = (uint16_t)v;
	return 0;
}

static void ms_trim(const char **s, size_t *len)
{
	while (*len && isspace((unsigned char)**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

/* Append to a growing array. */
static int ms_addrs_push(struct mstream_addr **v, int *n,
			 const struct mstream_addr *a)
{
	struct mstream_addr *nv;

	nv = realloc(*v, (size_t)(*n + 1) * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = *a;
	*v = nv;
	return 0;
}

int mstream_addrs_parse(const char *spec, struct mstream_addr **addrs,
			int *naddrs, char *err, size_t errlen)
{
	struct mstream_addr a, *v = NULL;
	const char *p = spec, *end, *s;
	char why[128];
	size_t len;
	int n = 0, r;

	*addrs = NULL;
	*naddrs = 0;
	if (!spec) {
		snprintf(err, errlen, "no addresses");
		return -EINVAL;
	}
	len = strlen(spec);
	s = spec;
	ms_trim(&s, &len);
	if (!len) {
		snprintf(err, errlen, "no addresses");
		return -EINVAL;
	}
	for (;;) {
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		s = p;
		len = (size_t)(end - p);
		ms_trim(&s, &len);
		if (n == MSTREAM_MAX_STREAMS) {
			snprintf(err, errlen, "more than %d addresses",
				 MSTREAM_MAX_STREAMS);
			r = -EINVAL;
			goto out_free;
		}
		r = ms_parse_addr(s, len, &a, why, sizeof(why));
		if (r) {
			snprintf(err, errlen, "entry %d \"%.*s\": %s", n + 1,
				 (int)len, s, why);
			goto out_free;
		}
		r = ms_addrs_push(&v, &n, &a);
		if (r) {
			snprintf(err, errlen, "out of memory");
			goto out_free;
		}
		if (!*end)
			break;
		p = end + 1;
	}
	*addrs = v;
	*naddrs = n;
	return 0;

out_free:
	free(v);
	return r;
}

int mstream_addrs_load(const char *path, struct mstream_addr **addrs,
		       int *naddrs, char *err, size_t errlen)
{
	struct mstream_addr a, *v = NULL;
	char *line = NULL, why[128], *hash;
	size_t cap = 0, len;
	const char *s;
	int n = 0, lineno = 0, r = 0;
	FILE *f;

	*addrs = NULL;
	*naddrs = 0;
	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		s = line;
		len = strlen(line);
		ms_trim(&s, &len);
		if (!len)
			continue;
		if (n == MSTREAM_MAX_STREAMS) {
			snprintf(err, errlen, "%s:%d: more than %d addresses",
				 path, lineno, MSTREAM_MAX_STREAMS);
			r = -EINVAL;
			goto out_free;
		}
		r = ms_parse_addr(s, len, &a, why, sizeof(why));
		if (r) {
			snprintf(err, errlen, "%s:%d: \"%.*s\": %s", path,
				 lineno, (int)len, s, why);
			goto out_free;
		}
		r = ms_addrs_push(&v, &n, &a);
		if (r) {
			snprintf(err, errlen, "out of memory");
			goto out_free;
		}
	}
	if (ferror(f)) {
		r = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto out_free;
	}
	if (!n) {
		r = -EINVAL;
		snprintf(err, errlen, "%s: no addresses", path);
		goto out_free;
	}
	free(line);
	fclose(f);
	*addrs = v;
	*naddrs = n;
	return 0;

out_free:
	free(line);
	fclose(f);
	free(v);
	return r;
}
