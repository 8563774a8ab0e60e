#define LOG_PREFIX "qmp"
#include "vctime.h"
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMP_MAX_LINE (4u << 20)
#define QMP_MAX_EVENTS 1024

/* An asynchronous command, from qmp_exec_async() until its callback. */
struct qmp_call {
	char id[32];
	qmp_cb cb;
	void *ctx;
	long long deadline;	/* monotonic ms */
	char command[48];	/* for the error text */
	json_t *msg;		/* the reply once read (owned), or NULL */
	int err;		/* result once known */
	struct qmp_call *next;
};

struct qmp {
	int fd;
	char *buf;		/* bytes read but not yet parsed */
	size_t len, cap;
	json_t *events;		/* array of queued events */
	unsigned long next_id;
	struct qmp_call *calls;	/* asynchronous commands, oldest first */
	int ncalls;
	bool eof;		/* QEMU closed the socket */
	bool closing;		/* qmp_close() runs the last callbacks */
};

int qmp_fd(const struct qmp *q)
{
	return q->fd;
}

static void qmp_finish_calls(struct qmp *q, bool all);

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	q->closing = true;
	for (struct qmp_call *c = q->calls; c; c = c->next) {
		if (!c->msg && !c->err)
			c->err = -EPIPE;
	}
	qmp_finish_calls(q, true);
	if (q->fd >= 0)
		close(q->fd);
	free(q->buf);
	json_decref(q->events);
	free(q);
}

/* Read once from the socket into the buffer.  0 on data, -EAGAIN when
 * nothing is there, -EPIPE on EOF, -errno otherwise. */
static int qmp_read_some(struct qmp *q)
{
	if (q->cap - q->len < 4096) {
		size_t ncap = q->cap ? q->cap * 2 : 16384;
		if (ncap > QMP_MAX_LINE)
			return -EMSGSIZE;
		char *nb = realloc(q->buf, ncap);
		if (!nb)
			return -ENOMEM;
		q->buf = nb;
		q->cap = ncap;
	}
	ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
	if (n == 0)
		return -EPIPE;
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? -EAGAIN : -errno;
	q->len += (size_t)n;
	return 0;
}

/* Take one complete JSON message (QMP ends each with CRLF) off the buffer. */
static json_t *qmp_take_message(struct qmp *q)
{
	char *nl;

	if (!q->buf)
		return NULL;
	while ((nl = memchr(q->buf, '\n', q->len))) {
		size_t line = (size_t)(nl - q->buf) + 1;
		json_error_t jerr;
		json_t *msg = json_loadb(q->buf, line, JSON_DISABLE_EOF_CHECK, &jerr);
		memmove(q->buf, q->buf + line, q->len - line);
		q->len -= line;
		if (json_is_object(msg))
			return msg;
		json_decref(msg);	/* blank or garbage line: skip it */
	}
	return NULL;
}

static void qmp_queue_event(struct qmp *q, json_t *ev)
{
	if (json_array_size(q->events) >= QMP_MAX_EVENTS)
		json_array_remove(q->events, 0);	/* oldest first */
	json_array_append_new(q->events, ev);
}

/* Wait for the next message until deadline (ms, monotonic). */
static int qmp_next_message(struct qmp *q, long long deadline, json_t **out)
{
	for (;;) {
		json_t *msg = qmp_take_message(q);
		if (msg) {
			*out = msg;
			return 0;
		}
		int r = qmp_read_some(q);
		if (r == 0)
			continue;
		if (r != -EAGAIN)
			return r;
		long long left = deadline - vc_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno != EINTR)
			return -errno;
	}
}

/* A reply (not an event) read off the socket: to an asynchronous command
 * (kept on it for qmp_finish_calls), or to an abandoned blocking call
 * (dropped).  Returns true when it was taken. */
