/* ctl: rank 0's control socket (RUN/ctl.sock, mode 0600).
 *
 * Protocol: the client sends one JSON object on one line,
 *   {"vcluster-ctl": 1, "command": "status" | "shutdown" | "checkpoint"}
 *   {"vcluster-ctl": 1, "command": "migrate", "node": "node1", "to": HOST|RANK,
 *    "streams": N}		(migrate.h; streams optional)
 * and reads one JSON object back: {"ok": true, ...} or {"ok": false,
 * "error": "..."}; then the connection is closed.  Version 1.
 *
 * Only the launcher's own user (or root) may talk to it: besides the
 * socket's mode, each client's SO_PEERCRED uid is checked.  Clients are
 * non-blocking connections in the rank's event loop; each has one overall
 * deadline (CTL_CLIENT_MS for request and reply together), so a slow or
 * stuck client costs nothing but its own connection.
 */
#ifndef VC_CTL_H
#define VC_CTL_H

#include <jansson.h>

#define CTL_PROTO_VERSION	1
#define CTL_CLIENT_MS		2000	/* one client's whole exchange */
#define CTL_MAX_CLIENTS		16
#define CTL_MAX_REQUEST		4096

struct ctl;
struct loop;

/* Answer a command: return a JSON object (new reference) to send back. */
typedef json_t *(*ctl_handler)(void *ctx, const char *command, json_t *req);

/* Listen on path and serve clients from loop.  NULL with errno and the
 * reason in why. */
struct ctl *ctl_open(const char *path, struct loop *loop, ctl_handler h, void *ctx,
		     char *why, size_t whylen);
/* Drop every client, stop listening, remove the socket.  NULL is fine. */
void ctl_close(struct ctl *c);

#endif
