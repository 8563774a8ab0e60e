/* tlm: the TLM source engine (CHK and PS threads, stage 3) and the
 * destination receiver.  See tlm.h and README.md. */
#define LOG_PREFIX "tlm"
#include "vctime.h"
#include "tlm.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dirty.h"
#include "firsterr.h"
#include "log.h"
#include "qmp.h"
#include "qmpmig.h"
#include "vcfmt.h"

#define PAGE		DIRTY_PAGE_SIZE
#define QMP_MS		30000
#define NLOCKS		1024
#define DEVSTATE_CHUNK	(256u << 10)	/* bytes of QEMU's stream per chunk */
#define DEVSTATE_FD	"tlm-devstate"	/* getfd name, both QEMUs */

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CRC32C of a RAM image, in pieces (the CRC takes an int length). */
static uint32_t ram_crc(const uint8_t *p, uint64_t len)
{
	uint32_t crc = 0;

	for (uint64_t off = 0; off < len; off += 64u << 20) {
		uint64_t n = len - off < (64u << 20) ? len - off : (64u << 20);
		crc = vcfmt_crc32c(crc, p + off, n);
	}
	return crc;
}

/* CPU seconds of the calling thread (self: false) or process (true). */
static struct tlm_cpu cpu_now(bool self)
{
	struct rusage ru;
	struct tlm_cpu c = { 0, 0 };