static bool qmp_take_reply(struct qmp *q, json_t *msg)
{
	const char *id = json_string_value(json_object_get(msg, "id"));

	for (struct qmp_call **pp = &q->calls; id && *pp; pp = &(*pp)->next) {
		struct qmp_call *c = *pp;
		if (!c->msg && !c->err && !strcmp(c->id, id)) {
			c->msg = msg;
			/* to the tail: callbacks run in the order replies came */
			*pp = c->next;
			struct qmp_call **tail = pp;
			while (*tail)
				tail = &(*tail)->next;
			c->next = NULL;
			*tail = c;
			return true;
		}
	}
	json_decref(msg);
	return false;
}

static void qmp_error_text(json_t *msg, char *why, size_t whylen)
{
	json_t *err = json_object_get(msg, "error");
	const char *cls = json_string_value(json_object_get(err, "class"));
	const char *desc = json_string_value(json_object_get(err, "desc"));
	snprintf(why, whylen, "%s%s%s", desc ? desc : "unknown error",
		 cls ? " " : "", cls ? cls : "");
}

static int qmp_exec_common(struct qmp *q, const char *command, json_t *args,
			   json_t **reply, int timeout_ms, int pass_fd, char *why,
			   size_t whylen);

int qmp_exec(struct qmp *q, const char *command, json_t *args, json_t **reply,
	     int timeout_ms, char *why, size_t whylen)
{
	return qmp_exec_common(q, command, args, reply, timeout_ms, -1, why, whylen);
}

int qmp_getfd(struct qmp *q, const char *fdname, int fd, int timeout_ms,
	      char *why, size_t whylen)
{
	return qmp_exec_common(q, "getfd", json_pack("{s:s}", "fdname", fdname), NULL,
			       timeout_ms, fd, why, whylen);
}

/* Send text; the first chunk carries pass_fd as SCM_RIGHTS when >= 0. */
static int qmp_send_text(struct qmp *q, const char *text, size_t tlen, int pass_fd)
{
	size_t off = 0;

	while (off < tlen) {
		struct iovec iov = { .iov_base = (char *)text + off, .iov_len = tlen - off };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (pass_fd >= 0 && off == 0) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
		}
		ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EPIPE ? -EPIPE : -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

static int qmp_exec_common(struct qmp *q, const char *command, json_t *args,
			   json_t **reply, int timeout_ms, int pass_fd, char *why,
			   size_t whylen)
{
	char idbuf[32];
	long long deadline = vc_mono_ms() + timeout_ms;
	json_t *req = json_object();
	int r;

	if (reply)
		*reply = NULL;
	if (q->eof || q->closing) {
		json_decref(args);
		snprintf(why, whylen, "'%s': QEMU closed the QMP socket", command);
		return -EPIPE;
	}
	snprintf(idbuf, sizeof(idbuf), "vc-%lu", ++q->next_id);
	json_object_set_new(req, "execute", json_string(command));
	if (args)
		json_object_set_new(req, "arguments", args);
	json_object_set_new(req, "id", json_string(idbuf));
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		return -ENOMEM;

	r = qmp_send_text(q, text, strlen(text), pass_fd);
	free(text);
	if (r < 0) {
		snprintf(why, whylen, "sending '%s': %s", command, strerror(-r));
		return r;
	}

	for (;;) {
		json_t *msg;
		r = qmp_next_message(q, deadline, &msg);
		if (r < 0) {
			snprintf(why, whylen, "'%s': %s", command,
				 r == -ETIMEDOUT ? "no reply in time" :
				 r == -EPIPE ? "QEMU closed the QMP socket" :
				 strerror(-r));
			return r;
		}
		if (json_object_get(msg, "event")) {
			qmp_queue_event(q, msg);
			continue;
		}
		const char *id = json_string_value(json_object_get(msg, "id"));
		if (!id || strcmp(id, idbuf) != 0) {
			qmp_take_reply(q, msg);	/* asynchronous or abandoned */
			continue;
		}
		if (json_object_get(msg, "error")) {
			qmp_error_text(msg, why, whylen);
			json_decref(msg);
			return -EIO;
		}
		if (reply) {
			*reply = json_object_get(msg, "return");
			json_incref(*reply);
		}
		json_decref(msg);
		return 0;
	}
}

/* A handle for path, not connected (fd -1), with sa filled in.  NULL with
 * errno (and why, for a path too long for a unix socket). */
static struct qmp *qmp_new(const char *path, struct sockaddr_un *sa, char *why, size_t whylen)
{
	struct qmp *q;

	if (strlen(path) >= sizeof(sa->sun_path)) {
		snprintf(why, whylen, "socket path too long: %s", path);
		errno = ENAMETOOLONG;
		return NULL;
	}
	strcpy(sa->sun_path, path);
	q = calloc(1, sizeof(*q));
	if (!q || !(q->events = json_array())) {
		free(q);
		errno = ENOMEM;
		return NULL;
	}
	q->fd = -1;
	return q;
}

struct qmp *qmp_connect(const char *path, int timeout_ms, char *why,
			size_t whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long long deadline = vc_mono_ms() + timeout_ms;
	struct qmp *q;
	int r;

	q = qmp_new(path, &sa, why, whylen);
	if (!q)
		return NULL;

	for (;;) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->fd < 0) {
			r = -errno;
			goto fail;
		}
		if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		r = -errno;
		close(q->fd);
		q->fd = -1;
		if ((r != -ENOENT && r != -ECONNREFUSED) || vc_mono_ms() >= deadline) {
			snprintf(why, whylen, "connecting to %s: %s", path,
				 strerror(-r));
			goto fail_quiet;
		}
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}

	json_t *greeting;
	r = qmp_next_message(q, deadline, &greeting);
	if (r < 0)
		goto fail;
	if (!json_object_get(greeting, "QMP")) {
		json_decref(greeting);
		snprintf(why, whylen, "%s: not a QMP greeting", path);
		r = -EPROTO;
		goto fail_quiet;
	}
	json_decref(greeting);

	int left = (int)(deadline - vc_mono_ms());
	r = qmp_exec(q, "qmp_capabilities", NULL, NULL, left > 1000 ? left : 1000,
		     why, whylen);
	if (r < 0)
		goto fail_quiet;
	return q;

