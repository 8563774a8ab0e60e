/* livesave: the threads of a live RAM save (see livesave.h).
 *
 * The coordinator runs sweeps: sweep 0 is the full pass, sweep k > 0 writes
 * the pages of dirty round k.  For each sweep it bumps `gen` and waits until
 * every writer has finished its share (`left` back to 0).  A writer owns its
 * liveram file and its buffer; everything else is under `mu`.
 */
#include "livesave.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct ls_writer {
	struct livesave *ls;
	int idx;
	pthread_t tid;
	bool started;
	bool created;		/* the file is ours to remove */
	struct liveram_w *w;	/* [writer] while running, [loop] after join */
	uint8_t *buf;		/* [writer] one run */
	int gen;		/* [writer] last sweep done */
};

struct livesave {
	struct livesave_params p;	/* read-only after start */
	char paths[LIVERAM_MAX_FILES][4096];
	struct livesave_src_ops ops;
	void *ctx;
	int efd;

	pthread_mutex_t mu;
	pthread_cond_t cv;		/* any change below */
	/* [mu] */
	int gen, round, left;
	uint64_t sweep_pages;
	bool finish_req, stop_req;
	enum livesave_state state;
	char why[512];
	int err;
	struct livesave_result res;

	pthread_t coord;
	bool coord_started;
	struct ls_writer wr[LIVERAM_MAX_FILES];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void notify(struct livesave *ls)
{
	uint64_t one = 1;
	ssize_t n = write(ls->efd, &one, sizeof(one));
	(void)n;	/* a full counter is still readable */
}

/* Record the first error (under mu). */
static void fail_locked(struct livesave *ls, int err, const char *why)
{
	if (!ls->err) {
		ls->err = err;
		snprintf(ls->why, sizeof(ls->why), "%s", why);
	}
}

static int is_zero(const uint8_t *p, size_t len)
{
	static const uint8_t z[4096];
	for (size_t off = 0; off < len; off += sizeof(z))
		if (memcmp(p + off, z, len - off < sizeof(z) ? len - off : sizeof(z)))
			return 0;
	return 1;
}

static int read_pages(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Write pages [first, first + n) of block b, read now from its memory.  In
 * the full pass zero pages are left out: a restore starts from zeroed RAM. */
static int put_run(struct ls_writer *wr, int b, int round, uint64_t first, uint32_t n,
		   uint64_t *pages)
{
	struct livesave *ls = wr->ls;
	size_t ps = ls->p.page_size;
	int r = read_pages(ls->p.blocks[b].fd, wr->buf, n * ps, first * ps);

	if (r < 0)
		return r;
	if (round > 0) {
		*pages += n;
		return liveram_put(wr->w, (uint32_t)b, (uint32_t)round, first, n, wr->buf);
	}
	for (uint32_t i = 0; i < n;) {
		while (i < n && is_zero(wr->buf + i * ps, ps))
			i++;
		uint32_t s = i;
		while (i < n && !is_zero(wr->buf + i * ps, ps))
			i++;
		if (i > s) {
			r = liveram_put(wr->w, (uint32_t)b, 0, first + s, i - s, wr->buf + s * ps);
			if (r < 0)
				return r;
			*pages += i - s;
		}
	}
	return 0;
}

/* This writer's words of every block: all pages (round 0) or the dirty ones. */
static int sweep(struct ls_writer *wr, int round, uint64_t *pages)
{
	struct livesave *ls = wr->ls;
	int r = 0;

	for (int b = 0; b < ls->p.nblocks && r == 0; b++) {
		uint64_t np = ls->p.blocks[b].length / ls->p.page_size;
		uint64_t nw = (np + 63) / 64;
		for (uint64_t w = (uint64_t)wr->idx; w < nw && r == 0; w += (uint64_t)ls->p.nfiles) {
			uint64_t base = w * 64, cnt = np - base < 64 ? np - base : 64;
			uint64_t mask = cnt == 64 ? ~0ull : (1ull << cnt) - 1;
			if (round > 0)
				mask &= ls->ops.take_word(ls->ctx, b, w);
			while (mask && r == 0) {
				int s = __builtin_ctzll(mask);
				uint64_t rest = ~mask >> s;
				int len = rest ? __builtin_ctzll(rest) : 64 - s;
				r = put_run(wr, b, round, base + (uint64_t)s, (uint32_t)len, pages);
				mask = len + s >= 64 ? 0 : mask & ~(((1ull << len) - 1) << s);
			}
			if (__atomic_load_n(&ls->stop_req, __ATOMIC_RELAXED))
				r = -ECANCELED;
		}
	}
	return r;
}

static void *writer_main(void *arg)
{
	struct ls_writer *wr = arg;
	struct livesave *ls = wr->ls;

	pthread_mutex_lock(&ls->mu);
	for (;;) {
		while (ls->gen == wr->gen && !ls->stop_req)
			pthread_cond_wait(&ls->cv, &ls->mu);
		if (ls->stop_req)
			break;
		wr->gen = ls->gen;
		int round = ls->round;
		pthread_mutex_unlock(&ls->mu);

		uint64_t pages = 0;
		int r = sweep(wr, round, &pages);
		char why[512];
		if (r < 0 && r != -ECANCELED)
			snprintf(why, sizeof(why), "%s: writing round %d: %s", ls->paths[wr->idx],
				 round, strerror(-r));

		pthread_mutex_lock(&ls->mu);
		if (r < 0)
			fail_locked(ls, r, why);
		ls->sweep_pages += pages;
		ls->left--;
		pthread_cond_broadcast(&ls->cv);
	}
	pthread_mutex_unlock(&ls->mu);
	return NULL;
}

/* One sweep over every writer; its page count, or -errno. */
static int64_t run_sweep(struct livesave *ls, int round)
{
	pthread_mutex_lock(&ls->mu);
	ls->round = round;
	ls->left = ls->p.nfiles;
	ls->sweep_pages = 0;
	ls->gen++;
	pthread_cond_broadcast(&ls->cv);
	while (ls->left > 0 && !ls->stop_req)
		pthread_cond_wait(&ls->cv, &ls->mu);
	int64_t r = ls->err ? ls->err : (ls->stop_req ? -ECANCELED : (int64_t)ls->sweep_pages);
	pthread_mutex_unlock(&ls->mu);
	return r;
}

static void set_state(struct livesave *ls, enum livesave_state st)
{
	pthread_mutex_lock(&ls->mu);
	if (ls->state != LIVESAVE_FAILED)
		ls->state = st;
	pthread_mutex_unlock(&ls->mu);
	notify(ls);
}

static int do_sync(struct livesave *ls)
{
	char why[256] = "", msg[512];
	int r = ls->ops.sync(ls->ctx, why, sizeof(why));
	if (r < 0) {
		snprintf(msg, sizeof(msg), "dirty log sync: %s", why[0] ? why : strerror(-r));
		pthread_mutex_lock(&ls->mu);
		fail_locked(ls, r, msg);
		pthread_mutex_unlock(&ls->mu);
	}
	return r;
}

/* Wait up to ms for a finish or stop request (ms < 0: no limit). */
static void wait_cmd(struct livesave *ls, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&ls->mu);
	while (!ls->finish_req && !ls->stop_req)
		if ((ms < 0 ? pthread_cond_wait(&ls->cv, &ls->mu) :
			      pthread_cond_timedwait(&ls->cv, &ls->mu, &ts)) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&ls->mu);
}

static bool flag(struct livesave *ls, bool *f)
{
	pthread_mutex_lock(&ls->mu);
	bool v = *f;
	pthread_mutex_unlock(&ls->mu);
	return v;
}

static int finish_files(struct livesave *ls)
{
	for (int i = 0; i < ls->p.nfiles; i++) {
		struct ls_writer *wr = &ls->wr[i];
		int r = liveram_finish(wr->w, &ls->res.file_size[i]);
		wr->w = NULL;
		if (r < 0) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s: %s", ls->paths[i], strerror(-r));
			pthread_mutex_lock(&ls->mu);
			fail_locked(ls, r, msg);
			pthread_mutex_unlock(&ls->mu);
			return r;
		}
		ls->res.bytes += ls->res.file_size[i];
	}
	return 0;
}

