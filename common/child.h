/* child: start a child program that dies with the process that started it.
 *
 * Whatever kills the rank (SIGKILL of mpirun, a crash), the children it
 * started must not outlive it: a copy of qemu-img still writing into a
 * checkpoint directory races the restore that follows.  The child asks the
 * kernel for SIGKILL when its parent goes (PR_SET_PDEATHSIG), checks that
 * the parent did not go before it asked, unblocks every signal (worker
 * threads block them all), restores SIGPIPE (the rank ignores it), and starts
 * the program found on PATH.
 *
 * PR_SET_PDEATHSIG fires when the *thread* that forked exits, not only the
 * process: call child_spawn() from a thread that lives at least as long as
 * the child (the loop's thread, or a worker thread that waits for it).
 */
#ifndef VC_CHILD_H
#define VC_CHILD_H
#include <sys/types.h>

/* Start argv[0] (searched on PATH) with stdin, stdout and stderr on fd0,
 * fd1 and fd2 (-1: /dev/null).  The child is the leader of a new process
 * group when own_group is set (terminal signals then reach only the rank).
 * Returns the child's pid, or -errno with why. */
pid_t child_spawn(char *const argv[], int fd0, int fd1, int fd2, int own_group,
		 char *why, size_t whylen);

/* The same, with a step of the caller's run in the child just before the
 * exec (after the death signal, the signal mask and the descriptors), e.g.
 * a CPU binding that every thread of the program must inherit.  It runs in
 * the child of a multithreaded process: async-signal-safe calls only, and
 * it must not exit. */
struct child_opts {
	int fd0, fd1, fd2;		/* -1: /dev/null */
	int own_group;
	void (*before_exec)(void *ctx);	/* may be NULL */
	void *ctx;
};
pid_t child_spawn_opts(char *const argv[], const struct child_opts *o, char *why,
		       size_t whylen);

#endif