fail:
	snprintf(why, whylen, "%s: %s", path, strerror(-r));
fail_quiet:
	qmp_close(q);
	errno = -r;
	return NULL;
}

struct qmp *qmp_connect_async(const char *path, int timeout_ms, qmp_cb cb, void *ctx,
			      char *why, size_t whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct qmp *q;
	int r;

	q = qmp_new(path, &sa, why, whylen);
	if (!q)
		return NULL;
	/* A unix socket's connect does not wait for the server to accept
	 * (only for room in its backlog: EAGAIN, told like not yet there). */
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = errno == EAGAIN ? -ECONNREFUSED : -errno;
		if (r != -ENOENT && r != -ECONNREFUSED)
			snprintf(why, whylen, "connecting to %s: %s", path, strerror(-r));
		goto fail;
	}
	/* then blocking as qmp_connect's: every read is MSG_DONTWAIT anyway,
	 * and a command is sent whole */
	fcntl(q->fd, F_SETFL, fcntl(q->fd, F_GETFL) & ~O_NONBLOCK);
	/* The greeting comes first and, carrying no id, is dropped by the
	 * pump; QEMU reads the command after sending it. */
	r = qmp_exec_async(q, "qmp_capabilities", NULL, -1, timeout_ms, cb, ctx);
	if (r < 0) {
		snprintf(why, whylen, "%s: sending qmp_capabilities: %s", path, strerror(-r));
		goto fail;
	}
	return q;
fail:
	qmp_close(q);
	errno = -r;
	return NULL;
}

/* Run the callbacks of the commands that have a result: a reply, an error
 * code, or (unless all) a passed deadline.  A callback may start new
 * commands; those wait for the next pump. */
