/* vcluster-launch: one MPI rank per host, one VM per rank.
 *
 * Each rank starts its QEMU, forwards the VM's Ethernet frames to the other
 * ranks (fabric.h) and runs one event loop until every VM has powered off.
 * Ranks tell each other about exits, faults and shutdown requests with small
 * control messages; rank 0 collects statistics for vcluster-ctl and decides
 * the job's exit status, which every rank returns.
 */
#define LOG_PREFIX "launch"
#include "vctime.h"
#include "accel.h"
#include "afile.h"
#include "config.h"
#include "ctl.h"
#include "ctrlmsg.h"
#include "fabric.h"
#include "firsterr.h"
#include "log.h"
#include "loop.h"
#include "manifest.h"
#include "pin.h"
#include "rq.h"
#include "qmp.h"
#include "restore.h"
#include "status.h"
#include "vc_magic.h"
#include "vccp.h"
#include "vcfmt.h"
#include "vm.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <mpi.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG_CTRL	201
#define STATS_PERIOD_MS	1000
#define QUIESCE_MS	30000

struct launch {
	struct vc_config cfg;
	int rank, size;
	MPI_Comm ctrl_comm;
	char run_dir[PATH_MAX];
	char rank_dir[PATH_MAX];
	struct vm *vm;
	struct fabric *fab;
	struct ctl *ctl;
	struct pin_plan *pin;
	struct vccp *vccp;
	bool vccp_live;		/* the loop drives vccp_progress() */
	struct restore *restore;
	struct loop *loop;
	struct worker *worker;
	int fab_fd;		/* VM link fd watched by the loop, or -1 */
	int qmp_fd;		/* QMP fd watched by the loop, or -1 */
	double last_busy;	/* monotonic: the last pass that moved anything */
	int run_code;		/* set when the loop stops on a fault */
	double last_ckpt_log;
	struct status_rank *ranks;
	int nexited;
	uint8_t rx_buf[CTRLMSG_SIZE];
	MPI_Request rx_req;
	double start, last_stats;
	int interrupted;	/* signal that started a shutdown, or 0 */
	bool timed_out;
	bool aborting;
	bool shutting_down;
	struct firsterr abort;	/* the first abort's reason and code */
};

/* ---- control messages -------------------------------------------------- */

static void ctrl_seal(struct ctrlmsg *m, struct launch *L, enum ctrl_type type)
{
	m->type = type;
	m->rank = L->rank;
}

/* Small messages go eagerly: MPI_Send returns without the peer.  A failure
 * names the peer (the communicator returns errors instead of aborting). */
static void ctrl_send(struct launch *L, int to, const struct ctrlmsg *m)
{
	uint8_t buf[CTRLMSG_SIZE];

	ctrlmsg_encode(m, buf);
	int rc = MPI_Send(buf, CTRLMSG_SIZE, MPI_BYTE, to, TAG_CTRL, L->ctrl_comm);
	if (rc != MPI_SUCCESS) {
		char s[MPI_MAX_ERROR_STRING];
		int len = 0;
		MPI_Error_string(rc, s, &len);
		pr_err("sending a control message to rank %d failed: %s", to, s);
	}
}

static void ctrl_send_all(struct launch *L, const struct ctrlmsg *m)
{
	for (int r = 0; r < L->size; r++)
		if (r != L->rank)
			ctrl_send(L, r, m);
}

static void handle_ctrl(struct launch *L, struct ctrlmsg *m);

static void broadcast_abort(struct launch *L, enum ctrl_code code, const char *reason)
{
	struct ctrlmsg m = { .code = code };
	snprintf(m.text, sizeof(m.text), "%s", reason);
	ctrl_seal(&m, L, CTRL_ABORT);
	ctrl_send_all(L, &m);
	handle_ctrl(L, &m);
}

static void start_shutdown(struct launch *L, int signo, const char *why)
{
	if (L->rank != 0) {
		/* rank 0 decides, so every rank stops the same way */
		struct ctrlmsg m = { .signo = signo };
		snprintf(m.text, sizeof(m.text), "%s", why);
		ctrl_seal(&m, L, CTRL_SHUTDOWN);
		ctrl_send(L, 0, &m);
		return;
	}
	struct ctrlmsg m = { .signo = signo };
	snprintf(m.text, sizeof(m.text), "%s", why);
	ctrl_seal(&m, L, CTRL_SHUTDOWN);
	ctrl_send_all(L, &m);
	handle_ctrl(L, &m);
}

