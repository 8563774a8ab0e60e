#define LOG_PREFIX "vccp"
#include "vctime.h"
#include "vccp.h"

#include "firsterr.h"
#include "log.h"
#include "manifest.h"
#include "qmp.h"
#include "qmpmig.h"
#include "restore.h"
#include "rq.h"
#include "vccpio.h"
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD_CHECKPOINT	1
#define CMD_END		2
#define DECIDE_COMMIT	1
#define DECIDE_ABORT	2
#define QMP_TIMEOUT_MS	10000
#define POLL_MIGRATE_S	0.02
/* How long a held VM may take to read what is already on its link. */
#define SETTLE_MAX_S	0.2


enum vstate {
	V_IDLE,
	V_LIVE,		/* live: RAM saved while the VM runs, until READY */
	V_LIVE_GATHER,	/* live: Ibarrier, every rank READY */
	V_PREPAUSE,	/* test knob: pausing later than the others */
	V_SETTLE,	/* held; the running VM takes what is on its link */
	V_STOPPING,	/* QMP stop sent */
	V_LATEHOLD,	/* test knob: delivering to the paused VM a while */
	V_DRAIN,	/* paused; reading what the VM had written */
	V_MARKED,	/* markers sent; waiting for everyone's */
	V_SAVING,	/* files opened, QEMU writes, the worker follows */
	V_FINISHING,	/* worker: receive queue, directory fsyncs */
	V_REPORT,	/* Igather of the reports */
	V_COMMITTING,	/* root, worker: manifest, then latest */
	V_DECIDE,	/* Ibcast of the decision */
	V_BARRIER,	/* Ibarrier, then cont */
	V_CONT,		/* QMP cont sent */
	V_TIMES,	/* Igather of resume times (VM already running) */
};

struct request {
	uint64_t epoch;
	int32_t cmd;
	int32_t mode;		/* VCCP_MODE_*: this epoch's kind */
};

struct report {
	int32_t rank;
	int32_t status;		/* 0 or -errno */
	uint64_t vm_size;
	uint64_t rq_size;
	uint64_t disk_size;	/* 0: no disk */
	uint32_t disk_crc;
	uint32_t pad2;
	uint32_t vm_crc;
	uint32_t rq_crc;
	uint32_t rq_frames;
	uint32_t pad;
	double t_request, t_pause, t_marked, t_saved;	/* CLOCK_REALTIME */
	double t_ready;		/* live: RAM pass done (0 in stop mode) */
	uint32_t ram_files;	/* live: liveram files, names rankR.ram.I */
	uint32_t pad3;
	uint64_t ram_size[VCCP_LIVE_MAX_FILES];
	char err[200];
};

struct vccp {
	MPI_Comm comm;
	int rank, size;
	const struct vccp_fabric_ops *fab;
	void *fab_ctx;
	struct worker *worker;
	const struct vccp_live_ops *live;
	void *live_ctx;
	bool epoch_live;		/* this epoch is a live one */
	bool live_on;			/* live->begin() succeeded this epoch */
	bool live_finishing;		/* live->finish() called */
	int live_state;			/* last live->poll() */
	struct qmp *qmp;
	char dir[PATH_MAX];
	char more[CKPT_MAX_DIRS - 1][PATH_MAX];	/* further directories: RAM files */
	int nmore;
	int keep, interval_s, bandwidth_mibs;
	int test_delay_ms;		/* VC_TEST_PAUSE_DELAY_MS for this rank */
	int test_late_hold_ms;		/* VC_TEST_LATE_HOLD_MS for this rank */
	double pause_at, hold_at, settle_until;
	json_t *config;
	void (*on_resume)(void *ctx);
	void *ctx;

	enum vstate state;
	struct request req;		/* the request being received/sent */
	MPI_Request req_r;		/* non-root: always posted when idle */
	uint64_t epoch;
	uint64_t next_epoch;		/* root */
	uint64_t prev_epoch;		/* root: what latest names, 0 none */
	uint64_t *marker_epoch;		/* newest marker seen from each rank */
	char epoch_dir[PATH_MAX];
	char more_epoch[CKPT_MAX_DIRS - 1][PATH_MAX];	/* the epoch's in more[] */
	char vm_tmp[PATH_MAX], vm_path[PATH_MAX], rq_path[PATH_MAX];
	struct report me;
	struct report *all;		/* root */
	MPI_Request coll;
	int32_t decision;
	double t_resume;
	double *resume_times;		/* root */
	double last_poll;
	double last_end;		/* monotonic, for the interval */
	double last_progress_log;
	uint64_t bytes_saved, bytes_total;
	char disk_device[64];		/* "" when the VM has no disk */
	char disk_active[PATH_MAX];	/* the overlay QEMU writes now */
	char disk_tmp[PATH_MAX], disk_path[PATH_MAX];

	int cmds;			/* QMP commands of ours in flight */
	int jobs;			/* worker jobs of ours not done */
	bool query_out;			/* a query-migrate is in flight */
	bool migration_done;
	bool migrate_started;		/* QEMU accepted "migrate" this epoch */
	bool starting;			/* the save's QMP chain is running */
	bool follow_busy, disk_busy;	/* those jobs are out */
	struct prep_job prep;
	struct follow_job follow;
	struct disk_job disk;
	struct finish_job finish;
	struct commit_job commit;
	bool step_done;			/* the job of this state is back */

	struct firsterr err;		/* this rank's first failure in the epoch */
	char reason[64];
	json_t *last;
	bool ended;
};

static void on_marker(void *ctx, int from, uint64_t epoch)
{
	struct vccp *v = ctx;
	v->marker_epoch[from] = epoch;
}

static bool all_markers(const struct vccp *v)
{
	for (int r = 0; r < v->size; r++)
		if (r != v->rank && v->marker_epoch[r] != v->epoch)
			return false;
	return true;
}

static void post_request(struct vccp *v)
{
	if (v->rank != 0)
		MPI_Ibcast(&v->req, sizeof(v->req), MPI_BYTE, 0, v->comm, &v->req_r);
}