	if (getrusage(self ? RUSAGE_SELF : RUSAGE_THREAD, &ru) == 0) {
		c.user_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
		c.sys_s = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	}
	return c;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/* ---- source ------------------------------------------------------------ */

struct tlm_src {
	/* set at creation */
	const struct tlm_src_opts *o;
	struct qmp *q;			/* PS owns it during stage 2, main after */
	struct dirty *d;
	const struct dirty_block *b;
	struct mstream *ms;
	/* shared, atomic */
	atomic_uint_fast64_t version;	/* last version handed out */
	atomic_uint_fast64_t chk_pos;	/* end of the chunk CHK has started */
	atomic_int ps_quit;
	atomic_int ps_rush;		/* after the full pass: epochs back to back */
	int final_rounds;		/* PS only, read after join: rounds done */
	uint64_t final_round_pages[16];	/* ... and what each resent */
	atomic_int failed;
	atomic_uint_fast64_t pages_chk, pages_zero, pages_resent, pages_final;
	atomic_uint_fast64_t epochs, last_epoch_dirty, last_epoch_resent;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* PS sleeps on it; ps_quit wakes it */
	struct firsterr fe;		/* the first error (its own lock) */
	/* each thread's CPU time, written by it as it ends (read after join) */
	struct tlm_cpu cpu_chk, cpu_ps;
};

/* Keep the first error and stop the streams (one stop path). */
static void src_fail(struct tlm_src *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void src_fail(struct tlm_src *s, int err, const char *fmt, ...)
{
	char msg[FIRSTERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	firsterr_set(&s->fe, err, 0, "%s", msg);
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->failed, 1);
	atomic_store(&s->ps_quit, 1);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	mstream_stop(s->ms);
}

/* The streams' error, as one phrase. */
static void src_stream_fail(struct tlm_src *s, int err)
{
	char txt[400];

	if (mstream_error(s->ms, txt, sizeof(txt)) == 0 || !txt[0])
		snprintf(txt, sizeof(txt), "%s", strerror(-err));
	src_fail(s, err, "lost the destination: %s", txt);
}

/* A batch of pages being gathered by one thread. */
struct batch {
	uint32_t idx[1024];
	int n;
};

/* Read npages pages of guest RAM from page pg into dst: pread() from the
 * block's memory file (holes read as zeros without being allocated).
 * 0 or -errno. */
static int chk_read(struct tlm_src *s, uint8_t *dst, uint64_t pg, uint64_t npages)
{
	size_t len = (size_t)npages * PAGE, done = 0;
	off_t off = (off_t)(pg * PAGE);

	while (done < len) {
		ssize_t r = pread(s->b->fd, dst + done, len - done, off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;	/* the file is shorter than the block */
		done += (size_t)r;
	}
	return 0;
}

/* CRC32C of guest RAM read with pread() in 1 MiB pieces: reading it
 * through the mapping faulted every page in and, on a kernel without a
 * shared zero page, allocated every hole of the source's memory file
 * (1.1 CPU s of a 3 s idle hop on this host).  0 if it cannot be read. */
static uint32_t src_ram_crc(struct tlm_src *s)
{
	const size_t piece = 1u << 20;
	uint8_t *buf = malloc(piece);
	uint32_t crc = 0;

	if (!buf)
		return 0;
	for (uint64_t off = 0; off < s->b->length; off += piece) {
		uint64_t n = s->b->length - off < piece ? s->b->length - off : piece;
		if (chk_read(s, buf, off / PAGE, n / PAGE)) {
			crc = 0;
			break;
		}
		crc = vcfmt_crc32c(crc, buf, n);
	}
	free(buf);
	return crc;
}

/* Take a fresh version, then read and send the pages of the batch.  The
 * version is taken before the contents are read: that is what makes the
 * highest version the newest content. */
static int src_send_batch(struct tlm_src *s, struct batch *bt)
{
	if (!bt->n)
		return 0;
	size_t len = TLM_PAGES_HDR + (size_t)bt->n * 4 + (size_t)bt->n * PAGE;
	uint8_t *buf = malloc(len);
	if (!buf) {
		src_fail(s, -ENOMEM, "out of memory for a %zu-byte chunk", len);
		return -ENOMEM;
	}
	uint64_t ver = atomic_fetch_add(&s->version, 1) + 1;
	vcfmt_put_be32(buf, 0);
	vcfmt_put_be32(buf + 4, (uint32_t)bt->n);
	vcfmt_put_be64(buf + 8, ver);
	vcfmt_put_be64(buf + 16, 0);
	uint8_t *data = buf + TLM_PAGES_HDR + (size_t)bt->n * 4;
	for (int i = 0; i < bt->n; i++)
		vcfmt_put_be32(buf + TLM_PAGES_HDR + i * 4, bt->idx[i]);
	/* One read per run of consecutive pages (see chk_read()). */
	for (int i = 0, j; i < bt->n; i = j) {
		for (j = i + 1; j < bt->n && bt->idx[j] == bt->idx[j - 1] + 1; j++)
			;
		int err = chk_read(s, data + (size_t)i * PAGE, bt->idx[i], (uint64_t)(j - i));
		if (err) {
			free(buf);
			bt->n = 0;
			src_fail(s, err, "reading guest RAM at page %u: %s", bt->idx[i],
				 strerror(-err));
			return err;
		}
	}
	bt->n = 0;
	int err = mstream_send_buf(s->ms, TLM_T_PAGES, ver, buf, len);
	if (err)
		src_stream_fail(s, err);
	return err;
}

/* CHK: every page once, in chunks.  chk_pos moves to the end of a chunk
 * before its version is taken and its pages read, so PS treats the pages of
 * the chunk being read as sent (duplicates are harmless). */
static void *src_chk_thread(void *arg)
{
	struct tlm_src *s = arg;
	uint64_t nr = s->b->nr_pages, step = (uint64_t)s->o->chunk_pages;

	for (uint64_t p = 0; p < nr && !atomic_load(&s->failed); p += step) {
		uint64_t end = p + step < nr ? p + step : nr;
		atomic_store(&s->chk_pos, end);
		size_t len = TLM_PAGES_HDR + (size_t)(end - p) * (4 + PAGE);
		uint8_t *buf = malloc(len);
		if (!buf) {
			src_fail(s, -ENOMEM, "out of memory for a %zu-byte chunk", len);
			break;
		}
		uint64_t ver = atomic_fetch_add(&s->version, 1) + 1;
		int n = 0;
		uint8_t *data = buf + TLM_PAGES_HDR + (size_t)(end - p) * 4;
		/* Holes of the RAM file are zero pages not worth touching.  Asked
		 * after chk_pos moved: a write the answer misses is in the log. */
		uint64_t data_end = s->o->zero_skip ? p : end;
		for (uint64_t pg = p; pg < end;) {
			if (s->o->zero_skip && pg >= data_end) {
				uint64_t next = dirty_next_data(s->b, pg, &data_end);
				if (next > pg) {
					uint64_t skip = (next < end ? next : end) - pg;
					atomic_fetch_add(&s->pages_zero, skip);
					pg += skip;
					continue;
				}
			}
			/* A run of data pages, read with one pread() into its
			 * place in the chunk: the page cache copied straight into
			 * the buffer, without mapping guest RAM into this process
			 * (a page fault per 4 KiB page read through the mapping
			 * costs more system time than the copy on this host). */
			uint64_t run = (data_end < end ? data_end : end) - pg;
			uint8_t *dst = data + (size_t)n * PAGE;
			int err = chk_read(s, dst, pg, run);
			if (err) {
				src_fail(s, err, "reading guest RAM at page %llu: %s",
					 (unsigned long long)pg, strerror(-err));
				break;
			}
			for (uint64_t i = 0; i < run; i++) {
				const uint8_t *src = dst + i * PAGE;
				if (s->o->zero_skip && page_is_zero(src)) {
					atomic_fetch_add(&s->pages_zero, 1);
					continue;
				}
				vcfmt_put_be32(buf + TLM_PAGES_HDR + n * 4, (uint32_t)(pg + i));
				if (data + (size_t)n * PAGE != src)
					memmove(data + (size_t)n * PAGE, src, PAGE);
				n++;
			}
			pg += run;
		}
		if (atomic_load(&s->failed)) {
			free(buf);
			break;
		}
		if (!n) {
			free(buf);
			continue;
		}
		/* Close the gap left by skipped pages between index list and data. */
		if ((uint64_t)n < end - p)
			memmove(buf + TLM_PAGES_HDR + n * 4, data, (size_t)n * PAGE);
		vcfmt_put_be32(buf, 0);
		vcfmt_put_be32(buf + 4, (uint32_t)n);
		vcfmt_put_be64(buf + 8, ver);
		vcfmt_put_be64(buf + 16, 0);
		len = TLM_PAGES_HDR + (size_t)n * (4 + PAGE);
		int err = mstream_send_buf(s->ms, TLM_T_PAGES, ver, buf, len);
		if (err) {
			src_stream_fail(s, err);
			break;
		}
		atomic_fetch_add(&s->pages_chk, (uint64_t)n);
	}
	s->cpu_chk = cpu_now(false);
	return NULL;
}

/* Send the dirty pages of the bitmap below limit (pages at or above it are
 * still ahead of CHK, which will read them after this sync: dropped).
 * Stops between words when *quit is set; bits not taken stay for the next
 * sync.  Returns the pages sent, or -errno. */
static int64_t src_send_dirty(struct tlm_src *s, uint64_t limit, atomic_int *quit)
{
	const struct dirty_block *b = s->b;
	struct batch bt = { .n = 0 };
	int64_t sent = 0;
	int cap = s->o->chunk_pages;

	for (uint64_t w = 0; w < b->nr_words; w++) {
		if (quit && atomic_load(quit))
			break;
		uint64_t x = dirty_take_word(b, w);
		while (x) {
			uint64_t pg = w * 64 + (uint64_t)__builtin_ctzll(x);
			x &= x - 1;
			if (pg >= limit || pg >= b->nr_pages)
				continue;
			bt.idx[bt.n++] = (uint32_t)pg;
			sent++;
			if (bt.n == cap && src_send_batch(s, &bt))
				return -1;
		}
	}
	if (src_send_batch(s, &bt))
		return -1;
	return sent;
}

/* PS: wake every epoch, sync, resend what CHK has already passed. */
static void *src_ps_thread(void *arg)
{
	struct tlm_src *s = arg;
	double next = vc_mono_s() + s->o->epoch_ms / 1000.0;
	uint64_t prev = UINT64_MAX;	/* final rounds: the last one's pages */
	char why[512];

	while (!atomic_load(&s->ps_quit)) {
		pthread_mutex_lock(&s->lock);
		while (!atomic_load(&s->ps_quit) && !atomic_load(&s->ps_rush) &&
		       vc_mono_s() < next) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			double wait = next - vc_mono_s();
			ts.tv_sec += (time_t)wait;
			ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		}
		pthread_mutex_unlock(&s->lock);
		if (atomic_load(&s->ps_quit))
			break;
		double t = vc_mono_s();
		next = next + s->o->epoch_ms / 1000.0 > t ? next + s->o->epoch_ms / 1000.0
							   : t + s->o->epoch_ms / 1000.0;
		uint64_t dirty;
		int err = dirty_sync(s->d, &dirty, why, sizeof(why));
		if (err) {
			src_fail(s, err, "%s", why);
			break;
		}
		uint64_t limit = atomic_load(&s->chk_pos);
		/* The epoch's pages are all sent even when CHK ends meanwhile:
		 * stage 3 then starts right after a sync. */
		int64_t sent = src_send_dirty(s, limit, &s->failed);
		if (sent < 0)
			break;
		/* The epoch's figures before its count: who sees the count
		 * moves reads this epoch's. */
		atomic_store(&s->last_epoch_dirty, dirty);
		atomic_store(&s->last_epoch_resent, (uint64_t)sent);
		atomic_fetch_add(&s->pages_resent, (uint64_t)sent);
		atomic_fetch_add(&s->epochs, 1);
		/*
		 * After the full pass the link is PS's alone, and what it did
		 * not catch up with while CHK shared the link is still dirty:
		 * sent at the stop, that backlog is downtime.  Rounds back to
		 * back (no sleep: each round's set is what the guest dirtied
		 * while the one before was sent) while they shrink; the stop
		 * follows the first round that did not, or the last allowed.
		 */
		if (atomic_load(&s->ps_rush)) {
			int n = s->final_rounds++;
			if (n < (int)(sizeof(s->final_round_pages) / sizeof(s->final_round_pages[0])))
				s->final_round_pages[n] = (uint64_t)sent;
			if (s->final_rounds >= s->o->final_rounds || sent == 0 ||
			    (uint64_t)sent >= prev)
				break;
			prev = (uint64_t)sent;
		}
	}
	s->cpu_ps = cpu_now(false);
	return NULL;
}

static uint64_t src_bytes(struct tlm_src *s)
{
	uint64_t n = 0;
	struct mstream_stats st;

	for (int i = 0; i < s->o->nstreams; i++)
		if (mstream_stats(s->ms, i, &st) == 0)
			n += st.bytes;
	return n;
}

/* The pid of the QEMU at the other end of the QMP socket. */
static int qmp_peer_pid(struct qmp *q)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(qmp_fd(q), SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	return cr.pid;
}

static int qmp_simple(struct qmp *q, const char *cmd, json_t *args, char *why, size_t whylen)
{
	char qwhy[400];
	int err = qmp_exec(q, cmd, args, NULL, QMP_MS, qwhy, sizeof(qwhy));

	if (err)
		snprintf(why, whylen, "%s: %s", cmd, err == -EIO ? qwhy : strerror(-err));
	return err;
}

/* Whether the engine leaves capability NAME as it finds it: its own
 * (x-ignore-shared, set on) and "events" (only adds QMP events, which a
 * management layer may rely on).  Every other one changes what QEMU's
 * migration does with the device state over our fd, and some break it:
 * postcopy-ram ("Postcopy is not compatible with ignore-shared"), multifd
 * (needs socket channels), pause-before-switchover (waits for a
 * migrate-continue nobody sends), return-path (the relay carries one
 * direction), compress, xbzrle, background-snapshot, ... */
static bool cap_kept(const char *name)
{
	return !strcmp(name, "x-ignore-shared") || !strcmp(name, "events");
}

json_t *tlm_caps_args(json_t *current)
{
	json_t *caps = json_array(), *c;
	size_t i;

	if (!caps)
		return NULL;
	json_array_foreach(current, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));
		if (name && json_is_true(json_object_get(c, "state")) && !cap_kept(name))
			json_array_append_new(caps, json_pack("{s:s,s:b}", "capability", name,
							      "state", 0));
	}
	json_array_append_new(caps, json_pack("{s:s,s:b}", "capability", "x-ignore-shared",
					      "state", 1));
	return json_pack("{s:o}", "capabilities", caps);
}