/* Bytes in the files so far; only between sweeps (the writers wait). */
static uint64_t files_bytes(struct livesave *ls)
{
	uint64_t b = 0;
	for (int i = 0; i < ls->p.nfiles; i++)
		b += liveram_bytes(ls->wr[i].w);
	return b;
}

static void *coord_main(void *arg)
{
	struct livesave *ls = arg;
	double t0 = now_s(), tf = 0;
	int64_t n;
	bool ready = false;
	int round = 0;

	if ((n = run_sweep(ls, 0)) < 0)
		goto failed;
	ls->res.full_pages = ls->res.pages = (uint64_t)n;
	ls->res.full_s = now_s() - t0;
	/* Rounds while the VM runs, at most max_rounds - 1: the last one is
	 * the cut's.  READY after a quiet round or when the bound is hit. */
	for (;;) {
		if (flag(ls, &ls->stop_req))
			goto failed;
		if (flag(ls, &ls->finish_req))
			break;
		bool full = ls->p.max_bytes && files_bytes(ls) >= ls->p.max_bytes;
		if (round >= ls->p.max_rounds - 1 || full) {
			if (!ready) {
				ls->res.bound = full ? 2 : 1;
				set_state(ls, LIVESAVE_READY);
			}
			ready = true;
			wait_cmd(ls, -1);
			continue;
		}
		if (do_sync(ls) < 0 || (n = run_sweep(ls, ++round)) < 0)
			goto failed;
		ls->res.pages += (uint64_t)n;
		if (!ready && (uint64_t)n <= ls->p.ready_pages) {
			set_state(ls, LIVESAVE_READY);
			ready = true;
		}
		if (ready)
			wait_cmd(ls, ls->p.round_ms);
	}
	tf = now_s();
	if (do_sync(ls) < 0 || (n = run_sweep(ls, ++round)) < 0)
		goto failed;
	ls->res.pages += (uint64_t)n;
	ls->res.last_pages = (uint64_t)n;
	ls->res.rounds = round;
	if (finish_files(ls) < 0)
		goto failed;
	ls->res.nfiles = ls->p.nfiles;
	ls->res.final_s = now_s() - tf;
	set_state(ls, LIVESAVE_DONE);
	return NULL;
failed:
	pthread_mutex_lock(&ls->mu);
	if (!ls->err)
		fail_locked(ls, -ECANCELED, "live save stopped");
	ls->state = LIVESAVE_FAILED;
	pthread_mutex_unlock(&ls->mu);
	notify(ls);
	return NULL;
}

