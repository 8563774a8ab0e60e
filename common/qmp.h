/* qmp: a client for QEMU's machine protocol over a unix socket.
 *
 * JSON is parsed by jansson.  Every call takes a timeout, so a hung QEMU
 * costs a bounded wait and an -ETIMEDOUT, never a hung rank.  Asynchronous
 * events that arrive while waiting for a reply are kept in a queue.
 *
 * Two ways to run a command on one connection:
 *   - blocking: qmp_exec()/qmp_getfd() wait for the reply (tools with a
 *     thread of their own, e.g. tlm-migrate);
 *   - asynchronous: qmp_exec_async() sends and returns; the reply is an
 *     event: its callback runs from qmp_pump(), which an event loop calls
 *     when qmp_fd() is readable and while qmp_pending() is not zero (for
 *     the timeouts).  Nothing waits inside the loop.
 * Both may be mixed: a reply to an asynchronous command that a blocking
 * call reads is kept for the next qmp_pump().
 */
#ifndef VC_QMP_H
#define VC_QMP_H

#include <jansson.h>

struct qmp;

/* The reply to an asynchronous command: err 0 and ret (QEMU's "return"
 * value, borrowed: valid during the call) on success; -EIO with QEMU's
 * error in why; -ETIMEDOUT; -EPIPE when QEMU closed the socket (also for
 * commands still waiting when qmp_close() runs). */
typedef void (*qmp_cb)(void *ctx, int err, json_t *ret, const char *why);

/* Connect to the QMP socket at path, retrying until timeout_ms passes (QEMU
 * may still be creating it), read the greeting and enter command mode.
 * Returns NULL with errno set; why describes the failure. */
struct qmp *qmp_connect(const char *path, int timeout_ms, char *why,
			size_t whylen);
/* The same without waiting, for an event loop: one connect attempt; NULL
 * with errno ENOENT or ECONNREFUSED when QEMU has not opened the socket
 * yet (try again later), another errno (and why) for a fault.  On success
 * qmp_capabilities is on its way: cb runs from qmp_pump() when QEMU has
 * answered it (err 0: command mode) or timeout_ms has passed. */
struct qmp *qmp_connect_async(const char *path, int timeout_ms, qmp_cb cb, void *ctx,
			      char *why, size_t whylen);
void qmp_close(struct qmp *q);		/* NULL is fine */
int qmp_fd(const struct qmp *q);

/* Run command with arguments args (a JSON object or NULL; the reference is
 * stolen).  On success returns 0 and, when reply is not NULL, stores the
 * "return" value (a new reference, caller decrefs).  On a QMP error returns
 * -EIO and copies QEMU's error description into why; -ETIMEDOUT when no
 * reply came in time; -EPIPE when QEMU closed the socket. */
int qmp_exec(struct qmp *q, const char *command, json_t *args, json_t **reply,
	     int timeout_ms, char *why, size_t whylen);

/* Send command (args stolen, may be NULL; pass_fd >= 0 travels as
 * SCM_RIGHTS as with qmp_getfd, the caller keeps its copy).  Returns 0 and
 * cb(ctx, ...) runs exactly once later, from qmp_pump() or qmp_close(),
 * never from inside this call; or -errno (nothing sent, cb never runs). */
int qmp_exec_async(struct qmp *q, const char *command, json_t *args, int pass_fd,
		   int timeout_ms, qmp_cb cb, void *ctx);

/* Asynchronous commands whose callback has not run yet. */
int qmp_pending(const struct qmp *q);

/* Hand QEMU a file descriptor under the name fdname (QMP getfd, the
 * descriptor travelling as SCM_RIGHTS), e.g. for migrate "fd:NAME".  QEMU
 * gets its own copy; the caller still owns fd.  0 or -errno as qmp_exec. */
int qmp_getfd(struct qmp *q, const char *fdname, int fd, int timeout_ms,
	      char *why, size_t whylen);

/* Read whatever QEMU has sent without waiting (call when qmp_fd() is
 * readable), queue the events, and run the callbacks of the asynchronous
 * commands that got their reply or passed their timeout.  Returns 0, or
 * -EPIPE on EOF (pending commands then get -EPIPE). */
int qmp_pump(struct qmp *q);

/* Take the oldest queued event (a new reference) or NULL if none. */
json_t *qmp_next_event(struct qmp *q);

/* Wait up to timeout_ms for an event named name; returns it or NULL. */
json_t *qmp_wait_event(struct qmp *q, const char *name, int timeout_ms);

#endif
