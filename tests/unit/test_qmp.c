/* The QMP client against a scripted peer on a real unix socket: greeting,
 * capabilities, replies matched by id, events queued while waiting, QMP
 * errors, timeouts and EOF.  Real QEMU is exercised by the integration tests. */
#include "test.h"
#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char sock_path[108];

static void say(int fd, const char *s)
{
	CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s));
}

/* Read one request line and return the id it carries. */
static void read_id(int fd, char *id, size_t len)
{
	char line[1024];
	size_t n = 0;
	int depth = 0;
	while (n < sizeof(line) - 1 && read(fd, line + n, 1) == 1) {
		depth += line[n] == '{';
		depth -= line[n] == '}';
		n++;
		if (depth == 0)
			break;
	}
	line[n] = '\0';
	char *p = strstr(line, "\"id\": \"");
	if (!p)
		p = strstr(line, "\"id\":\"");
	CHECK(p);
	p = strchr(p + 4, '"') + 1;
	snprintf(id, len, "%.*s", (int)(strchr(p, '"') - p), p);
}

static void *peer(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	char id[64], buf[512];

	CHECK(fd >= 0);
	say(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
	read_id(fd, id, sizeof(id));
	snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": \"%s\"}\r\n", id);
	say(fd, buf);
	/* query-status: an event and a stale reply come first */
	read_id(fd, id, sizeof(id));
	say(fd, "{\"event\": \"STOP\", \"timestamp\": {}}\r\n");
	say(fd, "{\"return\": {}, \"id\": \"stale\"}\r\n");
	snprintf(buf, sizeof(buf), "{\"return\": {\"status\": \"paused\"}, \"id\": \"%s\"}\r\n", id);
	say(fd, buf);
	/* a failing command */
	read_id(fd, id, sizeof(id));
	snprintf(buf, sizeof(buf), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}, \"id\": \"%s\"}\r\n", id);
	say(fd, buf);
	/* a command that never gets a reply, then EOF */
	read_id(fd, id, sizeof(id));
	usleep(400 * 1000);
	close(fd);
	return NULL;
}

/* ---- asynchronous commands ------------------------------------------ */

struct result {
	int calls;
	int err;
	char text[256];
	int order;
};

static int call_seq;

static void on_reply(void *ctx, int err, json_t *ret, const char *why)
{
	struct result *r = ctx;
	r->calls++;
	r->err = err;
	r->order = ++call_seq;
	if (err)
		snprintf(r->text, sizeof(r->text), "%s", why);
	else
		snprintf(r->text, sizeof(r->text), "%s",
			 json_string_value(json_object_get(ret, "v")) ?: "");
}

/* Read one request; return its id, and the descriptor it carried (or -1). */
static int read_req_fd(int fd, char *id, size_t len)
{
	char line[1024];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { line, sizeof(line) - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	int got = -1;
	/* requests are small and sent whole: one recvmsg takes one (the
	 * client waits for nothing, so read exactly up to the closing brace) */
	ssize_t n = recvmsg(fd, &mh, MSG_PEEK);
	CHECK(n > 0);
	int depth = 0;
	ssize_t end = 0;
	for (; end < n; end++) {
		depth += line[end] == '{';
		depth -= line[end] == '}';
		if (depth == 0)
			break;
	}
	iov.iov_len = (size_t)end + 1;
	mh.msg_controllen = sizeof(ctl.buf);
	n = recvmsg(fd, &mh, 0);
	CHECK(n == end + 1);
	line[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_type == SCM_RIGHTS)
			memcpy(&got, CMSG_DATA(c), sizeof(int));
	char *p = strstr(line, "\"id\":\"");
	CHECK(p);
	p += 6;
	snprintf(id, len, "%.*s", (int)(strchr(p, '"') - p), p);
	return got;
}

static void *peer_async(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	char a[64], b[64], c[64], sync[64], g[64], d[64], e[64], buf[512];

	CHECK(fd >= 0);
	say(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
	read_id(fd, a, sizeof(a));
	snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": \"%s\"}\r\n", a);
	say(fd, buf);
	/* two commands answered out of order, an event between */
	CHECK_EQ(read_req_fd(fd, a, sizeof(a)), -1);
	CHECK_EQ(read_req_fd(fd, b, sizeof(b)), -1);
	snprintf(buf, sizeof(buf), "{\"return\": {\"v\": \"B\"}, \"id\": \"%s\"}\r\n", b);
	say(fd, buf);
	say(fd, "{\"event\": \"RESUME\", \"timestamp\": {}}\r\n");
	snprintf(buf, sizeof(buf), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"A failed\"}, \"id\": \"%s\"}\r\n", a);
	say(fd, buf);
	/* an asynchronous command, then a blocking one: the reply to the
	 * first arrives while the blocking call waits */
	CHECK_EQ(read_req_fd(fd, c, sizeof(c)), -1);
	CHECK_EQ(read_req_fd(fd, sync, sizeof(sync)), -1);
	snprintf(buf, sizeof(buf), "{\"return\": {\"v\": \"C\"}, \"id\": \"%s\"}\r\n", c);
	say(fd, buf);
	snprintf(buf, sizeof(buf), "{\"return\": {\"v\": \"S\"}, \"id\": \"%s\"}\r\n", sync);
	say(fd, buf);
	/* a descriptor travels with an asynchronous getfd */
	int passed = read_req_fd(fd, g, sizeof(g));
	CHECK(passed >= 0);
	CHECK(write(passed, "x", 1) == 1);
	close(passed);
	snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": \"%s\"}\r\n", g);
	say(fd, buf);
	/* one never answered (times out), one pending at EOF */
	read_req_fd(fd, d, sizeof(d));
	read_req_fd(fd, e, sizeof(e));
	usleep(300 * 1000);
	close(fd);
	return NULL;
}

