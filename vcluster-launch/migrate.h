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
 */
#ifndef VC_MIGRATE_H
#define VC_MIGRATE_H

#include "status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define MIG_STREAMS_MAX	16

/* What vcluster-ctl asked for: {"node": "node1", "to": "vc-h4" | "3",
 * "streams": N}. */
struct mig_req {
	int node;		/* N of nodeN */
	char to[64];		/* a host name or a rank number */
	int streams;		/* multifd channels (1 if absent) */
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
