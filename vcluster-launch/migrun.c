/* migrun: a rank's part in moving a node to a spare (migrate.h's plan,
 * steps 1, 2 and 5, with QEMU's own migration).
 *
 * Rank 0 leads: PREPARE to the target T, which starts node N's QEMU
 * (setup_spawn_node: the node's identity, -incoming defer -S), sets the
 * multifd capability and channels, runs migrate-incoming on a TCP port of
 * its host's address (port 0: QEMU picks one, query-migrate's
 * socket-address says which) and answers READY with address and port.
 * Rank 0 sends START to the source S, which migrates there (multifd with
 * --streams channels), polls query-migrate from a loop timer and reports
 * PROGRESS; QEMU ends it as stop-and-copy.  Every QMP command is async on
 * the rank's loop; nothing here waits.
 *
 * The fabric's switch-over (plan step 3) is not built, so the only move
 * offered is a rehearsal (vcluster-ctl migrate --rehearse): once QEMU says
 * completed, S resumes its VM at once (cont), reports DONE, and T checks
 * that its QEMU received the whole VM (query-migrate: completed), throws
 * it away and stays a spare.  The guest sees the stop-and-copy's pause.
 *
 * Failure (either end reports FAIL, or the destination QEMU exits): rank
 * 0 orders the other end to give up: T kills its QEMU, S cancels (QEMU
 * resumes a VM whose migration is cancelled or failed), the node keeps
 * running at S and T is marked spare_failed.
 *
 * Rank 0 also gives up when neither end has said anything for
 * MR_SILENCE_S (a PROGRESS comes every second while QEMU sends).
 *
 * Not yet: the TLS-PSK keyed by the message's secret (the port is open to
 * anyone on the hosts' network while T listens).  The patched QEMU of
 * `make qemu` is built without GnuTLS ("TLS credentials support requires
 * GNUTLS"), so its build needs it first.
 */
#define LOG_PREFIX "migrun"
#include "vctime.h"
#include "launch.h"

#include "log.h"
#include "loop.h"
#include "qmp.h"
#include "qmpmig.h"
#include "ramsum.h"
#include "vm.h"
#include "worker.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#define MR_CMD_MS	10000	/* a QMP command's answer */
#define MR_START_MS	30000	/* the destination QEMU answering on QMP */
#define MR_POLL_MS	250	/* query-migrate at the source; the target's checks */
#define MR_PROGRESS_S	1.0	/* between PROGRESS reports */
#define MR_SILENCE_S	60.0	/* rank 0 gives up on an end that says nothing */

enum mr_lead { LEAD_IDLE, LEAD_PREPARING, LEAD_MIGRATING, LEAD_ENDING };

struct migrun {
	struct launch *L;
	/* rank 0: the migration it leads, and the last one's result */
	enum mr_lead lead;
	struct ctrl_mig lm;
	int flags;
	double t_begin, t_progress;	/* t_progress: the last word from an end */
	struct loop_timer *lead_timer;
	uint64_t sent, total;
	uint32_t next_id;
	bool have_result, result_ok;
	char result[512];
	/* target: the destination QEMU, from PREPARE until it is gone */
	struct ctrl_mig tm;
	int tflags;
	struct vm *dest;
	int dest_link;			/* its VM link: held, never attached */
	int dest_qfd;			/* its QMP descriptor watched, or -1 */
	struct loop_timer *dest_timer;
	struct loop_timer *drop_timer;	/* dest_drop_later() */
	bool dest_listening, dest_ending, dest_reported;
	double dest_end_by;		/* ending: the destination completes by then */
	char addr[64];
	/* source: its own VM's migration, from START until it ends */
	struct ctrl_mig sm;
	int sflags;
	bool src_active, src_poll_busy, src_done;
	char addr_src[CTRLMSG_TEXT + 1];	/* the target's address */
	long long downtime_ms;
	struct loop_timer *src_timer;
	double src_last_progress;
	/* RAM checksums on the worker (ramsum.h): mr lives until the last */
	int jobs;
	int src_cmds;			/* QMP commands on the node's QEMU not answered */
	bool destroyed;
	bool src_have_crc;
	uint32_t src_crc;		/* rank 0: the source's, from its DONE */
};

/* A checksum of a stopped QEMU's RAM, on the worker. */
struct sum_job {
	struct migrun *mr;
	uint32_t id;			/* the migration's */
	pid_t pid;
	uint64_t length;
	int rc;
	uint32_t crc;
	double seconds;
	char why[256];
	void (*done)(struct migrun *mr, struct sum_job *j);
};

static void sum_run(void *arg)
{
	struct sum_job *j = arg;
	double t0 = vc_mono_s();

	j->rc = ramsum_qemu(j->pid, j->length, &j->crc, j->why, sizeof(j->why));
	j->seconds = vc_mono_s() - t0;
}

static void sum_done(void *arg)
{
	struct sum_job *j = arg;
	struct migrun *mr = j->mr;

	mr->jobs--;
	if (!mr->destroyed)
		j->done(mr, j);
	free(j);
	if (mr->destroyed && mr->jobs == 0 && mr->src_cmds == 0)
		free(mr);
}