/* The epoch latest names now, or 0. */
static uint64_t latest_epoch(const char *dir)
{
	char path[PATH_MAX + 16], target[PATH_MAX];
	unsigned long long e = 0;

	snprintf(path, sizeof(path), "%s/latest", dir);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = '\0';
	if (sscanf(target, "epoch-%llu", &e) != 1)
		return 0;
	return e;
}

struct vccp *vccp_create(MPI_Comm comm, const struct vccp_opts *o)
{
	char why[256];

	if (restore_config_check(o->config, "the checkpoint's configuration", why,
				 sizeof(why)) < 0) {
		pr_err("%s", why);
		errno = EINVAL;
		return NULL;
	}
	if (o->nmore < 0 || o->nmore > CKPT_MAX_DIRS - 1) {
		errno = EINVAL;
		return NULL;
	}
	struct vccp *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	for (int i = 0; i < o->nmore; i++)
		snprintf(v->more[i], sizeof(v->more[i]), "%s", o->more_dirs[i]);
	v->nmore = o->nmore;
	MPI_Comm_dup(comm, &v->comm);
	MPI_Comm_set_errhandler(v->comm, MPI_ERRORS_RETURN);
	MPI_Comm_rank(v->comm, &v->rank);
	MPI_Comm_size(v->comm, &v->size);
	v->fab = o->fab;
	v->fab_ctx = o->fab_ctx;
	v->worker = o->worker;
	v->live = o->live;
	v->live_ctx = o->live_ctx;
	{
		const char *td = getenv("VC_TEST_PAUSE_DELAY_MS"), *tr = getenv("VC_TEST_PAUSE_RANK");
		if (td && tr && atoi(tr) == v->rank)
			v->test_delay_ms = atoi(td);
		const char *lh = getenv("VC_TEST_LATE_HOLD_MS"), *lr = getenv("VC_TEST_LATE_HOLD_RANK");
		if (lh && lr && atoi(lr) == v->rank)
			v->test_late_hold_ms = atoi(lh);
	}
	snprintf(v->dir, sizeof(v->dir), "%s", o->dir);
	v->keep = o->keep;
	v->interval_s = o->interval_s;
	v->bandwidth_mibs = o->bandwidth_mibs;
	v->on_resume = o->on_resume;
	v->ctx = o->ctx;
	v->config = json_deep_copy(o->config);
	v->marker_epoch = calloc((size_t)v->size, sizeof(uint64_t));
	v->all = calloc((size_t)v->size, sizeof(struct report));
	v->resume_times = calloc((size_t)v->size, sizeof(double));
	v->req_r = MPI_REQUEST_NULL;
	v->coll = MPI_REQUEST_NULL;
	v->follow.fd = -1;
	firsterr_init(&v->err);
	if (o->disk_device) {
		snprintf(v->disk_device, sizeof(v->disk_device), "%s", o->disk_device);
		snprintf(v->disk_active, sizeof(v->disk_active), "%s", o->disk_active);
	}
	v->last_end = vc_mono_s();
	if (v->rank == 0) {
		v->next_epoch = ckpt_next_epoch(v->dir);
		/* an epoch left in a further directory is never reused: its
		 * files would stop the new ones (O_EXCL) */
		for (int i = 0; i < v->nmore; i++) {
			uint64_t e = ckpt_next_epoch(v->more[i]);
			v->next_epoch = e > v->next_epoch ? e : v->next_epoch;
		}
		v->prev_epoch = latest_epoch(v->dir);
	}
	MPI_Bcast(&v->next_epoch, 1, MPI_UINT64_T, 0, v->comm);
	v->fab->set_marker_cb(v->fab_ctx, on_marker, v);
	post_request(v);
	return v;
}

void vccp_destroy(struct vccp *v)
{
	if (!v)
		return;
	v->fab->set_marker_cb(v->fab_ctx, NULL, NULL);
	if (v->live_on)
		v->live->end(v->live_ctx);
	firsterr_destroy(&v->err);
	json_decref(v->config);
	json_decref(v->last);
	free(v->marker_epoch);
	free(v->all);
	free(v->resume_times);
	MPI_Comm_free(&v->comm);
	free(v);
}

void vccp_set_qmp(struct vccp *v, struct qmp *q)
{
	v->qmp = q;
}

bool vccp_active(const struct vccp *v)
{
	return v->state != V_IDLE;
}

uint64_t vccp_bytes_saved(const struct vccp *v)
{
	return v->bytes_saved;
}

json_t *vccp_last_json(const struct vccp *v)
{
	return v->last ? json_incref(v->last) : NULL;
}

/* Record the first failure of this rank in this epoch (later failures are
 * its consequences); it goes into the report. */
