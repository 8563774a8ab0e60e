/* livesrc: dirty log + RAM of the patched QEMU for a live save (livesrc.h). */
#define LOG_PREFIX "livesrc"
#include "livesrc.h"

#include "afile.h"
#include "dirty.h"
#include "livesave.h"
#include "log.h"
#include "manifest.h"
#include "qmp.h"
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIVE_QMP_MS	10000
#define LIVE_MAX_ROUNDS	8	/* dirty rounds before the cut (the cut takes the rest) */
#define LIVE_ROUND_MS	100
#define LIVE_READY_PAGES 2048	/* 8 MiB left for the cut */
#define LIVE_MAX_IMAGES	2	/* rounds stop once the files hold 2x the RAM */

/* A begin or end on the worker.  [loop] before submit and in done;
 * [worker] in run. */
struct ls_job {
	struct livesrc *s;
	bool end;
	uint64_t epoch;
	char epoch_dirs[CKPT_MAX_DIRS][PATH_MAX];	/* [0]: the manifest's */
	int ndirs;
	int err;
	char why[512];
};

struct livesrc {
	struct worker *worker;
	char qmp_path[PATH_MAX];
	int writers, pid, rank;
	bool end_pending;	/* end() came while a begin was out */
	/* [loop] except while a job runs, when the job owns q, d and ls */
	struct qmp *q;
	struct dirty *d;
	struct livesave *ls;
	bool busy;		/* a job is out */
	int err;		/* begin failed */
	char why[512];
	char names[LIVERAM_MAX_FILES][64];	/* rankR.ram.I */
};

static int src_sync(void *ctx, char *why, size_t whylen)
{
	return dirty_sync(ctx, NULL, why, whylen);
}

static uint64_t src_take(void *ctx, int block, uint64_t w)
{
	return dirty_take_word(dirty_block(ctx, block), w);
}

static const struct livesave_src_ops src_ops = { src_sync, src_take };

/* Stop everything of an epoch (worker, or exit). */
static void stop_all(struct livesrc *s)
{
	char why[256];

	livesave_destroy(s->ls);
	s->ls = NULL;
	if (s->d)
		(void)dirty_stop(s->d, why, sizeof(why));	/* QEMU may be gone */
	dirty_destroy(s->d);
	s->d = NULL;
	qmp_close(s->q);
	s->q = NULL;
}

/* The files exist (livesave creates them at start): the entries of the
 * further directories' epoch directories, and those directories' own, are
 * made durable now; the first one's are the rank's finish job's (vccp). */
static void sync_more(struct ls_job *j, const bool *used)
{
	char file[PATH_MAX + 8];

	for (int k = 1; k < j->ndirs && !j->err; k++) {
		if (!used[k])
			continue;
		snprintf(file, sizeof(file), "%s/x", j->epoch_dirs[k]);
		j->err = afile_sync_dir_of(file);
		if (j->err == 0)
			j->err = afile_sync_dir_of(j->epoch_dirs[k]);
		if (j->err)
			snprintf(j->why, sizeof(j->why), "fsync of %s: %s", j->epoch_dirs[k],
				 strerror(-j->err));
	}
}

static void job_run(void *arg)
{
	struct ls_job *j = arg;
	struct livesrc *s = j->s;
	char inner[400] = "";

	if (j->end) {
		stop_all(s);
		return;
	}
	bool used[CKPT_MAX_DIRS] = { false };
	for (int i = 0; i < s->writers; i++)
		used[ckpt_ram_dir(s->rank, s->writers, i, j->ndirs)] = true;
	for (int k = 0; k < j->ndirs; k++) {
		if (!used[k] && k > 0)
			continue;
		j->err = afile_mkdir_p(j->epoch_dirs[k], 0700);
		if (j->err < 0) {
			snprintf(j->why, sizeof(j->why), "%s: %s", j->epoch_dirs[k],
				 strerror(-j->err));
			return;
		}
	}
	if (!s->q && !(s->q = qmp_connect(s->qmp_path, LIVE_QMP_MS, inner, sizeof(inner)))) {
		j->err = -errno;
		snprintf(j->why, sizeof(j->why), "QMP %s: %s", s->qmp_path, inner);
		return;
	}
	s->d = dirty_start(s->q, s->pid, inner, sizeof(inner));
	if (!s->d) {
		j->err = -errno;
		snprintf(j->why, sizeof(j->why), "dirty log: %s", inner);
		return;
	}
	struct livesave_params p = { .epoch = j->epoch, .page_size = DIRTY_PAGE_SIZE,
				     .nfiles = s->writers, .max_rounds = LIVE_MAX_ROUNDS,
				     .ready_pages = LIVE_READY_PAGES, .round_ms = LIVE_ROUND_MS };
	char paths[LIVERAM_MAX_FILES][PATH_MAX + 80];
	p.rank = s->rank;
	/* For tests only: VC_TEST_LIVE_READY_PAGES=0 makes a save never quiet
	 * enough, so it runs to its bound on rounds (t-vccp-live-dirtier). */
	const char *trp = getenv("VC_TEST_LIVE_READY_PAGES");
	if (trp && *trp)
		p.ready_pages = strtoull(trp, NULL, 10);
	for (int i = 0; i < s->writers; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s",
			 j->epoch_dirs[ckpt_ram_dir(s->rank, s->writers, i, j->ndirs)], s->names[i]);
		p.paths[i] = paths[i];
	}
	p.nblocks = dirty_nr_blocks(s->d);
	if (p.nblocks > LIVERAM_MAX_BLOCKS)
		p.nblocks = LIVERAM_MAX_BLOCKS;
	for (int b = 0; b < p.nblocks; b++) {
		const struct dirty_block *db = dirty_block(s->d, b);
		snprintf(p.blocks[b].name, sizeof(p.blocks[b].name), "%s", db->name);
		p.blocks[b].length = db->length;
		p.blocks[b].fd = db->fd;
		p.max_bytes += LIVE_MAX_IMAGES * db->length;
	}
	s->ls = livesave_start(&p, &src_ops, s->d, inner, sizeof(inner));
	if (!s->ls) {
		j->err = -errno;
		snprintf(j->why, sizeof(j->why), "%s", inner);
		return;
	}
	sync_more(j, used);
}

