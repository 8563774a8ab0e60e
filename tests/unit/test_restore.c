/* The keys a restore accepts: what a checkpoint writes passes; any other
 * key (a program, a directory) or a non-string value is refused with one
 * line naming where and the key.  And the load of a VM state without
 * waiting (restore_load_file_start/poll) against a fake QEMU: the commands
 * in order, the file handed over, QEMU's error and the deadline in one line,
 * a load freed with commands on their way. */
#include "test.h"
#include "restore.h"
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- fake QEMU: answers one connection, then exits -------------------- */

enum fq_mode { FQ_OK, FQ_FAIL, FQ_SLOW, FQ_REFUSE };

struct fakeq {
	char path[108];
	int lfd;
	pthread_t th;
	enum fq_mode mode;
	char order[256];	/* the commands, space-separated */
	char got[64];		/* what the passed descriptor held */
	bool live_caps;		/* x-ignore-shared turned on */
};

static void say(int fd, const char *id, const char *ret)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "{\"return\": %s, \"id\": \"%s\"}\r\n", ret, id);
	send(fd, buf, (size_t)n, MSG_NOSIGNAL);	/* the client may have gone */
}

static void *fakeq_main(void *arg)
{
	struct fakeq *fq = arg;
	int fd = accept(fq->lfd, NULL, NULL), passed = -1, queries = 0;
	char buf[8192];
	size_t len = 0;
	const char *greet = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";

	CHECK(fd >= 0);
	CHECK(write(fd, greet, strlen(greet)) == (ssize_t)strlen(greet));
	for (;;) {
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { buf + len, sizeof(buf) - 1 - len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(fd, &mh, 0);
		if (n <= 0)
			break;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_type == SCM_RIGHTS)
				memcpy(&passed, CMSG_DATA(c), sizeof(int));
		len += (size_t)n;
		for (;;) {	/* one JSON object per command */
			json_error_t jerr;
			json_t *req = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &jerr);
			if (!req)
				break;
			size_t used = (size_t)jerr.position;
			memmove(buf, buf + used, len - used);
			len -= used;
			const char *cmd = json_string_value(json_object_get(req, "execute"));
			const char *id = json_string_value(json_object_get(req, "id"));
			CHECK(cmd && id);
			if (strcmp(cmd, "qmp_capabilities") && strcmp(cmd, "query-migrate")) {
				strcat(fq->order, cmd);
				strcat(fq->order, " ");
			}
			if (!strcmp(cmd, "getfd")) {
				CHECK(passed >= 0);
				ssize_t g = read(passed, fq->got, sizeof(fq->got) - 1);
				CHECK(g > 0);
				close(passed);
				say(fd, id, "{}");
			} else if (!strcmp(cmd, "migrate-set-capabilities")) {
				json_t *c = json_array_get(json_object_get(json_object_get(req, "arguments"),
									  "capabilities"), 0);
				fq->live_caps = !strcmp(json_string_value(json_object_get(c, "capability")),
							"x-ignore-shared") &&
						json_is_true(json_object_get(c, "state"));
				say(fd, id, "{}");
			} else if (!strcmp(cmd, "migrate-incoming")) {
				const char *uri = json_string_value(json_object_get(
					json_object_get(req, "arguments"), "uri"));
				CHECK(uri && !strcmp(uri, "fd:vccp-load"));
				if (fq->mode == FQ_REFUSE) {
					char e[256];
					int en = snprintf(e, sizeof(e), "{\"error\": {\"class\": "
							 "\"GenericError\", \"desc\": \"no -incoming "
							 "defer\"}, \"id\": \"%s\"}\r\n", id);
					send(fd, e, (size_t)en, MSG_NOSIGNAL);
				} else {
					say(fd, id, "{}");
				}
			} else if (!strcmp(cmd, "query-migrate")) {
				if (fq->mode == FQ_SLOW || ++queries < 3)
					say(fd, id, "{\"status\": \"active\"}");
				else if (fq->mode == FQ_FAIL)
					say(fd, id, "{\"status\": \"failed\", \"error-desc\": "
					    "\"load of migration failed: Invalid argument\"}");
				else
					say(fd, id, "{\"status\": \"completed\"}");
			} else {
				say(fd, id, "{}");
			}
			json_decref(req);
		}
	}
	close(fd);
	return NULL;
}

