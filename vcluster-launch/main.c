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
#include "launch.h"

#include "config.h"
#include "ctl.h"
#include "ctrlmsg.h"
#include "fabric.h"
#include "firsterr.h"
#include "lifeline.h"
#include "log.h"
#include "loop.h"
#include "qmp.h"
#include "restore.h"
#include "status.h"
#include "livesrc.h"
#include "vccp.h"
#include "vm.h"
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- control messages -------------------------------------------------- */

static void ctrl_seal(struct ctrlmsg *m, struct launch *L, enum ctrl_type type)
{
	m->type = type;
	m->rank = L->rank;
}

/* Small messages go eagerly: MPI_Send returns without the peer.  A failure
 * names the peer (the communicator returns errors instead of aborting). */
void ctrl_send(struct launch *L, int to, const struct ctrlmsg *m)
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

void launch_fault(struct launch *L, const char *why)
{
	broadcast_abort(L, CTRL_CODE_FAULT, why);
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
		if (L->rank == 0 && L->vccp) {
			char why[96];
			snprintf(why, sizeof(why), "node%d's VM has ended", m->rank);
			vccp_interval_off(L->vccp, why);
		}
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
	default:	/* CTRL_MIG_* */
		migrun_ctrl(L, m);
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

/* ---- vcluster-ctl ------------------------------------------------------ */

/* vcluster-ctl migrate: every check of migrate.h, then the move.  The
 * move itself is not built yet (the fabric's switch-over): refused,
 * nothing changed; --rehearse runs everything up to it (migrun.c). */
static json_t *ctl_migrate(struct launch *L, json_t *req)
{
	struct mig_req q;
	char why[256];
	int from, to;

	if (mig_parse(req, &q, why, sizeof(why)) < 0 ||
	    mig_check(&L->mig, L->ranks, L->size, &q, L->vccp && vccp_active(L->vccp), &from, &to,
		      why, sizeof(why)) < 0)
		return json_pack("{s:b, s:s}", "ok", 0, "error", why);
	if (q.rehearse)
		return migrun_begin(L, &q, from, to);
	snprintf(why, sizeof(why), "migrate node%d from rank %d (%s) to rank %d (%s): moving a VM is "
		 "not built yet (issue 14); nothing was changed", q.node, from, L->ranks[from].host,
		 to, L->ranks[to].host);
	return json_pack("{s:b, s:s}", "ok", 0, "error", why);
}

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
		json_t *mj = migrun_status_json(L);
		if (mj)
			json_object_set_new(rep, "migration", mj);
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
		char busy[160];
		if (mig_busy_reason(&L->mig, busy, sizeof(busy)))
			return json_pack("{s:b, s:s}", "ok", 0, "error", busy);
		const char *mode = json_string_value(json_object_get(req, "mode"));
		int m = !mode ? VCCP_MODE_DEFAULT : !strcmp(mode, "live") ? VCCP_MODE_LIVE :
			!strcmp(mode, "stop") ? VCCP_MODE_STOP : -1;
		if (m < 0 || (m == VCCP_MODE_LIVE && !L->live))
			return json_pack("{s:b, s:s}", "ok", 0, "error", m < 0 ?
					 "--mode is one of live, stop" :
					 "--mode live: this job was started without --checkpoint-mode live");
		int r = vccp_request_mode(L->vccp, "vcluster-ctl checkpoint", m);
		if (r == -EBUSY)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "a checkpoint is already running");
		json_t *last = vccp_last_json(L->vccp);
		json_int_t prev = last ? json_integer_value(json_object_get(last, "epoch")) : 0;
		json_decref(last);
		return json_pack("{s:b, s:s, s:I}", "ok", 1, "message", "checkpoint started",
				 "after_epoch", prev);
	}
	if (!strcmp(command, "migrate"))
		return ctl_migrate(L, req);
	if (!strcmp(command, "shutdown")) {
		start_shutdown(L, 0, "vcluster-ctl shutdown");
		return json_pack("{s:b, s:s}", "ok", 1, "message", "shutting down");
	}
	return json_pack("{s:b, s:s}", "ok", 0, "error",
			 "unknown command (status, shutdown, checkpoint, migrate)");
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
		else if (L->mig.active)
			pr_warn("SIGUSR1: a migration is running; no checkpoint");
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
		pr_info("all %d guests succeeded (%.1f s)", L->nvms, vc_mono_s() - L->start);
	else
		pr_info("finished with exit status %d (%d of %d guests did not succeed); logs in %s",
			code, failed, L->nvms, L->run_dir);
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
		/* QEMU closed it; vm_check_exit() tells why.  Silence it until
		 * vm.c closes it (update_watches then drops the watch). */
		loop_mod_fd(lp, fd, 0);
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
	/* TCP fabric: its peer sockets wake the loop through one descriptor */
	int nfd = L->fab ? fabric_net_fd(L->fab) : -1;
	if (nfd != L->fab_net_fd) {
		if (L->fab_net_fd >= 0)
			loop_del_fd(L->loop, L->fab_net_fd);
		L->fab_net_fd = -1;
		if (nfd >= 0 && loop_add_fd(L->loop, nfd, LOOP_IN, on_fabric_fd, L) == 0)
			L->fab_net_fd = nfd;
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
		qmp_pump(q);	/* the asynchronous commands' timeouts */

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
		/* QMP may have just closed: the callbacks of this pass (worker
		 * completions) must not see the old connection */
		if (L->vccp)
			vccp_set_qmp(L->vccp, !L->ranks[L->rank].exited ? vm_qmp(L->vm) : NULL);
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
	if (L->nexited >= L->nvms && L->vccp_live)
		loop_stop(lp);
	update_watches(L);
	int t = fabric_poll_timeout(L->fab, now, L->last_busy, L->cfg.fabric_spin_us);
	/* a checkpoint's MPI collectives have no descriptor either */
	if (L->vccp && vccp_active(L->vccp) && t > 1)
		t = 1;
	return t;
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

/* The signals the event loop reads through its signalfd. */
static void loop_signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGUSR1);
}