static void qmp_finish_calls(struct qmp *q, bool all)
{
	long long now = vc_mono_ms();
	struct qmp_call *done = NULL, **tail = &done, **pp = &q->calls;

	while (*pp) {
		struct qmp_call *c = *pp;
		if (!c->msg && !c->err && now >= c->deadline)
			c->err = -ETIMEDOUT;
		if (c->msg || c->err || all) {
			*pp = c->next;
			c->next = NULL;
			*tail = c;
			tail = &c->next;
			continue;
		}
		pp = &c->next;
	}
	while (done) {
		struct qmp_call *c = done;
		char why[512] = "";
		json_t *ret = NULL;
		int err = c->err;
		done = c->next;
		q->ncalls--;
		if (c->msg && json_object_get(c->msg, "error")) {
			qmp_error_text(c->msg, why, sizeof(why));
			err = -EIO;
		} else if (c->msg) {
			ret = json_object_get(c->msg, "return");
			err = 0;
		} else {
			if (!err)
				err = -EPIPE;
			snprintf(why, sizeof(why), "'%s': %s", c->command,
				 err == -ETIMEDOUT ? "no reply in time" :
				 err == -EPIPE ? "QEMU closed the QMP socket" : strerror(-err));
		}
		c->cb(c->ctx, err, ret, why);
		json_decref(c->msg);
		free(c);
	}
}

int qmp_pump(struct qmp *q)
{
	int r = 0;

	while (!q->eof) {
		r = qmp_read_some(q);
		if (r == -EAGAIN) {
			r = 0;
			break;
		}
		if (r < 0) {
			q->eof = true;
			break;
		}
	}
	json_t *msg;
	while ((msg = qmp_take_message(q))) {
		if (json_object_get(msg, "event"))
			qmp_queue_event(q, msg);
		else
			qmp_take_reply(q, msg);
	}
	if (q->eof) {
		for (struct qmp_call *c = q->calls; c; c = c->next)
			if (!c->msg && !c->err)
				c->err = -EPIPE;
	}
	qmp_finish_calls(q, false);
	return q->eof ? (r < 0 && r != -EPIPE ? r : -EPIPE) : 0;
}

int qmp_pending(const struct qmp *q)
{
	return q->ncalls;
}

int qmp_exec_async(struct qmp *q, const char *command, json_t *args, int pass_fd,
		   int timeout_ms, qmp_cb cb, void *ctx)
{
	struct qmp_call *c;
	int r;

	if (q->eof || q->closing) {
		json_decref(args);
		return -EPIPE;
	}
	c = calloc(1, sizeof(*c));
	json_t *req = json_object();
	if (!c || !req) {
		free(c);
		json_decref(req);
		json_decref(args);
		return -ENOMEM;
	}
	snprintf(c->id, sizeof(c->id), "vc-a%lu", ++q->next_id);
	snprintf(c->command, sizeof(c->command), "%s", command);
	c->cb = cb;
	c->ctx = ctx;
	c->deadline = vc_mono_ms() + timeout_ms;
	json_object_set_new(req, "execute", json_string(command));
	if (args)
		json_object_set_new(req, "arguments", args);
	json_object_set_new(req, "id", json_string(c->id));
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text) {
		free(c);
		return -ENOMEM;
	}
	r = qmp_send_text(q, text, strlen(text), pass_fd);
	free(text);
	if (r < 0) {
		free(c);
		return r;
	}
	struct qmp_call **pp = &q->calls;
	while (*pp)
		pp = &(*pp)->next;
	*pp = c;
	q->ncalls++;
	return 0;
}

json_t *qmp_next_event(struct qmp *q)
{
	if (json_array_size(q->events) == 0)
		return NULL;
	json_t *ev = json_array_get(q->events, 0);
	json_incref(ev);
	json_array_remove(q->events, 0);
	return ev;
}

json_t *qmp_wait_event(struct qmp *q, const char *name, int timeout_ms)
{
	long long deadline = vc_mono_ms() + timeout_ms;

	for (;;) {
		size_t i;
		json_t *ev;
		json_array_foreach(q->events, i, ev) {
			const char *n = json_string_value(json_object_get(ev, "event"));
			if (n && strcmp(n, name) == 0) {
				json_incref(ev);
				json_array_remove(q->events, i);
				return ev;
			}
		}
		json_t *msg;
		if (qmp_next_message(q, deadline, &msg) < 0)
			return NULL;
		if (json_object_get(msg, "event"))
			qmp_queue_event(q, msg);
		else
			qmp_take_reply(q, msg);
	}
}