static struct qmp *fakeq_start(struct fakeq *fq, enum fq_mode mode)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char why[256];

	memset(fq, 0, sizeof(*fq));
	fq->mode = mode;
	snprintf(fq->path, sizeof(fq->path), "/tmp/vc-test-restore-%d.sock", (int)getpid());
	unlink(fq->path);
	strcpy(sa.sun_path, fq->path);
	fq->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(fq->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(fq->lfd, 1) == 0);
	CHECK(pthread_create(&fq->th, NULL, fakeq_main, fq) == 0);
	struct qmp *q = qmp_connect(fq->path, 2000, why, sizeof(why));
	CHECK(q);
	return q;
}

static void fakeq_stop(struct fakeq *fq, struct qmp *q)
{
	qmp_close(q);
	pthread_join(fq->th, NULL);
	close(fq->lfd);
	unlink(fq->path);
}

/* The caller's side of a load: pump QMP when readable, poll every 5 ms,
 * as the rank's loop does.  Returns what the last poll said. */
static int drive(struct qmp *q, struct restore_load *ld, char *why, size_t whylen)
{
	for (int i = 0; i < 600; i++) {	/* 3 s at most */
		usleep(5000);
		qmp_pump(q);
		int r = restore_load_vm_poll(ld, why, whylen);
		if (r)
			return r;
	}
	return 0;
}

static void test_load(void)
{
	char file[] = "/tmp/vc-test-restore-XXXXXX", why[700] = "";
	int fd = mkstemp(file);
	struct fakeq fq;
	struct qmp *q;
	struct restore_load *ld;

	CHECK(fd >= 0);
	CHECK(write(fd, "VMSTATE", 7) == 7);
	close(fd);

	/* plain: getfd (the file itself), migrate-incoming, completed */
	q = fakeq_start(&fq, FQ_OK);
	ld = restore_load_file_start(file, false, q, 5000, why, sizeof(why));
	CHECK(ld);
	CHECK_EQ(drive(q, ld, why, sizeof(why)), 1);
	restore_load_vm_free(ld);
	fakeq_stop(&fq, q);
	CHECK(!strcmp(fq.order, "getfd migrate-incoming "));
	CHECK(!strcmp(fq.got, "VMSTATE"));

	/* live: x-ignore-shared first */
	q = fakeq_start(&fq, FQ_OK);
	ld = restore_load_file_start(file, true, q, 5000, why, sizeof(why));
	CHECK(ld);
	CHECK_EQ(drive(q, ld, why, sizeof(why)), 1);
	restore_load_vm_free(ld);
	fakeq_stop(&fq, q);
	CHECK(!strcmp(fq.order, "migrate-set-capabilities getfd migrate-incoming "));
	CHECK(fq.live_caps);

	/* QEMU's error, in one line with the file */
	q = fakeq_start(&fq, FQ_FAIL);
	ld = restore_load_file_start(file, false, q, 5000, why, sizeof(why));
	CHECK(ld);
	CHECK_EQ(drive(q, ld, why, sizeof(why)), -EIO);
	CHECK(strstr(why, "QEMU could not load"));
	CHECK(strstr(why, file));
	CHECK(strstr(why, "Invalid argument"));
	CHECK(!strchr(why, '\n'));
	restore_load_vm_free(ld);
	fakeq_stop(&fq, q);

	/* a command QEMU refuses: which one, and QEMU's words */
	q = fakeq_start(&fq, FQ_REFUSE);
	ld = restore_load_file_start(file, false, q, 5000, why, sizeof(why));
	CHECK(ld);
	CHECK_EQ(drive(q, ld, why, sizeof(why)), -EIO);
	CHECK(strstr(why, "migrate-incoming"));
	CHECK(strstr(why, "no -incoming defer"));
	CHECK(strstr(why, file));
	restore_load_vm_free(ld);
	fakeq_stop(&fq, q);

	/* the deadline: never completed */
	q = fakeq_start(&fq, FQ_SLOW);
	ld = restore_load_file_start(file, false, q, 200, why, sizeof(why));
	CHECK(ld);
	CHECK_EQ(drive(q, ld, why, sizeof(why)), -ETIMEDOUT);
	CHECK(strstr(why, "not loaded within 1 s"));
	CHECK(strstr(why, "active"));
	restore_load_vm_free(ld);
	fakeq_stop(&fq, q);

	/* freed with its commands on their way: their replies are dropped
	 * (ASan would see a use after free or a leak) */
	q = fakeq_start(&fq, FQ_OK);
	ld = restore_load_file_start(file, true, q, 5000, why, sizeof(why));
	CHECK(ld);
	CHECK(qmp_pending(q) == 1);
	restore_load_vm_free(ld);
	for (int i = 0; i < 200 && qmp_pending(q); i++) {
		struct pollfd p = { .fd = qmp_fd(q), .events = POLLIN };
		poll(&p, 1, 5);
		qmp_pump(q);
	}
	CHECK_EQ(qmp_pending(q), 0);
	fakeq_stop(&fq, q);
	/* and freed with one still waiting when QMP closes */
	q = fakeq_start(&fq, FQ_OK);
	ld = restore_load_file_start(file, false, q, 5000, why, sizeof(why));
	CHECK(ld);
	restore_load_vm_free(ld);
	fakeq_stop(&fq, q);

	/* a missing file: nothing sent, the file named */
	q = fakeq_start(&fq, FQ_OK);
	CHECK(!restore_load_file_start("/nonexistent/rank0.vmstate", false, q, 5000, why,
				       sizeof(why)));
	CHECK_EQ(errno, ENOENT);
	CHECK(strstr(why, "/nonexistent/rank0.vmstate"));
	CHECK_EQ(qmp_pending(q), 0);
	fakeq_stop(&fq, q);
	unlink(file);
}