/* A command on the node's QEMU, whose QMP outlives migrun_destroy() (the
 * launcher closes it later): its callback starts with src_cb_gone(). */
static int src_exec(struct migrun *mr, struct qmp *q, const char *cmd, json_t *args,
		    qmp_cb cb, void *ctx)
{
	int r = qmp_exec_async(q, cmd, args, -1, MR_CMD_MS, cb, ctx);

	if (r == 0)
		mr->src_cmds++;
	return r;
}

/* True when mr is being destroyed (the callback must return at once);
 * frees it after its last job and command. */
static bool src_cb_gone(struct migrun *mr)
{
	mr->src_cmds--;
	if (!mr->destroyed)
		return false;
	if (mr->src_cmds == 0 && mr->jobs == 0)
		free(mr);
	return true;
}

/* Queue the checksum of QEMU pid's RAM; done(mr, job) runs on the loop. */
static int sum_submit(struct migrun *mr, uint32_t id, pid_t pid,
		      void (*done)(struct migrun *, struct sum_job *))
{
	struct sum_job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	*j = (struct sum_job){ .mr = mr, .id = id, .pid = pid,
			       .length = mr->L->cfg.memory_mib << 20, .done = done };
	int r = worker_submit(mr->L->worker, sum_run, sum_done, j);
	if (r < 0) {
		free(j);
		return r;
	}
	mr->jobs++;
	return 0;
}

static struct migrun *mr_get(struct launch *L)
{
	if (!L->migrun) {
		L->migrun = calloc(1, sizeof(*L->migrun));
		if (!L->migrun)
			return NULL;
		L->migrun->L = L;
		L->migrun->dest_link = -1;
		L->migrun->dest_qfd = -1;
	}
	return L->migrun;
}

/* A migration message to rank `to`; to ourselves it is handled at once
 * (rank 0 may be an end of the migration it leads). */
