/* qmpmig: QEMU migration through QMP, in one place (vccp's save and load;
 * tlm-migrate can use the same parsing and waiting).
 *
 * The building blocks are pure (arguments to send, a parser of
 * query-migrate's reply) so that asynchronous callers (vccp's save and the
 * restore's load, in the event loop) and a blocking one (tlm-migrate) share
 * them; the blocking helpers at the end are for callers with a thread of
 * their own, never for the rank's loop.
 */
#ifndef VC_QMPMIG_H
#define VC_QMPMIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct qmp;

/* QEMU's default max-bandwidth (128 MiB/s) would cap a paused save; this
 * lifts it (1 TiB/s). */
#define QMPMIG_UNLIMITED	(1ull << 40)

enum qmpmig_state {
	QMPMIG_ACTIVE,		/* setup, active, device, ... */
	QMPMIG_COMPLETED,
	QMPMIG_FAILED,		/* failed or cancelled */
};

struct qmpmig_status {
	enum qmpmig_state state;
	char status[32];	/* QEMU's word ("none" when absent) */
	uint64_t transferred;	/* ram.transferred */
	uint64_t total;		/* ram.total */
	int64_t downtime_ms;	/* when completed, else -1 */
	char error[256];	/* error-desc when failed */
};

/* Arguments (new references) for migrate-set-parameters with max-bandwidth
 * bytes_per_s (0: QMPMIG_UNLIMITED), for migrate / migrate-incoming with
 * uri "fd:NAME", and for getfd NAME. */
json_t *qmpmig_bandwidth_args(uint64_t bytes_per_s);
json_t *qmpmig_fd_uri_args(const char *fdname);
json_t *qmpmig_getfd_args(const char *fdname);
/* Arguments for migrate-set-capabilities turning off every capability that
 * changes what a one-way whole-state stream (a checkpoint file) holds or
 * needs: one an earlier migration left on (a TLM hop's x-ignore-shared
 * leaves the RAM out; release-ram frees it at the source; postcopy,
 * return-path, multifd and pause-before-switchover need a peer). */
json_t *qmpmig_plain_caps_args(void);

/* Parse query-migrate's return value (NULL counts as "none", active). */
void qmpmig_parse(json_t *ret, struct qmpmig_status *st);

/* Blocking: poll query-migrate every poll_ms until completed (0), failed
 * (-EIO) or timeout_ms passes (-ETIMEDOUT); why says which.  st (may be
 * NULL) gets the last status. */
int qmpmig_wait(struct qmp *q, int timeout_ms, int poll_ms,
		struct qmpmig_status *st, char *why, size_t whylen);

/* Blocking: hand fd to QEMU as fdname and start migrate-incoming from it
 * (the caller keeps fd; the rank's restore uses restore_load_vm_start).  0 or -errno with QEMU's reason in why. */
int qmpmig_incoming_fd(struct qmp *q, const char *fdname, int fd, char *why,
		       size_t whylen);

#endif
