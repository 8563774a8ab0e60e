/* mstream: N parallel streams of framed, checksummed chunks.
 *
 * The core: handle, queues, stream threads and the stop path.  One engine,
 * several transports: a struct ms_ops per transport and role (TCP sender,
 * TCP receiver, file writer, file reader; ms_tcp.c, ms_file.c) opens the N
 * channels and moves bytes; the wire format is ms_wire.c, address parsing
 * ms_addr.c.  The format is in README.md next to this file.
 */
#define LOG_PREFIX "mstream"
#include "ms_core.h"
#include "ms_wire.h"
#include "ms_auth.h"
#include "log.h"
#include "vcfmt.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers -------------------------------------------------------- */

int64_t ms_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (< 0: none), as a poll() timeout. */
int ms_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - ms_now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

int64_t ms_deadline(int timeout_ms)
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


/* ---- stop path and errors ------------------------------------------------ */

/*
 * The only way streams stop early.  The exchange makes it run once; the
 * broadcasts happen under the lock, so a waiter that checked the flag just
 * before cannot miss them; the sockets are shut down last, after the caller
 * recorded why, so the kept error is the cause and not the fallout.
 */
void ms_stop(struct mstream *ms)
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

int ms_fail(struct mstream *ms, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ms_vfail(ms, err, fmt, ap);
	va_end(ap);
	return err;
}

/* The same, prefixed "stream I (NAME): ". */
int ms_fail_ch(struct ms_chan *ch, int err, const char *fmt, ...)
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

void ms_fd_close(struct ms_chan *ch)
{
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
}

/* ---- stream threads ---------------------------------------------------- */

static void ms_thread_exit(struct ms_chan *ch)
{
	struct mstream *ms = ch->ms;
	struct rusage ru;
	bool ru_ok = getrusage(RUSAGE_THREAD, &ru) == 0;

	pthread_mutex_lock(&ms->lock);
	if (ru_ok) {
		ch->stats.cpu_user_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
		ch->stats.cpu_sys_s = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	}
	ch->exited = true;
	ms->nrunning--;
	pthread_cond_broadcast(&ms->cond);
	pthread_mutex_unlock(&ms->lock);
}

/* Frame and write one chunk; the CRC is computed here, on the stream's own
 * thread, so N streams checksum in parallel. */