static void mr_send(struct launch *L, int to, enum ctrl_type type, const struct ctrl_mig *g,
		    int flags, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void mr_send(struct launch *L, int to, enum ctrl_type type, const struct ctrl_mig *g,
		    int flags, const char *fmt, ...)
{
	struct ctrlmsg m = { .type = type, .rank = L->rank, .status = flags, .mig = *g };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	if (to == L->rank)
		migrun_ctrl(L, &m);
	else
		ctrl_send(L, to, &m);
}

/* ---- the target: the destination QEMU ------------------------------------ */

static void dest_report_fail(struct migrun *mr, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Kill the destination QEMU (if any) and forget it; the spare stays one. */
static void dest_drop(struct migrun *mr)
{
	struct launch *L = mr->L;

	loop_del_timer(L->loop, mr->dest_timer);
	mr->dest_timer = NULL;
	if (mr->dest_qfd >= 0)
		loop_del_fd(L->loop, mr->dest_qfd);
	mr->dest_qfd = -1;
	vm_destroy(mr->dest);		/* SIGKILL and reap: no wait worth the name */
	mr->dest = NULL;
	if (mr->dest_link >= 0)
		close(mr->dest_link);
	mr->dest_link = -1;
	mr->dest_listening = mr->dest_ending = false;
}

static void on_drop(struct loop *l, void *ctx)
{
	struct migrun *mr = ctx;

	mr->drop_timer = NULL;	/* a one-shot timer: the loop has freed it */
	dest_drop(mr);
}

/* The same from a QMP or start callback, which must not close QMP or
 * destroy the VM under its caller: from the loop, right after. */
static void dest_drop_later(struct migrun *mr)
{
	if (!mr->drop_timer)
		mr->drop_timer = loop_add_timer(mr->L->loop, 1, 0, on_drop, mr);
	if (!mr->drop_timer)
		pr_err("a loop timer: %s; the destination QEMU stays until the run ends",
		       strerror(errno));
}

static void dest_report_fail(struct migrun *mr, const char *fmt, ...)
{
	char text[CTRLMSG_TEXT + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (!mr->dest_reported) {
		mr->dest_reported = true;
		pr_err("migration %u of node%d: %s", mr->tm.id, mr->tm.node, text);
		mr_send(mr->L, 0, CTRL_MIG_FAIL, &mr->tm, mr->tflags | CTRL_MIG_F_REPORT,
			"rank %d: %s", mr->L->rank, text);
	}
	dest_drop_later(mr);
}

static void on_dest_qmp(struct loop *l, int fd, unsigned ev, void *ctx)
{
	struct migrun *mr = ctx;
	struct qmp *q = mr->dest ? vm_qmp(mr->dest) : NULL;
	json_t *e;

	if (!q || qmp_pump(q) < 0) {
		loop_del_fd(l, fd);	/* QEMU went; the timer says so */
		mr->dest_qfd = -1;
		return;
	}
	while ((e = qmp_next_event(q)))
		json_decref(e);
}

/* Every MR_POLL_MS while the destination exists: QMP timeouts, and QEMU
 * exiting under us. */
static void on_dest_tick(struct loop *l, void *ctx)
{
	struct migrun *mr = ctx;
	struct qmp *q = mr->dest ? vm_qmp(mr->dest) : NULL;

	siginfo_t si = { 0 };

	if (q && qmp_pending(q))
		qmp_pump(q);
	/* peek first (WNOWAIT): the watch goes before vm_check_exit() closes
	 * QMP, so that no new descriptor of the same number loses its watch */
	if (!mr->dest || mr->drop_timer ||
	    waitid(P_PID, (id_t)vm_pid(mr->dest), &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
	    si.si_pid == 0)
		return;
	if (mr->dest_qfd >= 0)
		loop_del_fd(l, mr->dest_qfd);
	mr->dest_qfd = -1;
	vm_check_exit(mr->dest);
	char why[300] = "";
	int st;
	vm_result(mr->dest, &st, why, sizeof(why));
	dest_report_fail(mr, "the destination QEMU exited: %s", why);
}

static void dest_summed(struct migrun *mr, struct sum_job *j);
static void dest_query(struct migrun *mr);

static void on_dest_requery(struct loop *l, void *ctx)
{
	struct migrun *mr = ctx;

	if (mr->dest && !mr->dest_reported && !mr->drop_timer)
		dest_query(mr);
}

/* query-migrate at the target: the listening port first, the completion
 * at the end of a rehearsal. */
static void on_dest_query(void *ctx, int err, json_t *ret, const char *why)
{
	struct migrun *mr = ctx;

	if (!mr->dest || mr->dest_reported)
		return;
	if (err < 0) {
		dest_report_fail(mr, "query-migrate at the destination: %s", why);
		return;
	}
	if (mr->dest_ending) {
		struct qmpmig_status st;
		qmpmig_parse(ret, &st);
		/* multifd: the destination ends a little after the source */
		if (st.state == QMPMIG_ACTIVE && vc_mono_s() < mr->dest_end_by) {
			if (!loop_add_timer(mr->L->loop, MR_POLL_MS / 2, 0, on_dest_requery, mr))
				dest_report_fail(mr, "a loop timer: %s", strerror(errno));
			return;
		}
		if (st.state != QMPMIG_COMPLETED) {
			dest_report_fail(mr, "the destination did not receive the whole VM "
					 "(its migration status: %s)", st.status);
			return;
		}
		int r = sum_submit(mr, mr->tm.id, vm_pid(mr->dest), dest_summed);
		if (r < 0)
			dest_report_fail(mr, "checksumming the destination's RAM: %s", strerror(-r));
		return;
	}
	json_t *sa = json_array_get(json_object_get(ret, "socket-address"), 0);
	const char *port = json_string_value(json_object_get(sa, "port"));
	long p = port ? strtol(port, NULL, 10) : 0;
	if (p <= 0 || p > 65535) {
		dest_report_fail(mr, "the destination QEMU does not say its listening port "
				 "(query-migrate has no socket-address)");
		return;
	}
	mr->tm.port = (uint16_t)p;
	mr->dest_listening = true;
	pr_info("migration %u: node%d's destination QEMU listens at %s:%ld", mr->tm.id,
		mr->tm.node, mr->addr, p);
	mr_send(mr->L, 0, CTRL_MIG_READY, &mr->tm, mr->tflags | CTRL_MIG_F_REPORT, "%s", mr->addr);
}

/* The destination's RAM checksum (it has not run: -S): DONE to rank 0,
 * which compares it with the source's; then the destination goes. */
static void dest_summed(struct migrun *mr, struct sum_job *j)
{
	if (!mr->dest || mr->dest_reported || j->id != mr->tm.id)
		return;		/* abandoned meanwhile */
	if (j->rc < 0) {
		dest_report_fail(mr, "checksumming the destination's RAM: %s", j->why);
		return;
	}
	pr_info("rehearsal of node%d's migration: the destination received the whole VM (RAM "
		"CRC32C 0x%08x, %.2f s to compute); discarding it (the node runs on at rank %d)",
		mr->tm.node, j->crc, j->seconds, mr->tm.from);
	mr->dest_reported = true;
	mr->tm.ram_crc = j->crc;
	mr_send(mr->L, 0, CTRL_MIG_DONE, &mr->tm, mr->tflags | CTRL_MIG_F_REPORT | CTRL_MIG_F_CRC,
		"the destination received the whole VM");
	dest_drop_later(mr);
}

static void dest_query(struct migrun *mr)
{
	struct qmp *q = vm_qmp(mr->dest);
	int r = q ? qmp_exec_async(q, "query-migrate", NULL, -1, MR_CMD_MS, on_dest_query, mr)
		  : -EPIPE;
	if (r < 0)
		dest_report_fail(mr, "query-migrate at the destination: %s", strerror(-r));
}

/* Each step's reply: the next step, or the failure. */
/* migrate-set-capabilities' arguments: multifd on or off (both ends alike). */
static json_t *multifd_caps(bool multifd)
{
	return json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "multifd", "state",
			 multifd);
}

static void on_dest_step(void *ctx, int err, json_t *ret, const char *why);

/* The set-up at the target, in order: capabilities, channels, listen. */
static int dest_step(struct migrun *mr, int step)
{
	struct qmp *q = vm_qmp(mr->dest);
	bool multifd = mr->tm.streams > 1;
	char uri[96];
	json_t *args;
	const char *cmd;

	switch (step) {
	case 0:
		cmd = "migrate-set-capabilities";
		args = multifd_caps(multifd);
		break;
	case 1:
		cmd = "migrate-set-parameters";
		args = json_pack("{s:i}", "multifd-channels", multifd ? mr->tm.streams : 2);
		break;
	case 2:
		snprintf(uri, sizeof(uri), "tcp:%s:0", mr->addr);
		cmd = "migrate-incoming";
		args = json_pack("{s:s}", "uri", uri);
		break;
	default:
		dest_query(mr);
		return 0;
	}
	/* the step travels in the context's low bits: mr is aligned */
	int r = q ? qmp_exec_async(q, cmd, args, -1, MR_CMD_MS, on_dest_step,
				   (void *)((uintptr_t)mr | (uintptr_t)step)) : -EPIPE;
	if (r < 0) {
		if (!q)
			json_decref(args);
		dest_report_fail(mr, "%s at the destination: %s", cmd, strerror(-r));
	}
	return r;
}

static void on_dest_step(void *ctx, int err, json_t *ret, const char *why)
{
	struct migrun *mr = (struct migrun *)((uintptr_t)ctx & ~(uintptr_t)3);
	int step = (int)((uintptr_t)ctx & 3);
	static const char *names[] = { "migrate-set-capabilities", "migrate-set-parameters",
				       "migrate-incoming" };

	if (!mr->dest || mr->dest_reported)
		return;
	if (err < 0) {
		dest_report_fail(mr, "%s at the destination: %s", names[step], why);
		return;
	}
	dest_step(mr, step + 1);
}

static void on_dest_ready(void *ctx, struct vm *vm, int err, const char *why)
{
	struct migrun *mr = ctx;
	struct launch *L = mr->L;

	if (err < 0) {
		dest_report_fail(mr, "the destination QEMU did not start: %s", why);
		return;
	}
	mr->dest_qfd = vm_qmp_fd(vm);
	if (loop_add_fd(L->loop, mr->dest_qfd, LOOP_IN, on_dest_qmp, mr) < 0) {
		mr->dest_qfd = -1;
		dest_report_fail(mr, "watching the destination's QMP: %s", strerror(errno));
		return;
	}
	mr->dest_timer = loop_add_timer(L->loop, MR_POLL_MS, MR_POLL_MS, on_dest_tick, mr);
	dest_step(mr, 0);
}

/* The address this host listens on: --fabric-addr, else what its name
 * resolves to (IPv4 first, as the fabric does). */
static int host_addr(struct launch *L, char *out, size_t len)
{
	char host[256];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;

	if (L->cfg.fabric_addr[0]) {
		snprintf(out, len, "%s", L->cfg.fabric_addr);
		return 0;
	}
	if (gethostname(host, sizeof(host)) < 0)
		return -errno;
	host[sizeof(host) - 1] = '\0';
	if (getaddrinfo(host, NULL, &hints, &res) || !res)
		return -EADDRNOTAVAIL;
	struct addrinfo *a = res;
	for (struct addrinfo *p = res; p; p = p->ai_next)
		if (p->ai_family == AF_INET) {
			a = p;
			break;
		}
	int r = getnameinfo(a->ai_addr, a->ai_addrlen, out, (socklen_t)len, NULL, 0,
			    NI_NUMERICHOST);
	freeaddrinfo(res);
	return r ? -EADDRNOTAVAIL : 0;
}

static void target_prepare(struct migrun *mr, const struct ctrlmsg *m)
{
	struct launch *L = mr->L;
	char why[512] = "";

	if (mr->dest || mr->drop_timer) {
		mr_send(L, 0, CTRL_MIG_FAIL, &m->mig, m->status | CTRL_MIG_F_REPORT,
			"rank %d: a destination QEMU is already running here", L->rank);
		return;
	}
	mr->tm = m->mig;
	mr->tflags = m->status & CTRL_MIG_F_REHEARSE;
	mr->dest_reported = false;
	if (L->vm || !launch_spare(L, L->rank)) {
		dest_report_fail(mr, "not a spare: this rank runs a VM");
		return;
	}
	int r = host_addr(L, mr->addr, sizeof(mr->addr));
	if (r < 0) {
		dest_report_fail(mr, "cannot find this host's address (%s); give it with "
				 "--fabric-addr", strerror(-r));
		return;
	}
	pr_info("migration %u: starting node%d's destination QEMU (from rank %d, %d stream%s)",
		mr->tm.id, mr->tm.node, mr->tm.from, mr->tm.streams, mr->tm.streams > 1 ? "s" : "");
	mr->dest = setup_spawn_node(L, mr->tm.node, true, &mr->dest_link, why, sizeof(why));
	if (!mr->dest) {
		dest_report_fail(mr, "starting the destination QEMU: %s", why);
		return;
	}
	r = vm_connect_async(mr->dest, L->loop, MR_START_MS, on_dest_ready, mr);
	if (r < 0)
		dest_report_fail(mr, "waiting for the destination QEMU: %s", strerror(-r));
}

/* Rank 0's order: end a rehearsal (check, then discard) or give up. */
static void target_order(struct migrun *mr, const struct ctrlmsg *m)
{
	if (!mr->dest || m->mig.id != mr->tm.id)
		return;
	if (m->type == CTRL_MIG_FAIL) {
		pr_info("migration %u of node%d abandoned: %s; destination QEMU killed", mr->tm.id,
			mr->tm.node, m->text);
		mr->dest_reported = true;
		dest_drop_later(mr);
		return;
	}
	mr->dest_ending = true;		/* DONE of a rehearsal */
	mr->dest_end_by = vc_mono_s() + 30;
	dest_query(mr);
}

/* ---- the source: its own VM's migration ----------------------------------- */

static void src_end(struct migrun *mr)
{
	loop_del_timer(mr->L->loop, mr->src_timer);
	mr->src_timer = NULL;
	mr->src_active = false;
}

static void src_fail(struct migrun *mr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void src_fail(struct migrun *mr, const char *fmt, ...)
{
	char text[CTRLMSG_TEXT + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (!mr->src_active)
		return;
	pr_err("migration %u of node%d: %s", mr->sm.id, mr->sm.node, text);
	src_end(mr);
	mr_send(mr->L, 0, CTRL_MIG_FAIL, &mr->sm, mr->sflags | CTRL_MIG_F_REPORT, "rank %d: %s",
		mr->L->rank, text);
}

static struct qmp *src_qmp(struct migrun *mr)
{
	struct launch *L = mr->L;
	return L->vm && !L->ranks[L->rank].exited ? vm_qmp(L->vm) : NULL;
}

static void on_src_cont(void *ctx, int err, json_t *ret, const char *why)
{
	struct migrun *mr = ctx;

	if (src_cb_gone(mr))
		return;
	if (!mr->src_active)
		return;
	if (err < 0) {
		src_fail(mr, "cont after the rehearsal: %s", why);
		return;
	}
	src_end(mr);
	pr_info("rehearsal of node%d's migration: %.1f MiB sent, downtime %lld ms; the node "
		"resumed here", mr->sm.node, mr->sm.sent / 1048576.0, mr->downtime_ms);
	mr_send(mr->L, 0, CTRL_MIG_DONE, &mr->sm, mr->sflags | CTRL_MIG_F_REPORT |
		(mr->src_have_crc ? CTRL_MIG_F_CRC : 0),
		"%.1f MiB sent, downtime %lld ms", mr->sm.sent / 1048576.0, mr->downtime_ms);
}

/* The rehearsal is over at the source: its VM runs on. */
static void src_resume(struct migrun *mr)
{
	struct qmp *q = src_qmp(mr);
	int r = q ? src_exec(mr, q, "cont", NULL, on_src_cont, mr) : -EPIPE;
	if (r < 0)
		src_fail(mr, "cont after the rehearsal: %s", strerror(-r));
}

/* The stopped source's RAM checksum (what the destination must hold). */
static void src_summed(struct migrun *mr, struct sum_job *j)
{
	if (!mr->src_active || j->id != mr->sm.id)
		return;		/* abandoned: source_order resumed the VM */
	mr->src_have_crc = j->rc == 0;
	mr->sm.ram_crc = j->crc;
	if (j->rc < 0)
		pr_warn("checksumming the source's RAM: %s", j->why);
	else
		pr_info("node%d's RAM at the stop: CRC32C 0x%08x (%.2f s to compute, the VM "
			"stopped meanwhile)", mr->sm.node, j->crc, j->seconds);
	src_resume(mr);
}

static void on_src_query(void *ctx, int err, json_t *ret, const char *why)
{
	struct migrun *mr = ctx;
	struct qmpmig_status st;

	if (src_cb_gone(mr))
		return;
	mr->src_poll_busy = false;
	if (!mr->src_active)
		return;
	if (err < 0) {
		src_fail(mr, "query-migrate: %s", why);
		return;
	}
	qmpmig_parse(ret, &st);
	if (st.state == QMPMIG_FAILED) {
		src_fail(mr, "QEMU's migration %s: %s", st.status, st.error[0] ? st.error : "no reason");
		return;
	}
	mr->sm.sent = st.transferred;
	mr->sm.total = st.total;
	double now = vc_mono_s();
	if (st.state == QMPMIG_ACTIVE) {
		if (now - mr->src_last_progress >= MR_PROGRESS_S) {
			mr->src_last_progress = now;
			mr_send(mr->L, 0, CTRL_MIG_PROGRESS, &mr->sm, mr->sflags | CTRL_MIG_F_REPORT,
				"%s", st.status);
		}
		return;
	}
	/* completed: QEMU has stopped the VM here.  A rehearsal resumes it at
	 * once (the real move would hand it to the target: plan step 3). */
	loop_del_timer(mr->L->loop, mr->src_timer);
	mr->src_timer = NULL;
	mr->src_done = true;
	mr->downtime_ms = st.downtime_ms;
	int r = mr->L->vm ? sum_submit(mr, mr->sm.id, vm_pid(mr->L->vm), src_summed) : -ECHILD;
	if (r < 0) {
		mr->src_have_crc = false;
		pr_warn("checksumming the source's RAM: %s", strerror(-r));
		src_resume(mr);
	}
}

static void on_src_tick(struct loop *l, void *ctx)
{
	struct migrun *mr = ctx;
	struct qmp *q = src_qmp(mr);

	if (!q) {
		src_fail(mr, "the node's VM has ended");
		return;
	}
	if (mr->src_poll_busy)
		return;
	int r = src_exec(mr, q, "query-migrate", NULL, on_src_query, mr);
	if (r < 0)
		src_fail(mr, "query-migrate: %s", strerror(-r));
	else
		mr->src_poll_busy = true;
}

static void on_src_step(void *ctx, int err, json_t *ret, const char *why);

/* The source's steps: capabilities, channels and bandwidth, migrate. */
static void src_step(struct migrun *mr, int step)
{
	struct qmp *q = src_qmp(mr);
	bool multifd = mr->sm.streams > 1;
	char uri[128];
	json_t *args;
	const char *cmd;

	switch (step) {
	case 0:
		cmd = "migrate-set-capabilities";
		args = multifd_caps(multifd);
		break;
	case 1:
		/* the hosts' link is the limit, not QEMU's default 128 MiB/s */
		cmd = "migrate-set-parameters";
		args = json_pack("{s:i, s:I}", "multifd-channels", multifd ? mr->sm.streams : 2,
				 "max-bandwidth", mr->sm.bandwidth_mib ?
				 (json_int_t)mr->sm.bandwidth_mib << 20 : (json_int_t)QMPMIG_UNLIMITED);
		break;
	case 2:
		snprintf(uri, sizeof(uri), "tcp:%s:%u", mr->addr_src, (unsigned)mr->sm.port);
		cmd = "migrate";
		args = json_pack("{s:s}", "uri", uri);
		break;
	default:
		mr->src_last_progress = vc_mono_s();
		mr->src_timer = loop_add_timer(mr->L->loop, MR_POLL_MS, MR_POLL_MS, on_src_tick, mr);
		if (!mr->src_timer)
			src_fail(mr, "a loop timer: %s", strerror(errno));
		return;
	}
	int r = q ? src_exec(mr, q, cmd, args, on_src_step,
			     (void *)((uintptr_t)mr | (uintptr_t)step)) : -EPIPE;
	if (r < 0) {
		if (!q)
			json_decref(args);
		src_fail(mr, "%s: %s", cmd, q ? strerror(-r) : "the node's VM has ended");
	}
}

static void on_src_step(void *ctx, int err, json_t *ret, const char *why)
{
	struct migrun *mr = (struct migrun *)((uintptr_t)ctx & ~(uintptr_t)3);
	int step = (int)((uintptr_t)ctx & 3);
	static const char *names[] = { "migrate-set-capabilities", "migrate-set-parameters",
				       "migrate" };

	if (src_cb_gone(mr) || !mr->src_active)
		return;
	if (err < 0) {
		src_fail(mr, "%s: %s", names[step], why);
		return;
	}
	src_step(mr, step + 1);
}

static void source_start(struct migrun *mr, const struct ctrlmsg *m)
{
	struct launch *L = mr->L;

	if (mr->src_active) {
		mr_send(L, 0, CTRL_MIG_FAIL, &m->mig, m->status | CTRL_MIG_F_REPORT,
			"rank %d: a migration is already running here", L->rank);
		return;
	}
	mr->sm = m->mig;
	mr->sflags = m->status & CTRL_MIG_F_REHEARSE;
	mr->src_active = true;
	mr->src_done = mr->src_poll_busy = false;
	snprintf(mr->addr_src, sizeof(mr->addr_src), "%s", m->text);
	if (!(mr->sflags & CTRL_MIG_F_REHEARSE)) {
		/* never: rank 0 starts rehearsals only while step 3 is not built */
		src_fail(mr, "only a rehearsal can run: the fabric's switch-over is not built");
		return;
	}
	pr_info("migration %u: sending node%d to rank %d at %s:%u (%d stream%s, rehearsal)",
		mr->sm.id, mr->sm.node, mr->sm.to, mr->addr_src, (unsigned)mr->sm.port,
		mr->sm.streams, mr->sm.streams > 1 ? "s" : "");
	src_step(mr, 0);
}

/* Rank 0's order to give up: QEMU resumes a VM whose migration it cancels
 * (or that failed); after a completed one the VM was resumed already. */
static void on_src_cancel(void *ctx, int err, json_t *ret, const char *why)
{
	if (src_cb_gone(ctx))
		return;
	if (err < 0)
		pr_warn("migrate_cancel: %s", why);
}

static void source_order(struct migrun *mr, const struct ctrlmsg *m)
{
	if (!mr->src_active || m->mig.id != mr->sm.id)
		return;
	pr_info("migration %u of node%d abandoned: %s; the node runs on here", mr->sm.id,
		mr->sm.node, m->text);
	src_end(mr);
	struct qmp *q = src_qmp(mr);
	if (q)	/* after completion QEMU leaves the VM stopped: resume it */
		src_exec(mr, q, mr->src_done ? "cont" : "migrate_cancel", NULL, on_src_cancel, mr);
}

/* ---- rank 0: the lead ------------------------------------------------------ */

static void lead_finish(struct migrun *mr, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void lead_finish(struct migrun *mr, bool ok, const char *fmt, ...)
{
	struct launch *L = mr->L;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mr->result, sizeof(mr->result), fmt, ap);
	va_end(ap);
	mr->have_result = true;
	mr->result_ok = ok;
	mr->lead = LEAD_IDLE;
	loop_del_timer(L->loop, mr->lead_timer);
	mr->lead_timer = NULL;
	L->mig.active = false;
	if (ok)
		pr_info("migration %u: %s", mr->lm.id, mr->result);
	else
		pr_err("migration %u: %s", mr->lm.id, mr->result);
}

static void lead_report(struct migrun *mr, const struct ctrlmsg *m)
{
	struct launch *L = mr->L;

	if (mr->lead == LEAD_IDLE || m->mig.id != mr->lm.id)
		return;		/* a late report of a migration that has ended */
	mr->t_progress = vc_mono_s();
	switch (m->type) {
	case CTRL_MIG_READY:
		if (mr->lead != LEAD_PREPARING || m->rank != mr->lm.to)
			break;
		mr->lm.port = m->mig.port;
		mr->lead = LEAD_MIGRATING;
		mr_send(L, mr->lm.from, CTRL_MIG_START, &mr->lm, mr->flags, "%s", m->text);
		break;
	case CTRL_MIG_PROGRESS:
		mr->sent = m->mig.sent;
		mr->total = m->mig.total;
		mr->t_progress = vc_mono_s();
		break;
	case CTRL_MIG_DONE:
		if (m->rank == mr->lm.from && mr->lead == LEAD_MIGRATING) {
			mr->sent = m->mig.sent;
			mr->src_have_crc = m->status & CTRL_MIG_F_CRC;
			mr->src_crc = m->mig.ram_crc;
			snprintf(mr->result, sizeof(mr->result), "%s", m->text);
			mr->lead = LEAD_ENDING;
			mr_send(L, mr->lm.to, CTRL_MIG_DONE, &mr->lm, mr->flags, "rehearsal over");
		} else if (m->rank == mr->lm.to && mr->lead == LEAD_ENDING) {
			char src[512];
			snprintf(src, sizeof(src), "%s", mr->result);
			if (!mr->src_have_crc || !(m->status & CTRL_MIG_F_CRC) ||
			    mr->src_crc != m->mig.ram_crc) {
				L->ranks[mr->lm.to].spare_failed = true;
				lead_finish(mr, false, "rehearsal of node%d to rank %d: the RAM checksums "
					    "%s (source %s0x%08x, destination %s0x%08x); node%d runs on at "
					    "rank %d, rank %d is marked a failed spare", mr->lm.node,
					    mr->lm.to, mr->src_have_crc && (m->status & CTRL_MIG_F_CRC) ?
					    "differ" : "are missing", mr->src_have_crc ? "" : "none ",
					    mr->src_crc, m->status & CTRL_MIG_F_CRC ? "" : "none ",
					    m->mig.ram_crc, mr->lm.node, mr->lm.from, mr->lm.to);
				break;
			}
			lead_finish(mr, true, "rehearsal of node%d from rank %d (%s) to rank %d (%s): "
				    "%s in %.1f s; %s, RAM CRC32C 0x%08x at both ends; node%d runs on "
				    "at rank %d", mr->lm.node, mr->lm.from, L->ranks[mr->lm.from].host,
				    mr->lm.to, L->ranks[mr->lm.to].host, src, vc_mono_s() - mr->t_begin,
				    m->text, mr->src_crc, mr->lm.node, mr->lm.from);
		}
		break;
	case CTRL_MIG_FAIL: {
		/* the other end gives up too; the node stays at its source */
		int other = m->rank == mr->lm.to ? mr->lm.from : mr->lm.to;
		mr_send(L, other, CTRL_MIG_FAIL, &mr->lm, mr->flags, "%s", m->text);
		L->ranks[mr->lm.to].spare_failed = true;
		lead_finish(mr, false, "migration of node%d from rank %d to rank %d failed: %s; "
			    "node%d runs on at rank %d, rank %d is marked a failed spare",
			    mr->lm.node, mr->lm.from, mr->lm.to, m->text, mr->lm.node, mr->lm.from,
			    mr->lm.to);
		break;
	}
	default:
		break;
	}
}

/* Rank 0, every second of a migration: an end that has gone silent. */
static void on_lead_tick(struct loop *l, void *ctx)
{
	struct migrun *mr = ctx;
	struct launch *L = mr->L;

	if (mr->lead == LEAD_IDLE || vc_mono_s() - mr->t_progress < MR_SILENCE_S)
		return;
	int quiet = mr->lead == LEAD_MIGRATING ? mr->lm.from : mr->lm.to;
	char why[128];
	snprintf(why, sizeof(why), "rank %d said nothing for %.0f s (%s)", quiet, MR_SILENCE_S,
		 mr->lead == LEAD_PREPARING ? "preparing" : mr->lead == LEAD_MIGRATING ?
		 "migrating" : "ending");
	mr_send(L, mr->lm.from, CTRL_MIG_FAIL, &mr->lm, mr->flags, "%s", why);
	mr_send(L, mr->lm.to, CTRL_MIG_FAIL, &mr->lm, mr->flags, "%s", why);
	L->ranks[mr->lm.to].spare_failed = true;
	lead_finish(mr, false, "migration of node%d from rank %d to rank %d failed: %s; "
		    "node%d runs on at rank %d, rank %d is marked a failed spare", mr->lm.node,
		    mr->lm.from, mr->lm.to, why, mr->lm.node, mr->lm.from, mr->lm.to);
}

json_t *migrun_begin(struct launch *L, const struct mig_req *q, int from, int to)
{
	struct migrun *mr = mr_get(L);

	if (!mr)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "migrate: out of memory");
	memset(&mr->lm, 0, sizeof(mr->lm));
	mr->lm.id = ++mr->next_id;
	mr->lm.node = q->node;
	mr->lm.from = from;
	mr->lm.to = to;
	mr->lm.streams = (uint16_t)q->streams;
	mr->lm.bandwidth_mib = (uint32_t)q->bandwidth_mib;
	mr->lm.ram_bytes = L->cfg.memory_mib << 20;
	if (getrandom(mr->lm.secret, sizeof(mr->lm.secret), 0) != sizeof(mr->lm.secret))
		pr_warn("getrandom: %s (the secret is not used yet)", strerror(errno));
	mr->flags = CTRL_MIG_F_REHEARSE;
	mr->lead = LEAD_PREPARING;
	mr->sent = mr->total = 0;
	mr->have_result = false;
	mr->t_begin = mr->t_progress = vc_mono_s();
	mr->lead_timer = loop_add_timer(L->loop, 1000, 1000, on_lead_tick, mr);
	if (!mr->lead_timer)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "migrate: a loop timer failed");
	L->mig = (struct mig){ .active = true, .node = q->node, .from = from, .to = to,
			       .streams = q->streams };
	pr_info("migration %u: rehearsing node%d from rank %d (%s) to rank %d (%s), %d stream%s",
		mr->lm.id, q->node, from, L->ranks[from].host, to, L->ranks[to].host, q->streams,
		q->streams > 1 ? "s" : "");
	mr_send(L, to, CTRL_MIG_PREPARE, &mr->lm, mr->flags, "%s", "");
	return json_pack("{s:b, s:s, s:i}", "ok", 1, "message", "migration started (rehearsal)",
			 "id", (int)mr->lm.id);
}

json_t *migrun_status_json(struct launch *L)
{
	struct migrun *mr = L->migrun;
	static const char *phases[] = { "idle", "preparing", "migrating", "ending" };

	if (!mr || (!mr->have_result && mr->lead == LEAD_IDLE))
		return NULL;
	json_t *o = json_pack("{s:i, s:b, s:s, s:i, s:i, s:i, s:i, s:b, s:I, s:I, s:f}",
			      "id", (int)mr->lm.id, "active", mr->lead != LEAD_IDLE,
			      "phase", phases[mr->lead], "node", mr->lm.node, "from", mr->lm.from,
			      "to", mr->lm.to, "streams", mr->lm.streams,
			      "rehearse", !!(mr->flags & CTRL_MIG_F_REHEARSE),
			      "sent", (json_int_t)mr->sent, "total", (json_int_t)mr->total,
			      "elapsed_s", vc_mono_s() - mr->t_begin);
	if (mr->lead == LEAD_IDLE && mr->have_result) {
		json_object_set_new(o, "ok", json_boolean(mr->result_ok));
		json_object_set_new(o, "result", json_string(mr->result));
	}
	return o;
}

void migrun_ctrl(struct launch *L, const struct ctrlmsg *m)
{
	struct migrun *mr = mr_get(L);

	if (!mr) {
		pr_err("migration message from rank %d dropped: out of memory", m->rank);
		return;
	}
	if (m->status & CTRL_MIG_F_REPORT) {
		if (L->rank == 0)
			lead_report(mr, m);
		return;
	}
	switch (m->type) {
	case CTRL_MIG_PREPARE:
		target_prepare(mr, m);
		break;
	case CTRL_MIG_START:
		source_start(mr, m);
		break;
	case CTRL_MIG_DONE:
		target_order(mr, m);
		break;
	case CTRL_MIG_FAIL:
		if (L->rank == m->mig.to)
			target_order(mr, m);
		if (L->rank == m->mig.from)
			source_order(mr, m);
		break;
	default:
		pr_warn("migration message type %d from rank %d: not an order; ignored",
			(int)m->type, m->rank);
		break;
	}
}

void migrun_destroy(struct launch *L)
{
	struct migrun *mr = L->migrun;

	if (!mr)
		return;
	loop_del_timer(L->loop, mr->drop_timer);
	loop_del_timer(L->loop, mr->lead_timer);
	mr->dest_reported = true;	/* its QMP callbacks report nothing now */
	dest_drop(mr);
	loop_del_timer(L->loop, mr->src_timer);
	L->migrun = NULL;
	mr->destroyed = true;
	if (mr->jobs == 0 && mr->src_cmds == 0)	/* else the last of them frees it */
		free(mr);
}
