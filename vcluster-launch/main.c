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
#include "fabric.h"
#include "lifeline.h"
#include "log.h"
#include "manifest.h"
#include "pin.h"
#include "rq.h"
#include "qmp.h"
#include "vc_magic.h"
#include "vccp.h"
#include "vcfmt.h"
#include "vm.h"

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
#define CTRL_VERSION	1
#define STATS_PERIOD_MS	1000
#define QUIESCE_MS	30000

enum ctrl_type {
	CTRL_EXIT = 1,		/* my VM is gone: status, reason */
	CTRL_ABORT,		/* stop every VM now: reason */
	CTRL_SHUTDOWN,		/* orderly power-down (to rank 0: please start one) */
	CTRL_STATS,		/* to rank 0: my counters */
};

/* Control message between ranks; fixed size, checked on receipt. */
struct ctrl_msg {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	int32_t rank;
	int32_t status;		/* EXIT: guest status, or -1 for a fault */
	int32_t signo;		/* SHUTDOWN: the signal that asked for it */
	int32_t vm_state;
	struct fabric_stats fab;
	uint64_t peer_queued;	/* batches queued to all peers */
	uint64_t ckpt_bytes;	/* VM state saved in the running checkpoint */
	char text[200];
	uint32_t crc;		/* CRC32C of everything before it */
};

struct rank_info {
	bool exited;
	int status;		/* guest status; -1 fault */
	char reason[200];
	bool have_stats;
	struct ctrl_msg stats;
	double stats_age;
};

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
	json_t *restore_manifest;
	char restore_dir[PATH_MAX];
	uint64_t restore_epoch;
	double last_ckpt_log;
	bool in_fabric;		/* fabric_progress() is on the stack */
	struct rank_info *ranks;
	int nexited;
	int sigfd;
	struct ctrl_msg rx_msg;
	MPI_Request rx_req;
	double start, last_stats;
	int interrupted;	/* signal that started a shutdown, or 0 */
	bool timed_out;
	bool aborting;
	bool shutting_down;
	char abort_reason[200];
};

/* ---- control messages -------------------------------------------------- */

static void ctrl_seal(struct ctrl_msg *m, struct launch *L, enum ctrl_type type)
{
	m->magic = VC_MAGIC_CTL;
	m->version = CTRL_VERSION;
	m->type = (uint16_t)type;
	m->rank = L->rank;
	m->crc = vcfmt_crc32c(0, m, offsetof(struct ctrl_msg, crc));
}

static void ctrl_send(struct launch *L, int to, struct ctrl_msg *m)
{
	/* Small messages go eagerly: MPI_Send returns without the peer. */
	MPI_Send(m, sizeof(*m), MPI_BYTE, to, TAG_CTRL, L->ctrl_comm);
}

static void ctrl_send_all(struct launch *L, struct ctrl_msg *m)
{
	for (int r = 0; r < L->size; r++)
		if (r != L->rank)
			ctrl_send(L, r, m);
}

static void handle_ctrl(struct launch *L, struct ctrl_msg *m);

static void broadcast_abort(struct launch *L, const char *reason)
{
	struct ctrl_msg m = { 0 };
	snprintf(m.text, sizeof(m.text), "%s", reason);
	ctrl_seal(&m, L, CTRL_ABORT);
	ctrl_send_all(L, &m);
	handle_ctrl(L, &m);
}

static void start_shutdown(struct launch *L, int signo, const char *why)
{
	if (L->rank != 0) {
		/* rank 0 decides, so every rank stops the same way */
		struct ctrl_msg m = { .signo = signo };
		snprintf(m.text, sizeof(m.text), "%s", why);
		ctrl_seal(&m, L, CTRL_SHUTDOWN);
		ctrl_send(L, 0, &m);
		return;
	}
	struct ctrl_msg m = { .signo = signo };
	snprintf(m.text, sizeof(m.text), "%s", why);
	ctrl_seal(&m, L, CTRL_SHUTDOWN);
	ctrl_send_all(L, &m);
	handle_ctrl(L, &m);
}

