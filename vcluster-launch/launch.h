/* launch: one rank of vcluster-launch, shared by its parts.
 *
 *   main.c    control messages between ranks, vcluster-ctl commands, the
 *             event loop's callbacks and progress step, the exit status
 *   setup.c   the set-up phases, in order (each collective: every rank
 *             checks, the lowest failing rank says why in one line, all
 *             stop together), and what vccp sees of the fabric
 * The internal header of the program; no other program includes it.
 *
 * Nothing blocks in the loop (loop.h).  Every QMP command of the rank's own
 * connection is asynchronous (qmp_exec_async, the reply an event): the
 * start (vm_connect_async: qmp_capabilities, query-cpus-fast), a restore's
 * load (restore_load_vm_start: x-ignore-shared, getfd, migrate-incoming,
 * query-migrate from a loop timer), the resume's cont (setup_resume), the
 * checkpoint's commands (vccp.c) and the stop commands (vm.c).  The set-up
 * phases wait by running loop passes (wait_qmp, load_vm, load_ram), each
 * with a deadline, before the progress step is set.
 *
 * What still waits, and why:
 *   - QMP on the live monitor (livesrc.c: qmp_connect, dirty_start/sync/
 *     stop, blocking qmp_exec/qmp_getfd on RUN/rankR/live.qmp): on the
 *     worker and the live save's own thread, never the loop's; a second
 *     connection so the loop's never sees those replies;
 *   - tlm-migrate (vcluster-tlm): a program with threads of its own;
 *   - MPI collectives of the set-up phases (all_ok, the fabric's and vccp's
 *     creation) and of the wind-down (vccp_finish and fabric_quiesce drive
 *     loop passes with a deadline): before and after the loop;
 *   - a live RAM load (restore_load_ram) runs on the worker and cannot be
 *     cut short (local files, no deadline); livesrc_destroy() waits for its
 *     worker job at exit; vm_destroy() reaps a SIGKILLed QEMU;
 *   - ctrl_send()'s MPI_Send of one small control message (eager: it does
 *     not wait for the receiver in practice; not proven).
 */
#ifndef VC_LAUNCH_H
#define VC_LAUNCH_H

#include "config.h"
#include "ctrlmsg.h"
#include "firsterr.h"
#include "migrate.h"
#include "status.h"

#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#define TAG_CTRL	201
#define STATS_PERIOD_MS	1000
#define QUIESCE_MS	30000

struct ctl;
struct fabric;
struct loop;
struct migrun;
struct pin_plan;
struct restore;
struct vccp;
struct vm;
struct worker;

struct launch {
	struct vc_config cfg;
	int rank, size;
	int nvms;		/* ranks 0..nvms-1 run node0..; the rest are spares */
	char (*hosts)[64];	/* every rank's host name (setup_control) */
	MPI_Comm ctrl_comm;
	char run_dir[PATH_MAX];
	char rank_dir[PATH_MAX];
	struct vm *vm;
	struct fabric *fab;
	struct ctl *ctl;
	struct pin_plan *pin;
	struct vccp *vccp;
	struct livesrc *live;	/* --checkpoint-mode live, else NULL */
	bool vccp_live;		/* the loop drives vccp_progress() */
	struct restore *restore;
	/* --checkpoint-dir D1,D2,...: each as an absolute path (setup_ckpt_dirs;
	 * unused with one directory) */
	char ckpt_dirs[CFG_CKPT_DIRS_MAX][PATH_MAX];
	struct loop *loop;
	struct worker *worker;
	/* what to boot (setup_boot) */
	char kernel[PATH_MAX], initrd[PATH_MAX], qemu[PATH_MAX];
	bool patched, kvm;
	int fab_fd;		/* VM link fd watched by the loop, or -1 */
	int fab_net_fd;		/* the fabric's peer sockets (TCP), or -1 */
	int qmp_fd;		/* QMP fd watched by the loop, or -1 */
	double last_busy;	/* monotonic: the last pass that moved anything */
	int run_code;		/* set when the loop stops on a fault */
	double last_ckpt_log;
	struct status_rank *ranks;
	struct mig mig;		/* rank 0: the migration running, if any */
	struct migrun *migrun;	/* this rank's part in migrations (migrun.c), or NULL */
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

/* A spare rank runs no VM (--vms): a host a node may move to. */
static inline bool launch_spare(const struct launch *L, int rank)
{
	return rank >= L->nvms;
}

/* setup.c: each returns true when every rank may go on. */
bool all_ok(struct launch *L, bool ok, const char *why);
bool setup_run_dir(struct launch *L);
bool setup_ckpt_dirs(struct launch *L);
bool setup_restore(struct launch *L);
bool setup_boot(struct launch *L);
void setup_pin(struct launch *L);
bool setup_vm(struct launch *L);
/* Spawn QEMU as node `node` on this rank (vm_spawn(): not waiting for it),
 * with the settings every node's QEMU gets, so that a migration target's
 * QEMU takes the source's state; incoming: -incoming defer -S. */
struct vm *setup_spawn_node(struct launch *L, int node, bool incoming, int *link_fd,
			    char *why, size_t whylen);
bool setup_checkpointing(struct launch *L);
/* Resume a restored cluster together (after the barrier): sends cont
 * without waiting; its reply comes back through the loop. */
void setup_resume(struct launch *L);
/* main.c: a fault that ends the job (every VM stopped, the reason kept);
 * for callbacks of the loop. */
void launch_fault(struct launch *L, const char *why);

/* main.c: one control message to rank `to` (not to itself). */
void ctrl_send(struct launch *L, int to, const struct ctrlmsg *m);

/* migrun.c: a rank's part in moving a node (migrate.h).  migrun_ctrl()
 * takes every CTRL_MIG_* message; migrun_begin() (rank 0, a request that
 * passed mig_check) starts one and returns the reply to vcluster-ctl;
 * migrun_status_json() is the "migration" object of status (NULL: none
 * yet); migrun_destroy() kills a destination QEMU still running. */
void migrun_ctrl(struct launch *L, const struct ctrlmsg *m);
json_t *migrun_begin(struct launch *L, const struct mig_req *q, int from, int to);
json_t *migrun_status_json(struct launch *L);
void migrun_destroy(struct launch *L);

/* --clock-sync: hand the VM the host's time (also after each resume). */
void send_clock(void *ctx);
void acct_print(struct launch *L, bool cut, uint64_t epoch);

#endif
