/* Checks of a migration request against rank 0's table (migrate.h). */
#include "migrate.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "node12" -> 12; -1 when it is not nodeN. */
static int node_number(const char *s)
{
	char *end;

	if (!s || strncmp(s, "node", 4) || !isdigit((unsigned char)s[4]))
		return -1;
	long v = strtol(s + 4, &end, 10);
	return *end || v > 65535 ? -1 : (int)v;
}

int mig_parse(json_t *req, struct mig_req *q, char *why, size_t whylen)
{
	const char *node = json_string_value(json_object_get(req, "node"));
	const char *to = json_string_value(json_object_get(req, "to"));
	json_t *st = json_object_get(req, "streams");
	json_t *rh = json_object_get(req, "rehearse");

	memset(q, 0, sizeof(*q));
	q->node = node_number(node);
	if (q->node < 0) {
		snprintf(why, whylen, "migrate: '%s' is not a node name (node0, node1, ...)",
			 node ? node : "");
		return -EINVAL;
	}
	if (!to || !to[0] || strlen(to) >= sizeof(q->to)) {
		snprintf(why, whylen, "migrate %s: --to HOST|RANK is missing or too long", node);
		return -EINVAL;
	}
	snprintf(q->to, sizeof(q->to), "%s", to);
	if (rh && !json_is_boolean(rh)) {
		snprintf(why, whylen, "migrate %s: \"rehearse\" must be true or false", node);
		return -EINVAL;
	}
	q->rehearse = json_is_true(rh);
	json_t *bw = json_object_get(req, "bandwidth_mib");
	if (bw && (!json_is_integer(bw) || json_integer_value(bw) < 0 ||
		   json_integer_value(bw) > 1000000)) {
		snprintf(why, whylen, "migrate %s: --bandwidth must be 0 to 1000000 MiB/s", node);
		return -EINVAL;
	}
	q->bandwidth_mib = bw ? (int)json_integer_value(bw) : 0;
	q->streams = st ? (int)json_integer_value(st) : 1;
	if (!st)
		return 0;
	if (!json_is_integer(st) || q->streams < 1 || q->streams > MIG_STREAMS_MAX) {
		snprintf(why, whylen, "migrate %s: --streams must be 1 to %d", node, MIG_STREAMS_MAX);
		return -EINVAL;
	}
	return 0;
}

int mig_rank_of(const struct status_rank *ranks, int n, int node)
{
	for (int r = 0; r < n; r++)
		if (ranks[r].node == node)
			return r;
	return -1;
}

static bool all_digits(const char *s)
{
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* The target rank of "to": a rank number, or the host's spare (a host may
 * hold several ranks); -1 with the reason. */
static int target_rank(const struct status_rank *ranks, int n, const char *to, char *why,
		       size_t whylen)
{
	if (all_digits(to)) {
		long r = strtol(to, NULL, 10);
		if (r < n && strlen(to) < 7)
			return (int)r;
		snprintf(why, whylen, "migrate: --to %s: no such rank (ranks 0 to %d)", to, n - 1);
		return -1;
	}
	int first = -1;
	for (int r = 0; r < n; r++) {
		if (strcmp(ranks[r].host, to))
			continue;
		if (ranks[r].node < 0 && !ranks[r].spare_failed)
			return r;
		if (first < 0)
			first = r;
	}
	if (first < 0)
		snprintf(why, whylen, "migrate: --to %s: no rank runs on that host", to);
	return first;	/* checked (and refused) as "not a spare" */
}

int mig_check(const struct mig *m, const struct status_rank *ranks, int n,
	      const struct mig_req *q, bool ckpt_running, int *from, int *to,
	      char *why, size_t whylen)
{
	if (m->active) {
		snprintf(why, whylen, "migrate: a migration is already running (node%d from rank %d "
			 "to rank %d)", m->node, m->from, m->to);
		return -EBUSY;
	}
	if (ckpt_running) {
		snprintf(why, whylen, "migrate: a checkpoint is running; try again when it has ended");
		return -EBUSY;
	}
	*from = mig_rank_of(ranks, n, q->node);
	if (*from < 0) {
		snprintf(why, whylen, "migrate: node%d: no such node", q->node);
		return -EINVAL;
	}
	if (ranks[*from].exited) {
		snprintf(why, whylen, "migrate: node%d: its VM has ended", q->node);
		return -EINVAL;
	}
	*to = target_rank(ranks, n, q->to, why, whylen);
	if (*to < 0)
		return -EINVAL;
	const struct status_rank *t = &ranks[*to];
	if (t->node >= 0) {
		snprintf(why, whylen, "migrate: --to %s: rank %d (%s) is not a spare: it runs node%d",
			 q->to, *to, t->host, t->node);
		return -EINVAL;
	}
	if (t->spare_failed) {
		snprintf(why, whylen, "migrate: --to %s: rank %d (%s) is a failed spare (a migration "
			 "to it failed)", q->to, *to, t->host);
		return -EINVAL;
	}
	return 0;
}

const char *mig_busy_reason(const struct mig *m, char *buf, size_t len)
{
	if (!m->active)
		return NULL;
	snprintf(buf, len, "node%d is migrating from rank %d to rank %d; checkpoint after it ends",
		 m->node, m->from, m->to);
	return buf;
}