static void handle_ctrl(struct launch *L, struct ctrlmsg *m)
{
	switch (m->type) {
	case CTRL_EXIT: {
		struct status_rank *ri = &L->ranks[m->rank];
		if (ri->exited)
			break;
		ri->exited = true;
		ri->status = m->status;
		snprintf(ri->reason, sizeof(ri->reason), "%s", m->text);
		L->nexited++;
		if (m->rank == L->rank)
			break;
		if (m->status == -1) {	/* a fault; -2, -3: we stopped it */
			pr_err("rank %d (node%d): %s; stopping every VM", m->rank,
			       m->rank, m->text);
			L->aborting = true;
			if (L->vm)
				vm_kill(L->vm);
		} else if (m->status > 0 && !L->shutting_down) {
			/* The job failed; the others get the grace period to
			 * finish what they are doing, then they stop too. */
			pr_info("rank %d (node%d): guest command failed with status %d; "
				"stopping the other VMs within %d s",
				m->rank, m->rank, m->status, L->cfg.grace_s);
			L->shutting_down = true;
			if (L->vm)
				vm_request_stop(L->vm, L->cfg.grace_s * 1000);
		}
		break;
	}
	case CTRL_ABORT:
		if (!L->aborting)
			pr_err("%s; stopping every VM", m->text);
		L->aborting = true;
		firsterr_set(&L->abort, -ECANCELED, m->code, "%s", m->text);
		if (m->code == CTRL_CODE_TIMEOUT)
			L->timed_out = true;
		if (L->vm)
			vm_kill(L->vm);
		break;
	case CTRL_SHUTDOWN:
		if (L->rank == 0 && m->rank != 0) {
			start_shutdown(L, m->signo, m->text);	/* relay to all */
			break;
		}
		if (!L->shutting_down)
			pr_info("%s: powering the VMs down (grace %d s)", m->text,
				L->cfg.grace_s);
		L->shutting_down = true;
		if (m->signo && !L->interrupted)
			L->interrupted = m->signo;
		if (L->vm)
			vm_request_stop(L->vm, L->cfg.grace_s * 1000);
		break;
	case CTRL_STATS:
		if (L->rank == 0) {
			L->ranks[m->rank].stats = *m;
			L->ranks[m->rank].have_stats = true;
			L->ranks[m->rank].stats_age = vc_mono_s();
		}
		break;
	}
}

static int progress_ctrl(struct launch *L, bool *busy)
{
	for (;;) {
		int done = 0, count = 0;
		MPI_Status st;
		int rc = MPI_Test(&L->rx_req, &done, &st);
		if (rc != MPI_SUCCESS) {
			char s[MPI_MAX_ERROR_STRING];
			int len = 0;
			MPI_Error_string(rc, s, &len);
			pr_err("receiving control messages failed (last peer rank %d): %s",
			       st.MPI_SOURCE, s);
			return -EIO;
		}
		if (!done)
			return 0;
		*busy = true;
		uint8_t buf[CTRLMSG_SIZE];
		memcpy(buf, L->rx_buf, sizeof(buf));
		MPI_Get_count(&st, MPI_BYTE, &count);
		MPI_Irecv(L->rx_buf, sizeof(L->rx_buf), MPI_BYTE, MPI_ANY_SOURCE,
			  TAG_CTRL, L->ctrl_comm, &L->rx_req);
		struct ctrlmsg m;
		char why[160];
		if (ctrlmsg_decode(buf, (size_t)count, st.MPI_SOURCE, &m, why, sizeof(why)) < 0) {
			pr_err("control message from rank %d: %s; ignored", st.MPI_SOURCE, why);
			continue;
		}
		handle_ctrl(L, &m);
	}
}

static void fill_stats(struct launch *L, struct ctrlmsg *m)
{
	memset(m, 0, sizeof(*m));
	if (L->fab) {
		fabric_get_stats(L->fab, &m->fab);
		for (int p = 0; p < L->size; p++) {
			struct fabric_peer_stats ps;
			if (p == L->rank)
				continue;
			fabric_get_peer_stats(L->fab, p, &ps);
			m->peer_queued += ps.queued_batches;
		}
	}
	m->vm_state = L->vm ? (int)vm_state(L->vm) : VM_EXITED;
	m->ckpt_bytes = L->vccp ? vccp_bytes_saved(L->vccp) : 0;
	ctrl_seal(m, L, CTRL_STATS);
}

/* --clock-sync: hand the VM the host's time (see tests/guest/vc-clockd.c). */
static void send_clock(void *ctx)
{
	struct launch *L = ctx;
	uint8_t f[14 + 16];
	struct timespec ts;

	if (!L->cfg.clock_sync || !L->fab)
		return;
	uint8_t dst[6] = { 0x52, 0x54, 0x00, 0x56, (uint8_t)(L->rank >> 8), (uint8_t)L->rank };
	uint8_t src[6] = { 0x52, 0x54, 0x00, 0x56, 0xff, 0xfe };
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	clock_gettime(CLOCK_REALTIME, &ts);
	vcfmt_put_be32(f + 14, 0x5643544du);	/* "VCTM" */
	vcfmt_put_be32(f + 18, 1);
	vcfmt_put_be64(f + 22, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	if (fabric_inject(L->fab, f, sizeof(f)) == 0)
		pr_debug("clock frame sent to the VM");
}

/* ---- vcluster-ctl ------------------------------------------------------ */

static json_t *ctl_handle(void *ctx, const char *command, json_t *req)
{
	struct launch *L = ctx;

	if (!strcmp(command, "status")) {
		fill_stats(L, &L->ranks[0].stats);
		L->ranks[0].have_stats = true;
		L->ranks[0].stats_age = vc_mono_s();
		json_t *ranks = status_ranks_json(L->ranks, L->size, vc_mono_s());
		json_t *rep = json_pack("{s:b, s:s, s:i, s:f, s:o}", "ok", 1, "run_dir", L->run_dir,
					"size", L->size, "uptime_s", vc_mono_s() - L->start, "ranks", ranks);
		if (L->vccp) {
			json_t *last = vccp_last_json(L->vccp);
			json_object_set_new(rep, "checkpointing", json_boolean(vccp_active(L->vccp)));
			if (last)
				json_object_set_new(rep, "last_checkpoint", last);
		}
		return rep;
	}
	if (!strcmp(command, "checkpoint")) {
		if (!L->vccp)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "checkpointing is off (start with --checkpoint-dir)");
		if (L->nexited)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "not every VM is running any more");
		int r = vccp_request(L->vccp, "vcluster-ctl checkpoint");
		if (r == -EBUSY)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "a checkpoint is already running");
		json_t *last = vccp_last_json(L->vccp);
		json_int_t prev = last ? json_integer_value(json_object_get(last, "epoch")) : 0;
		json_decref(last);
		return json_pack("{s:b, s:s, s:I}", "ok", 1, "message", "checkpoint started",
				 "after_epoch", prev);
	}
	if (!strcmp(command, "shutdown")) {
		start_shutdown(L, 0, "vcluster-ctl shutdown");
		return json_pack("{s:b, s:s}", "ok", 1, "message", "shutting down");
	}
	return json_pack("{s:b, s:s}", "ok", 0, "error",
			 "unknown command (status, shutdown, checkpoint)");
}