int tlm_set_caps(struct qmp *q, char *why, size_t whylen)
{
	json_t *cur = NULL, *params;
	char qwhy[400];
	int err = qmp_exec(q, "query-migrate-capabilities", NULL, &cur, QMP_MS, qwhy,
			   sizeof(qwhy));

	if (err) {
		snprintf(why, whylen, "query-migrate-capabilities: %s",
			 err == -EIO ? qwhy : strerror(-err));
		return err;
	}
	/* One command: QEMU checks the combination, so whatever an earlier
	 * migration left on (postcopy-ram after a post-copy one) must go off
	 * in the same breath as x-ignore-shared goes on. */
	err = qmp_simple(q, "migrate-set-capabilities", tlm_caps_args(cur), why, whylen);
	json_decref(cur);
	if (err)
		return err;
	/* The non-shared blocks and device state are small; do not let the
	 * default 32 MiB/s cap stretch the downtime.  TLS on QEMU's channel
	 * (tls-creds left by an earlier migration) would need credentials at
	 * both ends of our fd: the streams are authenticated already. */
	params = qmpmig_bandwidth_args(0);
	json_object_set_new(params, "tls-creds", json_string(""));
	json_object_set_new(params, "tls-hostname", json_string(""));
	return qmp_simple(q, "migrate-set-parameters", params, why, whylen);
}

/* x-ignore-shared off again once the engine is done with a QEMU: a later
 * migration of that VM by QEMU alone (a vccp checkpoint, a plain migrate)
 * must carry its RAM. */
static void tlm_unset_caps(struct qmp *q)
{
	char qwhy[400];

	if (qmp_simple(q, "migrate-set-capabilities",
		       json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability",
				 "x-ignore-shared", "state", 0), qwhy, sizeof(qwhy)))
		pr_warn("x-ignore-shared stays on: %s", qwhy);
}

/* Whether QEMU is the patched build (qemu-patches 0002): -ENOSYS if not. */
static int qmp_has_dirty_log(struct qmp *q, char *why, size_t whylen)
{
	json_t *reply = NULL, *c;
	char qwhy[400];
	size_t i;
	int err = qmp_exec(q, "query-commands", NULL, &reply, QMP_MS, qwhy, sizeof(qwhy));

	if (err) {
		snprintf(why, whylen, "query-commands: %s", err == -EIO ? qwhy : strerror(-err));
		return err;
	}
	err = -ENOSYS;
	json_array_foreach(reply, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		if (name && !strcmp(name, "x-vc-dirty-log-start"))
			err = 0;
	}
	json_decref(reply);
	if (err)
		snprintf(why, whylen, "the source QEMU has no x-vc-dirty-log-start: run it with the patched QEMU (make qemu builds build/qemu/bin/qemu-system-x86_64)");
	return err;
}

/* The run state of a QEMU ("running", "paused", "inmigrate", ...). */
static int qmp_status(struct qmp *q, char *status, size_t len, char *why, size_t whylen)
{
	json_t *reply = NULL;
	char qwhy[400];
	int err = qmp_exec(q, "query-status", NULL, &reply, QMP_MS, qwhy, sizeof(qwhy));

	if (err) {
		snprintf(why, whylen, "query-status: %s", err == -EIO ? qwhy : strerror(-err));
		return err;
	}
	const char *st = json_string_value(json_object_get(reply, "status"));
	snprintf(status, len, "%s", st ? st : "?");
	json_decref(reply);
	return 0;
}

