/* For unit tests that need MPI ranks: the program relaunches itself under
 * mpirun (called when it finds itself outside an MPI job). */
#ifndef VC_TEST_MPI_H
#define VC_TEST_MPI_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* exec "mpirun -np NP argv[0]"; exit 77 (skipped) without mpirun. */
static inline void test_mpi_relaunch(char **argv, const char *np)
{
	char *asan = getenv("ASAN_OPTIONS");
	char opts[512];

	snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0", asan ? asan : "", asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);	/* Open MPI's own allocations */
	setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
	setenv("OMPI_MCA_hwloc_base_binding_policy", "none", 1);
	if (getuid() == 0) {
		setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
		setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
	}
	execlp("mpirun", "mpirun", "-np", np, argv[0], (char *)NULL);
	printf("mpirun not found: skipped\n");
	exit(77);
}

#endif