static void fail(struct vccp *v, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct vccp *v, int err, const char *fmt, ...)
{
	char msg[FIRSTERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (firsterr_set(&v->err, err, 0, "%s", msg))
		pr_err("checkpoint epoch %llu: %s", (unsigned long long)v->epoch, msg);
}

static bool failed(struct vccp *v)
{
	return firsterr_get(&v->err, NULL, NULL, 0) != 0;
}

/* ---- asynchronous QMP and worker jobs --------------------------------- */

typedef void (*step_fn)(struct vccp *v, int err, json_t *ret, const char *why);

struct vccp_call {
	struct vccp *v;
	step_fn then;
};

static void call_done(void *ctx, int err, json_t *ret, const char *why)
{
	struct vccp_call *c = ctx;
	struct vccp *v = c->v;
	step_fn then = c->then;

	free(c);
	v->cmds--;
	then(v, err, ret, why);
}

/* Send a QMP command; then() gets the reply (from qmp_pump), or at once
 * when it could not be sent. */
static void call(struct vccp *v, const char *cmd, json_t *args, int pass_fd, step_fn then)
{
	struct vccp_call *c;
	int r = -ENOMEM;

	if (!v->qmp) {
		json_decref(args);
		then(v, -ECHILD, NULL, "the VM is not running");
		return;
	}
	c = malloc(sizeof(*c));
	if (c) {
		c->v = v;
		c->then = then;
		v->cmds++;
		r = qmp_exec_async(v->qmp, cmd, args, pass_fd, QMP_TIMEOUT_MS, call_done, c);
		if (r < 0) {
			v->cmds--;
			free(c);
		}
	} else {
		json_decref(args);
	}
	if (r < 0) {
		char why[128];
		snprintf(why, sizeof(why), "'%s': %s", cmd,
			 r == -EPIPE ? "QEMU closed the QMP socket" : strerror(-r));
		then(v, r, NULL, why);
	}
}

struct vccp_job {
	struct vccp *v;
	worker_fn run;
	void *arg;
	void (*done)(struct vccp *v, void *arg);
};

static void job_run(void *p)
{
	struct vccp_job *j = p;
	j->run(j->arg);
}

static void job_done(void *p)
{
	struct vccp_job *j = p;
	struct vccp *v = j->v;

	v->jobs--;
	if (j->done)
		j->done(v, j->arg);
	free(j);
}

/* Run run(arg) on the worker and done(v, arg) on the loop afterwards.  When
 * the job cannot be queued (out of memory) it does not run: *errp gets
 * -ENOMEM, the epoch fails, and done() still follows, from here. */
static void submit(struct vccp *v, worker_fn run, void *arg, int *errp,
		   void (*done)(struct vccp *v, void *arg))
{
	struct vccp_job *j = calloc(1, sizeof(*j));

	if (j) {
		j->v = v;
		j->run = run;
		j->arg = arg;
		j->done = done;
		v->jobs++;
		if (worker_submit(v->worker, job_run, job_done, j) == 0)
			return;
		v->jobs--;
		free(j);
	}
	fail(v, -ENOMEM, "rank %d: cannot queue file work: out of memory", v->rank);
	if (errp)
		*errp = -ENOMEM;
	if (done)
		done(v, arg);
}

static void cleanup_done(struct vccp *v, void *p)
{
	free(p);
}

/* ---- the epoch, step by step ---------------------------------------- */

static void pause_vm(struct vccp *v);
static void settle_vm(struct vccp *v);
static void begin_live(struct vccp *v);
static void cut_epoch(struct vccp *v);
static void end_save(struct vccp *v);

static void begin_epoch(struct vccp *v)
{
	v->epoch = v->req.epoch;
	memset(&v->me, 0, sizeof(v->me));
	firsterr_clear(&v->err);
	v->me.rank = v->rank;
	v->me.t_request = vc_wall_s();
	v->bytes_saved = v->bytes_total = 0;
	v->migration_done = false;
	v->migrate_started = false;
	ckpt_epoch_dir(v->dir, v->epoch, v->epoch_dir, sizeof(v->epoch_dir));
	for (int i = 0; i < v->nmore; i++)
		ckpt_epoch_dir(v->more[i], v->epoch, v->more_epoch[i], sizeof(v->more_epoch[i]));
	snprintf(v->vm_path, sizeof(v->vm_path), "%s/rank%d.vmstate", v->epoch_dir, v->rank);
	snprintf(v->vm_tmp, sizeof(v->vm_tmp), "%s.tmp", v->vm_path);
	snprintf(v->rq_path, sizeof(v->rq_path), "%s/rank%d.rq", v->epoch_dir, v->rank);
	v->disk_tmp[0] = v->disk_path[0] = '\0';
	v->epoch_live = v->live && v->req.mode != VCCP_MODE_STOP;
	if (v->epoch_live) {
		begin_live(v);
		return;
	}
	cut_epoch(v);
}

/* Live: the RAM goes to files while the VM runs; the cut waits for every
 * rank's save to be READY (V_LIVE, V_LIVE_GATHER).  A save that cannot
 * start fails the epoch, which then aborts through the usual cut. */
static void begin_live(struct vccp *v)
{
	char why[256] = "";

	v->live_finishing = false;
	v->live_state = 0;
	const char *dirs[CKPT_MAX_DIRS] = { v->epoch_dir };
	for (int i = 0; i < v->nmore; i++)
		dirs[i + 1] = v->more_epoch[i];
	int r = v->live->begin(v->live_ctx, v->epoch, dirs, v->nmore + 1, why, sizeof(why));
	v->live_on = r == 0;
	if (r < 0)
		fail(v, r, "rank %d: live save: %s", v->rank, why);
	v->state = V_LIVE;
}

static void cut_epoch(struct vccp *v)
{
	if (v->test_delay_ms) {
		v->pause_at = vc_mono_s() + v->test_delay_ms / 1000.0;
		v->state = V_PREPAUSE;
		return;
	}
	settle_vm(v);
}

/* Hold first: from now on frames for this VM are part of the checkpoint's
 * receive queue.  Then let the still running VM read what is already on its
 * link: a frame there at the cut would be read by QEMU into its own net
 * queue, which the VM state does not include (see qemu-patches/).  Frames
 * the VM sends meanwhile are before its cut; its marker follows them. */
static void settle_vm(struct vccp *v)
{
	if (!v->test_late_hold_ms) {
		v->fab->hold(v->fab_ctx, true);
		v->settle_until = vc_mono_s() + SETTLE_MAX_S;
		v->state = V_SETTLE;
		return;
	}
	pause_vm(v);
}

static void stopped(struct vccp *v, int err, json_t *ret, const char *why)
{
	if (err == -ECHILD)
		fail(v, err, "rank %d: the VM is not running", v->rank);
	else if (err)
		fail(v, err, "rank %d: pausing the VM: %s", v->rank, why);
	v->me.t_pause = vc_wall_s();
	if (v->live_on && !err) {
		/* paused: the last dirty pages go now, beside the markers */
		int r = v->live->finish(v->live_ctx);
		v->live_finishing = r == 0;
		if (r < 0)
			fail(v, r, "rank %d: live save: finishing: %s", v->rank, strerror(-r));
	}
	if (v->test_late_hold_ms) {
		v->hold_at = vc_mono_s() + v->test_late_hold_ms / 1000.0;
		v->state = V_LATEHOLD;
		return;
	}
	v->fab->drain(v->fab_ctx, true);
	v->state = V_DRAIN;
	pr_info("epoch %llu: VM paused (%s)", (unsigned long long)v->epoch,
		v->rank == 0 ? v->reason : "coordinator's request");
}

static void pause_vm(struct vccp *v)
{
	v->state = V_STOPPING;
	call(v, "stop", NULL, -1, stopped);
}

/* -- the save: prepare (worker), QMP chain, follow (worker), finish ---- */

static void follow_done(struct vccp *v, void *arg)
{
	struct follow_job *j = arg;

	v->follow_busy = false;
	if (j->err && j->err != -ECANCELED)
		fail(v, j->err, "rank %d: %s", v->rank, j->why);
	else if (!j->err) {
		v->me.vm_size = j->size;
		v->me.vm_crc = j->crc;
	}
}

static void disk_done(struct vccp *v, void *arg)
{
	struct disk_job *j = arg;

	v->disk_busy = false;
	if (j->err && j->err != -ECANCELED)
		fail(v, j->err, "rank %d: %s", v->rank, j->why);
	else if (!j->err) {
		v->me.disk_size = j->size;
		v->me.disk_crc = j->crc;
	}
}

static void start_jobs(struct vccp *v)
{
	v->starting = false;
	if (failed(v))
		return;
	v->follow_busy = true;
	submit(v, vccpio_follow, &v->follow, &v->follow.err, follow_done);
	if (v->disk.frozen[0]) {
		v->disk_busy = true;
		submit(v, vccpio_disk, &v->disk, &v->disk.err, disk_done);
	}
}

/* The disk at the cut: freeze the active overlay (new writes go to a fresh
 * one); the worker flattens the frozen chain into a standalone image in the
 * epoch directory while the VM state is being saved. */
static void disk_frozen(struct vccp *v, int err, json_t *ret, const char *why)
{
	if (err) {
		fail(v, err, "rank %d: freezing the disk %s: %s", v->rank, v->disk_active, why);
		v->disk.frozen[0] = '\0';
	} else {
		snprintf(v->disk.frozen, sizeof(v->disk.frozen), "%s", v->disk_active);
		snprintf(v->disk_active, sizeof(v->disk_active), "%.*s.%llu",
			 (int)(sizeof(v->disk_active) - 24), v->disk.frozen,
			 (unsigned long long)v->epoch);
	}
	start_jobs(v);
}

static void migrating(struct vccp *v, int err, json_t *ret, const char *why)
{
	if (err) {
		fail(v, err, "rank %d: starting the VM state save: %s", v->rank, why);
		start_jobs(v);
		return;
	}
	v->migrate_started = true;
	if (!v->disk_device[0]) {
		v->disk.frozen[0] = '\0';
		start_jobs(v);
		return;
	}
	char next[PATH_MAX];
	snprintf(next, sizeof(next), "%.*s.%llu", (int)(sizeof(next) - 24), v->disk_active,
		 (unsigned long long)v->epoch);
	snprintf(v->disk_path, sizeof(v->disk_path), "%s/rank%d.disk.qcow2", v->epoch_dir, v->rank);
	snprintf(v->disk_tmp, sizeof(v->disk_tmp), "%s.tmp", v->disk_path);
	snprintf(v->disk.tmp, sizeof(v->disk.tmp), "%s", v->disk_tmp);
	snprintf(v->disk.path, sizeof(v->disk.path), "%s", v->disk_path);
	atomic_store(&v->disk.cancel, false);
	v->disk.err = 0;
	call(v, "blockdev-snapshot-sync",
	     json_pack("{s:s, s:s, s:s}", "device", v->disk_device, "snapshot-file", next,
		       "format", "qcow2"), -1, disk_frozen);
}

static void fd_given(struct vccp *v, int err, json_t *ret, const char *why)
{
	close(v->prep.wfd);	/* QEMU has its own copy now (or none) */
	v->prep.wfd = -1;
	if (err) {
		migrating(v, err, NULL, why);
		return;
	}
	call(v, "migrate", qmpmig_fd_uri_args("vccp-save"), -1, migrating);
}

/* A step before the save failed: the write end was never handed over. */
static bool save_step_failed(struct vccp *v, int err, const char *why)
{
	if (!err)
		return false;
	close(v->prep.wfd);
	v->prep.wfd = -1;
	migrating(v, err, NULL, why);
	return true;
}

static void bandwidth_set(struct vccp *v, int err, json_t *ret, const char *why)
{
	if (save_step_failed(v, err, why))
		return;
	call(v, "getfd", qmpmig_getfd_args("vccp-save"), v->prep.wfd, fd_given);
}

/* A TLM hop or a user's migration may have left capabilities on that
 * would make the checkpoint leave out the RAM or wait for a peer. */
static void caps_set(struct vccp *v, int err, json_t *ret, const char *why)
{
	if (save_step_failed(v, err, why))
		return;
	uint64_t bw = v->bandwidth_mibs ? (uint64_t)v->bandwidth_mibs << 20 : 0;
	call(v, "migrate-set-parameters", qmpmig_bandwidth_args(bw), -1, bandwidth_set);
}

static void prep_done(struct vccp *v, void *arg)
{
	struct prep_job *j = arg;

	v->step_done = true;
	if (j->err) {
		fail(v, j->err, "rank %d: %s", v->rank, j->why);
		v->starting = false;
		return;
	}
	v->follow.fd = j->rfd;
	snprintf(v->follow.tmp, sizeof(v->follow.tmp), "%s", v->vm_tmp);
	snprintf(v->follow.path, sizeof(v->follow.path), "%s", v->vm_path);
	atomic_store(&v->follow.qemu_done, false);
	atomic_store(&v->follow.cancel, false);
	atomic_store(&v->follow.followed, 0);
	v->follow.err = 0;
	if (failed(v) || !v->qmp) {
		close(j->wfd);
		j->wfd = -1;
		close(v->follow.fd);
		v->follow.fd = -1;
		fail(v, -ECHILD, "rank %d: the VM is not running", v->rank);
		v->starting = false;
		return;
	}
	json_t *caps = qmpmig_plain_caps_args();
	if (v->live_on) {
		/* the RAM is in the live files: the stream holds the devices */
		json_t *c;
		size_t i;
		json_array_foreach(json_object_get(caps, "capabilities"), i, c)
			if (!strcmp(json_string_value(json_object_get(c, "capability")),
				    "x-ignore-shared"))
				json_object_set_new(c, "state", json_true());
	}
	call(v, "migrate-set-capabilities", caps, -1, caps_set);
}

static void start_save(struct vccp *v)
{
	v->me.t_marked = vc_wall_s();
	v->last_progress_log = vc_mono_s();
	v->last_poll = 0;
	v->query_out = false;
	v->starting = true;
	v->step_done = false;
	memset(&v->prep, 0, sizeof(v->prep));
	v->prep.wfd = v->prep.rfd = -1;
	snprintf(v->prep.epoch_dir, sizeof(v->prep.epoch_dir), "%s", v->epoch_dir);
	snprintf(v->prep.tmp, sizeof(v->prep.tmp), "%s", v->vm_tmp);
	v->disk.frozen[0] = '\0';
	v->state = V_SAVING;
	submit(v, vccpio_prep, &v->prep, &v->prep.err, prep_done);
}

static void queried(struct vccp *v, int err, json_t *ret, const char *why)
{
	struct qmpmig_status st;

	v->query_out = false;
	if (err) {
		fail(v, err, "rank %d: query-migrate: %s", v->rank, why);
		return;
	}
	qmpmig_parse(ret, &st);
	v->bytes_saved = st.transferred;
	v->bytes_total = st.total;
	if (st.state == QMPMIG_COMPLETED) {
		v->migration_done = true;
		atomic_store(&v->follow.qemu_done, true);
	} else if (st.state == QMPMIG_FAILED) {
		fail(v, -EIO, "rank %d: saving the VM state to %s failed: %s", v->rank,
		     v->vm_tmp, st.error);
	} else if (vc_mono_s() - v->last_progress_log > 2.0) {
		v->last_progress_log = vc_mono_s();
		pr_info("epoch %llu: saved %.1f of %.1f MiB", (unsigned long long)v->epoch,
			v->bytes_saved / 1048576.0, v->bytes_total / 1048576.0);
	}
}

/* Live, at the cut: whether the RAM files are finished (or failed). */
static bool live_done(struct vccp *v)
{
	char why[256] = "", names[VCCP_LIVE_MAX_FILES][64];
	int r = v->live->poll(v->live_ctx, why, sizeof(why));

	if (r == 1 || r == 0)
		return false;
	v->live_finishing = false;
	if (r < 0) {
		fail(v, r, "rank %d: live save: %s", v->rank, why);
		return true;
	}
	int n = v->live->files(v->live_ctx, names, v->me.ram_size, VCCP_LIVE_MAX_FILES);
	v->me.ram_files = n > 0 ? (uint32_t)n : 0;
	return true;
}

/* V_SAVING: poll QEMU; when it and the worker are done, finish. */
static bool poll_save(struct vccp *v)
{
	if (failed(v)) {
		/* a failed epoch still waits for its jobs and commands */
		atomic_store(&v->follow.cancel, true);
		atomic_store(&v->disk.cancel, true);
	} else if (!v->qmp && !v->starting && !v->migration_done) {
		fail(v, -ECHILD, "rank %d: the VM went away during the save", v->rank);
		return false;
	} else if (!v->starting && !v->migration_done && !v->query_out &&
		   vc_mono_s() - v->last_poll >= POLL_MIGRATE_S) {
		v->last_poll = vc_mono_s();
		v->query_out = true;
		call(v, "query-migrate", NULL, -1, queried);
		return true;
	}
	if (v->starting || v->query_out || v->follow_busy || v->disk_busy || v->cmds)
		return false;
	if (v->live_finishing && !live_done(v))
		return false;
	if (!failed(v) && !v->migration_done)
		return false;
	end_save(v);
	return true;
}

static void finish_done(struct vccp *v, void *arg)
{
	struct finish_job *j = arg;

	v->fab->put_rq(v->fab_ctx, j->q);
	j->q = NULL;
	if (j->err) {
		fail(v, j->err, "rank %d: %s", v->rank, j->why);
	} else {
		v->me.rq_crc = j->crc;
		v->me.rq_size = j->size;
	}
	v->me.t_saved = vc_wall_s();
	v->me.status = firsterr_get(&v->err, NULL, v->me.err, sizeof(v->me.err));
	MPI_Igather(&v->me, sizeof(v->me), MPI_BYTE, v->all, sizeof(v->me), MPI_BYTE, 0,
		    v->comm, &v->coll);
	v->state = V_REPORT;
}

/* The VM state (and disk) are saved or the epoch failed: write the
 * receive queue and make the epoch durable, then report. */
static void end_save(struct vccp *v)
{
	if (v->follow.fd >= 0) {	/* prepared but the save never started */
		close(v->follow.fd);
		v->follow.fd = -1;
	}
	struct finish_job *j = &v->finish;
	memset(j, 0, sizeof(*j));
	j->q = v->fab->take_rq(v->fab_ctx);
	if (!j->q)
		fail(v, -ENOMEM, "rank %d: no memory for the receive queue", v->rank);
	v->me.rq_frames = j->q ? (uint32_t)rq_count(j->q) : 0;
	if (v->fab->cut)
		v->fab->cut(v->fab_ctx, v->epoch);
	v->state = V_FINISHING;
	if (failed(v)) {
		finish_done(v, j);	/* nothing to write */
		return;
	}
	snprintf(j->rq_path, sizeof(j->rq_path), "%s", v->rq_path);
	snprintf(j->vm_path, sizeof(j->vm_path), "%s", v->vm_path);
	snprintf(j->epoch_dir, sizeof(j->epoch_dir), "%s", v->epoch_dir);
	j->epoch = v->epoch;
	j->rank = v->rank;
	submit(v, vccpio_finish, j, &j->err, finish_done);
}

static json_t *file_entry(const char *name, uint64_t size, uint32_t crc)
{
	return json_pack("{s:s, s:I, s:I}", "file", name, "size", (json_int_t)size,
			 "crc32c", (json_int_t)crc);
}

static void start_decision(struct vccp *v)
{
	MPI_Ibcast(&v->decision, 1, MPI_INT32_T, 0, v->comm, &v->coll);
	v->state = V_DECIDE;
}

static void commit_done(struct vccp *v, void *arg)
{
	struct commit_job *j = arg;

	json_decref(j->manifest);	/* only when the job never ran */
	j->manifest = NULL;
	if (j->err) {
		pr_err("checkpoint epoch %llu aborted: %s", (unsigned long long)v->epoch, j->why);
		v->decision = DECIDE_ABORT;
		snprintf(v->reason, sizeof(v->reason), "%.63s", j->why);
	} else {
		v->decision = DECIDE_COMMIT;
		v->prev_epoch = v->epoch;
		if (j->pruned)
			pr_info("removed %d old checkpoint%s (--keep %d)", j->pruned,
				j->pruned == 1 ? "" : "s", v->keep);
	}
	start_decision(v);
}

/* Root: all reports are in.  Write the manifest (on the worker) or abort. */
static void decide(struct vccp *v)
{
	int failed = -1;

	for (int r = 0; r < v->size; r++)
		if (v->all[r].status && failed < 0)
			failed = r;
	if (failed >= 0) {
		pr_err("checkpoint epoch %llu aborted: %s", (unsigned long long)v->epoch,
		       v->all[failed].err);
		v->decision = DECIDE_ABORT;
		snprintf(v->reason, sizeof(v->reason), "%.60s", v->all[failed].err);
		start_decision(v);
		return;
	}
	json_t *ranks = json_array();
	for (int r = 0; r < v->size; r++) {
		struct report *p = &v->all[r];
		char vmn[64], rqn[64];
		snprintf(vmn, sizeof(vmn), "rank%d.vmstate", r);
		snprintf(rqn, sizeof(rqn), "rank%d.rq", r);
		json_t *rq = file_entry(rqn, p->rq_size, p->rq_crc);
		json_object_set_new(rq, "frames", json_integer(p->rq_frames));
		json_t *ri = json_pack("{s:i, s:o, s:o, s:{s:f, s:f, s:f}}",
			"rank", r, "vmstate", file_entry(vmn, p->vm_size, p->vm_crc), "rq", rq,
			"timing", "pause_unix", p->t_pause, "flush_s", p->t_marked - p->t_pause,
			"save_s", p->t_saved - p->t_marked);
		if (p->ram_files) {
			json_t *ram = json_array();
			for (uint32_t i = 0; i < p->ram_files && i < VCCP_LIVE_MAX_FILES; i++) {
				char fn[64];
				snprintf(fn, sizeof(fn), "rank%d.ram.%u", r, i);
				json_t *f = json_pack("{s:s, s:I}", "file", fn,
						      "size", (json_int_t)p->ram_size[i]);
				if (v->nmore)	/* where livesrc put it */
					json_object_set_new(f, "dir", json_integer(ckpt_ram_dir(
						r, (int)p->ram_files, (int)i, v->nmore + 1)));
				json_array_append_new(ram, f);
			}
			json_object_set_new(ri, "ram", ram);
			json_object_set_new(json_object_get(ri, "timing"), "live_pass_s",
					    json_real(p->t_ready - p->t_request));
		}
		if (p->disk_size) {
			char dn[64];
			snprintf(dn, sizeof(dn), "rank%d.disk.qcow2", r);
			json_object_set_new(ri, "disk", file_entry(dn, p->disk_size, p->disk_crc));
		}
		json_array_append_new(ranks, ri);
	}
	time_t now = time(NULL);
	char stamp[40];
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	struct commit_job *j = &v->commit;
	memset(j, 0, sizeof(*j));
	/* a tree of the job's own: no reference shared across threads */
	j->manifest = json_pack("{s:I, s:i, s:s, s:s, s:o, s:o}", "epoch", (json_int_t)v->epoch,
				"nranks", v->size, "created", stamp,
				"vcluster_version", VC_VERSION,
				"config", json_deep_copy(v->config), "ranks", ranks);
	json_object_set_new(j->manifest, "mode", json_string(v->epoch_live ? "live" : "stop"));
	if (v->epoch_live && v->nmore) {
		/* the RAM files' "dir" indexes these (manifest.h) */
		json_t *dirs = json_array();
		json_array_append_new(dirs, json_string(v->dir));
		for (int i = 0; i < v->nmore; i++)
			json_array_append_new(dirs, json_string(v->more[i]));
		json_object_set_new(j->manifest, "dirs", dirs);
	}
	for (int i = 0; i < v->nmore; i++)
		snprintf(j->more[i], sizeof(j->more[i]), "%s", v->more[i]);
	j->nmore = v->nmore;
	snprintf(j->dir, sizeof(j->dir), "%s", v->dir);
	snprintf(j->epoch_dir, sizeof(j->epoch_dir), "%s", v->epoch_dir);
	j->epoch = v->epoch;
	j->prev_epoch = v->prev_epoch;
	j->keep = v->keep;
	v->state = V_COMMITTING;
	submit(v, vccpio_commit, j, &j->err, commit_done);
}

static void resumed(struct vccp *v, int err, json_t *ret, const char *why)
{
	if (err && err != -ECHILD)
		pr_err("epoch %llu: resuming the VM: %s", (unsigned long long)v->epoch, why);
	v->t_resume = vc_wall_s();
	if (v->on_resume && v->qmp)
		v->on_resume(v->ctx);
	pr_info("epoch %llu %s; VM resumed; %zu frames from the receive queue go first",
		(unsigned long long)v->epoch,
		v->decision == DECIDE_COMMIT ? "committed" : "aborted",
		v->fab->rq_count(v->fab_ctx));
	pr_info("VCCP-RANK epoch=%llu rank=%d pause_unix=%.6f resume_unix=%.6f flush_s=%.3f "
		"save_s=%.3f wait_s=%.3f bytes=%llu rq_frames=%u",
		(unsigned long long)v->epoch, v->rank, v->me.t_pause, v->t_resume,
		v->me.t_marked - v->me.t_pause, v->me.t_saved - v->me.t_marked,
		v->t_resume - v->me.t_saved, (unsigned long long)(v->me.vm_size + v->me.rq_size),
		v->me.rq_frames);
	MPI_Igather(&v->t_resume, 1, MPI_DOUBLE, v->resume_times, 1, MPI_DOUBLE, 0, v->comm,
		    &v->coll);
	v->state = V_TIMES;
}

static void cancelled(struct vccp *v, int err, json_t *ret, const char *why)
{
	if (err && err != -ECHILD)
		pr_warn("epoch %llu: migrate_cancel: %s", (unsigned long long)v->epoch, why);
	call(v, "cont", NULL, -1, resumed);
}

static void resume(struct vccp *v)
{
	if (v->decision != DECIDE_COMMIT) {
		struct cleanup_job *j = calloc(1, sizeof(*j));
		if (j) {
			snprintf(j->paths[0], PATH_MAX, "%s", v->vm_tmp);
			snprintf(j->paths[1], PATH_MAX, "%s", v->vm_path);
			snprintf(j->paths[2], PATH_MAX, "%s", v->rq_path);
			snprintf(j->paths[3], PATH_MAX, "%s", v->disk_tmp);
			snprintf(j->paths[4], PATH_MAX, "%s", v->disk_path);
			submit(v, vccpio_cleanup, j, NULL, cleanup_done);
		}
	}
	if (v->live_on) {
		v->live->end(v->live_ctx);	/* dirty log off, save dropped */
		v->live_on = v->live_finishing = false;
	}
	v->fab->hold(v->fab_ctx, false);
	v->state = V_CONT;
	if (v->migrate_started && !v->migration_done) {
		/* a save cut short: a migration still running would stop the
		 * VM again when it completes */
		call(v, "migrate_cancel", NULL, -1, cancelled);
		return;
	}
	call(v, "cont", NULL, -1, resumed);
}

/* Root: the paper's figures, one machine-readable line per checkpoint. */
static void report_times(struct vccp *v)
{
	double save = 0, flush = 0, wait = 0, pmin = 1e300, pmax = 0, rmin = 1e300, rmax = 0;
	uint64_t bytes = 0, frames = 0;

	for (int r = 0; r < v->size; r++) {
		struct report *p = &v->all[r];
		double s = p->t_saved - p->t_marked, f = p->t_marked - p->t_pause;
		double w = v->resume_times[r] - p->t_saved;
		save = s > save ? s : save;
		flush = f > flush ? f : flush;
		wait = w > wait ? w : wait;
		pmin = p->t_pause < pmin ? p->t_pause : pmin;
		pmax = p->t_pause > pmax ? p->t_pause : pmax;
		rmin = v->resume_times[r] < rmin ? v->resume_times[r] : rmin;
		rmax = v->resume_times[r] > rmax ? v->resume_times[r] : rmax;
		bytes += p->vm_size + p->rq_size + p->disk_size;
		frames += p->rq_frames;
	}
	bool ok = v->decision == DECIDE_COMMIT;
	double total = rmax - v->all[0].t_request;
	log_msg(LOG_INFO, LOG_PREFIX, 0,
		"VCCP-CHECKPOINT epoch=%llu status=%s ranks=%d bytes=%llu rq_frames=%llu "
		"total_s=%.3f save_max_s=%.3f flush_max_s=%.3f wait_max_s=%.3f "
		"pause_skew_ms=%.3f resume_skew_ms=%.3f dir=%s",
		(unsigned long long)v->epoch, ok ? "ok" : "aborted", v->size,
		(unsigned long long)bytes, (unsigned long long)frames, total, save, flush, wait,
		(pmax - pmin) * 1e3, (rmax - rmin) * 1e3, v->epoch_dir);
	json_t *ranks = json_array();
	for (int r = 0; r < v->size; r++) {
		struct report *p = &v->all[r];
		json_array_append_new(ranks, json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:I, s:i}",
			"rank", r, "pause_unix", p->t_pause, "resume_unix", v->resume_times[r],
			"flush_s", p->t_marked - p->t_pause, "save_s", p->t_saved - p->t_marked,
			"wait_s", v->resume_times[r] - p->t_saved, "bytes", (json_int_t)p->vm_size,
			"rq_frames", (int)p->rq_frames));
	}
	json_decref(v->last);
	v->last = json_pack("{s:I, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:o}",
			    "epoch", (json_int_t)v->epoch, "status", ok ? "ok" : "aborted",
			    "dir", v->epoch_dir, "total_s", total, "save_max_s", save,
			    "flush_max_s", flush, "wait_max_s", wait,
			    "pause_skew_ms", (pmax - pmin) * 1e3,
			    "resume_skew_ms", (rmax - rmin) * 1e3, "bytes", (json_int_t)bytes,
			    "rq_frames", (json_int_t)frames, "ranks", ranks);
	if (!ok) {
		/* Nothing of an aborted epoch may look like a checkpoint. */
		struct cleanup_job *j = calloc(1, sizeof(*j));
		if (j) {
			snprintf(j->tree, sizeof(j->tree), "%s", v->epoch_dir);
			for (int i = 0; i < v->nmore; i++)	/* RAM files there */
				snprintf(j->more[i], sizeof(j->more[i]), "%s", v->more_epoch[i]);
			submit(v, vccpio_cleanup, j, NULL, cleanup_done);
		}
	}
}

