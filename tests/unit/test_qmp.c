/* The QMP client against a scripted peer on a real unix socket: greeting,
 * capabilities, replies matched by id, events queued while waiting, QMP
 * errors, timeouts and EOF.  Real QEMU is exercised by the integration tests. */
#include "test.h"
#include "qmp.h"

#include <errno.h>
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

	/* Nothing listening: a bounded wait and a message naming the path. */
	CHECK(qmp_connect("/tmp/vc-test-qmp-none", 200, why, sizeof(why)) == NULL);
	CHECK(strstr(why, "/tmp/vc-test-qmp-none"));
	return 0;
}