static void block_loop_signals(void)
{
	sigset_t set;

	loop_signal_set(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

/* The event loop: signals and the worker's completions come in as
 * descriptors; the progress step runs before every sleep. */
static bool setup_loop(struct launch *L)
{
	sigset_t set;
	char why[128] = "";
	int r;

	loop_signal_set(&set);
	L->fab_fd = L->fab_net_fd = L->qmp_fd = -1;
	L->loop = loop_create();
	/* Blocked now, taken from the loop once the rank is set up (start_loop):
	 * until then the loop only waits for QEMU, and a signal waits. */
	r = L->loop ? (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ? -errno : 0) : -errno;
	if (r == 0) {
		L->worker = worker_create(2);
		r = L->worker ? loop_add_fd(L->loop, worker_fd(L->worker), LOOP_IN, on_worker_fd, L)
			      : -errno;
	}
	if (r < 0)
		snprintf(why, sizeof(why), "rank %d: event loop: %s", L->rank, strerror(-r));
	return all_ok(L, r == 0, why);
}

/* The fabric exists: the progress step before every sleep, and the signals
 * (those that came meanwhile too). */
static bool start_loop(struct launch *L)
{
	sigset_t set;
	char why[128] = "";

	loop_signal_set(&set);
	int r = loop_add_signals(L->loop, &set, on_signal, L);
	if (r < 0)
		snprintf(why, sizeof(why), "rank %d: event loop: %s", L->rank, strerror(-r));
	loop_set_before_sleep(L->loop, before_sleep, L);
	return all_ok(L, r == 0, why);
}

/* Control messages between ranks and, on rank 0, the control socket. */
static void setup_control(struct launch *L)
{
	char why[512], me[64] = "";

	/* which host runs which node, for vcluster-ctl status */
	gethostname(me, sizeof(me) - 1);
	L->hosts = calloc((size_t)L->size, sizeof(*L->hosts));
	MPI_Allgather(me, sizeof(me), MPI_CHAR, L->hosts, sizeof(me), MPI_CHAR, MPI_COMM_WORLD);
	for (int r = 0; r < L->size; r++) {
		L->ranks[r].node = launch_spare(L, r) ? -1 : r;
		snprintf(L->ranks[r].host, sizeof(L->ranks[r].host), "%s", L->hosts[r]);
	}

	MPI_Comm_dup(MPI_COMM_WORLD, &L->ctrl_comm);
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
}

/* After the loop: wind the checkpoint protocol and the channels down with
 * every rank, then the job's exit status. */
static int wind_down(struct launch *L, int code)
{
	struct fabric_stats fs;

	fabric_get_stats(L->fab, &fs);
	pr_info("fabric totals: frames_from_vm=%llu frames_to_vm=%llu frames_from_rq=%llu "
		"frames_from_cut=%llu discarded=%llu stalls=%llu spill_reads=%llu",
		(unsigned long long)fs.frames_from_vm, (unsigned long long)fs.frames_to_vm,
		(unsigned long long)fs.frames_from_rq, (unsigned long long)fs.frames_from_cut,
		(unsigned long long)fs.frames_discarded,
		(unsigned long long)fs.backpressure_stalls, (unsigned long long)fs.spill_reads);
	if (L->vccp && vccp_finish(L->vccp, QUIESCE_MS) < 0)
		pr_err("the checkpoint protocol did not wind down within %d s", QUIESCE_MS / 1000);
	if (fabric_quiesce(L->fab, QUIESCE_MS) < 0) {
		pr_err("a peer rank did not finish within %d s; aborting the MPI job", QUIESCE_MS / 1000);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	acct_print(L, false, 0);	/* nothing is in flight now */
	MPI_Cancel(&L->rx_req);
	MPI_Wait(&L->rx_req, MPI_STATUS_IGNORE);
	if (code == 0)
		code = exit_code(L);
	if (L->rank == 0)
		print_summary(L, code);
	return code;
}

/* Options; 0 to go on, else the exit status (help: 0, bad input: 2). */
static int setup_config(struct launch *L, int argc, char **argv)
{
	struct vc_config *c = &L->cfg;
	char err[512] = "";
	int r = cfg_load(c, argc, argv, err, sizeof(err));

	if (r != 0) {
		if (r < 0 && L->rank == 0)
			fprintf(stderr, "vcluster-launch: %s\n", err);
		return r > 0 ? -1 : 2;
	}
	if (L->rank != 0 && c->verbose < 2)
		log_set_console_level(LOG_WARN);
	if (c->verbose >= 2)
		log_set_console_level(LOG_DEBUG);
	L->nvms = c->vms ? c->vms : L->size;
	if (c->vms > L->size) {
		if (L->rank == 0)
			fprintf(stderr, "vcluster-launch: --vms %d: only %d ranks (one VM per rank at most)\n",
				c->vms, L->size);
		return 2;
	}
	if (L->nvms < L->size && (c->checkpoint_dir[0] || c->restore[0])) {
		/* a spare has no VM state: the checkpoint protocol does not know
		 * such a rank yet, and a cut must never see a half-moved VM */
		if (L->rank == 0)
			fprintf(stderr, "vcluster-launch: --vms %d leaves %d spare ranks; checkpoints "
				"(--checkpoint-dir) do not work with spare ranks yet\n", c->vms,
				L->size - c->vms);
		return 2;
	}
	if (L->size > cfg_subnet_capacity(c)) {
		if (L->rank == 0) {
			char net[40];
			cfg_subnet_str(c, net, sizeof(net));
			fprintf(stderr, "vcluster-launch: --subnet %s has room for %d VMs, not %d\n",
				net, cfg_subnet_capacity(c), L->size);
		}
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct launch *L = calloc(1, sizeof(*L));
	int provided, code = 2;

	/* The signals the event loop reads are blocked before MPI starts its
	 * threads, which inherit the mask: a signal to the process would
	 * otherwise land in one of them and kill the rank (SIGUSR1 forwarded
	 * by mpirun did, with a checkpoint running) or be lost (SIGCHLD). */
	block_loop_signals();
	MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
	lifeline_arm();		/* a dead mpirun/orted kills this rank and its QEMU */
	/* failures come back as codes (and name their peer), not as aborts */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &L->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &L->size);
	firsterr_init(&L->abort);
	log_init("vcluster-launch", L->rank);
	L->start = vc_mono_s();
	signal(SIGPIPE, SIG_IGN);

	int r = setup_config(L, argc, argv);
	if (r) {
		code = r < 0 ? 0 : r;
		goto out_finalize;
	}
	if (!setup_run_dir(L) || !setup_ckpt_dirs(L) || !setup_restore(L) || !setup_boot(L))
		goto out_finalize;
	setup_pin(L);
	if (!setup_loop(L))
		goto out_loop;
	if (!setup_vm(L) || !setup_checkpointing(L))
		goto out_vm;
	if (!start_loop(L))
		goto out_vm;
	L->ranks = calloc((size_t)L->size, sizeof(*L->ranks));
	setup_control(L);
	MPI_Barrier(MPI_COMM_WORLD);
	setup_resume(L);

	code = wind_down(L, run(L));
	migrun_destroy(L);

	ctl_close(L->ctl);
	vccp_destroy(L->vccp);
	livesrc_destroy(L->live);
	fabric_destroy(L->fab);
	L->fab = NULL;
	MPI_Comm_free(&L->ctrl_comm);
	free(L->ranks);
	free(L->hosts);
out_vm:
	migrun_destroy(L);
	fabric_destroy(L->fab);
	vm_destroy(L->vm);
out_loop:
	worker_destroy(L->worker);
	loop_destroy(L->loop);
	restore_destroy(L->restore);
	pin_plan_destroy(L->pin);
out_finalize:
	firsterr_destroy(&L->abort);
	MPI_Finalize();
	log_close();
	free(L);
	return code;
}