static int params_ok(const struct livesave_params *p)
{
	if (p->nfiles < 1 || p->nfiles > LIVERAM_MAX_FILES || p->nblocks < 1 ||
	    p->nblocks > LIVERAM_MAX_BLOCKS || p->max_rounds < 1 || p->round_ms < 0 ||
	    p->page_size < 512 || p->page_size > (1u << 16))
		return 0;
	for (int i = 0; i < p->nfiles; i++)
		if (!p->paths[i] || strlen(p->paths[i]) >= 4096)
			return 0;
	return 1;
}

/* Threads start with every signal blocked: the rank handles them. */
static int spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -r;
}

struct livesave *livesave_start(const struct livesave_params *p,
				const struct livesave_src_ops *ops, void *ctx,
				char *why, size_t whylen)
{
	struct liveram_info info = { 0 };
	struct livesave *ls;
	int r;

	if (!params_ok(p)) {
		snprintf(why, whylen, "bad live save parameters");
		errno = EINVAL;
		return NULL;
	}
	if (!(ls = calloc(1, sizeof(*ls)))) {
		snprintf(why, whylen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	ls->p = *p;
	ls->ops = *ops;
	ls->ctx = ctx;
	ls->efd = -1;
	pthread_mutex_init(&ls->mu, NULL);
	pthread_cond_init(&ls->cv, NULL);
	info.nfiles = (uint32_t)p->nfiles;
	info.epoch = p->epoch;
	info.rank = (uint32_t)p->rank;
	info.page_size = p->page_size;
	info.nblocks = (uint32_t)p->nblocks;
	for (int b = 0; b < p->nblocks; b++) {
		snprintf(info.blocks[b].name, LIVERAM_NAME_MAX, "%s", p->blocks[b].name);
		info.blocks[b].length = p->blocks[b].length;
	}
	ls->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ls->efd < 0) {
		r = -errno;
		snprintf(why, whylen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < p->nfiles; i++) {
		struct ls_writer *wr = &ls->wr[i];
		snprintf(ls->paths[i], sizeof(ls->paths[i]), "%s", p->paths[i]);
		ls->p.paths[i] = ls->paths[i];
		wr->ls = ls;
		wr->idx = i;
		info.file_index = (uint32_t)i;
		wr->buf = malloc((size_t)LIVERAM_RUN_PAGES * p->page_size);
		if (!wr->buf) {
			r = -ENOMEM;
			snprintf(why, whylen, "out of memory");
			goto fail;
		}
		if (!(wr->w = liveram_create(p->paths[i], &info))) {
			r = -errno;
			snprintf(why, whylen, "%s: %s", p->paths[i], strerror(errno));
			goto fail;
		}
		wr->created = true;
	}
	for (int i = 0; i < p->nfiles; i++) {
		if ((r = spawn(&ls->wr[i].tid, writer_main, &ls->wr[i])) < 0) {
			snprintf(why, whylen, "pthread_create: %s", strerror(-r));
			goto fail;
		}
		ls->wr[i].started = true;
	}
	if ((r = spawn(&ls->coord, coord_main, ls)) < 0) {
		snprintf(why, whylen, "pthread_create: %s", strerror(-r));
		goto fail;
	}
	ls->coord_started = true;
	return ls;
fail:
	livesave_destroy(ls);
	errno = -r;
	return NULL;
}

int livesave_fd(const struct livesave *ls)
{
	return ls->efd;
}

enum livesave_state livesave_poll(struct livesave *ls)
{
	uint64_t v;
	ssize_t n = read(ls->efd, &v, sizeof(v));
	(void)n;	/* EAGAIN: nothing new */
	pthread_mutex_lock(&ls->mu);
	enum livesave_state st = ls->state;
	if (ls->finish_req && st == LIVESAVE_READY)
		st = LIVESAVE_FINISHING;
	pthread_mutex_unlock(&ls->mu);
	return st;
}

int livesave_finish(struct livesave *ls)
{
	int r = 0;
	pthread_mutex_lock(&ls->mu);
	if (ls->finish_req)
		r = -EALREADY;
	else if (ls->state != LIVESAVE_READY)
		r = -EBUSY;
	else
		ls->finish_req = true;
	pthread_cond_broadcast(&ls->cv);
	pthread_mutex_unlock(&ls->mu);
	return r;
}

void livesave_result(const struct livesave *ls, struct livesave_result *out)
{
	*out = ls->res;
}

const char *livesave_why(const struct livesave *ls)
{
	return ls->why;
}

void livesave_destroy(struct livesave *ls)
{
	if (!ls)
		return;
	pthread_mutex_lock(&ls->mu);
	ls->stop_req = true;
	pthread_cond_broadcast(&ls->cv);
	pthread_mutex_unlock(&ls->mu);
	if (ls->coord_started)
		pthread_join(ls->coord, NULL);
	for (int i = 0; i < ls->p.nfiles; i++) {
		struct ls_writer *wr = &ls->wr[i];
		if (wr->started)
			pthread_join(wr->tid, NULL);
		bool finished = wr->created && !wr->w;
		liveram_abort(wr->w);	/* an unfinished file goes */
		if (finished && ls->state != LIVESAVE_DONE)
			unlink(ls->paths[i]);	/* so does a finished one of a failed save */
		free(wr->buf);
	}
	if (ls->efd >= 0)
		close(ls->efd);
	pthread_mutex_destroy(&ls->mu);
	pthread_cond_destroy(&ls->cv);
	free(ls);
}