static void test_async(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct result ra = { 0 }, rb = { 0 }, rc = { 0 }, rg = { 0 }, rd = { 0 }, re = { 0 };
	char path[108], why[256];
	pthread_t th;
	json_t *reply;
	int pfd[2];

	snprintf(path, sizeof(path), "/tmp/vc-test-qmpa.%d", (int)getpid());
	strcpy(sa.sun_path, path);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(lfd, 1) == 0);
	pthread_create(&th, NULL, peer_async, &lfd);
	struct qmp *q = qmp_connect(path, 2000, why, sizeof(why));
	CHECK(q);

	CHECK_EQ(qmp_exec_async(q, "a", NULL, -1, 2000, on_reply, &ra), 0);
	CHECK_EQ(qmp_exec_async(q, "b", json_pack("{s:i}", "x", 1), -1, 2000, on_reply, &rb), 0);
	CHECK_EQ(qmp_pending(q), 2);
	CHECK_EQ(ra.calls + rb.calls, 0);	/* never from inside the call */
	while (qmp_pending(q)) {
		struct pollfd p = { .fd = qmp_fd(q), .events = POLLIN };
		CHECK(poll(&p, 1, 2000) == 1);
		CHECK_EQ(qmp_pump(q), 0);
	}
	CHECK_EQ(rb.calls, 1);
	CHECK_EQ(rb.err, 0);
	CHECK(!strcmp(rb.text, "B"));
	CHECK_EQ(ra.calls, 1);
	CHECK_EQ(ra.err, -EIO);
	CHECK(strstr(ra.text, "A failed"));
	CHECK(rb.order < ra.order);	/* in the order the replies came */
	json_t *ev = qmp_next_event(q);
	CHECK(ev && !strcmp(json_string_value(json_object_get(ev, "event")), "RESUME"));
	json_decref(ev);

	/* a blocking call keeps an asynchronous reply for the next pump */
	CHECK_EQ(qmp_exec_async(q, "c", NULL, -1, 2000, on_reply, &rc), 0);
	CHECK_EQ(qmp_exec(q, "sync", NULL, &reply, 2000, why, sizeof(why)), 0);
	CHECK(!strcmp(json_string_value(json_object_get(reply, "v")), "S"));
	json_decref(reply);
	CHECK_EQ(rc.calls, 0);
	CHECK_EQ(qmp_pump(q), 0);
	CHECK_EQ(rc.calls, 1);
	CHECK(!strcmp(rc.text, "C"));

	/* getfd with a descriptor */
	CHECK(pipe(pfd) == 0);
	CHECK_EQ(qmp_exec_async(q, "getfd", json_pack("{s:s}", "fdname", "t"), pfd[1], 2000,
				on_reply, &rg), 0);
	close(pfd[1]);
	while (!rg.calls) {
		struct pollfd p = { .fd = qmp_fd(q), .events = POLLIN };
		CHECK(poll(&p, 1, 2000) == 1);
		qmp_pump(q);
	}
	CHECK_EQ(rg.err, 0);
	char x;
	CHECK(read(pfd[0], &x, 1) == 1 && x == 'x');	/* the peer wrote through it */
	close(pfd[0]);

	/* timeout, then EOF */
	CHECK_EQ(qmp_exec_async(q, "d", NULL, -1, 100, on_reply, &rd), 0);
	CHECK_EQ(qmp_exec_async(q, "e", NULL, -1, 5000, on_reply, &re), 0);
	usleep(150 * 1000);
	CHECK_EQ(qmp_pump(q), 0);
	CHECK_EQ(rd.calls, 1);
	CHECK_EQ(rd.err, -ETIMEDOUT);
	CHECK(strstr(rd.text, "'d'"));
	CHECK_EQ(re.calls, 0);
	struct pollfd p = { .fd = qmp_fd(q), .events = POLLIN };
	CHECK(poll(&p, 1, 2000) == 1);
	CHECK_EQ(qmp_pump(q), -EPIPE);
	CHECK_EQ(re.calls, 1);
	CHECK_EQ(re.err, -EPIPE);
	CHECK_EQ(qmp_pending(q), 0);
	CHECK(qmp_exec_async(q, "after", NULL, -1, 100, on_reply, &re) == -EPIPE);
	CHECK_EQ(re.calls, 1);

	/* close runs what is still pending, with -EPIPE */
	qmp_close(q);
	pthread_join(th, NULL);
	close(lfd);
	unlink(path);
}

