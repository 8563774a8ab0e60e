/* mstream: N parallel streams of framed, checksummed chunks.
 *
 * The transport under TLM live migration: a sender spreads chunks (page
 * batches, device state, markers) over N TCP connections, or over N files
 * for a live checkpoint; a receiver hands every chunk to a callback.  One
 * thread per stream does the I/O and the CRC32C, so N streams use N cores
 * and N NICs or disks.
 *
 * Life of a handle:
 *
 *   sender:   mstream_create -> mstream_connect | mstream_open_files
 *             -> mstream_send / mstream_send_all / mstream_flush ...
 *             -> mstream_finish -> mstream_destroy
 *   receiver: mstream_create (with recv_cb) -> mstream_listen -> mstream_accept
 *             | mstream_read_files -> mstream_wait_barrier ... -> mstream_wait
 *             -> mstream_destroy
 *
 * Errors.  Actions return 0 or a negative errno.  The first failure of any
 * stream (peer gone, bad CRC, timeout, refused hello) is kept with a
 * one-phrase reason such as
 *     stream 2 (127.0.0.1:7002): peer closed mid-chunk (seq 17, ...)
 * and stops every stream: each blocked or later call then returns that
 * same error promptly, and mstream_error() gives the text.  After such a
 * failure the handle is only good for mstream_error(), mstream_stats() and
 * mstream_destroy().  Misuse (bad argument, call in the wrong state) returns
 * -EINVAL, or -EMSGSIZE for an oversized chunk, without stopping anything.
 *
 * Threads.  The send calls may be made from several threads at once (the
 * order between their chunks is then theirs to arrange).  The other calls
 * belong to one controlling thread; mstream_stop() may be called from any
 * thread, including the receive callback, but not during or after
 * mstream_destroy().  The library never raises SIGPIPE.
 *
 * Authentication.  Given a shared secret (opts.secret, at least 16 bytes,
 * handed to both ends out of band), a handle speaks wire version 2: the
 * receiver challenges every connection, the hello and the reply prove the
 * secret both ways, and every chunk carries an HMAC-SHA256 under a key
 * bound to the connection and stream, over its header (sequence number
 * included) and payload.  A connection that does not prove the secret, or
 * says nothing within hello_timeout_ms, is dropped and logged (warning
 * level, one line naming the peer) while the accept goes on.  Without a
 * secret (version 1) anyone who can connect can write chunks: for tests
 * and trusted networks only.
 *
 * The wire and file format is described in tlm-migrate/README.md.
 */
#ifndef VC_MSTREAM_H
#define VC_MSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSTREAM_WIRE_VERSION	1		/* hello and chunk format, plain */
#define MSTREAM_WIRE_VERSION_AUTH 2		/* the same, authenticated */
#define MSTREAM_SECRET_MAX	256		/* bytes of a shared secret */
#define MSTREAM_MAX_STREAMS	64
#define MSTREAM_CHUNK_LIMIT	(1u << 30)	/* upper bound for max_chunk */
#define MSTREAM_HOST_MAX	256

struct mstream;

/* One endpoint.  Stream i of n uses addrs[i % naddrs]; a single address
 * with n streams means n connections to the same port. */
struct mstream_addr {
	char host[MSTREAM_HOST_MAX];	/* name or numeric address; IPv6 without [] */
	uint16_t port;			/* 0 only for listening: an ephemeral port */
};

/* A chunk as the receive callback sees it. */
struct mstream_chunk {
	int stream;		/* index chosen by the sender, 0..nstreams-1 */
	uint32_t type;		/* caller-defined, as given to mstream_send() */
	uint64_t tag;		/* caller-defined (e.g. a page offset) */
	uint64_t seq;		/* per-stream sequence number, from 0 */
	bool all;		/* sent by mstream_send_all() on every stream */
	const void *data;	/* payload; valid only during the callback */
	size_t len;
};