int vccp_request(struct vccp *v, const char *reason)
{
	return vccp_request_mode(v, reason, VCCP_MODE_DEFAULT);
}

int vccp_request_mode(struct vccp *v, const char *reason, int mode)
{
	if (v->rank != 0)
		return -EINVAL;
	if (v->state != V_IDLE || v->ended)
		return -EBUSY;
	snprintf(v->reason, sizeof(v->reason), "%s", reason);
	if (mode == VCCP_MODE_LIVE && !v->live)
		return -EINVAL;
	v->req = (struct request){ .epoch = v->next_epoch++, .cmd = CMD_CHECKPOINT,
				   .mode = mode };
	pr_info("checkpoint epoch %llu requested (%s)", (unsigned long long)v->req.epoch, reason);
	MPI_Ibcast(&v->req, sizeof(v->req), MPI_BYTE, 0, v->comm, &v->req_r);
	begin_epoch(v);
	return 0;
}

void vccp_interval_off(struct vccp *v, const char *why)
{
	if (!v || !v->interval_s)
		return;
	v->interval_s = 0;
	pr_info("no more interval checkpoints: %s", why);
}

/* true when r completed; an MPI failure ends the protocol (*err). */
static bool test(struct vccp *v, MPI_Request *r, int *err)
{
	int done = 0;
	if (*r == MPI_REQUEST_NULL)
		return true;
	int rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
	if (rc != MPI_SUCCESS) {
		char s[MPI_MAX_ERROR_STRING];
		int len = 0;
		MPI_Error_string(rc, s, &len);
		pr_err("checkpoint epoch %llu: MPI failure in a collective of the %d ranks "
		       "(state %d): %s", (unsigned long long)v->epoch, v->size, v->state, s);
		*err = -EIO;
		return false;
	}
	return done;
}

