/* lifeline: a rank does not outlive the launcher that started it.
 *
 * When mpirun (one host), orted (many) or slurmstepd (srun) dies -- kill -9,
 * a crash, a lost node daemon -- its ranks are killed by the kernel at once
 * (PR_SET_PDEATHSIG SIGKILL, which no signal mask can hold up), and each
 * rank's QEMU dies with its rank (vm.c sets PR_SET_PDEATHSIG in QEMU): a
 * hard power-off, so that a restore started next cannot race an orphan for
 * the same checkpoint directory.
 *
 * The kernel sends the signal when the thread that forked the process
 * exits: QEMU must be forked by a thread that lives as long as the rank
 * (the main thread), not by a short-lived worker.
 */
#ifndef VC_LIFELINE_H
#define VC_LIFELINE_H

/* Call once, right after MPI_Init.  Does nothing when the rank was not
 * started by an MPI launcher (a singleton run from a shell keeps running
 * if that shell exits).  If the launcher is already gone, the rank is
 * killed now.  0 or -errno (prctl failed; the rank then runs unguarded). */
int lifeline_arm(void);

#endif