/*
 * Receive callback.  It runs on the stream's own thread: calls for one
 * stream come one at a time, in the order that stream's chunks were sent,
 * but calls for different streams run concurrently, so anything the
 * callback shares across streams needs its own locking.  It must not call
 * mstream_wait(), mstream_wait_barrier() or mstream_destroy() (they wait
 * for this very thread); mstream_stop() is fine.  Return 0 to go on, or a
 * negative errno to stop every stream with that error.
 */
typedef int (*mstream_recv_cb)(void *arg, const struct mstream_chunk *c);

/* Settings for mstream_create(); a zero field means its default. */
struct mstream_opts {
	int nstreams;		/* 1..MSTREAM_MAX_STREAMS; required */
	uint64_t session_id;	/* sender: 0 = random.  receiver: 0 = adopt the
				 * first (authentic) hello's, otherwise the
				 * one expected */
	const void *secret;	/* shared secret (copied), or NULL: plain */
	size_t secret_len;	/* 16..MSTREAM_SECRET_MAX when secret is set */
	int hello_timeout_ms;	/* receiver: a connection's hello must
				 * arrive within this; 0 = 5 s */
	int queue_depth;	/* chunks queued per sending stream; 0 = 4 */
	uint32_t max_chunk;	/* largest payload in bytes; 0 = 4 MiB */
	int timeout_ms;		/* bound on the whole open step (connect or
				 * accept, and the hellos); 0 = 10 s */
	int io_timeout_ms;	/* longest wait for the peer to make progress
				 * once running; 0 = 30 s; < 0 = forever */
	int sockbuf;		/* SO_SNDBUF/SO_RCVBUF bytes; 0 = kernel's
				 * (autotuned) default */
	bool nodelay;		/* set TCP_NODELAY */
	mstream_recv_cb recv_cb;	/* receiver: called per chunk (may be NULL) */
	void *recv_arg;		/* passed to recv_cb */
};

/* Per-stream counters: payload chunks and bytes sent or received,
 * markers included, the end-of-stream chunk not. */
struct mstream_stats {
	uint64_t chunks;
	uint64_t bytes;
	/* CPU seconds of the stream's thread (getrusage RUSAGE_THREAD), set
	 * when it exits; 0 while it runs. */
	double cpu_user_s;
	double cpu_sys_s;
};

/* ---- address lists ---------------------------------------------------- */

/*
 * Parse "HOST:PORT[,HOST:PORT...]" (spaces around entries allowed; IPv6 as
 * [ADDR]:PORT).  On success returns 0 and stores a malloc'd array the caller
 * frees with free() in *addrs and its length in *naddrs.  On failure
 * returns -EINVAL, leaves *addrs NULL and writes a reason naming the entry
 * into err, e.g. 'entry 2 "db1:http": bad port "http" (expected 0-65535)'.
 */
int mstream_addrs_parse(const char *spec, struct mstream_addr **addrs,
			int *naddrs, char *err, size_t errlen);

/*
 * The same for a file with one HOST:PORT per line; '#' starts a comment,
 * blank lines are skipped.  Errors read "PATH:LINE: reason" (-EINVAL), or
 * "PATH: strerror" with the open/read error.
 */
int mstream_addrs_load(const char *path, struct mstream_addr **addrs,
		       int *naddrs, char *err, size_t errlen);

/* ---- shared secrets --------------------------------------------------- */

/*
 * A secret as text: hex digits (16 to MSTREAM_SECRET_MAX bytes), spaces
 * around it ignored.  Fills buf (cap bytes) and *len.  0 or -EINVAL with
 * why in err.
 */
int mstream_secret_parse(const char *hex, uint8_t *buf, size_t cap,
			 size_t *len, char *err, size_t errlen);

/*
 * Read a secret file: opened without following a symbolic link, it must be
 * a regular file owned by this user and not accessible to group or others
 * (0600 or stricter), holding the hex text.  0 or -errno (-EPERM for the
 * checks) with "PATH: reason" in err.
 */
