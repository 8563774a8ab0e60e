/* status: what rank 0 knows of every rank, as vcluster-ctl status shows it. */
#ifndef VC_STATUS_H
#define VC_STATUS_H

#include "ctrlmsg.h"

#include <jansson.h>
#include <stdbool.h>

struct status_rank {
	int node;		/* the node it runs (nodeN), -1: a spare */
	char host[64];
	bool spare_failed;	/* a migration to this spare failed: it takes no more */
	bool exited;
	int status;		/* guest status; -1 fault, -2/-3 stopped by us */
	char reason[200];
	bool have_stats;
	struct ctrlmsg stats;	/* the rank's last CTRL_STATS */
	double stats_age;	/* monotonic time it arrived */
};

/* The "ranks" array of the status reply (a new reference). */
json_t *status_ranks_json(const struct status_rank *ranks, int n, double now);

#endif