int vccp_progress(struct vccp *v, bool *busy)
{
	int err = 0;

	*busy = false;
	switch (v->state) {
	case V_IDLE:
		if (v->rank != 0) {
			if (v->ended || !test(v, &v->req_r, &err))
				return err;
			*busy = true;
			if (v->req.cmd == CMD_END) {
				v->ended = true;
				return 0;
			}
			begin_epoch(v);
		} else if (v->interval_s && !v->ended && v->qmp &&
			   vc_mono_s() - v->last_end >= v->interval_s) {
			vccp_request(v, "--checkpoint-interval");
			*busy = true;
		}
		return 0;
	case V_LIVE: {
		char why[256] = "";
		int r = v->live_on ? v->live->poll(v->live_ctx, why, sizeof(why)) : -ECANCELED;
		if (r == 0)
			return 0;
		if (r < 0 && v->live_on)
			fail(v, r, "rank %d: live save: %s", v->rank, why);
		v->me.t_ready = vc_wall_s();
		MPI_Ibarrier(v->comm, &v->coll);
		v->state = V_LIVE_GATHER;
		*busy = true;
		return 0;
	}
	case V_LIVE_GATHER:
		if (!test(v, &v->coll, &err))
			return err;
		if (v->rank == 0)
			pr_info("epoch %llu: every rank's RAM pass is done; the cut begins",
				(unsigned long long)v->epoch);
		cut_epoch(v);
		*busy = true;
		return 0;
	case V_PREPAUSE:
		if (vc_mono_s() < v->pause_at)
			return 0;
		settle_vm(v);
		*busy = true;
		return 0;
	case V_SETTLE: {
		int unread = v->fab->unread(v->fab_ctx);
		if (unread > 0 && vc_mono_s() < v->settle_until)
			return 0;
		if (unread > 0)
			pr_info("epoch %llu: %d bytes still unread by QEMU at the pause",
				(unsigned long long)v->epoch, unread);
		pause_vm(v);
		*busy = true;
		return 0;
	}
	case V_STOPPING:
	case V_FINISHING:
	case V_COMMITTING:
	case V_CONT:
		return 0;	/* a reply or a job moves us on */
	case V_LATEHOLD:
		if (vc_mono_s() < v->hold_at)
			return 0;
		v->fab->hold(v->fab_ctx, true);
		v->fab->drain(v->fab_ctx, true);
		v->state = V_DRAIN;
		*busy = true;
		return 0;
	case V_DRAIN:
		/* The VM is paused: what it wrote before is on the link. */
		if (!v->fab->link_empty(v->fab_ctx))
			return 0;
		v->fab->drain(v->fab_ctx, false);
		if (v->fab->send_marker(v->fab_ctx, v->epoch) < 0)
			fail(v, -ENOMEM, "rank %d: cannot queue markers", v->rank);
		v->state = V_MARKED;
		*busy = true;
		return 0;
	case V_MARKED:
		if (!all_markers(v))
			return 0;
		/* Channels empty: the receive queue is complete. */
		start_save(v);
		*busy = true;
		return 0;
	case V_SAVING:
		*busy = poll_save(v);
		return 0;
	case V_REPORT:
		if (!test(v, &v->coll, &err))
			return err;
		*busy = true;
		if (v->rank == 0)
			decide(v);
		else
			start_decision(v);
		return 0;
	case V_DECIDE:
		if (!test(v, &v->coll, &err))
			return err;
		MPI_Ibarrier(v->comm, &v->coll);
		v->state = V_BARRIER;
		*busy = true;
		return 0;
	case V_BARRIER:
		if (!test(v, &v->coll, &err))
			return err;
		resume(v);
		*busy = true;
		return 0;
	case V_TIMES:
		if (!test(v, &v->coll, &err))
			return err;
		if (v->rank == 0)
			report_times(v);
		v->state = V_IDLE;
		v->last_end = vc_mono_s();
		v->bytes_saved = 0;
		post_request(v);
		*busy = true;
		return 0;
	}
	return 0;
}

