/* ramsum: the CRC32C of a QEMU's guest RAM, read through its shared
 * memory backend (vm.c gives every VM a memory-backend-memfd, share=on),
 * to prove that a migration's destination holds what the source held at
 * the stop (migrun.c's rehearsal).
 *
 * Blocking (reads the whole RAM): for a worker thread (common/worker.h);
 * never logs.  The caller makes sure the guest does not run meanwhile (a
 * stopped source, a destination that has not resumed). */
#ifndef VC_RAMSUM_H
#define VC_RAMSUM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CRC32C of the length bytes of process pid's memory-backend-memfd.  0, or
 * -errno with the reason in why (no such backend of that length, a read
 * that failed). */
int ramsum_qemu(pid_t pid, uint64_t length, uint32_t *crc, char *why, size_t whylen);

#endif
