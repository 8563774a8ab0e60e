/* mstream internals shared by the core (mstream.c) and its pieces: the wire
 * format (ms_wire.c), the TCP and file transports (ms_tcp.c, ms_file.c) and
 * the address parser (ms_addr.c).  Not part of the public contract, which
 * is mstream.h.
 */
#ifndef VC_MS_CORE_H
#define VC_MS_CORE_H

#include "mstream.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* ---- defaults and limits ------------------------------------------------ */

#define MS_DEF_QUEUE		4
#define MS_DEF_MAX_CHUNK	(4u << 20)
#define MS_DEF_TIMEOUT_MS	10000
#define MS_DEF_IO_TIMEOUT_MS	30000
#define MS_CONNECT_RETRY_MS	20	/* pause between refused connects */
#define MS_MAX_PENDING		(2 * MSTREAM_MAX_STREAMS)	/* unhelloed conns */
#define MS_DEF_HELLO_TIMEOUT_MS	5000	/* per connection, for its hello */
#define MS_PENDING_PER_SOURCE	(MSTREAM_MAX_STREAMS / 4)	/* beyond the
					 * streams still to map, per address */
#define MS_LOG_DROPS		8	/* dropped connections logged one by one */
#define MS_SECRET_MIN		16	/* bytes */
#define MS_SECRET_MAX		256
#define MS_MAC_LEN		32	/* HMAC-SHA256 */
#define MS_NONCE_LEN		16
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

	/* Authenticated streams: set by the open step, then the thread's. */
	void *mac;		/* gnutls_hmac_hd_t under the stream key, or NULL */
	uint8_t key[MS_MAC_LEN];	/* the stream key (end acknowledgement) */
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
	bool auth;		/* a secret was given: wire version 2 */
	uint8_t *secret;	/* copy of o.secret (o.secret points here) */
	uint8_t prk[MS_MAC_LEN];	/* HKDF-Extract of the secret */
	uint8_t khs[MS_MAC_LEN];	/* handshake key */

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

/* Set once by ms_stop(); stream threads poll it without the lock. */
static inline bool ms_exiting(const struct mstream *ms)
{
	return atomic_load(&ms->exiting);
}

/* ---- core helpers (mstream.c) ---- */

int64_t ms_now_ms(void);		/* CLOCK_MONOTONIC, ms */
int ms_left(int64_t deadline);		/* ms until deadline as a poll() timeout */
int64_t ms_deadline(int timeout_ms);	/* now + timeout, or -1 (none) */

/* The single stop path (see mstream.c). */
void ms_stop(struct mstream *ms);
/* Keep err and its reason if it is the first failure, then stop; returns err. */
__attribute__((format(printf, 3, 4)))
int ms_fail(struct mstream *ms, int err, const char *fmt, ...);
/* The same, prefixed "stream I (NAME): ". */
__attribute__((format(printf, 3, 4)))
int ms_fail_ch(struct ms_chan *ch, int err, const char *fmt, ...);
/* ms_ops.close for descriptor-based transports. */
void ms_fd_close(struct ms_chan *ch);

/* ---- transports ---- */

extern const struct ms_ops ms_tcp_send_ops;	/* ms_tcp.c */
extern const struct ms_ops ms_tcp_recv_ops;
extern const struct ms_ops ms_file_send_ops;	/* ms_file.c */
extern const struct ms_ops ms_file_recv_ops;

/* Close the listeners of mstream_listen(); safe to call twice. */
void ms_tcp_close_listeners(struct mstream *ms);

#endif
