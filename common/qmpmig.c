#define LOG_PREFIX "qmpmig"
#include "vctime.h"
#include "qmpmig.h"

#include "qmp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define QMPMIG_CMD_MS 10000

json_t *qmpmig_bandwidth_args(uint64_t bytes_per_s)
{
	return json_pack("{s:I}", "max-bandwidth",
			 (json_int_t)(bytes_per_s ? bytes_per_s : QMPMIG_UNLIMITED));
}

json_t *qmpmig_plain_caps_args(void)
{
	static const char *const off[] = {
		"x-ignore-shared", "release-ram", "postcopy-ram", "return-path",
		"multifd", "pause-before-switchover", "background-snapshot", "x-colo",
	};
	json_t *caps = json_array();

	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++)
		json_array_append_new(caps, json_pack("{s:s, s:b}", "capability", off[i],
						      "state", 0));
	return json_pack("{s:o}", "capabilities", caps);
}

json_t *qmpmig_fd_uri_args(const char *fdname)
{
	char uri[80];

	snprintf(uri, sizeof(uri), "fd:%s", fdname);
	return json_pack("{s:s}", "uri", uri);
}

json_t *qmpmig_getfd_args(const char *fdname)
{
	return json_pack("{s:s}", "fdname", fdname);
}

void qmpmig_parse(json_t *ret, struct qmpmig_status *st)
{
	const char *s = json_string_value(json_object_get(ret, "status"));
	json_t *ram = json_object_get(ret, "ram");

	memset(st, 0, sizeof(*st));
	snprintf(st->status, sizeof(st->status), "%s", s ? s : "none");
	st->downtime_ms = -1;
	if (ram) {
		st->transferred = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
		st->total = (uint64_t)json_integer_value(json_object_get(ram, "total"));
	}
	if (s && !strcmp(s, "completed")) {
		st->state = QMPMIG_COMPLETED;
		json_t *d = json_object_get(ret, "downtime");
		if (json_is_integer(d))
			st->downtime_ms = json_integer_value(d);
	} else if (s && (!strcmp(s, "failed") || !strcmp(s, "cancelled"))) {
		const char *e = json_string_value(json_object_get(ret, "error-desc"));
		st->state = QMPMIG_FAILED;
		snprintf(st->error, sizeof(st->error), "%s", e ? e : s);
	} else {
		st->state = QMPMIG_ACTIVE;
	}
}

int qmpmig_wait(struct qmp *q, int timeout_ms, int poll_ms,
		struct qmpmig_status *out, char *why, size_t whylen)
{
	long long deadline = vc_mono_ms() + timeout_ms;
	struct qmpmig_status st;
	char inner[400];

	for (;;) {
		json_t *ret = NULL;
		int r = qmp_exec(q, "query-migrate", NULL, &ret, QMPMIG_CMD_MS, inner,
				 sizeof(inner));
		if (r == -ETIMEDOUT && vc_mono_ms() < deadline)
			continue;	/* a QEMU busy loading may answer late: the
					 * deadline decides; the late reply is
					 * dropped by its id */
		if (r < 0) {
			snprintf(why, whylen, "query-migrate: %s", inner);
			return r;
		}
		qmpmig_parse(ret, &st);
		json_decref(ret);
		if (out)
			*out = st;
		if (st.state == QMPMIG_COMPLETED)
			return 0;
		if (st.state == QMPMIG_FAILED) {
			snprintf(why, whylen, "QEMU migration %s: %s", st.status, st.error);
			return -EIO;
		}
		if (vc_mono_ms() > deadline) {
			snprintf(why, whylen, "QEMU migration not completed within %d s (status %s)",
				 timeout_ms / 1000, st.status);
			return -ETIMEDOUT;
		}
		struct timespec ts = { poll_ms / 1000, (long)(poll_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
}

int qmpmig_incoming_fd(struct qmp *q, const char *fdname, int fd, char *why,
		       size_t whylen)
{
	int r = qmp_getfd(q, fdname, fd, QMPMIG_CMD_MS, why, whylen);

	if (r == 0)
		r = qmp_exec(q, "migrate-incoming", qmpmig_fd_uri_args(fdname), NULL,
			     QMPMIG_CMD_MS, why, whylen);
	return r;
}