static void job_done(void *arg)
{
	struct ls_job *j = arg;
	struct livesrc *s = j->s;

	s->busy = false;
	if (!j->end && j->err) {
		s->err = j->err;
		snprintf(s->why, sizeof(s->why), "%s", j->why);
	}
	free(j);
	if (s->end_pending) {
		s->end_pending = false;
		livesrc_ops.end(s);
	}
}

static int submit(struct livesrc *s, struct ls_job *j)
{
	s->busy = true;
	int r = worker_submit(s->worker, job_run, job_done, j);
	if (r < 0) {
		s->busy = false;
		free(j);
	}
	return r;
}

struct livesrc *livesrc_create(struct worker *w, const char *qmp_path, int rank, int writers)
{
	struct livesrc *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (writers < 1 || writers > LIVERAM_MAX_FILES) {
		free(s);
		errno = EINVAL;
		return NULL;
	}
	s->worker = w;
	s->writers = writers;
	s->rank = rank;
	for (int i = 0; i < writers; i++)
		snprintf(s->names[i], sizeof(s->names[i]), "rank%d.ram.%d", rank, i);
	snprintf(s->qmp_path, sizeof(s->qmp_path), "%s", qmp_path);
	return s;
}

void livesrc_set_pid(struct livesrc *s, int pid)
{
	s->pid = pid;
}

void livesrc_destroy(struct livesrc *s)
{
	if (!s)
		return;
	while (s->busy) {	/* at exit: the job's done() frees it */
		worker_dispatch(s->worker);
		usleep(1000);
	}
	stop_all(s);
	free(s);
}

static int op_begin(void *ctx, uint64_t epoch, const char *const *epoch_dirs, int ndirs,
		    char *why, size_t whylen)
{
	struct livesrc *s = ctx;
	struct ls_job *j;

	if (s->busy || s->ls) {
		snprintf(why, whylen, "a live save is still running");
		return -EBUSY;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	j->s = s;
	j->epoch = epoch;
	if (ndirs < 1 || ndirs > CKPT_MAX_DIRS) {
		free(j);
		snprintf(why, whylen, "%d checkpoint directories", ndirs);
		return -EINVAL;
	}
	for (int k = 0; k < ndirs; k++)
		snprintf(j->epoch_dirs[k], sizeof(j->epoch_dirs[k]), "%s", epoch_dirs[k]);
	j->ndirs = ndirs;
	s->err = 0;
	s->why[0] = '\0';
	int e = submit(s, j);
	if (e < 0)
		snprintf(why, whylen, "worker: %s", strerror(-e));
	return e;
}

static int op_poll(void *ctx, char *why, size_t whylen)
{
	struct livesrc *s = ctx;

	if (s->busy)
		return 0;
	if (s->err || !s->ls) {
		snprintf(why, whylen, "%s", s->err ? s->why : "no live save");
		return s->err ? s->err : -ECANCELED;
	}
	switch (livesave_poll(s->ls)) {
	case LIVESAVE_RUNNING:
		return 0;
	case LIVESAVE_READY:
	case LIVESAVE_FINISHING:
		return 1;
	case LIVESAVE_DONE:
		return 2;
	case LIVESAVE_FAILED:
		break;
	}
	snprintf(why, whylen, "%s", livesave_why(s->ls));
	return -EIO;
}

static int op_finish(void *ctx)
{
	struct livesrc *s = ctx;
	return s->ls ? livesave_finish(s->ls) : -ECANCELED;
}

static int op_files(void *ctx, char names[][64], uint64_t *sizes, int max)
{
	struct livesrc *s = ctx;
	struct livesave_result res;

	if (!s->ls)
		return 0;
	livesave_result(s->ls, &res);
	for (int i = 0; i < res.nfiles && i < max; i++) {
		snprintf(names[i], 64, "%s", s->names[i]);
		sizes[i] = res.file_size[i];
	}
	static const char *const bound[] = { "quiet", "rounds", "bytes" };
	pr_info("live save: %llu pages in %d rounds (full pass %llu pages in %.3f s, "
		"%llu at the cut in %.3f s), %llu bytes in %d files, bound=%s",
		(unsigned long long)res.pages, res.rounds, (unsigned long long)res.full_pages,
		res.full_s, (unsigned long long)res.last_pages, res.final_s,
		(unsigned long long)res.bytes, res.nfiles, bound[res.bound]);
	return res.nfiles < max ? res.nfiles : max;
}

static void op_end(void *ctx)
{
	struct livesrc *s = ctx;
	struct ls_job *j;

	if (s->busy) {	/* a begin still out: end when it is back */
		s->end_pending = true;
		return;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		stop_all(s);	/* no memory: do it here, once */
		return;
	}
	j->s = s;
	j->end = true;
	if (submit(s, j) < 0)
		stop_all(s);
}

const struct vccp_live_ops livesrc_ops = { op_begin, op_poll, op_finish, op_files, op_end };