int mstream_secret_load(const char *path, uint8_t *buf, size_t cap,
			size_t *len, char *err, size_t errlen);

/* Create a new secret file at path (O_EXCL, mode 0600): 32 random bytes as
 * hex.  0 or -errno with "PATH: reason" in err. */
int mstream_secret_generate(const char *path, char *err, size_t errlen);

/* ---- handle ----------------------------------------------------------- */

/* A new, unopened handle.  Returns NULL with errno set (EINVAL for bad
 * options, ENOMEM).  opts is copied. */
struct mstream *mstream_create(const struct mstream_opts *opts);

/* Stop every stream (as mstream_stop()), join the threads, close sockets
 * and files, free queued chunks and the handle.  NULL is fine.  Destroying
 * a sender before mstream_finish() returned 0 leaves the receiver with a
 * "closed before the end-of-stream marker" error, by design. */
void mstream_destroy(struct mstream *ms);

/* The single stop path: record -ECANCELED ("stopped by the caller") unless
 * an error is already kept or every stream has ended cleanly, then wake
 * every blocked call and thread.  Does not join; safe to call twice, from
 * any thread (see the threads note above).  NULL is fine. */
void mstream_stop(struct mstream *ms);

/* The first error (0 or -errno) and, when buf is not NULL, its text
 * ("" when none) copied into buf. */
int mstream_error(struct mstream *ms, char *buf, size_t len);

/* The session id: the sender's (random unless given), or the one the
 * receiver accepted.  0 before the streams are open. */
uint64_t mstream_session(const struct mstream *ms);

/* Counters of stream i.  0, or -EINVAL when i is out of range. */
int mstream_stats(struct mstream *ms, int i, struct mstream_stats *st);

/* ---- sender ----------------------------------------------------------- */

/*
 * Connect the n streams: stream i to addrs[i % naddrs] (1 <= naddrs <=
 * nstreams).  Each connection is retried while refused, until timeout_ms,
 * so the receiver may still be starting; then it sends its hello and waits
 * for the receiver's answer.  Starts one sending thread per stream.
 * Returns 0, or -ETIMEDOUT (nobody accepted in time), -EPROTO (the receiver
 * refused the hello; its reason is in the error text), -EBADMSG (the answer
 * was not an mstream reply), or another -errno.
 */
int mstream_connect(struct mstream *ms, const struct mstream_addr *addrs,
		    int naddrs);

/*
 * The file sink: create (truncate) paths[0..n-1] with mode 0600, one per
 * stream, write the hello and start one writing thread per file.  Publishing
 * the files atomically (temp name, rename) is the caller's business.
 * Returns 0 or -errno.
 */
int mstream_open_files(struct mstream *ms, const char *const *paths, int n);

/*
 * Queue a copy of buf (len <= max_chunk bytes, may be 0) as one chunk on the
 * least loaded stream (bytes queued or being written; ties go round robin).
 * Blocks while every queue is full.  The caller keeps buf.
 * Returns 0 once queued (not yet written), the kept error if the streams
 * have failed, -EMSGSIZE, or -EINVAL when not open for sending.
 */
int mstream_send(struct mstream *ms, uint32_t type, uint64_t tag,
		 const void *buf, size_t len);

/* The same on stream i (0..nstreams-1), e.g. a byte stream that must stay
 * in order.  Blocks while that stream's queue is full. */
int mstream_send_on(struct mstream *ms, int i, uint32_t type, uint64_t tag,
		    const void *buf, size_t len);

/* The same without the copy: buf must come from malloc() and belongs to the
 * library from the call on, whatever the result (it is freed after being
 * written, or on failure). */
int mstream_send_buf(struct mstream *ms, uint32_t type, uint64_t tag,
		     void *buf, size_t len);

