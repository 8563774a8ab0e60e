#include "lifeline.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Started by mpirun or orted (Open MPI sets OMPI_COMM_WORLD_SIZE in the
 * environment it gives its ranks) or by srun (SLURM_STEP_ID)? */
static int under_launcher(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("SLURM_STEP_ID");
}

int lifeline_arm(void)
{
	pid_t parent = getppid();

	if (!under_launcher())
		return 0;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		return -errno;
	/* The launcher may have died before the prctl: then no signal comes,
	 * and we have been reparented (to init or a subreaper). */
	if (parent == 1 || getppid() != parent)
		kill(getpid(), SIGKILL);
	return 0;
}
