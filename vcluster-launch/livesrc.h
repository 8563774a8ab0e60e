/* livesrc: the launcher's side of a live checkpoint (issue 15): the
 * patched QEMU's dirty log (tlm-migrate/dirty.h) and guest RAM, handed to
 * the live save (vccp-rank/livesave.h), behind vccp's struct
 * vccp_live_ops.
 *
 * The dirty log is driven over a QMP monitor of its own (RUN/rankR/
 * live.qmp, vm_spec.live_qmp), with blocking commands: starting it runs on
 * the worker, syncing on the save's coordinator thread, stopping on the
 * worker again; the rank's loop and its QMP connection never wait.
 */
#ifndef VC_LIVESRC_H
#define VC_LIVESRC_H

#include "vccp.h"

struct livesrc;
struct worker;

/* qmp_path: the second monitor's socket; writers: files per rank (1..16),
 * named rankR.ram.I in the epoch directory of the checkpoint directory
 * ckpt_ram_dir() picks (manifest.h).  NULL with errno. */
struct livesrc *livesrc_create(struct worker *w, const char *qmp_path, int rank, int writers);
/* The QEMU to save (its pid, for /proc/PID/fd); before the first epoch. */
void livesrc_set_pid(struct livesrc *s, int pid);
/* Stops the dirty log and the save (blocking: at exit only).  NULL is fine. */
void livesrc_destroy(struct livesrc *s);

extern const struct vccp_live_ops livesrc_ops;	/* ctx: a struct livesrc */

#endif
