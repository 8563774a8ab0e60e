#define LOG_PREFIX "vccp"
#include "vctime.h"
#include "vccp.h"

#include "afile.h"
#include "fabric.h"
#include "log.h"
#include "manifest.h"
#include "qmp.h"
#include "rq.h"
#include "vcfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD_CHECKPOINT	1
#define CMD_END		2
#define DECIDE_COMMIT	1
#define DECIDE_ABORT	2
#define QMP_TIMEOUT_MS	10000
#define POLL_MIGRATE_S	0.02
/* How long a held VM may take to read what is already on its link. */
#define SETTLE_MAX_S	0.2
/* QEMU's default max-bandwidth (128 MiB/s) would cap a paused save. */
#define SAVE_BANDWIDTH	"1099511627776"

enum vstate {
	V_IDLE,
	V_PREPAUSE,	/* test knob: pausing later than the others */
	V_LATEHOLD,	/* test knob: delivering to the paused VM a while */
	V_SETTLE,	/* held; the running VM takes what is on its link */
	V_DRAIN,	/* paused; reading what the VM had written */
	V_MARKED,	/* markers sent; waiting for everyone's */
	V_SAVING,	/* QEMU writes the VM state */
	V_REPORT,	/* Igather of the reports */
	V_DECIDE,	/* Ibcast of the decision */
	V_BARRIER,	/* Ibarrier, then cont */
	V_TIMES,	/* Igather of resume times (VM already running) */
};

struct request {
	uint64_t epoch;
	int32_t cmd;
	int32_t pad;
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
	char err[200];
};