static void handle_ctrl(struct launch *L, struct ctrl_msg *m)
{
	switch (m->type) {
	case CTRL_EXIT: {
		struct rank_info *ri = &L->ranks[m->rank];
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
		snprintf(L->abort_reason, sizeof(L->abort_reason), "%s", m->text);
		if (strstr(m->text, "timeout"))
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
		int done = 0;
		MPI_Status st;
		MPI_Test(&L->rx_req, &done, &st);
		if (!done)
			return 0;
		*busy = true;
		struct ctrl_msg m = L->rx_msg;
		MPI_Irecv(&L->rx_msg, sizeof(L->rx_msg), MPI_BYTE, MPI_ANY_SOURCE,
			  TAG_CTRL, L->ctrl_comm, &L->rx_req);
		int count;
		MPI_Get_count(&st, MPI_BYTE, &count);
		if (count != sizeof(m) || m.magic != VC_MAGIC_CTL || m.version != CTRL_VERSION ||
		    m.crc != vcfmt_crc32c(0, &m, offsetof(struct ctrl_msg, crc)) ||
		    m.rank != st.MPI_SOURCE) {
			pr_err("malformed control message from rank %d (%d bytes); ignored",
			       st.MPI_SOURCE, count);
			continue;
		}
		handle_ctrl(L, &m);
	}
}

static void fill_stats(struct launch *L, struct ctrl_msg *m)
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

/* While a QMP call waits, keep frames moving (see qmp_set_wait_hook). */
static void qmp_wait_hook(void *ctx)
{
	struct launch *L = ctx;
	bool busy;

	if (L->fab && !L->in_fabric)
		fabric_progress(L->fab, &busy);
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
	static const char *states[] = { "running", "stopping", "exited" };

	if (!strcmp(command, "status")) {
		json_t *ranks = json_array();
		fill_stats(L, &L->ranks[0].stats);
		L->ranks[0].have_stats = true;
		L->ranks[0].stats_age = vc_mono_s();
		for (int r = 0; r < L->size; r++) {
			struct rank_info *ri = &L->ranks[r];
			struct ctrl_msg *s = &ri->stats;
			json_t *o = json_pack("{s:i, s:s}", "rank", r, "vm",
					      ri->exited ? "exited" :
					      ri->have_stats ? states[s->vm_state] : "unknown");
			if (ri->exited) {
				json_object_set_new(o, "status", json_integer(ri->status));
				if (ri->reason[0])
					json_object_set_new(o, "reason", json_string(ri->reason));
			}
			if (ri->have_stats) {
				json_object_set_new(o, "stats_age_s",
						    json_real(vc_mono_s() - ri->stats_age));
				json_object_set_new(o, "fabric", json_pack(
					"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:I}",
					"frames_from_vm", (json_int_t)s->fab.frames_from_vm,
					"bytes_from_vm", (json_int_t)s->fab.bytes_from_vm,
					"frames_to_vm", (json_int_t)s->fab.frames_to_vm,
					"bytes_to_vm", (json_int_t)s->fab.bytes_to_vm,
					"frames_flooded", (json_int_t)s->fab.frames_flooded,
					"frames_discarded", (json_int_t)s->fab.frames_discarded,
					"backpressure_stalls", (json_int_t)s->fab.backpressure_stalls,
					"spill_reads", (json_int_t)s->fab.spill_reads,
					"deliver_queue_bytes", (int)s->fab.deliver_queue_bytes,
					"send_queue_batches", (int)s->peer_queued,
					"npeers", (json_int_t)s->fab.npeers));
			}
			json_array_append_new(ranks, o);
		}
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
	struct ctrl_msg m = { 0 };
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

static void handle_signals(struct launch *L)
{
	struct signalfd_siginfo si;

	while (read(L->sigfd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;
		if (sig == SIGCHLD)
			continue;	/* vm_check_exit() runs every pass */
		if (sig == SIGUSR1) {
			/* mpirun hands it to every rank; rank 0 coordinates */
			if (L->rank != 0)
				continue;
			if (!L->vccp)
				pr_warn("SIGUSR1: checkpointing is off (no --checkpoint-dir)");
			else if (L->nexited)
				pr_warn("SIGUSR1: not every VM is running; no checkpoint");
			else if (vccp_request(L->vccp, "SIGUSR1") == -EBUSY)
				pr_info("SIGUSR1: a checkpoint is already running");
			continue;
		}
		if (L->shutting_down && sig != SIGHUP) {
			pr_warn("second %s: stopping the VMs now", strsignal(sig));
			broadcast_abort(L, "interrupted twice");
			L->interrupted = sig;
			continue;
		}
		char why[64];
		snprintf(why, sizeof(why), "%s received", strsignal(sig));
		start_shutdown(L, sig, why);
		if (L->rank != 0 && !L->interrupted)
			L->interrupted = sig;
	}
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
		struct rank_info *ri = &L->ranks[r];
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

static int run(struct launch *L)
{
	struct pollfd pfds[8];
	double last_busy = vc_mono_s();

	while (L->nexited < L->size) {
		int n = 0, fab_idx = -1, qmp_idx = -1, ctl_idx = -1;

		pfds[n++] = (struct pollfd){ .fd = L->sigfd, .events = POLLIN };
		if (L->fab && (fab_idx = n, fabric_pollfd(L->fab, &pfds[n])))
			n++;
		else
			fab_idx = -1;
		if (L->vm && vm_qmp_fd(L->vm) >= 0) {
			qmp_idx = n;
			pfds[n++] = (struct pollfd){ .fd = vm_qmp_fd(L->vm), .events = POLLIN };
		}
		if (L->ctl) {
			ctl_idx = n;
			ctl_pollfd(L->ctl, &pfds[n++]);
		}
		poll(pfds, (nfds_t)n, fabric_poll_timeout(L->fab, vc_mono_s(), last_busy,
							   L->cfg.fabric_spin_us));

		bool busy = false, b;
		if (pfds[0].revents)
			handle_signals(L);
		if (qmp_idx >= 0 && pfds[qmp_idx].revents) {
			json_t *ev;
			qmp_pump(vm_qmp(L->vm));
			while ((ev = qmp_next_event(vm_qmp(L->vm)))) {
				pr_debug("QMP event %s", json_string_value(json_object_get(ev, "event")));
				json_decref(ev);
			}
		}
		if (ctl_idx >= 0 && pfds[ctl_idx].revents)
			ctl_serve(L->ctl);
		(void)fab_idx;

		L->in_fabric = true;
		int r = fabric_progress(L->fab, &b);
		L->in_fabric = false;
		if (r < 0) {
			char why[200];
			snprintf(why, sizeof(why), "rank %d: fabric fault (%s)", L->rank, strerror(-r));
			broadcast_abort(L, why);
			return 2;
		}
		busy |= b;
		progress_ctrl(L, &b);
		busy |= b;

		if (L->vccp) {
			vccp_set_qmp(L->vccp, L->vm && !L->ranks[L->rank].exited ? vm_qmp(L->vm) : NULL);
			if (vccp_progress(L->vccp, &b) < 0) {
				broadcast_abort(L, "checkpoint protocol fault");
				return 2;
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
		double now = vc_mono_s();
		if (L->rank != 0 && now - L->last_stats >= STATS_PERIOD_MS / 1000.0) {
			struct ctrl_msg m;
			fill_stats(L, &m);
			ctrl_send(L, 0, &m);
			L->last_stats = now;
		}
		if (L->rank == 0 && L->cfg.timeout_s && !L->aborting &&
		    now - L->start > L->cfg.timeout_s) {
			char why[96];
			snprintf(why, sizeof(why), "timeout: the run passed %d s", L->cfg.timeout_s);
			broadcast_abort(L, why);
		}
		if (busy)
			last_busy = now;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct launch *L = calloc(1, sizeof(*L));
	char err[512] = "", why[512] = "", dir[PATH_MAX];
	int provided, r, code = 2;

	/* The signals the event loop reads are blocked before MPI starts its
	 * threads, which inherit the mask: a signal to the process would
	 * otherwise land in one of them and kill the rank (SIGUSR1 forwarded
	 * by mpirun did, with a checkpoint running) or be lost (SIGCHLD). */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);

	MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
	lifeline_arm();		/* a dead mpirun/orted kills this rank and its QEMU */
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
		char mtext_buf[1 << 16] = "";
		int ok = 1;
		if (L->rank == 0) {
			json_t *m = NULL;
			if (ckpt_resolve(c->checkpoint_dir, c->restore, L->restore_dir,
					 sizeof(L->restore_dir), &L->restore_epoch, &m, why,
					 sizeof(why)) < 0) {
				ok = 0;
			} else if (json_integer_value(json_object_get(m, "nranks")) != L->size) {
				snprintf(why, sizeof(why), "%s was taken with %lld ranks; this job has %d "
					 "(restart with mpirun -np %lld)", L->restore_dir,
					 json_integer_value(json_object_get(m, "nranks")), L->size,
					 json_integer_value(json_object_get(m, "nranks")));
				ok = 0;
			} else {
				char *t = json_dumps(m, JSON_COMPACT);
				if (t && strlen(t) < sizeof(mtext_buf))
					strcpy(mtext_buf, t);
				else
					ok = 0, snprintf(why, sizeof(why), "%s/manifest: too large", L->restore_dir);
				free(t);
			}
			json_decref(m);
			if (!ok)
				fprintf(stderr, "vcluster-launch: cannot restore: %s\n", why);
		}
		MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
		if (!ok)
			goto out_finalize;
		MPI_Bcast(mtext_buf, sizeof(mtext_buf), MPI_CHAR, 0, MPI_COMM_WORLD);
		MPI_Bcast(L->restore_dir, sizeof(L->restore_dir), MPI_CHAR, 0, MPI_COMM_WORLD);
		MPI_Bcast(&L->restore_epoch, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
		json_error_t jerr;
		L->restore_manifest = json_loads(mtext_buf, 0, &jerr);
		r = ckpt_verify_rank(L->restore_dir, L->restore_manifest, L->rank, why, sizeof(why));
		if (!all_ok(L, r == 0, why)) {
			if (L->rank == 0)
				pr_err("restore refused; nothing was changed");
			goto out_finalize;
		}
		json_t *conf = json_object_get(L->restore_manifest, "config");
		const char *key;
		json_t *val;
		r = 0;
		json_object_foreach(conf, key, val) {
			if (json_is_string(val) && cfg_set(c, key, json_string_value(val), why, sizeof(why)) < 0)
				r = -EINVAL;
		}
		if (!all_ok(L, r == 0, why))
			goto out_finalize;
		if (L->rank == 0)
			pr_info("restoring epoch %llu from %s", (unsigned long long)L->restore_epoch,
				L->restore_dir);
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

	/* Signals: one descriptor in the event loop (blocked above). */
	L->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	/* The VM. */
	struct vm_spec spec = {
		.cfg = c, .rank = L->rank, .nranks = L->size, .rank_dir = L->rank_dir,
		.qemu_bin = qemu, .qemu_patched = patched, .firmware_dir = patched ? fw : NULL,
		.kvm = kvm, .kernel = kernel, .initrd = initrd, .pin = L->pin,
		.incoming = c->restore[0] != 0,
	};
	char restore_disk[PATH_MAX + 32];
	if (c->restore[0] && json_object_get(json_array_get(json_object_get(L->restore_manifest,
							   "ranks"), (size_t)L->rank), "disk")) {
		snprintf(restore_disk, sizeof(restore_disk), "%s/rank%d.disk.qcow2", L->restore_dir,
			 L->rank);
		spec.restore_disk = restore_disk;
	}
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
	qmp_set_wait_hook(vm_qmp(L->vm), qmp_wait_hook, L);

	if (c->restore[0]) {
		struct rq *rq = NULL;
		char inner[400];
		r = vccp_load_vm(vm_qmp(L->vm), L->restore_dir, L->rank, 600000, inner, sizeof(inner));
		if (r == 0)
			r = vccp_load_rq(L->restore_dir, L->restore_epoch, L->rank, &rq, inner,
					 sizeof(inner));
		snprintf(why, sizeof(why), "rank %d: %s", L->rank, inner);
		if (!all_ok(L, r == 0, why)) {
			if (L->rank == 0)
				pr_err("restore failed; the checkpoint is unchanged");
			fabric_destroy(L->fab);
			L->fab = NULL;
			goto out_vm;
		}
		pr_info("VM state of epoch %llu loaded; %zu frames in the receive queue",
			(unsigned long long)L->restore_epoch, rq_count(rq));
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
		json_t *conf = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "memory", mem,
					 "vcpus", vcpus, "subnet", net, "guest-cmd", c->guest_cmd,
					 "append", c->append, "kernel", kabs);
		if (iabs[0])
			json_object_set_new(conf, "initrd", json_string(iabs));
		char dabs[PATH_MAX], active[PATH_MAX + 32];
		if (c->disk[0]) {
			if (!realpath(c->disk, dabs))
				snprintf(dabs, sizeof(dabs), "%s", c->disk);
			json_object_set_new(conf, "disk", json_string(dabs));
			snprintf(active, sizeof(active), "%s/disk.qcow2", L->rank_dir);
		}
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
					.on_resume = send_clock, .ctx = L };
		L->vccp = vccp_create(MPI_COMM_WORLD, L->fab, &vo);
		json_decref(conf);
	}

	MPI_Comm_dup(MPI_COMM_WORLD, &L->ctrl_comm);
	L->ranks = calloc((size_t)L->size, sizeof(*L->ranks));
	MPI_Irecv(&L->rx_msg, sizeof(L->rx_msg), MPI_BYTE, MPI_ANY_SOURCE, TAG_CTRL,
		  L->ctrl_comm, &L->rx_req);
	if (L->rank == 0) {
		char path[PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/ctl.sock", L->run_dir);
		L->ctl = ctl_open(path, ctl_handle, L, why, sizeof(why));
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
				(unsigned long long)L->restore_epoch);
	} else if (L->rank == 0) {
		pr_info("all %d VMs started; guests run: %s", L->size, c->guest_cmd);
	}

	code = run(L);
	{
		struct fabric_stats fs;
		fabric_get_stats(L->fab, &fs);
		pr_info("fabric totals: frames_from_vm=%llu frames_to_vm=%llu frames_from_rq=%llu "
			"frames_from_cut=%llu discarded=%llu stalls=%llu spill_reads=%llu",
			(unsigned long long)fs.frames_from_vm, (unsigned long long)fs.frames_to_vm,
			(unsigned long long)fs.frames_from_rq, (unsigned long long)fs.frames_from_cut,
			(unsigned long long)fs.frames_discarded,
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
	json_decref(L->restore_manifest);
	pin_plan_destroy(L->pin);
out_finalize:
	MPI_Finalize();
	log_close();
	free(L);
	return code;
}
