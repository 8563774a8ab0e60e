#define LOG_PREFIX "ctl"
#include "ctl.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct ctl {
	int fd;
	char path[PATH_MAX];
	ctl_handler handler;
	void *ctx;
};

struct ctl *ctl_open(const char *path, ctl_handler h, void *ctx, char *why,
		     size_t whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl *c;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, whylen, "control socket path too long: %s", path);
		errno = ENAMETOOLONG;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	strcpy(sa.sun_path, path);
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->handler = h;
	c->ctx = ctx;
	unlink(path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	mode_t old = umask(0177);	/* the socket is born 0600 */
	int r = c->fd < 0 ? -1 : bind(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(c->fd, 8) < 0) {
		snprintf(why, whylen, "control socket %s: %s", path, strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return NULL;
	}
	chmod(path, 0600);
	return c;
}

void ctl_close(struct ctl *c)
{
	if (!c)
		return;
	close(c->fd);
	unlink(c->path);
	free(c);
}

int ctl_pollfd(struct ctl *c, struct pollfd *pfd)
{
	pfd->fd = c->fd;
	pfd->events = POLLIN;
	pfd->revents = 0;
	return 1;
}

static void reply(int fd, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	if (text) {
		size_t len = strlen(text);
		if (send(fd, text, len, MSG_NOSIGNAL) != (ssize_t)len)
			pr_debug("client went away before the reply");
		send(fd, "\n", 1, MSG_NOSIGNAL);
		free(text);
	}
	json_decref(obj);
}

static json_t *error_reply(const char *msg)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

void ctl_serve(struct ctl *c)
{
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct timeval tv = { 2, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		char buf[4096];
		size_t n = 0;
		while (n < sizeof(buf) - 1) {
			ssize_t k = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
			if (k <= 0)
				break;
			n += (size_t)k;
			if (memchr(buf, '\n', n))
				break;
		}
		buf[n] = '\0';
		json_error_t jerr;
		json_t *req = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
		json_t *ver = json_object_get(req, "vcluster-ctl");
		const char *cmd = json_string_value(json_object_get(req, "command"));
		if (!json_is_object(req))
			reply(fd, error_reply("request is not a JSON object"));
		else if (!json_is_integer(ver) || json_integer_value(ver) != CTL_PROTO_VERSION)
			reply(fd, error_reply("unsupported protocol version (this launcher speaks 1)"));
		else if (!cmd)
			reply(fd, error_reply("request has no command"));
		else
			reply(fd, c->handler(c->ctx, cmd, req));
		json_decref(req);
		close(fd);
	}
}