/* ---- setup ------------------------------------------------------------- */

/* Every rank checks; the lowest failing rank says why in one line; all
 * ranks learn whether to go on.  Returns true when all ranks are fine. */
static bool all_ok(struct launch *L, bool ok, const char *why)
{
	int mine = ok ? L->size : L->rank, first;

	MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	if (first == L->size)
		return true;
	if (first == L->rank)
		log_msg(LOG_ERR, LOG_PREFIX, 0, "%s", why);
	return false;
}

static void exe_dir(char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		snprintf(out, len, ".");
		return;
	}
	exe[n] = '\0';
	snprintf(out, len, "%s", dirname(exe));
}

static int check_readable(const char *what, const char *path, char *why,
			  size_t whylen)
{
	struct stat st;
	if (stat(path, &st) < 0 || access(path, R_OK) < 0) {
		snprintf(why, whylen, "%s %s: %s", what, path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s %s: not a regular file", what, path);
		return -EINVAL;
	}
	return 0;
}

static void choose_run_dir(struct launch *L)
{
	char name[PATH_MAX] = "";

	if (L->rank == 0) {
		if (L->cfg.run_dir[0]) {
			snprintf(name, sizeof(name), "%s", L->cfg.run_dir);
		} else {
			time_t t = time(NULL);
			struct tm tm;
			char stamp[32];
			localtime_r(&t, &tm);
			strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
			snprintf(name, sizeof(name), "/tmp/vcluster-%u/job-%s-%d",
				 (unsigned)getuid(), stamp, (int)getpid());
		}
	}
	MPI_Bcast(name, sizeof(name), MPI_CHAR, 0, MPI_COMM_WORLD);
	snprintf(L->run_dir, sizeof(L->run_dir), "%s", name);
	snprintf(L->rank_dir, sizeof(L->rank_dir), "%s/rank%d", name, L->rank);
}

static int local_rank(int *lsize)
{
	MPI_Comm node;
	int lr;
	MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
	MPI_Comm_rank(node, &lr);
	MPI_Comm_size(node, lsize);
	MPI_Comm_free(&node);
	return lr;
}

/* ---- the run ----------------------------------------------------------- */

static void vm_gone(struct launch *L)
{
	struct ctrlmsg m = { 0 };
	int gstatus;
	char why[200] = "";

	if (vm_result(L->vm, &gstatus, why, sizeof(why)) == 0) {
		m.status = gstatus;
		if (gstatus)
			snprintf(m.text, sizeof(m.text), "guest command exited with status %d", gstatus);
		pr_info("VM powered off; guest command exited with status %d", gstatus);
	} else if (L->aborting || L->shutting_down) {
		/* We stopped it ourselves: not this rank's fault. */
		m.status = L->aborting ? -2 : -3;
		snprintf(m.text, sizeof(m.text), "stopped before the guest finished");
		pr_info("VM stopped");
	} else {
		m.status = -1;
		snprintf(m.text, sizeof(m.text), "%s", why);
		pr_err("%s", why);
	}
	fabric_detach_vm(L->fab);
	ctrl_seal(&m, L, CTRL_EXIT);
	ctrl_send_all(L, &m);
	handle_ctrl(L, &m);
}

static void on_signal(struct loop *lp, int sig, void *ctx)
{
	struct launch *L = ctx;

	if (sig == SIGCHLD)
		return;	/* vm_check_exit() runs every pass */
	if (sig == SIGUSR1) {
		/* mpirun hands it to every rank; rank 0 coordinates */
		if (L->rank != 0)
			return;
		if (!L->vccp)
			pr_warn("SIGUSR1: checkpointing is off (no --checkpoint-dir)");
		else if (L->nexited)
			pr_warn("SIGUSR1: not every VM is running; no checkpoint");
		else if (vccp_request(L->vccp, "SIGUSR1") == -EBUSY)
			pr_info("SIGUSR1: a checkpoint is already running");
		return;
	}
	if (L->shutting_down && sig != SIGHUP) {
		pr_warn("second %s: stopping the VMs now", strsignal(sig));
		broadcast_abort(L, CTRL_CODE_INTERRUPTED, "interrupted twice");
		L->interrupted = sig;
		return;
	}
	char why[64];
	snprintf(why, sizeof(why), "%s received", strsignal(sig));
	start_shutdown(L, sig, why);
	if (L->rank != 0 && !L->interrupted)
		L->interrupted = sig;
}

static int exit_code(struct launch *L)
{
	int worst = 0;
	bool fault = false, cut_short = false;

	for (int r = 0; r < L->size; r++) {
		if (L->ranks[r].status == -1)
			fault = true;
		else if (L->ranks[r].status == -3)
			cut_short = true;
		else if (L->ranks[r].status > worst)
			worst = L->ranks[r].status;
	}
	if (L->timed_out)
		return 124;
	if (L->interrupted)
		return 128 + L->interrupted;
	if (fault || L->aborting)
		return 2;
	if (worst)
		return worst > 125 ? 125 : worst;
	return cut_short ? 3 : 0;
}

static void print_summary(struct launch *L, int code)
{
	int failed = 0;

	for (int r = 0; r < L->size; r++) {
		struct status_rank *ri = &L->ranks[r];
		if (ri->status == 0)
			continue;
		failed++;
		if (ri->status > 0)
			log_msg(LOG_ERR, LOG_PREFIX, 0, "rank %d (node%d): guest command exited with status %d",
				r, r, ri->status);
		else if (ri->status == -1)
			log_msg(LOG_ERR, LOG_PREFIX, 0, "rank %d (node%d): %s", r, r, ri->reason);
		else if (ri->status == -3 && !L->interrupted)
			pr_info("rank %d (node%d): shut down before its guest command finished", r, r);
	}
	if (L->timed_out)
		pr_err("the run passed its --timeout of %d s", L->cfg.timeout_s);
	if (code == 0)
		pr_info("all %d guests succeeded (%.1f s)", L->size, vc_mono_s() - L->start);
	else
		pr_info("finished with exit status %d (%d of %d guests did not succeed); logs in %s",
			code, failed, L->size, L->run_dir);
}

/* ---- the event loop -------------------------------------------------- */

/* The VM link: reading and writing happen in the progress step; being
 * readable or writable only ends the loop's sleep. */
static void on_fabric_fd(struct loop *lp, int fd, unsigned ev, void *ctx)
{
}

static void on_qmp_fd(struct loop *lp, int fd, unsigned ev, void *ctx)
{
	struct launch *L = ctx;
	struct qmp *q = L->vm ? vm_qmp(L->vm) : NULL;
	json_t *e;

	if (!q || qmp_fd(q) != fd) {
		loop_del_fd(lp, fd);
		L->qmp_fd = -1;
		return;
	}
	if (qmp_pump(q) < 0) {
		/* QEMU closed it; vm_check_exit() tells why */
		loop_del_fd(lp, fd);
		L->qmp_fd = -1;
	}
	while ((e = qmp_next_event(q))) {
		pr_debug("QMP event %s", json_string_value(json_object_get(e, "event")));
		json_decref(e);
	}
}

static void on_worker_fd(struct loop *lp, int fd, unsigned ev, void *ctx)
{
	struct launch *L = ctx;
	worker_dispatch(L->worker);
}

/* Keep the loop's watches in step with the fabric and QMP descriptors,
 * which come and go with the VM. */
static void update_watches(struct launch *L)
{
	struct pollfd pfd;
	int fd = -1;
	unsigned ev = 0;

	if (L->fab && fabric_pollfd(L->fab, &pfd)) {
		fd = pfd.fd;
		ev = (pfd.events & POLLIN ? LOOP_IN : 0) | (pfd.events & POLLOUT ? LOOP_OUT : 0);
	}
	if (fd != L->fab_fd) {
		if (L->fab_fd >= 0)
			loop_del_fd(L->loop, L->fab_fd);
		L->fab_fd = -1;
		if (fd >= 0 && loop_add_fd(L->loop, fd, ev, on_fabric_fd, L) == 0)
			L->fab_fd = fd;
	} else if (fd >= 0) {
		loop_mod_fd(L->loop, fd, ev);
	}
	int qfd = L->vm ? vm_qmp_fd(L->vm) : -1;
	if (qfd != L->qmp_fd) {
		if (L->qmp_fd >= 0)
			loop_del_fd(L->loop, L->qmp_fd);
		L->qmp_fd = -1;
		if (qfd >= 0 && loop_add_fd(L->loop, qfd, LOOP_IN, on_qmp_fd, L) == 0)
			L->qmp_fd = qfd;
	}
}

/* The progress step, before every sleep: frames (MPI has no descriptor),
 * control messages, the checkpoint protocol, the VM's console and exit,
 * statistics and the run's timeout.  Returns how long the loop may sleep. */
static int before_sleep(struct loop *lp, void *ctx)
{
	struct launch *L = ctx;
	bool busy = false, b;
	double now;

	int r = fabric_progress(L->fab, &b);
	if (r < 0 && !L->run_code) {
		char why[200];
		snprintf(why, sizeof(why), "rank %d: fabric fault (%s)", L->rank, strerror(-r));
		broadcast_abort(L, CTRL_CODE_FAULT, why);
		L->run_code = 2;
		loop_stop(lp);
		return 0;
	}
	busy |= b;
	progress_ctrl(L, &b);
	busy |= b;
	struct qmp *q = L->vm ? vm_qmp(L->vm) : NULL;
	if (q && qmp_pending(q))
		qmp_pump(q);	/* replies read by a blocking call; timeouts */

	if (L->vccp && L->vccp_live) {
		vccp_set_qmp(L->vccp, L->vm && !L->ranks[L->rank].exited ? vm_qmp(L->vm) : NULL);
		if (vccp_progress(L->vccp, &b) < 0 && !L->run_code) {
			broadcast_abort(L, CTRL_CODE_FAULT, "checkpoint protocol fault");
			L->run_code = 2;
			loop_stop(lp);
			return 0;
		}
		busy |= b;
		if (L->rank == 0 && vccp_active(L->vccp) && vc_mono_s() - L->last_ckpt_log > 2.0) {
			uint64_t total = vccp_bytes_saved(L->vccp);
			for (int k = 1; k < L->size; k++)
				total += L->ranks[k].stats.ckpt_bytes;
			if (L->last_ckpt_log > 0 && total)
				pr_info("checkpoint in progress: %.1f MiB of VM state saved",
					total / 1048576.0);
			L->last_ckpt_log = vc_mono_s();
		} else if (!vccp_active(L->vccp)) {
			L->last_ckpt_log = 0;
		}
	}
	if (L->vm) {
		vm_console_pump(L->vm, L->cfg.console ? stdout : NULL);
		vm_tick(L->vm);
		if (!L->ranks[L->rank].exited && vm_check_exit(L->vm))
			vm_gone(L);
	}
	now = vc_mono_s();
	if (L->vccp_live && L->rank != 0 && now - L->last_stats >= STATS_PERIOD_MS / 1000.0) {
		struct ctrlmsg m;
		fill_stats(L, &m);
		ctrl_send(L, 0, &m);
		L->last_stats = now;
	}
	if (L->vccp_live && L->rank == 0 && L->cfg.timeout_s && !L->aborting &&
	    now - L->start > L->cfg.timeout_s) {
		char why[96];
		snprintf(why, sizeof(why), "timeout: the run passed %d s", L->cfg.timeout_s);
		broadcast_abort(L, CTRL_CODE_TIMEOUT, why);
	}
	if (busy)
		L->last_busy = now;
	if (L->nexited >= L->size && L->vccp_live)
		loop_stop(lp);
	update_watches(L);
	return fabric_poll_timeout(L->fab, now, L->last_busy, L->cfg.fabric_spin_us);
}

static int run(struct launch *L)
{
	L->last_busy = vc_mono_s();
	L->vccp_live = true;
	int r = loop_run(L->loop);
	L->vccp_live = false;
	if (r < 0)
		pr_errno(r, "event loop");
	return L->run_code ? L->run_code : (r < 0 ? 2 : 0);
}

/* ---- what vccp sees of the fabric (vccp.h) -------------------------- */

static void ops_hold(void *ctx, bool hold)
{
	fabric_hold(((struct launch *)ctx)->fab, hold);
}

static void ops_drain(void *ctx, bool drain)
{
	fabric_drain_vm(((struct launch *)ctx)->fab, drain);
}

static bool ops_link_empty(void *ctx)
{
	return fabric_vm_link_empty(((struct launch *)ctx)->fab);
}

static int ops_unread(void *ctx)
{
	return fabric_vm_unread(((struct launch *)ctx)->fab);
}

static int ops_send_marker(void *ctx, uint64_t epoch)
{
	return fabric_send_marker(((struct launch *)ctx)->fab, epoch);
}

static struct rq *ops_take_rq(void *ctx)
{
	return fabric_take_rq(((struct launch *)ctx)->fab);
}

static void ops_put_rq(void *ctx, struct rq *q)
{
	fabric_put_rq(((struct launch *)ctx)->fab, q);
}

static size_t ops_rq_count(void *ctx)
{
	return rq_count(fabric_rq(((struct launch *)ctx)->fab));
}

static void ops_set_marker_cb(void *ctx, vccp_marker_cb cb, void *vctx)
{
	fabric_set_marker_cb(((struct launch *)ctx)->fab, cb, vctx);
}

/* One pass of the loop without vccp (vccp_finish drives it itself). */
static void ops_progress(void *ctx)
{
	struct launch *L = ctx;
	loop_run_once(L->loop, 1);
}

static const struct vccp_fabric_ops vccp_fab_ops = {
	.hold = ops_hold,
	.drain = ops_drain,
	.link_empty = ops_link_empty,
	.unread = ops_unread,
	.send_marker = ops_send_marker,
	.take_rq = ops_take_rq,
	.put_rq = ops_put_rq,
	.rq_count = ops_rq_count,
	.set_marker_cb = ops_set_marker_cb,
	.progress = ops_progress,
};

int main(int argc, char **argv)
{
	struct launch *L = calloc(1, sizeof(*L));
	char err[512] = "", why[512] = "", dir[PATH_MAX];
	int provided, r, code = 2;

	MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
	/* failures come back as codes (and name their peer), not as aborts */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	firsterr_init(&L->abort);
	MPI_Comm_rank(MPI_COMM_WORLD, &L->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &L->size);
	log_init("vcluster-launch", L->rank);
	L->start = vc_mono_s();
	signal(SIGPIPE, SIG_IGN);

	r = cfg_load(&L->cfg, argc, argv, err, sizeof(err));
	if (r != 0) {
		if (r < 0 && L->rank == 0)
			fprintf(stderr, "vcluster-launch: %s\n", err);
		MPI_Finalize();
		return r > 0 ? 0 : 2;
	}
	struct vc_config *c = &L->cfg;
	if (L->rank != 0 && c->verbose < 2)
		log_set_console_level(LOG_WARN);
	if (c->verbose >= 2)
		log_set_console_level(LOG_DEBUG);
	if (L->size > cfg_subnet_capacity(c)) {
		if (L->rank == 0) {
			char net[40];
			cfg_subnet_str(c, net, sizeof(net));
			fprintf(stderr, "vcluster-launch: --subnet %s has room for %d VMs, not %d\n",
				net, cfg_subnet_capacity(c), L->size);
		}
		MPI_Finalize();
		return 2;
	}

	/* Run directory and log. */
	choose_run_dir(L);
	r = afile_mkdir_p(L->run_dir, 0700);
	if (r == 0)
		r = afile_mkdir_p(L->rank_dir, 0700);
	if (r < 0)
		snprintf(why, sizeof(why), "run directory %s: %s", L->rank_dir, strerror(-r));
	if (!all_ok(L, r == 0, why))
		goto out_finalize;
	char logpath[PATH_MAX + 16];
	snprintf(logpath, sizeof(logpath), "%s/rank.log", L->rank_dir);
	log_open_file(logpath, c->verbose ? LOG_DEBUG : LOG_INFO);
	if (L->rank == 0) {
		char latest[PATH_MAX];
		snprintf(latest, sizeof(latest), "%s", L->run_dir);
		snprintf(dir, sizeof(dir), "%s/../latest", L->run_dir);
		if (!c->run_dir[0]) {
			unlink(dir);
			if (symlink(basename(latest), dir) < 0)
				pr_debug("could not link %s", dir);
		}
		pr_info("virtual cluster of %d VMs; run directory %s", L->size, L->run_dir);
	}

	/* Restart from a checkpoint: rank 0 finds and checks the manifest,
	 * every rank checks its own files, and the VM settings come from the
	 * checkpoint (QEMU must rebuild the same machine). */
	if (c->restore[0]) {
		bool report;
		L->restore = restore_prepare(MPI_COMM_WORLD, c->checkpoint_dir, c->restore, &report,
					     why, sizeof(why));
		if (!L->restore) {
			if (report)
				fprintf(stderr, "vcluster-launch: cannot restore: %s\n", why);
			if (L->rank == 0)
				pr_err("restore refused; nothing was changed");
			goto out_finalize;
		}
		json_t *conf = restore_config(L->restore);
		const char *key;
		json_t *val;
		r = 0;
		json_object_foreach(conf, key, val) {
			if (cfg_set(c, key, json_string_value(val), why, sizeof(why)) < 0)
				r = -EINVAL;
		}
		if (!all_ok(L, r == 0, why))
			goto out_finalize;
		if (L->rank == 0)
			pr_info("restoring epoch %llu from %s",
				(unsigned long long)restore_epoch(L->restore), restore_dir(L->restore));
	}

	/* What to boot and with which QEMU. */
	char kernel[PATH_MAX], initrd[PATH_MAX], qemu[PATH_MAX], fw[] = "/usr/share/qemu";
	bool patched = false;
	exe_dir(dir, sizeof(dir));
	if (c->kernel[0]) {
		snprintf(kernel, sizeof(kernel), "%s", c->kernel);
		snprintf(initrd, sizeof(initrd), "%s", c->initrd);
	} else if (c->disk[0]) {
		kernel[0] = initrd[0] = '\0';
	} else {
		snprintf(kernel, sizeof(kernel), "%s/../guest/vmlinuz", dir);
		snprintf(initrd, sizeof(initrd), "%s/../guest/initrd.img", dir);
	}
	if (c->qemu[0]) {
		snprintf(qemu, sizeof(qemu), "%s", c->qemu);
	} else {
		snprintf(qemu, sizeof(qemu), "%s/../qemu/bin/qemu-system-x86_64", dir);
		if (access(qemu, X_OK) == 0)
			patched = true;
		else
			snprintf(qemu, sizeof(qemu), "qemu-system-x86_64");
	}
	r = 0;
	why[0] = '\0';
	if (kernel[0])
		r = check_readable(c->kernel[0] ? "kernel" : "test guest kernel (run 'make guest')",
				   kernel, why, sizeof(why));
	if (r == 0 && initrd[0])
		r = check_readable("initrd", initrd, why, sizeof(why));
	if (r == 0 && c->disk[0])
		r = check_readable("disk image", c->disk, why, sizeof(why));
	if (r == 0 && strchr(qemu, '/') && access(qemu, X_OK) < 0) {
		r = -errno;
		snprintf(why, sizeof(why), "QEMU binary %s: %s", qemu, strerror(errno));
	}
	if (!all_ok(L, r == 0, why))
		goto out_finalize;

	/* KVM or TCG. */
	bool kvm = false;
	if (c->accel != CFG_ACCEL_TCG) {
		kvm = accel_kvm_works(c->kvm_probe_ms, why, sizeof(why));
		if (!kvm && c->accel == CFG_ACCEL_KVM) {
			char msg[600];
			snprintf(msg, sizeof(msg), "--accel kvm: KVM does not work here: %s", why);
			if (!all_ok(L, false, msg))
				goto out_finalize;
		}
		if (!kvm)
			pr_info("KVM not usable (%s); using TCG", why);
	}
	all_ok(L, true, "");
	pr_info("accelerator: %s", kvm ? "KVM" : "TCG");

	/* Cores. */
	int lsize, lrank = local_rank(&lsize);
	if (c->pin == CFG_PIN_AUTO) {
		L->pin = pin_plan_create(lrank, lsize, c->vcpus);
		if (!L->pin) {
			pr_warn("hwloc could not read the topology; not binding threads");
		} else {
			if (pin_plan_shared(L->pin) && lrank == 0)
				pr_warn("fewer cores than VM threads on this host; sharing them: %s",
					pin_plan_describe(L->pin));
			pr_info("binding: %s", pin_plan_describe(L->pin));
			if (pin_bind_self(L->pin) < 0)
				pr_warn("could not bind the rank thread");
		}
	}

	/* The event loop; signals come in as one of its descriptors. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	L->fab_fd = L->qmp_fd = -1;
	L->loop = loop_create();
	r = L->loop ? loop_add_signals(L->loop, &set, on_signal, L) : -errno;
	if (r == 0)
		loop_set_before_sleep(L->loop, before_sleep, L);
	if (r == 0) {
		L->worker = worker_create(2);
		r = L->worker ? loop_add_fd(L->loop, worker_fd(L->worker), LOOP_IN, on_worker_fd, L)
			      : -errno;
	}
	if (r < 0)
		snprintf(why, sizeof(why), "rank %d: event loop: %s", L->rank, strerror(-r));
	if (!all_ok(L, r == 0, why))
		goto out_loop;

	/* The VM. */
	struct vm_spec spec = {
		.cfg = c, .rank = L->rank, .nranks = L->size, .rank_dir = L->rank_dir,
		.qemu_bin = qemu, .qemu_patched = patched, .firmware_dir = patched ? fw : NULL,
		.kvm = kvm, .kernel = kernel, .initrd = initrd, .pin = L->pin,
		.incoming = c->restore[0] != 0,
	};
	char restore_disk_buf[PATH_MAX + 32];
	if (L->restore)
		spec.restore_disk = restore_disk(L->restore, L->rank, restore_disk_buf,
						 sizeof(restore_disk_buf));
	int link_fd = -1;
	why[0] = '\0';
	L->vm = vm_start(&spec, &link_fd, why, sizeof(why));
	if (!L->vm) {
		char msg[600];
		snprintf(msg, sizeof(msg), "rank %d: %s (see %s/qemu.log)", L->rank, why, L->rank_dir);
		snprintf(why, sizeof(why), "%s", msg);
	}
	if (!all_ok(L, L->vm != NULL, why))
		goto out_vm;
	if (L->rank == 0)
		pr_info("QEMU: %s%s", qemu, patched ? " (patched build)" :
			" (stock; 'make qemu' builds the patched one)");
	if (L->pin) {
		char desc[256];
		if (vm_pin_vcpus(L->vm, L->pin, desc, sizeof(desc)) == 0)
			pr_info("vCPU threads bound: %s", desc);
		else
			pr_warn("vCPU binding: %s", desc);
	}

	L->fab = fabric_create(MPI_COMM_WORLD, link_fd);
	if (!L->fab)
		snprintf(why, sizeof(why), "rank %d: fabric: %s", L->rank, strerror(errno));
	if (!all_ok(L, L->fab != NULL, why))
		goto out_vm;

	if (L->restore) {
		struct rq *rq = NULL;
		char inner[400];
		r = restore_load_vm(L->restore, vm_qmp(L->vm), L->rank, 600000, inner, sizeof(inner));
		if (r == 0)
			r = restore_load_rq(L->restore, L->rank, &rq, inner, sizeof(inner));
		snprintf(why, sizeof(why), "rank %d: %s", L->rank, inner);
		if (!all_ok(L, r == 0, why)) {
			if (L->rank == 0)
				pr_err("restore failed; the checkpoint is unchanged");
			fabric_destroy(L->fab);
			L->fab = NULL;
			goto out_vm;
		}
		pr_info("VM state of epoch %llu loaded; %zu frames in the receive queue",
			(unsigned long long)restore_epoch(L->restore), rq_count(rq));
		fabric_set_rq(L->fab, rq);
	}
	if (c->checkpoint_dir[0]) {
		char kabs[PATH_MAX] = "", iabs[PATH_MAX] = "", net[40], mem[32], vcpus[16];
		if (kernel[0] && !realpath(kernel, kabs))
			snprintf(kabs, sizeof(kabs), "%s", kernel);
		if (initrd[0] && !realpath(initrd, iabs))
			snprintf(iabs, sizeof(iabs), "%s", initrd);
		cfg_subnet_str(c, net, sizeof(net));
		snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)c->memory_mib);
		snprintf(vcpus, sizeof(vcpus), "%d", c->vcpus);
		char dabs[PATH_MAX] = "", active[PATH_MAX + 32];
		if (c->disk[0]) {
			if (!realpath(c->disk, dabs))
				snprintf(dabs, sizeof(dabs), "%s", c->disk);
			snprintf(active, sizeof(active), "%s/disk.qcow2", L->rank_dir);
		}
		struct restore_settings rs = {
			.memory = mem, .vcpus = vcpus, .subnet = net, .guest_cmd = c->guest_cmd,
			.append = c->append, .kernel = kabs, .initrd = iabs, .disk = dabs,
		};
		json_t *conf = restore_config_build(&rs);
		r = afile_mkdir_p(c->checkpoint_dir, 0700);
		if (r < 0)
			snprintf(why, sizeof(why), "checkpoint directory %s: %s", c->checkpoint_dir,
				 strerror(-r));
		if (!all_ok(L, r == 0, why)) {
			json_decref(conf);
			goto out_vm;
		}
		struct vccp_opts vo = { .dir = c->checkpoint_dir, .keep = c->keep,
					.interval_s = c->checkpoint_interval_s, .config = conf,
					.bandwidth_mibs = c->checkpoint_bandwidth,
					.disk_device = c->disk[0] ? VM_DISK_ID : NULL,
					.disk_active = c->disk[0] ? active : NULL,
					.on_resume = send_clock, .ctx = L,
					.fab = &vccp_fab_ops, .fab_ctx = L, .worker = L->worker };
		L->vccp = vccp_create(MPI_COMM_WORLD, &vo);
		json_decref(conf);
	}

	MPI_Comm_dup(MPI_COMM_WORLD, &L->ctrl_comm);
	L->ranks = calloc((size_t)L->size, sizeof(*L->ranks));
	MPI_Comm_set_errhandler(L->ctrl_comm, MPI_ERRORS_RETURN);
	MPI_Irecv(L->rx_buf, sizeof(L->rx_buf), MPI_BYTE, MPI_ANY_SOURCE, TAG_CTRL,
		  L->ctrl_comm, &L->rx_req);
	if (L->rank == 0) {
		char path[PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/ctl.sock", L->run_dir);
		L->ctl = ctl_open(path, L->loop, ctl_handle, L, why, sizeof(why));
		if (!L->ctl)
			pr_warn("%s (vcluster-ctl will not work)", why);
	}
	MPI_Barrier(MPI_COMM_WORLD);
	if (c->restore[0]) {
		/* Resume together: the guests' clocks stay close. */
		r = qmp_exec(vm_qmp(L->vm), "cont", NULL, NULL, 10000, why, sizeof(why));
		if (r < 0)
			pr_err("resuming the restored VM: %s", why);
		send_clock(L);
		if (L->rank == 0)
			pr_info("all %d VMs resumed from epoch %llu", L->size,
				(unsigned long long)restore_epoch(L->restore));
	} else if (L->rank == 0) {
		pr_info("all %d VMs started; guests run: %s", L->size, c->guest_cmd);
	}

	code = run(L);
	{
		struct fabric_stats fs;
		fabric_get_stats(L->fab, &fs);
		pr_info("fabric totals: frames_from_vm=%llu frames_to_vm=%llu frames_from_rq=%llu "
			"discarded=%llu stalls=%llu spill_reads=%llu",
			(unsigned long long)fs.frames_from_vm, (unsigned long long)fs.frames_to_vm,
			(unsigned long long)fs.frames_from_rq, (unsigned long long)fs.frames_discarded,
			(unsigned long long)fs.backpressure_stalls, (unsigned long long)fs.spill_reads);
	}
	if (L->vccp && vccp_finish(L->vccp, QUIESCE_MS) < 0)
		pr_err("the checkpoint protocol did not wind down within %d s", QUIESCE_MS / 1000);
	if (fabric_quiesce(L->fab, QUIESCE_MS) < 0) {
		pr_err("a peer rank did not finish within %d s; aborting the MPI job", QUIESCE_MS / 1000);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	MPI_Cancel(&L->rx_req);
	MPI_Wait(&L->rx_req, MPI_STATUS_IGNORE);
	if (code == 0)
		code = exit_code(L);
	if (L->rank == 0)
		print_summary(L, code);
	ctl_close(L->ctl);
	vccp_destroy(L->vccp);
	fabric_destroy(L->fab);
	MPI_Comm_free(&L->ctrl_comm);
	free(L->ranks);
out_vm:
	vm_destroy(L->vm);
out_loop:
	worker_destroy(L->worker);
	loop_destroy(L->loop);
	restore_destroy(L->restore);
	pin_plan_destroy(L->pin);
out_finalize:
	MPI_Finalize();
	log_close();
	free(L);
	return code;
}
