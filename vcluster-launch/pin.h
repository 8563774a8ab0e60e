/* pin: choose cores for a rank's own thread and its VM's vCPU threads, and
 * bind them (hwloc).
 *
 * Ranks on one host share its cores: local rank i takes the i-th run of
 * (vcpus + 1) cores, its own thread on the first, one vCPU per following
 * core.  With fewer cores than the ranks ask for, the choice wraps around
 * and the cores are shared; that is said once as a warning.
 */
#ifndef VC_PIN_H
#define VC_PIN_H

#include <stddef.h>
#include <sys/types.h>

struct pin_plan;

/* Plan for local rank local_rank of local_size on this host. */
struct pin_plan *pin_plan_create(int local_rank, int local_size, int vcpus);
void pin_plan_destroy(struct pin_plan *p);	/* NULL is fine */

/* One line describing the choice, for the rank log. */
const char *pin_plan_describe(const struct pin_plan *p);
/* True when the host had fewer cores than asked for. */
int pin_plan_shared(const struct pin_plan *p);

/* Bind the calling thread to the rank's core.  0 or -errno. */
int pin_bind_self(const struct pin_plan *p);
/* Bind a whole process (every thread it has now and later) to the rank's
 * cores and its vCPU cores.  0 or -errno. */
int pin_bind_process(const struct pin_plan *p, pid_t pid);
/* Bind Linux thread tid (a vCPU thread) to the core of vCPU index.  */
int pin_bind_vcpu(const struct pin_plan *p, int index, pid_t tid);

#endif