static int ms_write_chunk(struct ms_chan *ch, const struct ms_out *o)
{
	struct mstream *ms = ch->ms;
	uint8_t hdr[MS_CHUNK_HDR_SIZE], trailer[MS_TRAILER_MAX];
	struct iovec iov[3];
	uint32_t crc;
	int r;

	ms_encode_chunk_hdr(ms, hdr, o, ch->seq);
	crc = vcfmt_crc32c(0, hdr, sizeof(hdr));
	crc = vcfmt_crc32c(crc, o->data, o->len);
	vcfmt_put_be32(trailer, crc);
	if (ms->auth) {
		r = ms_auth_chunk(ch, hdr, o->data, o->len, trailer + 4);
		if (r)
			return ms_fail_ch(ch, r, "HMAC of chunk seq %llu: %s",
					  (unsigned long long)ch->seq,
					  strerror(-r));
	}
	iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	iov[1] = (struct iovec){ o->data, o->len };
	iov[2] = (struct iovec){ trailer, ms_trailer_size(ms) };
	r = ms->ops->send(ch, iov, 3);
	if (r == -ECANCELED || (r && ms_exiting(ms)))
		return r;	/* fallout of a stop: the cause is kept */
	if (r == -ETIMEDOUT)
		return ms_fail_ch(ch, r, "send chunk seq %llu: no progress for %d ms",
				  (unsigned long long)ch->seq,
				  ms->o.io_timeout_ms);
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
	uint8_t hdr[MS_CHUNK_HDR_SIZE], trailer[MS_TRAILER_MAX];
	uint8_t mac[MS_MAC_LEN];
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
	if (ms_check_prefix(ms, hdr, sizeof(hdr), MS_KIND_CHUNK, why,
			    sizeof(why)))
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
	r = ms_read_exact(ch, trailer, ms_trailer_size(ms), true, "trailer");
	if (r)
		return r;
	crc = vcfmt_get_be32(trailer);
	want = vcfmt_crc32c(vcfmt_crc32c(0, hdr, sizeof(hdr)), ch->rbuf, len);
	if (crc != want)
		return ms_fail_ch(ch, -EBADMSG, "chunk seq %llu: CRC32C 0x%08x, computed 0x%08x",
				  seq, crc, want);
	/* After the CRC: a mismatch here is not noise but a forgery, a
	 * replay, or a chunk of another stream or connection. */
	if (ms->auth) {
		r = ms_auth_chunk(ch, hdr, ch->rbuf, len, mac);
		if (r)
			return ms_fail_ch(ch, r, "HMAC of chunk seq %llu: %s",
					  seq, strerror(-r));
		if (!ms_auth_equal(mac, trailer + 4))
			return ms_fail_ch(ch, -EBADMSG, "chunk seq %llu: HMAC does not match (not from the authenticated sender of this stream)",
					  seq);
	}
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
	    opts->sockbuf < 0 || opts->hello_timeout_ms < 0 ||
	    (opts->secret && (opts->secret_len < MS_SECRET_MIN ||
			      opts->secret_len > MS_SECRET_MAX))) {
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
	if (!ms->o.hello_timeout_ms)
		ms->o.hello_timeout_ms = MS_DEF_HELLO_TIMEOUT_MS;
	if (opts->secret) {
		ms->secret = malloc(opts->secret_len);
		if (!ms->secret)
			goto out_free_ms;
		memcpy(ms->secret, opts->secret, opts->secret_len);
		ms->o.secret = ms->secret;
		ms->auth = true;
		if (ms_auth_init(ms))
			goto out_free_secret;
	}
	for (i = 0; i < MSTREAM_MAX_STREAMS; i++)
		ms->lfd[i] = -1;
	atomic_init(&ms->exiting, false);

	ms->ch = calloc((size_t)ms->o.nstreams, sizeof(*ms->ch));
	if (!ms->ch)
		goto out_free_secret;
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
out_free_secret:
	if (ms->secret)
		explicit_bzero(ms->secret, ms->o.secret_len);
	free(ms->secret);
	explicit_bzero(ms->prk, sizeof(ms->prk));
	explicit_bzero(ms->khs, sizeof(ms->khs));
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
	ms_tcp_close_listeners(ms);
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
		ms_auth_stream_free(ch);
		explicit_bzero(ch->key, sizeof(ch->key));
		pthread_cond_destroy(&ch->work);
	}
	free(ms->ch);
	if (ms->secret)
		explicit_bzero(ms->secret, ms->o.secret_len);
	free(ms->secret);
	explicit_bzero(ms->prk, sizeof(ms->prk));
	explicit_bzero(ms->khs, sizeof(ms->khs));
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
		/* Named for per-thread CPU figures (top -H, /proc/PID/task). */
		char tname[16];
		snprintf(tname, sizeof(tname), "ms-%s-%d",
			 role == MS_ROLE_SEND ? "send" : "recv", i);
		pthread_setname_np(ms->ch[i].thread, tname);
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
	return ms_open(ms, &ms_tcp_send_ops, MS_ROLE_SEND, addrs, naddrs);
}

int mstream_open_files(struct mstream *ms, const char *const *paths, int n)
{
	int r;

	if (ms->role != MS_ROLE_NONE || !paths || n != ms->o.nstreams)
		return -EINVAL;
	r = ms_new_session(ms);
	if (r)
		return r;
	return ms_open(ms, &ms_file_send_ops, MS_ROLE_SEND, paths, n);
}

int mstream_accept(struct mstream *ms)
{
	if (ms->role != MS_ROLE_RECV || ms->state != MS_LISTENING)
		return -EINVAL;
	if (ms->o.session_id) {
		ms->session = ms->o.session_id;
		ms->session_known = true;
	}
	return ms_open(ms, &ms_tcp_recv_ops, MS_ROLE_RECV, NULL, 0);
}

int mstream_read_files(struct mstream *ms, const char *const *paths, int n)
{
	if (ms->role != MS_ROLE_NONE || !paths || n != ms->o.nstreams)
		return -EINVAL;
	if (ms->o.session_id) {
		ms->session = ms->o.session_id;
		ms->session_known = true;
	}
	return ms_open(ms, &ms_file_recv_ops, MS_ROLE_RECV, paths, n);
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

int mstream_send_on(struct mstream *ms, int i, uint32_t type, uint64_t tag,
		    const void *buf, size_t len)
{
	struct ms_out out = { .len = (uint32_t)len, .type = type, .tag = tag };
	int r;

	if (i < 0 || i >= ms->o.nstreams)
		return -EINVAL;
	if (len > ms->o.max_chunk)
		return -EMSGSIZE;
	if (len) {
		out.data = malloc(len);
		if (!out.data)
			return -ENOMEM;
		memcpy(out.data, buf, len);
	}
	pthread_mutex_lock(&ms->lock);
	r = ms_check_sending(ms);
	if (!r)
		r = ms_enqueue_locked(ms, i, &out);
	pthread_mutex_unlock(&ms->lock);
	if (r)
		free(out.data);
	return r;
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
