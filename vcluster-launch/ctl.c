#define LOG_PREFIX "ctl"
#include "vctime.h"
#include "ctl.h"

#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct client {
	struct ctl *c;
	int fd;			/* -1: slot free */
	struct loop_timer *deadline;
	char in[CTL_MAX_REQUEST];
	size_t nin;
	char *out;		/* the reply, once known (malloc'd) */
	size_t nout, sent;
};

struct ctl {
	int fd;
	char path[PATH_MAX];
	struct loop *loop;
	ctl_handler handler;
	void *ctx;
	struct client clients[CTL_MAX_CLIENTS];
};

static void client_drop(struct client *cl)
{
	if (cl->fd < 0)
		return;
	loop_del_fd(cl->c->loop, cl->fd);
	close(cl->fd);
	cl->fd = -1;
	loop_del_timer(cl->c->loop, cl->deadline);
	cl->deadline = NULL;
	free(cl->out);
	cl->out = NULL;
}

static void on_deadline(struct loop *l, void *ctx)
{
	struct client *cl = ctx;

	cl->deadline = NULL;	/* a one-shot timer frees itself */
	pr_debug("control client dropped: no complete exchange within %d ms", CTL_CLIENT_MS);
	client_drop(cl);
}

/* Send what the socket takes; drop the client when all is sent. */
static void client_flush(struct client *cl)
{
	while (cl->sent < cl->nout) {
		ssize_t n = send(cl->fd, cl->out + cl->sent, cl->nout - cl->sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			loop_mod_fd(cl->c->loop, cl->fd, LOOP_OUT);
			return;
		}
		if (n < 0) {
			pr_debug("client went away before the reply");
			break;
		}
		cl->sent += (size_t)n;
	}
	client_drop(cl);
}

static void client_reply(struct client *cl, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	if (!text) {
		client_drop(cl);
		return;
	}
	size_t len = strlen(text);
	cl->out = realloc(text, len + 2);
	if (!cl->out) {
		free(text);
		client_drop(cl);
		return;
	}
	cl->out[len] = '\n';
	cl->nout = len + 1;
	cl->sent = 0;
	loop_mod_fd(cl->c->loop, cl->fd, 0);	/* nothing more is read */
	client_flush(cl);
}

static json_t *error_reply(const char *msg)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static void client_request(struct client *cl)
{
	json_error_t jerr;

	cl->in[cl->nin] = '\0';
	json_t *req = json_loads(cl->in, JSON_DISABLE_EOF_CHECK, &jerr);
	json_t *ver = json_object_get(req, "vcluster-ctl");
	const char *cmd = json_string_value(json_object_get(req, "command"));
	json_t *rep;

	if (!json_is_object(req))
		rep = error_reply("request is not a JSON object");
	else if (!json_is_integer(ver) || json_integer_value(ver) != CTL_PROTO_VERSION)
		rep = error_reply("unsupported protocol version (this launcher speaks 1)");
	else if (!cmd)
		rep = error_reply("request has no command");
	else
		rep = cl->c->handler(cl->c->ctx, cmd, req);
	json_decref(req);
	client_reply(cl, rep);
}

static void on_client(struct loop *l, int fd, unsigned ev, void *ctx)
{
	struct client *cl = ctx;

	if (cl->out) {
		client_flush(cl);
		return;
	}
	for (;;) {
		ssize_t n = recv(fd, cl->in + cl->nin, sizeof(cl->in) - 1 - cl->nin, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* EOF or error: a request without its newline is
			 * still answered if it parses (old clients) */
			if (cl->nin && n == 0)
				client_request(cl);
			else
				client_drop(cl);
			return;
		}
		cl->nin += (size_t)n;
		if (memchr(cl->in, '\n', cl->nin) || cl->nin == sizeof(cl->in) - 1) {
			client_request(cl);
			return;
		}
	}
}

/* The launcher's user or root; anyone else is refused with a reason. */
static bool peer_allowed(int fd, uid_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		*uid = (uid_t)-1;
		return false;
	}
	*uid = cr.uid;
	return cr.uid == getuid() || cr.uid == 0;
}

static void on_listen(struct loop *l, int lfd, unsigned ev, void *ctx)
{
	struct ctl *c = ctx;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		uid_t uid;
		if (!peer_allowed(fd, &uid)) {
			char msg[160];
			snprintf(msg, sizeof(msg), "{\"ok\":false,\"error\":\"permission denied: "
				 "uid %ld is not the launcher's user\"}\n", (long)(int)uid);
			pr_warn("control client of uid %ld refused (only uid %ld or root)",
				(long)(int)uid, (long)getuid());
			if (send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* it learns from the closed connection */
			}
			close(fd);
			continue;
		}
		struct client *cl = NULL;
		for (int i = 0; i < CTL_MAX_CLIENTS && !cl; i++)
			if (c->clients[i].fd < 0)
				cl = &c->clients[i];
		if (!cl) {
			pr_warn("more than %d control clients at once; one refused", CTL_MAX_CLIENTS);
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->nin = 0;
		cl->out = NULL;
		cl->deadline = loop_add_timer(l, CTL_CLIENT_MS, 0, on_deadline, cl);
		if (!cl->deadline || loop_add_fd(l, fd, LOOP_IN, on_client, cl) < 0) {
			client_drop(cl);
			continue;
		}
	}
}

struct ctl *ctl_open(const char *path, struct loop *loop, ctl_handler h, void *ctx,
		     char *why, size_t whylen)
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
	c->loop = loop;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		c->clients[i].fd = -1;
		c->clients[i].c = c;
	}
	unlink(path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	mode_t old = umask(0177);	/* the socket is born 0600 */
	int r = c->fd < 0 ? -1 : bind(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(c->fd, 8) < 0) {
		snprintf(why, whylen, "control socket %s: %s", path, strerror(errno));
		goto out_close;
	}
	chmod(path, 0600);
	r = loop_add_fd(loop, c->fd, LOOP_IN, on_listen, c);
	if (r < 0) {
		errno = -r;
		snprintf(why, whylen, "control socket %s: %s", path, strerror(-r));
		goto out_close;
	}
	return c;
out_close:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

void ctl_close(struct ctl *c)
{
	if (!c)
		return;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		client_drop(&c->clients[i]);
	loop_del_fd(c->loop, c->fd);
	close(c->fd);
	unlink(c->path);
	free(c);
}