/* The greeting and the reply to qmp_capabilities, then EOF. */
static void *peer_caps(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	char id[64], buf[128];

	CHECK(fd >= 0);
	say(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
	read_id(fd, id, sizeof(id));
	snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": \"%s\"}\r\n", id);
	say(fd, buf);
	usleep(200 * 1000);
	close(fd);
	return NULL;
}

/* qmp_connect_async: not there yet (try again), answered, and a peer that
 * never answers (listening, never accepting: a QEMU hung at start). */
static void test_connect_async(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct result ra = { 0 }, rm = { 0 };
	char path[108], why[256] = "";
	pthread_t th;

	snprintf(path, sizeof(path), "/tmp/vc-test-qmpc.%d", (int)getpid());
	strcpy(sa.sun_path, path);
	unlink(path);
	CHECK(qmp_connect_async(path, 1000, on_reply, &ra, why, sizeof(why)) == NULL);
	CHECK_EQ(errno, ENOENT);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK_EQ(qmp_connect_async(path, 1000, on_reply, &ra, why, sizeof(why)) == NULL, 1);
	CHECK_EQ(errno, ECONNREFUSED);	/* bound, not listening yet */
	CHECK(listen(lfd, 1) == 0);
	pthread_create(&th, NULL, peer_caps, &lfd);
	struct qmp *q = qmp_connect_async(path, 2000, on_reply, &ra, why, sizeof(why));
	CHECK(q);
	CHECK_EQ(ra.calls, 0);		/* never from inside the call */
	while (!ra.calls) {
		struct pollfd p = { .fd = qmp_fd(q), .events = POLLIN };
		CHECK(poll(&p, 1, 2000) == 1);
		CHECK_EQ(qmp_pump(q), 0);
	}
	CHECK_EQ(ra.err, 0);
	CHECK(qmp_next_event(q) == NULL);	/* the greeting is no event */
	pthread_join(th, NULL);
	qmp_close(q);

	/* nobody accepts: the capabilities time out, the pump says so */
	q = qmp_connect_async(path, 150, on_reply, &rm, why, sizeof(why));
	CHECK(q);
	usleep(200 * 1000);
	CHECK_EQ(qmp_pump(q), 0);
	CHECK_EQ(rm.calls, 1);
	CHECK_EQ(rm.err, -ETIMEDOUT);
	CHECK(strstr(rm.text, "qmp_capabilities"));
	qmp_close(q);
	close(lfd);
	unlink(path);
}

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t th;
	char why[256];
	json_t *reply;

	snprintf(sock_path, sizeof(sock_path), "/tmp/vc-test-qmp.%d", (int)getpid());
	strcpy(sa.sun_path, sock_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(lfd, 1) == 0);
	pthread_create(&th, NULL, peer, &lfd);

	struct qmp *q = qmp_connect(sock_path, 2000, why, sizeof(why));
	CHECK(q);
	CHECK_EQ(qmp_exec(q, "query-status", NULL, &reply, 2000, why, sizeof(why)), 0);
	CHECK(!strcmp(json_string_value(json_object_get(reply, "status")), "paused"));
	json_decref(reply);
	json_t *ev = qmp_next_event(q);
	CHECK(ev && !strcmp(json_string_value(json_object_get(ev, "event")), "STOP"));
	json_decref(ev);
	CHECK(qmp_next_event(q) == NULL);

	CHECK_EQ(qmp_exec(q, "bogus", NULL, NULL, 2000, why, sizeof(why)), -EIO);
	CHECK(strstr(why, "no such thing"));

	CHECK_EQ(qmp_exec(q, "slow", json_pack("{s:i}", "x", 1), NULL, 100, why,
		 sizeof(why)), -ETIMEDOUT);
	usleep(500 * 1000);
	CHECK_EQ(qmp_exec(q, "after-eof", NULL, NULL, 1000, why, sizeof(why)) < 0, 1);

	qmp_close(q);
	pthread_join(th, NULL);
	close(lfd);
	unlink(sock_path);

	test_async();
	test_connect_async();

	/* Nothing listening: a bounded wait and a message naming the path. */
	CHECK(qmp_connect("/tmp/vc-test-qmp-none", 200, why, sizeof(why)) == NULL);
	CHECK(strstr(why, "/tmp/vc-test-qmp-none"));
	return 0;
}