int vccp_finish(struct vccp *v, int timeout_ms)
{
	double deadline = vc_mono_s() + timeout_ms / 1000.0;
	int err = 0;
	bool busy;

	/* Let an epoch under way end first (it aborts if a VM has gone). */
	while (v->state != V_IDLE) {
		if (vc_mono_s() > deadline)
			return -ETIMEDOUT;
		if (vccp_progress(v, &busy) < 0)
			return -EIO;
		v->fab->progress(v->fab_ctx);
	}
	if (v->rank == 0) {
		if (!v->ended) {
			v->req = (struct request){ .cmd = CMD_END };
			MPI_Ibcast(&v->req, sizeof(v->req), MPI_BYTE, 0, v->comm, &v->req_r);
			v->ended = true;
		}
	}
	while (!test(v, &v->req_r, &err)) {
		if (err || vc_mono_s() > deadline)
			return err ? err : -ETIMEDOUT;
		v->fab->progress(v->fab_ctx);
	}
	if (v->rank != 0 && v->req.cmd == CMD_CHECKPOINT) {
		/* A request crossed our exit: it cannot be served (the VMs
		 * are gone); answer it as a failed epoch. */
		v->req.cmd = 0;
		begin_epoch(v);
		return vccp_finish(v, (int)((deadline - vc_mono_s()) * 1000));
	}
	v->ended = true;
	/* Our file work (an aborted epoch's clean-up) ends before we do. */
	while (v->jobs) {
		if (vc_mono_s() > deadline)
			return -ETIMEDOUT;
		v->fab->progress(v->fab_ctx);
	}
	return 0;
}