struct vccp {
	MPI_Comm comm;
	int rank, size;
	struct fabric *fab;
	struct qmp *qmp;
	char dir[PATH_MAX];
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
	uint64_t *marker_epoch;		/* newest marker seen from each rank */
	char epoch_dir[PATH_MAX];
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
	pid_t convert_pid;		/* qemu-img flattening the frozen chain */
	int save_fd;			/* our read/sync view of the file QEMU writes */
	uint64_t crc_off;		/* bytes of it already in crc */
	uint32_t crc;
	bool migration_done;
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

struct vccp *vccp_create(MPI_Comm comm, struct fabric *f, const struct vccp_opts *o)
{
	struct vccp *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	MPI_Comm_dup(comm, &v->comm);
	MPI_Comm_rank(v->comm, &v->rank);
	MPI_Comm_size(v->comm, &v->size);
	v->fab = f;
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
	v->config = json_incref(o->config);
	v->marker_epoch = calloc((size_t)v->size, sizeof(uint64_t));
	v->all = calloc((size_t)v->size, sizeof(struct report));
	v->resume_times = calloc((size_t)v->size, sizeof(double));
	v->req_r = MPI_REQUEST_NULL;
	v->coll = MPI_REQUEST_NULL;
	v->save_fd = -1;
	if (o->disk_device) {
		snprintf(v->disk_device, sizeof(v->disk_device), "%s", o->disk_device);
		snprintf(v->disk_active, sizeof(v->disk_active), "%s", o->disk_active);
	}
	v->last_end = vc_mono_s();
	if (v->rank == 0)
		v->next_epoch = ckpt_next_epoch(v->dir);
	MPI_Bcast(&v->next_epoch, 1, MPI_UINT64_T, 0, v->comm);
	fabric_set_marker_cb(f, on_marker, v);
	post_request(v);
	return v;
}

void vccp_destroy(struct vccp *v)
{
	if (!v)
		return;
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

/* Record the first failure of this rank in this epoch. */
static void fail(struct vccp *v, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct vccp *v, int err, const char *fmt, ...)
{
	va_list ap;
	if (v->me.status)
		return;
	v->me.status = err ? err : -EIO;
	va_start(ap, fmt);
	vsnprintf(v->me.err, sizeof(v->me.err), fmt, ap);
	va_end(ap);
	pr_err("checkpoint epoch %llu: %s", (unsigned long long)v->epoch, v->me.err);
}

/* ---- the epoch, step by step ---------------------------------------- */

static void pause_vm(struct vccp *v);
static void settle_vm(struct vccp *v);

static void begin_epoch(struct vccp *v)
{
	v->epoch = v->req.epoch;
	memset(&v->me, 0, sizeof(v->me));
	v->me.rank = v->rank;
	v->me.t_request = vc_wall_s();
	v->bytes_saved = v->bytes_total = 0;
	ckpt_epoch_dir(v->dir, v->epoch, v->epoch_dir, sizeof(v->epoch_dir));
	snprintf(v->vm_path, sizeof(v->vm_path), "%s/rank%d.vmstate", v->epoch_dir, v->rank);
	snprintf(v->vm_tmp, sizeof(v->vm_tmp), "%s.tmp", v->vm_path);
	snprintf(v->rq_path, sizeof(v->rq_path), "%s/rank%d.rq", v->epoch_dir, v->rank);
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
		fabric_hold(v->fab, true);
		v->settle_until = vc_mono_s() + SETTLE_MAX_S;
		v->state = V_SETTLE;
		return;
	}
	pause_vm(v);
}

static void pause_vm(struct vccp *v)
{
	char why[256];

	if (!v->qmp) {
		fail(v, -ECHILD, "rank %d: the VM is not running", v->rank);
	} else if (qmp_exec(v->qmp, "stop", NULL, NULL, QMP_TIMEOUT_MS, why, sizeof(why)) < 0) {
		fail(v, -EIO, "rank %d: pausing the VM: %s", v->rank, why);
	}
	v->me.t_pause = vc_wall_s();
	if (v->test_late_hold_ms) {
		v->hold_at = vc_mono_s() + v->test_late_hold_ms / 1000.0;
		v->state = V_LATEHOLD;
		return;
	}
	fabric_drain_vm(v->fab, true);
	v->state = V_DRAIN;
	pr_info("epoch %llu: VM paused (%s)", (unsigned long long)v->epoch,
		v->rank == 0 ? v->reason : "coordinator's request");
}

/* The disk at the cut: freeze the active overlay (new writes go to a fresh
 * one) and flatten the frozen chain into a standalone image in the epoch
 * directory while the VM state is being saved. */
static void start_disk(struct vccp *v)
{
	char why[256], next[PATH_MAX];

	snprintf(next, sizeof(next), "%.*s.%llu", (int)(sizeof(next) - 24), v->disk_active,
		 (unsigned long long)v->epoch);
	snprintf(v->disk_path, sizeof(v->disk_path), "%s/rank%d.disk.qcow2", v->epoch_dir, v->rank);
	snprintf(v->disk_tmp, sizeof(v->disk_tmp), "%s.tmp", v->disk_path);
	int r = qmp_exec(v->qmp, "blockdev-snapshot-sync",
			 json_pack("{s:s, s:s, s:s}", "device", v->disk_device,
				   "snapshot-file", next, "format", "qcow2"),
			 NULL, QMP_TIMEOUT_MS, why, sizeof(why));
	if (r < 0) {
		fail(v, r, "rank %d: freezing the disk %s: %s", v->rank, v->disk_active, why);
		return;
	}
	char frozen[PATH_MAX];
	snprintf(frozen, sizeof(frozen), "%s", v->disk_active);
	snprintf(v->disk_active, sizeof(v->disk_active), "%s", next);
	v->convert_pid = fork();
	if (v->convert_pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(devnull, 1);
		execlp("qemu-img", "qemu-img", "convert", "-q", "-O", "qcow2", frozen,
		       v->disk_tmp, (char *)NULL);
		_exit(127);
	}
	if (v->convert_pid < 0)
		fail(v, -errno, "rank %d: fork for qemu-img: %s", v->rank, strerror(errno));
}

/* 1 when the disk copy is finished (or there is none), 0 while it runs. */
static int poll_disk(struct vccp *v)
{
	int st;

	if (v->convert_pid <= 0)
		return 1;
	pid_t r = waitpid(v->convert_pid, &st, WNOHANG);
	if (r == 0)
		return 0;
	v->convert_pid = 0;
	if (r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail(v, -EIO, "rank %d: qemu-img could not copy the disk to %s (disk full?)",
		     v->rank, v->disk_tmp);
	return 1;
}

static void start_save(struct vccp *v)
{
	char why[256];
	int fd, r;

	v->me.t_marked = vc_wall_s();
	v->last_progress_log = vc_mono_s();
	r = afile_mkdir_p(v->epoch_dir, 0700);
	if (r < 0) {
		fail(v, r, "rank %d: %s: %s", v->rank, v->epoch_dir, strerror(-r));
		return;
	}
	if (v->me.status || !v->qmp)
		return;
	fd = open(v->vm_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fail(v, -errno, "rank %d: %s: %s", v->rank, v->vm_tmp, strerror(errno));
		return;
	}
	v->save_fd = open(v->vm_tmp, O_RDONLY | O_CLOEXEC);
	v->migration_done = false;
	v->crc_off = 0;
	v->crc = 0;
	json_int_t bw = v->bandwidth_mibs ? (json_int_t)v->bandwidth_mibs << 20 :
			(json_int_t)strtoll(SAVE_BANDWIDTH, NULL, 10);
	r = qmp_exec(v->qmp, "migrate-set-parameters", json_pack("{s:I}", "max-bandwidth", bw),
		     NULL, QMP_TIMEOUT_MS, why, sizeof(why));
	if (r == 0)
		r = qmp_getfd(v->qmp, "vccp-save", fd, QMP_TIMEOUT_MS, why, sizeof(why));
	close(fd);
	if (r == 0)
		r = qmp_exec(v->qmp, "migrate", json_pack("{s:s}", "uri", "fd:vccp-save"), NULL,
			     QMP_TIMEOUT_MS, why, sizeof(why));
	if (r < 0) {
		fail(v, r, "rank %d: starting the VM state save: %s", v->rank, why);
		return;
	}
	if (v->disk_device[0])
		start_disk(v);
}

/* Overlap the tail work with QEMU's writing: start writeback of what it has
 * written (so the final fsync finds little left) and fold into the CRC what
 * it has finished with.  QEMU writes the stream sequentially in buffers of
 * tens of KiB and never rewrites, so everything more than `lag` bytes below
 * the end is final.  At most `budget` bytes per call keep the loop lively. */
static int crc_catch_up(struct vccp *v, uint64_t lag, uint64_t budget)
{
	static uint8_t buf[1 << 20];
	struct stat st;

	if (v->save_fd < 0 || fstat(v->save_fd, &st) < 0)
		return -EIO;
	sync_file_range(v->save_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	uint64_t upto = (uint64_t)st.st_size > lag ? (uint64_t)st.st_size - lag : 0;
	while (v->crc_off < upto && budget) {
		size_t want = upto - v->crc_off < sizeof(buf) ? upto - v->crc_off : sizeof(buf);
		ssize_t n = pread(v->save_fd, buf, want, (off_t)v->crc_off);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		v->crc = vcfmt_crc32c(v->crc, buf, (size_t)n);
		v->crc_off += (uint64_t)n;
		budget = budget > (uint64_t)n ? budget - (uint64_t)n : 0;
	}
	return 0;
}

/* 1: finished (ok or failed), 0: still running. */
static int poll_save(struct vccp *v)
{
	char why[256];
	json_t *st;

	if (v->me.status || !v->qmp) {
		/* a failed epoch still waits for its disk copy to end */
		if (v->convert_pid > 0) {
			kill(v->convert_pid, SIGKILL);
			waitpid(v->convert_pid, NULL, 0);
			v->convert_pid = 0;
		}
		return 1;
	}
	if (vc_mono_s() - v->last_poll < POLL_MIGRATE_S)
		return 0;
	v->last_poll = vc_mono_s();
	crc_catch_up(v, 1 << 20, 64 << 20);
	if (v->migration_done)
		return poll_disk(v);
	if (qmp_exec(v->qmp, "query-migrate", NULL, &st, QMP_TIMEOUT_MS, why, sizeof(why)) < 0) {
		fail(v, -EIO, "rank %d: query-migrate: %s", v->rank, why);
		return 1;
	}
	const char *status = json_string_value(json_object_get(st, "status"));
	json_t *ram = json_object_get(st, "ram");
	if (ram) {
		v->bytes_saved = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
		v->bytes_total = (uint64_t)json_integer_value(json_object_get(ram, "total"));
	}
	int done = 0;
	if (status && !strcmp(status, "completed")) {
		v->migration_done = true;
		done = poll_disk(v);
	} else if (status && (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
		const char *desc = json_string_value(json_object_get(st, "error-desc"));
		fail(v, -EIO, "rank %d: saving the VM state to %s failed: %s", v->rank,
		     v->vm_tmp, desc ? desc : status);
		done = 1;
	} else if (vc_mono_s() - v->last_progress_log > 2.0) {
		v->last_progress_log = vc_mono_s();
		pr_info("epoch %llu: saved %.1f of %.1f MiB", (unsigned long long)v->epoch,
			v->bytes_saved / 1048576.0, v->bytes_total / 1048576.0);
	}
	json_decref(st);
	return done;
}

static void finish_save(struct vccp *v)
{
	int r, fd;
	uint32_t crc;
	uint64_t size;

	if (v->me.status)
		goto out;
	/* QEMU is done: the rest of the CRC, then durable before it is
	 * named: fsync, rename, fsync the directory. */
	r = crc_catch_up(v, 0, UINT64_MAX);
	if (r < 0) {
		fail(v, r, "rank %d: reading back %s: %s", v->rank, v->vm_tmp, strerror(-r));
		goto out;
	}
	crc = v->crc;
	size = v->crc_off;
	fd = v->save_fd;
	if (fsync(fd) < 0) {
		fail(v, -errno, "rank %d: fsync %s: %s", v->rank, v->vm_tmp, strerror(errno));
		goto out;
	}
	if (rename(v->vm_tmp, v->vm_path) < 0) {
		fail(v, -errno, "rank %d: rename %s: %s", v->rank, v->vm_tmp, strerror(errno));
		goto out;
	}
	v->me.vm_size = size;
	v->me.vm_crc = crc;
	struct rq *q = fabric_rq(v->fab);
	r = rq_save(q, v->rq_path, v->epoch, v->rank, &v->me.rq_crc);
	if (r < 0) {
		fail(v, r, "rank %d: writing %s: %s", v->rank, v->rq_path, strerror(-r));
		goto out;
	}
	struct stat st;
	stat(v->rq_path, &st);
	v->me.rq_size = (uint64_t)st.st_size;
	v->me.rq_frames = (uint32_t)rq_count(q);
	if (v->disk_device[0]) {
		int dfd = open(v->disk_tmp, O_RDONLY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0) {
			fail(v, -errno, "rank %d: fsync %s: %s", v->rank, v->disk_tmp, strerror(errno));
			if (dfd >= 0)
				close(dfd);
			goto out;
		}
		close(dfd);
		r = ckpt_file_crc(v->disk_tmp, &v->me.disk_crc, &v->me.disk_size);
		if (r == 0 && rename(v->disk_tmp, v->disk_path) < 0)
			r = -errno;
		if (r < 0) {
			fail(v, r, "rank %d: %s: %s", v->rank, v->disk_tmp, strerror(-r));
			goto out;
		}
	}
	afile_sync_dir_of(v->vm_path);
out:
	if (v->save_fd >= 0)
		close(v->save_fd);
	v->save_fd = -1;
	v->me.t_saved = vc_wall_s();
	MPI_Igather(&v->me, sizeof(v->me), MPI_BYTE, v->all, sizeof(v->me), MPI_BYTE, 0,
		    v->comm, &v->coll);
	v->state = V_REPORT;
}

static json_t *file_entry(const char *name, uint64_t size, uint32_t crc)
{
	return json_pack("{s:s, s:I, s:I}", "file", name, "size", (json_int_t)size,
			 "crc32c", (json_int_t)crc);
}

/* Root: all reports are in.  Write the manifest or abort. */
static void decide(struct vccp *v)
{
	int failed = -1;
	char why[256];

	for (int r = 0; r < v->size; r++)
		if (v->all[r].status && failed < 0)
			failed = r;
	if (failed >= 0) {
		pr_err("checkpoint epoch %llu aborted: %s", (unsigned long long)v->epoch,
		       v->all[failed].err);
		v->decision = DECIDE_ABORT;
		snprintf(v->reason, sizeof(v->reason), "%.60s", v->all[failed].err);
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
	json_t *m = json_pack("{s:I, s:i, s:s, s:s, s:O, s:o}", "epoch", (json_int_t)v->epoch,
			      "nranks", v->size, "created", stamp, "vcluster_version", VC_VERSION,
			      "config", v->config, "ranks", ranks);
	int r = manifest_write(v->epoch_dir, m);
	json_decref(m);
	if (r == 0)
		r = ckpt_set_latest(v->dir, v->epoch);
	if (r < 0) {
		snprintf(why, sizeof(why), "writing the manifest of %s: %s", v->epoch_dir,
			 strerror(-r));
		pr_err("checkpoint epoch %llu aborted: %s", (unsigned long long)v->epoch, why);
		char mpath[PATH_MAX + 16];
		snprintf(mpath, sizeof(mpath), "%s/manifest", v->epoch_dir);
		unlink(mpath);
		v->decision = DECIDE_ABORT;
		snprintf(v->reason, sizeof(v->reason), "manifest: %s", strerror(-r));
		return;
	}
	v->decision = DECIDE_COMMIT;
	if (v->keep > 0) {
		int n = ckpt_prune(v->dir, v->keep, v->epoch);
		if (n)
			pr_info("removed %d old checkpoint%s (--keep %d)", n, n == 1 ? "" : "s", v->keep);
	}
}

static void resume(struct vccp *v)
{
	char why[256];

	if (v->decision != DECIDE_COMMIT) {
		unlink(v->vm_tmp);
		unlink(v->vm_path);
		unlink(v->rq_path);
		if (v->disk_device[0]) {
			unlink(v->disk_tmp);
			unlink(v->disk_path);
		}
	}
	fabric_hold(v->fab, false);
	if (v->qmp && qmp_exec(v->qmp, "cont", NULL, NULL, QMP_TIMEOUT_MS, why, sizeof(why)) < 0)
		pr_err("epoch %llu: resuming the VM: %s", (unsigned long long)v->epoch, why);
	v->t_resume = vc_wall_s();
	if (v->on_resume && v->qmp)
		v->on_resume(v->ctx);
	pr_info("epoch %llu %s; VM resumed; %zu frames from the receive queue go first",
		(unsigned long long)v->epoch,
		v->decision == DECIDE_COMMIT ? "committed" : "aborted",
		rq_count(fabric_rq(v->fab)));
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
		ckpt_remove_tree(v->epoch_dir);
	}
}

int vccp_request(struct vccp *v, const char *reason)
{
	if (v->rank != 0)
		return -EINVAL;
	if (v->state != V_IDLE || v->ended)
		return -EBUSY;
	snprintf(v->reason, sizeof(v->reason), "%s", reason);
	v->req = (struct request){ .epoch = v->next_epoch++, .cmd = CMD_CHECKPOINT };
	pr_info("checkpoint epoch %llu requested (%s)", (unsigned long long)v->req.epoch, reason);
	MPI_Ibcast(&v->req, sizeof(v->req), MPI_BYTE, 0, v->comm, &v->req_r);
	begin_epoch(v);
	return 0;
}

static bool test(MPI_Request *r)
{
	int done = 0;
	if (*r == MPI_REQUEST_NULL)
		return true;
	MPI_Test(r, &done, MPI_STATUS_IGNORE);
	return done;
}

int vccp_progress(struct vccp *v, bool *busy)
{
	*busy = false;
	switch (v->state) {
	case V_IDLE:
		if (v->rank != 0) {
			if (v->ended || !test(&v->req_r))
				return 0;
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
	case V_PREPAUSE:
		if (vc_mono_s() < v->pause_at)
			return 0;
		settle_vm(v);
		*busy = true;
		return 0;
	case V_SETTLE:
		if (fabric_vm_unread(v->fab) > 0 && vc_mono_s() < v->settle_until)
			return 0;
		if (fabric_vm_unread(v->fab) > 0)
			pr_info("epoch %llu: %d bytes still unread by QEMU at the pause",
				(unsigned long long)v->epoch, fabric_vm_unread(v->fab));
		pause_vm(v);
		*busy = true;
		return 0;
	case V_LATEHOLD:
		if (vc_mono_s() < v->hold_at)
			return 0;
		fabric_hold(v->fab, true);
		fabric_drain_vm(v->fab, true);
		v->state = V_DRAIN;
		*busy = true;
		return 0;
	case V_DRAIN:
		/* The VM is paused: what it wrote before is on the link. */
		if (!fabric_vm_link_empty(v->fab))
			return 0;
		fabric_drain_vm(v->fab, false);
		if (fabric_send_marker(v->fab, v->epoch) < 0)
			fail(v, -ENOMEM, "rank %d: cannot queue markers", v->rank);
		v->state = V_MARKED;
		*busy = true;
		return 0;
	case V_MARKED:
		if (!all_markers(v))
			return 0;
		/* Channels empty: the receive queue is complete. */
		start_save(v);
		v->state = V_SAVING;
		*busy = true;
		return 0;
	case V_SAVING:
		if (!poll_save(v))
			return 0;
		finish_save(v);
		*busy = true;
		return 0;
	case V_REPORT:
		if (!test(&v->coll))
			return 0;
		if (v->rank == 0)
			decide(v);
		MPI_Ibcast(&v->decision, 1, MPI_INT32_T, 0, v->comm, &v->coll);
		v->state = V_DECIDE;
		*busy = true;
		return 0;
	case V_DECIDE:
		if (!test(&v->coll))
			return 0;
		MPI_Ibarrier(v->comm, &v->coll);
		v->state = V_BARRIER;
		*busy = true;
		return 0;
	case V_BARRIER:
		if (!test(&v->coll))
			return 0;
		resume(v);
		*busy = true;
		return 0;
	case V_TIMES:
		if (!test(&v->coll))
			return 0;
		if (v->rank == 0) {
			report_times(v);
			/* the epoch that just ended was the request's */
		} else if (v->decision != DECIDE_COMMIT) {
			/* root removes the directory; our files are gone */
		}
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
	bool busy;

	/* Let an epoch under way end first (it aborts if a VM has gone). */
	while (v->state != V_IDLE) {
		if (vc_mono_s() > deadline)
			return -ETIMEDOUT;
		vccp_progress(v, &busy);
		if (v->fab)
			fabric_progress(v->fab, &busy);
	}
	if (v->rank == 0) {
		if (!v->ended) {
			v->req = (struct request){ .cmd = CMD_END };
			MPI_Ibcast(&v->req, sizeof(v->req), MPI_BYTE, 0, v->comm, &v->req_r);
			v->ended = true;
		}
	}
	while (!test(&v->req_r)) {
		if (vc_mono_s() > deadline)
			return -ETIMEDOUT;
		if (v->fab)
			fabric_progress(v->fab, &busy);
	}
	if (v->rank != 0 && v->req.cmd == CMD_CHECKPOINT) {
		/* A request crossed our exit: it cannot be served (the VMs
		 * are gone); answer it as a failed epoch. */
		begin_epoch(v);
		return vccp_finish(v, (int)((deadline - vc_mono_s()) * 1000));
	}
	v->ended = true;
	return 0;
}

/* ---- restore --------------------------------------------------------- */

int vccp_load_vm(struct qmp *q, const char *epoch_dir, int rank, int timeout_ms,
		 char *why, size_t whylen)
{
	char path[PATH_MAX], inner[256];
	double deadline = vc_mono_s() + timeout_ms / 1000.0;
	int r;

	snprintf(path, sizeof(path), "%s/rank%d.vmstate", epoch_dir, rank);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	r = qmp_getfd(q, "vccp-load", fd, QMP_TIMEOUT_MS, inner, sizeof(inner));
	close(fd);
	if (r == 0)
		r = qmp_exec(q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:vccp-load"),
			     NULL, QMP_TIMEOUT_MS, inner, sizeof(inner));
	if (r < 0) {
		snprintf(why, whylen, "loading %s: %s", path, inner);
		return r;
	}
	for (;;) {
		json_t *st;
		r = qmp_exec(q, "query-migrate", NULL, &st, QMP_TIMEOUT_MS, inner, sizeof(inner));
		if (r < 0) {
			snprintf(why, whylen, "loading %s: %s", path, inner);
			return r;
		}
		const char *status = json_string_value(json_object_get(st, "status"));
		if (status && !strcmp(status, "completed")) {
			json_decref(st);
			return 0;
		}
		if (status && !strcmp(status, "failed")) {
			const char *d = json_string_value(json_object_get(st, "error-desc"));
			snprintf(why, whylen, "QEMU could not load %s: %s", path, d ? d : "failed");
			json_decref(st);
			return -EIO;
		}
		json_decref(st);
		if (vc_mono_s() > deadline) {
			snprintf(why, whylen, "loading %s took longer than %d s", path, timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

int vccp_load_rq(const char *epoch_dir, uint64_t epoch, int rank, struct rq **out,
		 char *why, size_t whylen)
{
	char path[PATH_MAX], inner[256];

	snprintf(path, sizeof(path), "%s/rank%d.rq", epoch_dir, rank);
	int r = rq_load(path, epoch, rank, out, inner, sizeof(inner));
	if (r < 0)
		snprintf(why, whylen, "%s: %s", path, inner);
	return r;
}
