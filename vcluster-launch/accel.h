/* accel: decide between KVM and TCG, and what the QEMU binary can do.
 *
 * KVM can be present and still not work (nested KVM here hangs in KVM_RUN),
 * so the probe runs a real one-instruction guest (HLT) in a child process
 * and gives it a time limit; only a guest that halts counts as working.
 */
#ifndef VC_ACCEL_H
#define VC_ACCEL_H

#include <stdbool.h>
#include <stddef.h>

/* Returns true when KVM ran the probe guest within timeout_ms; otherwise
 * false with the reason in why ("/dev/kvm: No such file or directory",
 * "KVM_RUN did not return within 3000 ms", ...). */
bool accel_kvm_works(int timeout_ms, char *why, size_t whylen);

/* True when qemu (a path, or a name on PATH) is vcluster's patched build:
 * its -version names "vcluster" (qemu-patches/build sets it).  A wrapper
 * script that passes -version on is judged by the QEMU it runs.  false
 * with why when it cannot be run or answers nothing within timeout_ms. */
bool accel_qemu_patched(const char *qemu, int timeout_ms, char *why, size_t whylen);

#endif
