/* ctl: rank 0's control socket (RUN/ctl.sock, mode 0600).
 *
 * Protocol: the client sends one JSON object on one line,
 *   {"vcluster-ctl": 1, "command": "status" | "shutdown"}
 * and reads one JSON object back: {"ok": true, ...} or {"ok": false,
 * "error": "..."}; then the connection is closed.  Version 1.
 */
#ifndef VC_CTL_H
#define VC_CTL_H

#include <jansson.h>
#include <poll.h>

#define CTL_PROTO_VERSION 1

struct ctl;

/* Answer a command: return a JSON object (new reference) to send back. */
typedef json_t *(*ctl_handler)(void *ctx, const char *command, json_t *req);

struct ctl *ctl_open(const char *path, ctl_handler h, void *ctx, char *why,
		     size_t whylen);
void ctl_close(struct ctl *c);		/* NULL is fine; removes the socket */
int ctl_pollfd(struct ctl *c, struct pollfd *pfd);
/* Accept and serve any waiting client (each gets 2 s to send its line). */
void ctl_serve(struct ctl *c);

#endif