int main(void)
{
	test_load();

	char why[256];
	struct restore_settings s = {
		.memory = "256M", .vcpus = "1", .subnet = "10.77.0.0/24", .guest_cmd = "true",
		.append = "", .kernel = "/k", .initrd = "/i", .disk = "/d",
		.vm = "none", .synth_rate = "100", .synth_seconds = "10", .maxcpus = "2",
	};
	json_t *conf = restore_config_build(&s);

	/* the writer writes only what the reader takes */
	CHECK_EQ(restore_config_check(conf, "M", why, sizeof(why)), 0);
	const char *key;
	json_t *val;
	json_object_foreach(conf, key, val) {
		bool listed = false;
		for (int i = 0; restore_config_keys[i]; i++)
			listed |= !strcmp(restore_config_keys[i], key);
		CHECK(listed);
	}
	CHECK_EQ(restore_config_check(NULL, "M", why, sizeof(why)), 0);
	CHECK(!strcmp(json_string_value(json_object_get(conf, "vm")), "none"));
	CHECK(!strcmp(json_string_value(json_object_get(conf, "synth-rate")), "100"));
	CHECK(!strcmp(json_string_value(json_object_get(conf, "maxcpus")), "2"));

	const char *bad[] = { "qemu", "run-dir", "checkpoint-dir", "restore", "timeout", NULL };
	for (int i = 0; bad[i]; i++) {
		json_t *c = json_deep_copy(conf);
		json_object_set_new(c, bad[i], json_string("/tmp/x"));
		why[0] = '\0';
		CHECK_EQ(restore_config_check(c, "/ck/epoch-000001/manifest", why, sizeof(why)),
			 -EINVAL);
		CHECK(strstr(why, "/ck/epoch-000001/manifest"));
		CHECK(strstr(why, bad[i]));
		CHECK(!strchr(why, '\n'));
		json_decref(c);
	}
	json_t *c = json_deep_copy(conf);
	json_object_set_new(c, "memory", json_integer(256));
	CHECK_EQ(restore_config_check(c, "M", why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "'memory' is not a string"));
	json_decref(c);
	c = json_array();
	CHECK_EQ(restore_config_check(c, "M", why, sizeof(why)), -EINVAL);
	json_decref(c);
	json_decref(conf);
	return 0;
}
