/* qemuram: a running QEMU's guest RAM, opened from outside through its
 * memory-backend-memfd (/proc/PID/fd).
 *
 * vcluster's VMs have their RAM on a memfd (share=on), so the rank can read
 * it (a migration's checksum) or write it (a live checkpoint's restore,
 * before the guest runs) without QEMU's help.  The memfd is recognised by
 * its name and its exact length.
 */
#ifndef VC_QEMURAM_H
#define VC_QEMURAM_H

#include <stdint.h>
#include <sys/types.h>

/* Open the memfd of QEMU pid whose size is length bytes, with open(2)'s
 * flags (O_RDONLY or O_RDWR; O_CLOEXEC is added).  The fd, -ENOENT when
 * there is none, or -errno of reading /proc/PID/fd. */
int qemuram_open(pid_t pid, uint64_t length, int flags);

#endif
