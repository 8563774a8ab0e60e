/* qmp: a client for QEMU's machine protocol over a unix socket.
 *
 * JSON is parsed by jansson.  Every call takes a timeout, so a hung QEMU
 * costs a bounded wait and an -ETIMEDOUT, never a hung rank.  Asynchronous
 * events that arrive while waiting for a reply are kept in a queue.
 */
#ifndef VC_QMP_H
#define VC_QMP_H

#include <jansson.h>

struct qmp;

/* Connect to the QMP socket at path, retrying until timeout_ms passes (QEMU
 * may still be creating it), read the greeting and enter command mode.
 * Returns NULL with errno set; why describes the failure. */
struct qmp *qmp_connect(const char *path, int timeout_ms, char *why,
			size_t whylen);
void qmp_close(struct qmp *q);		/* NULL is fine */
int qmp_fd(const struct qmp *q);

/* Run command with arguments args (a JSON object or NULL; the reference is
 * stolen).  On success returns 0 and, when reply is not NULL, stores the
 * "return" value (a new reference, caller decrefs).  On a QMP error returns
 * -EIO and copies QEMU's error description into why; -ETIMEDOUT when no
 * reply came in time; -EPIPE when QEMU closed the socket. */
int qmp_exec(struct qmp *q, const char *command, json_t *args, json_t **reply,
	     int timeout_ms, char *why, size_t whylen);

/* While a call waits for QEMU's reply, run hook(ctx) every few ms.  QEMU's
 * main loop may itself be waiting on the caller (a full network link that
 * only the caller drains), so a caller that stopped all other work while
 * waiting could deadlock with it.  The hook must not call into this qmp. */
void qmp_set_wait_hook(struct qmp *q, void (*hook)(void *ctx), void *ctx);

/* Hand QEMU a file descriptor under the name fdname (QMP getfd, the
 * descriptor travelling as SCM_RIGHTS), e.g. for migrate "fd:NAME".  QEMU
 * gets its own copy; the caller still owns fd.  0 or -errno as qmp_exec. */
int qmp_getfd(struct qmp *q, const char *fdname, int fd, int timeout_ms,
	      char *why, size_t whylen);

/* Read whatever QEMU has sent without waiting (call when qmp_fd() is
 * readable) and queue the events.  Returns 0, or -EPIPE on EOF. */
int qmp_pump(struct qmp *q);

/* Take the oldest queued event (a new reference) or NULL if none. */
json_t *qmp_next_event(struct qmp *q);

/* Wait up to timeout_ms for an event named name; returns it or NULL. */
json_t *qmp_wait_event(struct qmp *q, const char *name, int timeout_ms);

#endif