static void src_progress(struct tlm_src *s, double t0, double *last_t, uint64_t *last_b)
{
	double t = vc_mono_s();
	uint64_t bytes = src_bytes(s);
	double rate = (double)(bytes - *last_b) / (t - *last_t) / 1e6;

	fprintf(stderr, "tlm: %6.1f s  chk %3.0f%%  sent %8.1f MiB  %7.1f MB/s  epoch %llu: %llu dirty, %llu resent\n",
		t - t0, 100.0 * (double)atomic_load(&s->chk_pos) / (double)s->b->nr_pages,
		(double)bytes / 1048576.0, rate, (unsigned long long)atomic_load(&s->epochs),
		(unsigned long long)atomic_load(&s->last_epoch_dirty),
		(unsigned long long)atomic_load(&s->last_epoch_resent));
	*last_t = t;
	*last_b = bytes;
}

/* The device-state relay: QEMU's migration stream, read from our end of a
 * socket pair, carried in order on stream 0 (tag: its offset). */
struct src_relay {
	struct tlm_src *s;
	int fd;				/* our end, -1 when none */
	pthread_t thread;
	bool started;
	atomic_bool eof;		/* QEMU closed its end */
	uint64_t bytes;			/* the thread's until joined */
	struct tlm_cpu cpu;		/* the thread's, as it ends */
};

static void *src_relay_thread(void *arg)
{
	struct src_relay *rl = arg;
	uint8_t *buf = malloc(DEVSTATE_CHUNK);

	if (!buf) {
		src_fail(rl->s, -ENOMEM, "out of memory for the device state");
		return NULL;
	}
	for (;;) {
		ssize_t n = read(rl->fd, buf, DEVSTATE_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (!atomic_load(&rl->s->failed))
				src_fail(rl->s, -errno, "reading QEMU's migration stream: %s",
					 strerror(errno));
			break;
		}
		if (n == 0) {
			atomic_store(&rl->eof, true);
			break;
		}
		int err = mstream_send_on(rl->s->ms, 0, TLM_T_DEVSTATE, rl->bytes, buf, (size_t)n);
		if (err) {
			src_stream_fail(rl->s, err);
			break;
		}
		rl->bytes += (uint64_t)n;
	}
	free(buf);
	rl->cpu = cpu_now(false);
	return NULL;
}

/* Hand QEMU its end of a new socket pair (getfd DEVSTATE_FD) and start the
 * relay on ours.  0 or -errno with why. */
static int src_relay_start(struct src_relay *rl, char *why, size_t whylen)
{
	int sv[2], err;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		snprintf(why, whylen, "socketpair: %s", strerror(errno));
		return -errno;
	}
	err = qmp_getfd(rl->s->q, DEVSTATE_FD, sv[1], QMP_MS, why, whylen);
	close(sv[1]);		/* QEMU has its own copy now */
	if (err) {
		close(sv[0]);
		return err;
	}
	rl->fd = sv[0];
	if (pthread_create(&rl->thread, NULL, src_relay_thread, rl)) {
		snprintf(why, whylen, "cannot start the device-state relay");
		return -EAGAIN;
	}
	pthread_setname_np(rl->thread, "tlm-relay");
	rl->started = true;
	return 0;
}

/* Wait up to timeout_ms for the relay to reach QEMU's end of the stream
 * (QEMU closes it after the migration), then stop and join it.  0 once
 * everything was relayed, else -errno (recorded).  Safe to call twice. */
