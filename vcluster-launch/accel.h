/* accel: decide between KVM and TCG, and what the QEMU binary can do.
 *
 * KVM can be present and still not work (nested KVM here hangs in KVM_RUN,
 * or QEMU cannot set up its vCPU), so two probes run, each with a time
 * limit: a one-instruction guest (HLT) in a child process, then QEMU itself
 * with KVM on a one-instruction firmware.  Only both passing counts.
 */
#ifndef VC_ACCEL_H
#define VC_ACCEL_H

#include <stdbool.h>
#include <stddef.h>

/* Returns true when KVM ran the probe guest within timeout_ms; otherwise
 * false with the reason in why ("/dev/kvm: No such file or directory",
 * "KVM_RUN did not return within 3000 ms", ...). */
bool accel_kvm_works(int timeout_ms, char *why, size_t whylen);

/* Returns true when qemu itself runs a guest with accel ("kvm"; "tcg" for
 * the probe's own test): a 64 KiB firmware
 * whose first instruction writes to an isa-debug-exit port, run with the
 * machine and CPU model the launcher uses (q35, -cpu host), must make QEMU
 * exit with that port's status within timeout_ms.  KVM_RUN working is not
 * enough: a nested KVM may refuse an MSR QEMU sets at reset (QEMU 7.2 then
 * aborts in kvm_buf_set_msrs) or hang in the first instruction.
 * firmware_dir: QEMU's -L (NULL: its default).  false with why (QEMU's first
 * line of complaint, or the time limit). */
bool accel_qemu_runs(const char *qemu, const char *firmware_dir, const char *accel, int timeout_ms,
			  char *why, size_t whylen);

/* True when qemu (a path, or a name on PATH) is vcluster's patched build:
 * its -version names "vcluster" (qemu-patches/build sets it).  A wrapper
 * script that passes -version on is judged by the QEMU it runs.  false
 * with why when it cannot be run or answers nothing within timeout_ms. */
bool accel_qemu_patched(const char *qemu, int timeout_ms, char *why, size_t whylen);

#endif
