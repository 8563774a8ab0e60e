/* vm: one rank's QEMU.
 *
 * Starts QEMU with its fabric NIC on a libvdeplug seqpacket link (one end
 * of a socketpair the rank keeps), QMP on a unix socket and the serial
 * console in a file; follows the console for the guest's exit line
 * ("VCLUSTER-EXIT rank=R status=S", printed by the test guest's init) and
 * stops QEMU in escalating steps.
 */
#ifndef VC_VM_H
#define VC_VM_H

#include "config.h"
#include "pin.h"

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

struct vm;
struct qmp;

struct vm_spec {
	const struct vc_config *cfg;
	int rank;			/* the rank that runs this QEMU (logs, errors) */
	int node;			/* the node it is: MAC, -name, vc.rank, the head's
					 * NIC.  The rank's own number at start; node K's
					 * on a spare that receives K (migrate.h) */
	int nranks;			/* nodes in the cluster (vc.n) */
	const char *rank_dir;		/* RUN/rankR, exists, mode 0700 */
	const char *qemu_bin;
	bool qemu_patched;
	const char *firmware_dir;	/* -L for a QEMU of our own build */
	bool kvm;
	const char *kernel, *initrd;	/* resolved; kernel may be "" with a disk */
	const struct pin_plan *pin;	/* NULL: no binding */
	bool incoming;			/* restore or migration target: -incoming defer -S */
	const char *restore_disk;	/* restore: the checkpoint's disk image */
	const char *live_qmp;		/* a second QMP socket (live checkpoints), or NULL */
};

enum vm_state { VM_RUNNING, VM_STOPPING, VM_EXITED };

/* The QEMU drive id of a VM's --disk (for snapshots). */
#define VM_DISK_ID "disk0"

/* Start QEMU in two steps that never wait, for the rank's loop (e.g. a
 * spare starting a destination QEMU while the job runs).  vm_spawn() starts
 * QEMU: on success *link_fd is the rank's end of the VM link; NULL with
 * errno and a one-line reason in why.  vm_connect_async() then connects
 * to its QMP from loop l, retrying while QEMU creates the socket, and binds
 * the vCPUs (query-cpus-fast) when s->pin was given.  cb runs once, from
 * the loop: err 0 when QEMU answers (vm_qmp() is set from then on), or
 * -ETIMEDOUT (no answer within deadline_ms), -ECHILD (QEMU exited) with a
 * line naming the rank and QEMU's log in why.  cb must not destroy vm.
 * Until then vm_qmp() is NULL; vm_destroy() cancels the wait. */
typedef void (*vm_ready_cb)(void *ctx, struct vm *vm, int err, const char *why);
struct loop;
struct vm *vm_spawn(const struct vm_spec *s, int *link_fd, char *why, size_t whylen);
int vm_connect_async(struct vm *vm, struct loop *l, int deadline_ms, vm_ready_cb cb,
		     void *ctx);
/* vm_connect_async() with the caller waiting: runs loop l until QEMU
 * answers or fails (at start-up, before the rank has anything else to
 * serve).  0, or -errno with the line in why. */
int vm_connect_wait(struct vm *vm, struct loop *l, int deadline_ms, char *why, size_t whylen);
void vm_destroy(struct vm *vm);		/* kills QEMU if still running */

pid_t vm_pid(const struct vm *vm);
enum vm_state vm_state(const struct vm *vm);
const char *vm_state_name(const struct vm *vm);
struct qmp *vm_qmp(struct vm *vm);	/* NULL once QEMU is gone */
int vm_qmp_fd(const struct vm *vm);	/* -1 once QEMU is gone */

/* Read new console output; echo lines to out (if not NULL) prefixed
 * "[nodeR] ", and remember the guest's exit line. */
void vm_console_pump(struct vm *vm, FILE *out);

/* Reap QEMU if it has exited.  Returns true once it has (then the result
 * below is final). */
bool vm_check_exit(struct vm *vm);

/* After exit: 0 and *guest_status when the guest reported its command's
 * status; otherwise -1 and a reason ("QEMU was killed by signal 9", "QEMU
 * exited with status 1 before the guest reported: <last qemu.log line>"). */
int vm_result(const struct vm *vm, int *guest_status, char *why, size_t whylen);

/* Ask for an orderly stop: ACPI power-down now, QMP quit after grace_ms,
 * SIGKILL 5 s after that; vm_tick() carries out the later steps. */
void vm_request_stop(struct vm *vm, int grace_ms);
/* Stop at once (QMP quit, SIGKILL after 2 s). */
void vm_kill(struct vm *vm);
void vm_tick(struct vm *vm);

#endif