static int src_relay_end(struct src_relay *rl, int timeout_ms)
{
	struct timespec ts;
	int err = 0;

	if (!rl->started) {
		if (rl->fd >= 0)
			close(rl->fd);
		rl->fd = -1;
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	if (pthread_timedjoin_np(rl->thread, NULL, &ts)) {
		shutdown(rl->fd, SHUT_RDWR);
		pthread_join(rl->thread, NULL);
	}
	rl->started = false;
	close(rl->fd);
	rl->fd = -1;
	if (timeout_ms && !atomic_load(&rl->eof)) {
		err = firsterr_get(&rl->s->fe, NULL, NULL, 0);
		if (!err) {
			err = -ETIMEDOUT;
			src_fail(rl->s, err, "QEMU did not close its migration stream within %d ms",
				 timeout_ms);
		}
	}
	return err;
}

/* Where the CPU time went (after every thread but the caller's ended),
 * into r and, unless quiet, one line on stderr. */
static void src_cpu(struct tlm_src *s, struct tlm_src_result *r, const struct src_relay *rl,
		    struct tlm_cpu cpu0, struct tlm_cpu main0)
{
	struct tlm_cpu now = cpu_now(true), m = cpu_now(false);
	struct mstream_stats st;

	r->cpu_user_s = now.user_s - cpu0.user_s;
	r->cpu_sys_s = now.sys_s - cpu0.sys_s;
	r->cpu_chk = s->cpu_chk;
	r->cpu_ps = s->cpu_ps;
	r->cpu_relay = rl->cpu;
	r->cpu_main = (struct tlm_cpu){ m.user_s - main0.user_s, m.sys_s - main0.sys_s };
	for (int i = 0; i < s->o->nstreams; i++) {
		if (mstream_stats(s->ms, i, &st) == 0) {
			r->cpu_streams.user_s += st.cpu_user_s;
			r->cpu_streams.sys_s += st.cpu_sys_s;
		}
	}
	if (!s->o->quiet)
		fprintf(stderr, "tlm: cpu s user+sys: all %.2f+%.2f = chk %.2f+%.2f, ps %.2f+%.2f, "
			"%d stream%s %.2f+%.2f, relay %.2f+%.2f, main %.2f+%.2f\n",
			r->cpu_user_s, r->cpu_sys_s, r->cpu_chk.user_s, r->cpu_chk.sys_s,
			r->cpu_ps.user_s, r->cpu_ps.sys_s, s->o->nstreams,
			s->o->nstreams > 1 ? "s" : "", r->cpu_streams.user_s,
			r->cpu_streams.sys_s, r->cpu_relay.user_s, r->cpu_relay.sys_s,
			r->cpu_main.user_s, r->cpu_main.sys_s);
}

int tlm_migrate(const struct tlm_src_opts *o, struct tlm_src_result *r, char *why,
		size_t whylen)
{
	struct tlm_src s = { .o = o };
	uint32_t pages_max = (uint32_t)(TLM_PAGES_HDR + o->chunk_pages * (4 + PAGE));
	struct mstream_opts mo = {
		.nstreams = o->nstreams,
		.timeout_ms = o->timeout_ms,
		.max_chunk = pages_max > DEVSTATE_CHUNK ? pages_max : DEVSTATE_CHUNK,
		.secret = o->secret,
		.secret_len = o->secret_len,
		.session_id = o->session,
	};
	struct src_relay relay = { .s = &s, .fd = -1 };
	pthread_t chk, ps;
	bool chk_started = false, ps_started = false, vm_stopped = false, migrating = false;
	bool caps_set = false;
	char qwhy[512];
	double t0 = vc_mono_s(), t_stop = 0;
	struct tlm_cpu cpu0 = cpu_now(true), main0 = cpu_now(false);
	int err;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	firsterr_init(&s.fe);
	s.q = qmp_connect(o->qmp_path, o->timeout_ms, qwhy, sizeof(qwhy));
	if (!s.q) {
		err = -errno;
		snprintf(why, whylen, "%s: %s", o->qmp_path, qwhy);
		goto out_destroy;
	}
	err = qmp_has_dirty_log(s.q, why, whylen);
	if (err)
		goto out_qmp;
	char status[32];
	err = qmp_status(s.q, status, sizeof(status), why, whylen);
	if (err)
		goto out_qmp;
	if (strcmp(status, "running")) {
		snprintf(why, whylen, "the source VM is %s, not running", status);
		err = -EINVAL;
		goto out_qmp;
	}
	int pid = qmp_peer_pid(s.q);
	if (pid < 0) {
		err = pid;
		snprintf(why, whylen, "cannot find QEMU's pid: %s", strerror(-pid));
		goto out_qmp;
	}

	/* Stage 1: streams, capability, dirty log (before CHK reads anything). */
	s.ms = mstream_create(&mo);
	if (!s.ms) {
		err = -errno;
		snprintf(why, whylen, "mstream: %s", strerror(errno));
		goto out_qmp;
	}
	err = mstream_connect(s.ms, o->to, o->nto);
	if (err) {
		mstream_error(s.ms, qwhy, sizeof(qwhy));
		snprintf(why, whylen, "cannot open %d streams to %s:%u: %s", o->nstreams,
			 o->to[0].host, o->to[0].port, qwhy[0] ? qwhy : strerror(-err));
		goto out_ms;
	}
	err = tlm_set_caps(s.q, why, whylen);
	if (err)
		goto out_ms;
	caps_set = true;
	s.d = dirty_start(s.q, pid, why, whylen);
	if (!s.d) {
		err = -errno;
		goto out_ms;
	}
	if (dirty_nr_blocks(s.d) != 1) {
		snprintf(why, whylen, "%d shared RAM blocks; tlm-migrate handles exactly one (-machine memory-backend=ID)",
			 dirty_nr_blocks(s.d));
		err = -ENOTSUP;
		goto out_dirty;
	}
	s.b = dirty_block(s.d, 0);
	r->ram_bytes = s.b->length;
	r->streams = o->nstreams;

	uint8_t setup[TLM_SETUP_LEN] = { 0 };
	vcfmt_put_be32(setup, TLM_WIRE_VERSION);
	vcfmt_put_be32(setup + 4, 1);
	vcfmt_put_be32(setup + 8, PAGE);
	vcfmt_put_be64(setup + 16, s.b->length);
	memcpy(setup + 32, s.b->name, strnlen(s.b->name, 63));
	err = mstream_send_all(s.ms, TLM_T_SETUP, 0, setup, sizeof(setup));
	if (err) {
		src_stream_fail(&s, err);
		goto out_fail;
	}

	/* Stage 2: CHK and PS. */
	if (!o->quiet)
		fprintf(stderr, "tlm: %s (%llu MiB) to %s:%u over %d stream%s, epoch %d ms\n",
			s.b->name, (unsigned long long)(s.b->length >> 20), o->to[0].host,
			o->to[0].port, o->nstreams, o->nstreams > 1 ? "s" : "", o->epoch_ms);
	if (pthread_create(&ps, NULL, src_ps_thread, &s)) {
		src_fail(&s, -EAGAIN, "cannot start the page-saver thread");
		goto out_fail;
	}
	ps_started = true;
	pthread_setname_np(ps, "tlm-ps");
	if (pthread_create(&chk, NULL, src_chk_thread, &s)) {
		src_fail(&s, -EAGAIN, "cannot start the checkpoint thread");
		goto out_fail;
	}
	chk_started = true;
	pthread_setname_np(chk, "tlm-chk");
	double t_stage2 = vc_mono_s();
	uint64_t b_stage2 = src_bytes(&s);
	double last_t = t_stage2, t_print = last_t + 1;
	uint64_t last_b = 0;
	for (;;) {
		struct timespec ts = { 0, 50 * 1000000 };
		nanosleep(&ts, NULL);
		if (pthread_tryjoin_np(chk, NULL) == 0) {
			chk_started = false;
			break;
		}
		if (!o->quiet && vc_mono_s() >= t_print) {
			src_progress(&s, t0, &last_t, &last_b);
			t_print += 1;
		}
	}
	/* PS ends its epoch, or (final_rounds) runs its final rounds first. */
	atomic_store(o->final_rounds > 0 ? &s.ps_rush : &s.ps_quit, 1);
	pthread_mutex_lock(&s.lock);
	pthread_cond_broadcast(&s.cond);
	pthread_mutex_unlock(&s.lock);
	pthread_join(ps, NULL);
	ps_started = false;
	r->final_rounds = s.final_rounds;
	memcpy(r->final_round_pages, s.final_round_pages, sizeof(r->final_round_pages));
	if (atomic_load(&s.failed))
		goto out_fail;
	r->stage2_s = vc_mono_s() - t_stage2;
	r->stage2_bytes = src_bytes(&s) - b_stage2;

	/* Stage 3: stop, last sync, what is still dirty, end of streams. */
	t_stop = vc_mono_s();
	uint64_t stop_ns = realtime_ns();
	err = qmp_simple(s.q, "stop", NULL, qwhy, sizeof(qwhy));
	if (err) {
		src_fail(&s, err, "%s", qwhy);
		goto out_fail;
	}
	vm_stopped = true;
	err = dirty_sync(s.d, NULL, qwhy, sizeof(qwhy));
	if (err) {
		src_fail(&s, err, "%s", qwhy);
		goto out_fail;
	}
	double t_synced = vc_mono_s();
	int64_t fin = src_send_dirty(&s, UINT64_MAX, NULL);
	if (fin < 0)
		goto out_fail;
	double t_sent = vc_mono_s();
	atomic_store(&s.pages_final, (uint64_t)fin);
	uint8_t stopmsg[TLM_STOP_LEN] = { 0 };
	vcfmt_put_be64(stopmsg, stop_ns);
	vcfmt_put_be64(stopmsg + 8, (uint64_t)fin);
	err = mstream_send_all(s.ms, TLM_T_STOP, 1, stopmsg, sizeof(stopmsg));
	if (err) {
		src_stream_fail(&s, err);
		goto out_fail;
	}
	/* Device state and the small non-shared blocks: QEMU's migration,
	 * into a socket pair whose other end the relay carries on stream 0
	 * (no listening port at the destination, and it is authenticated). */
	err = src_relay_start(&relay, qwhy, sizeof(qwhy));
	if (err) {
		src_fail(&s, err, "device state: %s", qwhy);
		goto out_fail;
	}
	migrating = true;
	err = qmp_simple(s.q, "migrate", qmpmig_fd_uri_args(DEVSTATE_FD), qwhy, sizeof(qwhy));
	if (!err) {
		struct qmpmig_status mst;
		err = qmpmig_wait(s.q, o->timeout_ms, 2, &mst, qwhy, sizeof(qwhy));
		if (!err)
			r->qemu_downtime_ms = mst.downtime_ms;
	}
	if (err) {
		src_fail(&s, err, "device state: %s", qwhy);
		goto out_fail;
	}
	err = src_relay_end(&relay, o->timeout_ms);
	if (err)
		goto out_fail;
	double t_dev = vc_mono_s();
	err = mstream_send_on(s.ms, 0, TLM_T_DEVEND, relay.bytes, NULL, 0);
	if (!err)
		err = mstream_finish(s.ms);
	if (err) {
		src_stream_fail(&s, err);
		goto out_fail;
	}
	r->bytes = src_bytes(&s);
	double t_done = vc_mono_s();
	r->downtime_s = t_done - t_stop;
	if (!o->quiet && r->final_rounds) {
		char txt[16 * 21 + 8] = "";
		size_t off = 0;
		for (int i = 0; i < r->final_rounds && i < 16 && off < sizeof(txt); i++)
			off += (size_t)snprintf(txt + off, sizeof(txt) - off, "%s%llu",
						i ? " " : "",
						(unsigned long long)r->final_round_pages[i]);
		fprintf(stderr, "tlm: %d final round%s after the full pass, pages resent: %s%s\n",
			r->final_rounds, r->final_rounds > 1 ? "s" : "", txt,
			r->final_rounds > 16 ? " ..." : "");
	}
	if (!o->quiet)
		fprintf(stderr, "tlm: stage 3: stop+sync %.0f ms, %lld final pages %.0f ms, "
			"device state %.0f ms (%llu bytes; QEMU: %lld ms), receiver done %.0f ms\n",
			(t_synced - t_stop) * 1e3, (long long)fin, (t_sent - t_synced) * 1e3,
			(t_dev - t_sent) * 1e3, (unsigned long long)relay.bytes,
			(long long)r->qemu_downtime_ms, (t_done - t_dev) * 1e3);
	/* Guest RAM at the stop: the source stays stopped after migrating, so
	 * the checksum is taken off the downtime path. */
	r->crc = src_ram_crc(&s);
	r->total_s = t_done - t0;
	r->epochs = atomic_load(&s.epochs);
	r->pages_chk = atomic_load(&s.pages_chk);
	r->pages_zero = atomic_load(&s.pages_zero);
	r->pages_resent = atomic_load(&s.pages_resent);
	r->pages_final = atomic_load(&s.pages_final);
	src_cpu(&s, r, &relay, cpu0, main0);
	tlm_unset_caps(s.q);
	dirty_stop(s.d, qwhy, sizeof(qwhy));
	dirty_destroy(s.d);
	mstream_destroy(s.ms);
	qmp_close(s.q);
	err = 0;
	goto out_destroy;

out_fail:
	if (!firsterr_get(&s.fe, NULL, NULL, 0))
		src_fail(&s, -EIO, "failed");
	atomic_store(&s.ps_quit, 1);
	pthread_mutex_lock(&s.lock);
	pthread_cond_broadcast(&s.cond);
	pthread_mutex_unlock(&s.lock);
	mstream_stop(s.ms);
	src_relay_end(&relay, 0);
	if (chk_started)
		pthread_join(chk, NULL);
	if (ps_started)
		pthread_join(ps, NULL);
	err = firsterr_get(&s.fe, NULL, why, whylen);
	if (migrating) {
		/* Wait for it to wind down: capabilities cannot change before. */
		if (qmp_simple(s.q, "migrate_cancel", NULL, qwhy, sizeof(qwhy)) == 0)
			qmpmig_wait(s.q, 5000, 10, NULL, qwhy, sizeof(qwhy));
	}
out_dirty:
	dirty_stop(s.d, qwhy, sizeof(qwhy));
	dirty_destroy(s.d);
out_ms:
	mstream_destroy(s.ms);
	if (caps_set)
		tlm_unset_caps(s.q);
	if (vm_stopped) {
		/* The source VM keeps running whatever happened. */
		if (qmp_simple(s.q, "cont", NULL, qwhy, sizeof(qwhy)))
			pr_err("cannot resume the source VM: %s", qwhy);
	}
out_qmp:
	qmp_close(s.q);
	if (!err)
		err = -EIO;
out_destroy:
	firsterr_destroy(&s.fe);
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
	return err;
}

/* ---- destination --------------------------------------------------------- */

struct tlm_dst {
	/* set at creation */
	uint8_t *ram;
	uint64_t ram_size, nr_pages;
	uint64_t *ver;			/* per page, under locks[page % NLOCKS] */
	pthread_mutex_t locks[NLOCKS];
	/* atomic */
	atomic_uint_fast64_t applied, older, stop_ns;
	atomic_int setups;
	/* the device state, stream 0's thread only (then read after the wait) */
	int qfd;			/* our end of QEMU's socket pair, -1: none */
	int timeout_ms;
	uint64_t dev_bytes;		/* relayed so far */
	bool dev_end;
	struct firsterr fe;		/* the first callback error */
};

static int dst_fail(struct tlm_dst *d, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int dst_fail(struct tlm_dst *d, int err, const char *fmt, ...)
{
	char msg[FIRSTERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	firsterr_set(&d->fe, err, 0, "%s", msg);
	return err;
}

/* Apply each page whose version is newer than the one stored; compare and
 * copy are atomic per page under its stripe lock. */
static int dst_pages(struct tlm_dst *d, const struct mstream_chunk *c)
{
	const uint8_t *p = c->data;

	if (c->len < TLM_PAGES_HDR)
		return dst_fail(d, -EBADMSG, "stream %d: pages chunk of %zu bytes", c->stream, c->len);
	uint32_t block = vcfmt_get_be32(p), n = vcfmt_get_be32(p + 4);
	uint64_t ver = vcfmt_get_be64(p + 8);
	if (block != 0)
		return dst_fail(d, -EBADMSG, "stream %d: block %u, expected 0", c->stream, block);
	if (c->len != TLM_PAGES_HDR + (size_t)n * (4 + PAGE))
		return dst_fail(d, -EBADMSG, "stream %d: %u pages in a %zu-byte chunk",
				c->stream, n, c->len);
	if (!ver)
		return dst_fail(d, -EBADMSG, "stream %d: version 0", c->stream);
	const uint8_t *data = p + TLM_PAGES_HDR + (size_t)n * 4;
	uint64_t applied = 0, older = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t pg = vcfmt_get_be32(p + TLM_PAGES_HDR + i * 4);
		if (pg >= d->nr_pages)
			return dst_fail(d, -EBADMSG, "stream %d: page %u beyond %llu pages",
					c->stream, pg, (unsigned long long)d->nr_pages);
		pthread_mutex_t *l = &d->locks[pg % NLOCKS];
		pthread_mutex_lock(l);
		if (ver > d->ver[pg]) {
			memcpy(d->ram + (uint64_t)pg * PAGE, data + (size_t)i * PAGE, PAGE);
			d->ver[pg] = ver;
			applied++;
		} else {
			older++;
		}
		pthread_mutex_unlock(l);
	}
	atomic_fetch_add(&d->applied, applied);
	atomic_fetch_add(&d->older, older);
	return 0;
}

/* QEMU's migration stream, in order on stream 0: into our end of the
 * destination QEMU's socket pair (it reads once migrate-incoming started,
 * after every page arrived); its end closes our writing side. */
static int dst_devstate(struct tlm_dst *d, const struct mstream_chunk *c)
{
	const uint8_t *p = c->data;
	size_t done = 0;

	if (c->stream != 0 || c->tag != d->dev_bytes || d->dev_end)
		return dst_fail(d, -EBADMSG, "stream %d: device state at offset %llu, expected stream 0 at %llu%s",
				c->stream, (unsigned long long)c->tag,
				(unsigned long long)d->dev_bytes, d->dev_end ? " before its end" : "");
	if (c->type == TLM_T_DEVEND) {
		d->dev_end = true;
		if (d->qfd >= 0)
			shutdown(d->qfd, SHUT_WR);
		return 0;
	}
	while (d->qfd >= 0 && done < c->len) {
		struct pollfd pfd = { .fd = d->qfd, .events = POLLOUT };
		ssize_t n = send(d->qfd, p + done, c->len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return dst_fail(d, -errno, "device state to QEMU: %s", strerror(errno));
		if (poll(&pfd, 1, d->timeout_ms) == 0)
			return dst_fail(d, -ETIMEDOUT, "QEMU read no device state for %d ms",
					d->timeout_ms);
	}
	d->dev_bytes += c->len;
	return 0;
}

static int dst_recv(void *arg, const struct mstream_chunk *c)
{
	struct tlm_dst *d = arg;
	const uint8_t *p = c->data;

	switch (c->type) {
	case TLM_T_PAGES:
		return dst_pages(d, c);
	case TLM_T_SETUP:
		if (c->len != TLM_SETUP_LEN)
			return dst_fail(d, -EBADMSG, "stream %d: setup of %zu bytes, expected %d",
					c->stream, c->len, TLM_SETUP_LEN);
		if (vcfmt_get_be32(p) != TLM_WIRE_VERSION)
			return dst_fail(d, -EPROTO, "stream %d: TLM version %u, expected %u",
					c->stream, vcfmt_get_be32(p), TLM_WIRE_VERSION);
		if (vcfmt_get_be32(p + 4) != 1 || vcfmt_get_be32(p + 8) != PAGE)
			return dst_fail(d, -EPROTO, "stream %d: %u blocks of %u-byte pages, expected 1 of %u",
					c->stream, vcfmt_get_be32(p + 4), vcfmt_get_be32(p + 8), PAGE);
		if (vcfmt_get_be64(p + 16) != d->ram_size)
			return dst_fail(d, -EPROTO, "source RAM is %llu bytes, the destination's RAM file %llu",
					(unsigned long long)vcfmt_get_be64(p + 16),
					(unsigned long long)d->ram_size);
		atomic_fetch_add(&d->setups, 1);
		return 0;
	case TLM_T_STOP:
		if (c->len != TLM_STOP_LEN)
			return dst_fail(d, -EBADMSG, "stream %d: stop marker of %zu bytes", c->stream, c->len);
		atomic_store(&d->stop_ns, vcfmt_get_be64(p));
		return 0;
	case TLM_T_DEVSTATE:
	case TLM_T_DEVEND:
		return dst_devstate(d, c);
	default:
		return dst_fail(d, -EBADMSG, "stream %d: unknown chunk type 0x%08x", c->stream, c->type);
	}
}

struct dst_crc_job {
	struct tlm_dst *d;
	pthread_t thread;
	uint32_t crc;
};

static void *dst_crc_thread(void *arg)
{
	struct dst_crc_job *j = arg;

	j->crc = ram_crc(j->d->ram, j->d->ram_size);
	return NULL;
}

int tlm_ram_file_create(const char *path, uint64_t size, char *why, size_t whylen)
{
	struct stat st;
	int fd, err;

	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		err = -errno;
		snprintf(why, whylen, "%s: %s%s", path, strerror(errno),
			 errno == ELOOP ? " (a symbolic link: refused)" : "");
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		snprintf(why, whylen, "%s: fstat: %s", path, strerror(errno));
		goto out_close;
	}
	err = -EPERM;
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s: not a regular file", path);
		goto out_close;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077) || st.st_nlink != 1) {
		snprintf(why, whylen, "%s: already there and not this user's private file (uid %u, mode %04o, %lu links): remove it or choose another path%s",
			 path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
			 (unsigned long)st.st_nlink,
			 st.st_uid == geteuid() && (st.st_mode & 0777) == 0644 ?
			 " (a QEMU started before this said 'listening' creates its mem-path 0644: start it after)" : "");
		goto out_close;
	}
	/* Fresh: all zero (the receiver relies on it), then sized. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0) {
		err = -errno;
		snprintf(why, whylen, "%s: ftruncate to %llu: %s", path, (unsigned long long)size,
			 strerror(errno));
		goto out_close;
	}
	return fd;

out_close:
	close(fd);
	return err;
}

int tlm_receive(const struct tlm_dst_opts *o, struct tlm_dst_result *r,
		void (*ready)(void *arg), void *arg, char *why, size_t whylen)
{
	struct tlm_dst *d = calloc(1, sizeof(*d));
	struct qmp *q = NULL;
	struct mstream *ms = NULL;
	char qwhy[512];
	int err, fd;

	memset(r, 0, sizeof(*r));
	r->downtime_s = -1;
	if (!d) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	firsterr_init(&d->fe);
	for (int i = 0; i < NLOCKS; i++)
		pthread_mutex_init(&d->locks[i], NULL);
	d->ram_size = o->ram_size;
	d->nr_pages = o->ram_size / PAGE;
	d->qfd = -1;
	d->timeout_ms = o->timeout_ms;
	/* The descriptor tlm_ram_file_create() checked: never reopened by name. */
	fd = o->ram_fd;
	struct stat rst;
	if (fstat(fd, &rst) < 0 || !S_ISREG(rst.st_mode) || (uint64_t)rst.st_size != o->ram_size) {
		err = -EINVAL;
		snprintf(why, whylen, "%s: not a %llu-byte regular file", o->ram_path,
			 (unsigned long long)o->ram_size);
		goto out_free;
	}
	d->ram = mmap(NULL, o->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	err = -errno;
	if (d->ram == MAP_FAILED) {
		d->ram = NULL;
		snprintf(why, whylen, "%s: mmap: %s", o->ram_path, strerror(-err));
		goto out_free;
	}
	d->ver = calloc(d->nr_pages, sizeof(*d->ver));
	if (!d->ver) {
		err = -ENOMEM;
		snprintf(why, whylen, "out of memory for %llu page versions",
			 (unsigned long long)d->nr_pages);
		goto out_free;
	}

	struct mstream_opts mo = {
		.nstreams = o->nstreams,
		.timeout_ms = o->timeout_ms,
		.max_chunk = 64u << 20,
		.secret = o->secret,
		.secret_len = o->secret_len,
		.session_id = o->session,
		.recv_cb = dst_recv,
		.recv_arg = d,
	};
	ms = mstream_create(&mo);
	if (!ms) {
		err = -errno;
		snprintf(why, whylen, "mstream: %s", strerror(errno));
		goto out_free;
	}
	err = mstream_listen(ms, o->listen, o->nlisten);
	if (err) {
		mstream_error(ms, qwhy, sizeof(qwhy));
		snprintf(why, whylen, "listen: %s", qwhy[0] ? qwhy : strerror(-err));
		goto out_ms;
	}
	if (ready)
		ready(arg);
	if (o->qmp_path) {
		q = qmp_connect(o->qmp_path, o->timeout_ms, qwhy, sizeof(qwhy));
		if (!q) {
			err = -errno;
			snprintf(why, whylen, "%s: %s", o->qmp_path, qwhy);
			goto out_ms;
		}
		err = tlm_set_caps(q, why, whylen);
		if (err)
			goto out_qmp;
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			err = -errno;
			snprintf(why, whylen, "socketpair: %s", strerror(errno));
			goto out_qmp;
		}
		err = qmp_getfd(q, DEVSTATE_FD, sv[1], QMP_MS, why, whylen);
		close(sv[1]);
		if (err) {
			close(sv[0]);
			goto out_qmp;
		}
		d->qfd = sv[0];
	}
	err = mstream_accept(ms);
	/* Every page is applied once every stream delivered the stop marker:
	 * only then may QEMU load the device state (devices read guest RAM
	 * as they load, e.g. virtio's ring indices). */
	if (!err)
		err = mstream_wait_barrier(ms, 1, -1);
	if (!err && q) {
		err = qmp_simple(q, "migrate-incoming", qmpmig_fd_uri_args(DEVSTATE_FD), qwhy,
				 sizeof(qwhy));
		if (err) {
			mstream_stop(ms);
			snprintf(why, whylen, "%s", qwhy);
			goto out_qmp;
		}
	}
	if (!err || err == -ENODATA)
		err = mstream_wait(ms, -1);
	if (err) {
		char txt[400], cb[FIRSTERR_MSG_MAX];
		mstream_error(ms, txt, sizeof(txt));
		if (!firsterr_get(&d->fe, NULL, cb, sizeof(cb)))
			cb[0] = '\0';
		snprintf(why, whylen, "%s%s%s", txt[0] ? txt : strerror(-err),
			 cb[0] ? ": " : "", cb);
		goto out_qmp;
	}
	if (atomic_load(&d->setups) != o->nstreams || !atomic_load(&d->stop_ns) || !d->dev_end) {
		err = -EPROTO;
		snprintf(why, whylen, "the source ended without %s",
			 !atomic_load(&d->stop_ns) ? "its stage 3 marker" :
			 !d->dev_end ? "the end of the device state" : "a setup on every stream");
		goto out_qmp;
	}
	uint64_t s0 = atomic_load(&d->stop_ns);
	r->pages_applied = atomic_load(&d->applied);
	r->pages_older = atomic_load(&d->older);
	r->streams = o->nstreams;
	for (int i = 0; i < o->nstreams; i++) {
		struct mstream_stats st;
		if (mstream_stats(ms, i, &st) == 0)
			r->bytes += st.bytes;
	}
	fprintf(stderr, "tlm-recv: +%.3f s after the source stopped (at %.3f): all pages applied, device state relayed\n",
		(double)(realtime_ns() - s0) / 1e9, (double)s0 / 1e9);
	/* The checksum (--verify) runs while QEMU moves the device state:
	 * nothing writes the RAM file until the destination resumes.  It reads
	 * all of guest RAM, so it delays the resume unless the device state
	 * takes longer. */
	struct dst_crc_job job = { .d = d };
	bool crc_thread = false;
	if (o->verify) {
		crc_thread = pthread_create(&job.thread, NULL, dst_crc_thread, &job) == 0;
		if (!crc_thread)
			dst_crc_thread(&job);
	}
	if (q) {
		err = qmpmig_wait(q, o->timeout_ms, 2, NULL, why, whylen);
		fprintf(stderr, "tlm-recv: +%.3f s: device state %s\n",
			(double)(realtime_ns() - s0) / 1e9, err ? "not loaded" : "loaded");
	}
	if (crc_thread)
		pthread_join(job.thread, NULL);
	if (o->verify) {
		r->crc = job.crc;
		r->crc_valid = true;
		fprintf(stderr, "tlm-recv: +%.3f s: guest RAM crc32c=0x%08x\n",
			(double)(realtime_ns() - s0) / 1e9, r->crc);
	}
	if (err)
		goto out_qmp;
	if (q && !o->no_resume) {
		err = qmp_simple(q, "cont", NULL, why, whylen);
		if (err)
			goto out_qmp;
		uint64_t t = realtime_ns();
		r->downtime_s = t > s0 ? (double)(t - s0) / 1e9 : 0;
		fprintf(stderr, "tlm-recv: +%.3f s: destination running\n", r->downtime_s);
	}
	if (q)
		tlm_unset_caps(q);
	err = 0;
out_qmp:
	qmp_close(q);
out_ms:
	mstream_destroy(ms);
	if (d->qfd >= 0)
		close(d->qfd);
out_free:
	if (d->ram)
		munmap(d->ram, d->ram_size);
	free(d->ver);
	for (int i = 0; i < NLOCKS; i++)
		pthread_mutex_destroy(&d->locks[i]);
	firsterr_destroy(&d->fe);
	free(d);
	return err;
}
