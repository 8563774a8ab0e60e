/* migrate.h: the checks of a migration request against rank 0's table,
 * and the reason each refusal gives. */
#include "test.h"
#include "migrate.h"

#include <errno.h>
#include <string.h>

static struct status_rank ranks[4];

static void table(void)
{
	static const char *hosts[] = { "vc-h1", "vc-h2", "vc-h3", "vc-h4" };

	memset(ranks, 0, sizeof(ranks));
	for (int r = 0; r < 4; r++) {
		ranks[r].node = r < 3 ? r : -1;		/* --vms 3: rank 3 a spare */
		strcpy(ranks[r].host, hosts[r]);
	}
}

static int check(const struct mig *m, const char *json, bool ckpt, int *from, int *to,
		 char *why, size_t len)
{
	struct mig_req q;
	json_t *req = json_loads(json, 0, NULL);
	int r = mig_parse(req, &q, why, len);

	json_decref(req);
	if (r == 0)
		r = mig_check(m, ranks, 4, &q, ckpt, from, to, why, len);
	return r;
}

int main(void)
{
	struct mig m = { 0 };
	char why[256], buf[160];
	int from = -1, to = -1;

	table();
	/* by host and by rank number */
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"vc-h4\"}", false, &from, &to, why,
		       sizeof(why)), 0);
	CHECK_EQ(from, 1);
	CHECK_EQ(to, 3);
	CHECK_EQ(check(&m, "{\"node\":\"node2\",\"to\":\"3\",\"streams\":4}", false, &from, &to,
		       why, sizeof(why)), 0);
	CHECK_EQ(from, 2);
	CHECK_EQ(to, 3);

	/* --rehearse: a flag of the request, off unless given */
	{
		struct mig_req q;
		json_t *req = json_loads("{\"node\":\"node1\",\"to\":\"3\",\"rehearse\":true}", 0, NULL);
		CHECK_EQ(mig_parse(req, &q, why, sizeof(why)), 0);
		CHECK(q.rehearse);
		json_decref(req);
		req = json_loads("{\"node\":\"node1\",\"to\":\"3\"}", 0, NULL);
		CHECK_EQ(mig_parse(req, &q, why, sizeof(why)), 0);
		CHECK(!q.rehearse);
		json_decref(req);
		req = json_loads("{\"node\":\"node1\",\"to\":\"3\",\"rehearse\":1}", 0, NULL);
		CHECK_EQ(mig_parse(req, &q, why, sizeof(why)), -EINVAL);
		CHECK(strstr(why, "\"rehearse\" must be true or false"));
		json_decref(req);
		req = json_loads("{\"node\":\"node1\",\"to\":\"3\",\"bandwidth_mib\":40}", 0, NULL);
		CHECK_EQ(mig_parse(req, &q, why, sizeof(why)), 0);
		CHECK_EQ(q.bandwidth_mib, 40);
		json_decref(req);
		req = json_loads("{\"node\":\"node1\",\"to\":\"3\",\"bandwidth_mib\":-1}", 0, NULL);
		CHECK_EQ(mig_parse(req, &q, why, sizeof(why)), -EINVAL);
		CHECK(strstr(why, "--bandwidth must be 0 to 1000000"));
		json_decref(req);
	}

	/* the refusals, each with its reason */
	CHECK_EQ(check(&m, "{\"node\":\"node7\",\"to\":\"vc-h4\"}", false, &from, &to, why,
		       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "node7: no such node"));
	CHECK_EQ(check(&m, "{\"node\":\"bogus\",\"to\":\"vc-h4\"}", false, &from, &to, why,
		       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "'bogus' is not a node name"));
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"vc-h1\"}", false, &from, &to, why,
		       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "rank 0 (vc-h1) is not a spare: it runs node0"));
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"vc-h9\"}", false, &from, &to, why,
		       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "vc-h9: no rank runs on that host"));
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"9\"}", false, &from, &to, why,
		       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "no such rank (ranks 0 to 3)"));
	CHECK_EQ(check(&m, "{\"node\":\"node1\"}", false, &from, &to, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "--to HOST|RANK is missing"));
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"3\",\"streams\":99}", false, &from, &to,
		       why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "--streams must be 1 to 16"));
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"3\"}", true, &from, &to, why,
		       sizeof(why)), -EBUSY);
	CHECK(strstr(why, "a checkpoint is running"));

	/* one at a time; a checkpoint waits for it */
	CHECK(!mig_busy_reason(&m, buf, sizeof(buf)));
	m = (struct mig){ .active = true, .node = 1, .from = 1, .to = 3, .streams = 1 };
	CHECK_EQ(check(&m, "{\"node\":\"node2\",\"to\":\"3\"}", false, &from, &to, why,
		       sizeof(why)), -EBUSY);
	CHECK(strstr(why, "a migration is already running (node1 from rank 1 to rank 3)"));
	CHECK(mig_busy_reason(&m, buf, sizeof(buf)));
	CHECK(strstr(buf, "node1 is migrating"));
	m.active = false;

	/* an ended node, a failed spare */
	ranks[1].exited = true;
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"3\"}", false, &from, &to, why,
		       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "node1: its VM has ended"));
	ranks[1].exited = false;
	ranks[3].spare_failed = true;
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"vc-h4\"}", false, &from, &to, why,
		       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "rank 3 (vc-h4) is a failed spare"));

	/* after a move the node is found on its new rank, the old is a spare */
	table();
	ranks[1].node = -1;
	ranks[3].node = 1;
	CHECK_EQ(mig_rank_of(ranks, 4, 1), 3);
	CHECK_EQ(check(&m, "{\"node\":\"node1\",\"to\":\"vc-h2\"}", false, &from, &to, why,
		       sizeof(why)), 0);
	CHECK_EQ(from, 3);
	CHECK_EQ(to, 1);
	return 0;
}