/*
 * Queue a copy of buf on every stream (a marker, e.g. end of epoch), after
 * everything this thread queued before.  The receiver's
 * mstream_wait_barrier() uses it to know that all streams delivered
 * everything sent before it.  Blocks like mstream_send().  Same returns.
 */
int mstream_send_all(struct mstream *ms, uint32_t type, uint64_t tag,
		     const void *buf, size_t len);

/* Wait until every queued chunk has been handed to the kernel (sockets) or
 * written (files).  Says nothing about the receiver; see mstream_finish().
 * Returns 0, the kept error, or -EINVAL. */
int mstream_flush(struct mstream *ms);

/*
 * End the transfer: queue an end-of-stream chunk on every stream, wait until
 * each is written and confirmed (TCP: the receiver acknowledges after its
 * callback saw everything; files: fsync), and join the threads.  Afterwards
 * the send calls return -EINVAL.  Returns 0, the kept error, or -EINVAL.
 */
int mstream_finish(struct mstream *ms);

/* ---- receiver --------------------------------------------------------- */

/*
 * Listen on every address (1 <= naddrs <= nstreams; port 0 picks an
 * ephemeral port, see mstream_listen_port()).  Returns 0 or -errno (e.g.
 * -EADDRINUSE), the error text naming the address.
 */
int mstream_listen(struct mstream *ms, const struct mstream_addr *addrs,
		   int naddrs);

/* The port listener i (an index into the addrs given) is bound to, or
 * -EINVAL. */
int mstream_listen_port(const struct mstream *ms, int i);

/*
 * Accept nstreams connections on the listeners within timeout_ms, map each
 * by its hello (not by arrival order) and answer it, then close the
 * listeners and start one receiving thread per stream.  A connection that
 * is not one of our sender's is answered with the reason when it can be,
 * closed and logged, and the accept goes on: one whose hello is not an
 * mstream hello of this version (magic, version, length, kind, CRC) or,
 * with a secret, does not prove it; one that sends no hello within
 * hello_timeout_ms; the oldest pending ones when too many wait (at most
 * MSTREAM_MAX_STREAMS / 4 beyond the streams still missing per peer
 * address, 2 * MSTREAM_MAX_STREAMS in all).  A hello that is authentic (or
 * well-formed, without a secret) but does not fit (session, stream count or
 * index, duplicate index) fails the whole accept with -EPROTO: that is our
 * sender, misconfigured.  -ETIMEDOUT when too few streams arrived (the text
 * names the last connection dropped, if any).
 */
int mstream_accept(struct mstream *ms);

/*
 * The file reader: open paths[0..n-1] (n == nstreams, any order; each file's
 * hello says which stream it holds) and start one reading thread per file,
 * each feeding recv_cb like a TCP stream.  A file whose hello is bad is
 * refused here (-EBADMSG, or the open error), naming it; truncation and
 * corruption later in a file come back from mstream_wait() the same way.
 */
int mstream_read_files(struct mstream *ms, const char *const *paths, int n);

/*
 * Wait until every stream has delivered a mstream_send_all() marker with a
 * tag >= tag, that is, until recv_cb has returned for every chunk sent
 * before it (send barrier markers with increasing tags).  timeout_ms < 0
 * waits for ever.  Returns 0, the kept error, -ETIMEDOUT (nothing stopped),
 * -ENODATA when a stream ended without such a marker, or -EINVAL.
 */
int mstream_wait_barrier(struct mstream *ms, uint64_t tag, int timeout_ms);

/*
 * Wait until every stream has delivered its end-of-stream chunk (all
 * callbacks done, acknowledgements sent, threads joined).  timeout_ms < 0
 * waits for ever.  Returns 0, the kept error (e.g. -EPIPE when a peer
 * closed early, -EBADMSG for a bad chunk or file), -ETIMEDOUT (nothing
 * stopped), or -EINVAL.
 */
int mstream_wait(struct mstream *ms, int timeout_ms);

#endif
