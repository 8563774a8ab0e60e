/* migrate: moving a running node to a spare rank (vcluster-ctl migrate).
 *
 * A node (nodeN, the VM that started on rank N) runs on one rank; ranks past
 * --vms are spares, hosts with no VM that a node may move to.  Rank 0 takes
 * the request from vcluster-ctl, checks it here against what it knows of
 * every rank (status.h) and refuses, in one line naming the node, rank or
 * host, anything it cannot do:
 *   - a node that does not exist, or whose VM has ended;
 *   - a target that is no rank, or not a spare (it runs a node, or its last
 *     migration failed: a failed spare takes no more nodes);
 *   - a migration already running (one at a time);
 *   - a checkpoint running (a cut must never see a half-moved VM; the
 *     other way round, a checkpoint asked for during a migration is refused
 *     by the launcher with mig_busy_reason()).
 * Pure functions over rank 0's table, no I/O: the unit test drives them.
 *
 * THE MOVE (not built yet; vcluster-ctl migrate refuses every request until
 * it is, except a rehearsal: --rehearse runs steps 1, 2 and 5 below and,
 * instead of 3 and 4, resumes the node at its source and throws the
 * destination away; migrun.c).  The plan, with QEMU's own migration (stock
 * QEMU):
 *   1. rank 0 -> target T: CTRL_MIG_PREPARE (node, source S, streams, RAM
 *      size, a fresh 32-byte secret: ctrlmsg.h).  T starts QEMU as vm.c
 *      does for a restore (-incoming defer, -S) but with the node's
 *      identity (MAC, name and vc.rank of the node, not of T: vm_spec's
 *      node field, test_vm), a tls-creds-psk object keyed by the secret, runs
 *      migrate-set-capabilities multifd (streams > 1) and migrate-incoming
 *      tcp:ADDR:0, reads the port from query-migrate, and answers
 *      CTRL_MIG_READY with its fabric address and the port.  All of it QMP
 *      async on T's loop (qmp_exec_async, as vccp does).
 *   2. rank 0 -> S: CTRL_MIG_START.  S sets the same capabilities and
 *      multifd-channels, the PSK, and runs migrate tcp:ADDR:PORT; it polls
 *      query-migrate from its loop and sends CTRL_MIG_PROGRESS to rank 0,
 *      which vcluster-ctl migrate prints by polling status.
 *   3. Switch-over, S in charge of the stop.  When query-migrate shows the
 *      remaining RAM small (or after a few dirty-sync rounds), S holds its
 *      fabric (fabric_hold: frames for the VM go to the receive queue, in
 *      order), waits until QEMU has read what it had been given
 *      (fabric_vm_unread() == 0, as vccp does: a stopped QEMU never reads
 *      its link, and what it had not read would be lost with it), then
 *      `stop`s the VM; the migration ends as stop-and-copy of the rest.
 *      S then sends a "moved node to T" record to every peer, behind every
 *      frame it had sent (fabric_send_marker's FIFO promise); each peer
 *      routes node's MAC to T from then on and answers with its own
 *      "moved" record to S, behind every frame it had sent S.  Frames for
 *      node that S holds or that arrive before a peer's record go to T over
 *      the S->T channel, in order, and T delivers them before any frame
 *      from that peer that came to T directly (T holds per peer until S
 *      says it forwarded that peer's last frame).  facct needs a
 *      "forwarded" count at S and T, so the balance stays exact.  Keep the
 *      stop short: a long one made a guest lose UDP datagrams.
 *      Found while building the rehearsal: QEMU's own migration stops the
 *      VM itself (at completion, or at pre-switchover with
 *      pause-before-switchover), so S cannot wait for
 *      fabric_vm_unread() == 0 before the stop unless it stops the VM
 *      itself first.  Another way: the rank keeps a dup of QEMU's end of
 *      the VM link (vm.c closes it today); once the VM has stopped for good
 *      S reads the frames QEMU never read from that end and forwards them
 *      first, in order (after a failure it writes them back in front).
 *      And T's `cont` should wait until every peer has answered S's
 *      "moved" record, or a frame node sends from T can overtake one it
 *      had sent from S that is still on S's channels.
 *   4. CTRL_MIG_DONE to all: rank 0 moves node to T in its table (status),
 *      S's QEMU quits and S becomes a spare.  A frame S writes to the VM
 *      link after its QEMU has gone (EPIPE) must be counted gone, not
 *      discarded (fabric.c vm_write_error with from_rq).
 *   5. Failure: T's QEMU dying (or migrate failing) before DONE: S runs
 *      `cont` if it had stopped, releases the hold (the queue goes to its
 *      own VM, in order), T reports CTRL_MIG_FAIL and rank 0 marks T
 *      spare_failed.  mig.active is cleared only at DONE or FAIL, so a
 *      checkpoint never starts in between (mig_busy_reason).
 */
#ifndef VC_MIGRATE_H
#define VC_MIGRATE_H

#include "status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define MIG_STREAMS_MAX	16

/* What vcluster-ctl asked for: {"node": "node1", "to": "vc-h4" | "3",
 * "streams": N, "rehearse": true, "bandwidth_mib": M}. */
struct mig_req {
	int node;		/* N of nodeN */
	char to[64];		/* a host name or a rank number */
	int streams;		/* multifd channels (1 if absent) */
	bool rehearse;		/* send the VM, then keep it at its source (migrun.c) */
	int bandwidth_mib;	/* the transfer's cap, MiB/s; 0: none */
};

/* The migration rank 0 runs, if any. */
struct mig {
	bool active;
	int node, from, to, streams;
};

/* Read the request's fields.  0, or -EINVAL with the reason in why. */
int mig_parse(json_t *req, struct mig_req *q, char *why, size_t whylen);

/* Check q against the ranks' table (n ranks) and the running work; on
 * success fill the source and target ranks.  0, or -EINVAL (bad node or
 * target) / -EBUSY (a migration or checkpoint running) with the reason. */
int mig_check(const struct mig *m, const struct status_rank *ranks, int n,
	      const struct mig_req *q, bool ckpt_running, int *from, int *to,
	      char *why, size_t whylen);

/* The rank that runs node, or -1. */
int mig_rank_of(const struct status_rank *ranks, int n, int node);

/* Why a checkpoint may not start now (a migration is running), or NULL. */
const char *mig_busy_reason(const struct mig *m, char *buf, size_t len);

#endif
