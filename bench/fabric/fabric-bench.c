/* fabric-bench: vcluster's fabric with libvdeplug endpoints instead of VMs.
 *
 *   mpirun -np N fabric-bench [--fabric tcp|mpi] ENDPOINT-PROGRAM [ENDPOINT-ARGS...]
 *
 * Each rank makes the VM link (a seqpacket socketpair) exactly as
 * vcluster-launch does for QEMU, starts the endpoint program on the other
 * end with "--url seqpacket://FD --rank R --nodes N" added, and forwards
 * frames with the same fabric module until the endpoint exits.  Prints one
 * FABRIC line per rank with the fabric's counters; exits non-zero when any
 * endpoint failed.
 */
#define LOG_PREFIX "fabric-bench"
#include "fabric.h"
#include "facct.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int rank, size, sv[2], status = 0;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	log_init("fabric-bench", rank);
	struct fabric_opts fo = { .transport = FABRIC_DEFAULT };
	if (argc >= 3 && !strcmp(argv[1], "--fabric")) {
		if (fabric_parse_transport(argv[2], &fo.transport) < 0) {
			if (rank == 0)
				fprintf(stderr, "fabric-bench: --fabric %s: expected tcp or mpi\n", argv[2]);
			MPI_Finalize();
			return 2;
		}
		argv += 2;
		argc -= 2;
	}
	if (argc < 2) {
		if (rank == 0)
			fprintf(stderr, "usage: mpirun -np N fabric-bench [--fabric tcp|mpi] ENDPOINT [ARGS...]\n");
		MPI_Finalize();
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0) {
		perror("socketpair");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);

	pid_t child = fork();
	if (child == 0) {
		char url[32], r[16], n[16];
		char **av = calloc((size_t)argc + 8, sizeof(char *));
		int k = 0;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(url, sizeof(url), "seqpacket://%d", sv[1]);
		snprintf(r, sizeof(r), "%d", rank);
		snprintf(n, sizeof(n), "%d", size);
		for (int i = 1; i < argc; i++)
			av[k++] = argv[i];
		av[k++] = "--url";
		av[k++] = url;
		av[k++] = "--rank";
		av[k++] = r;
		av[k++] = "--nodes";
		av[k++] = n;
		execv(av[0], av);
		perror(av[0]);
		_exit(127);
	}
	close(sv[1]);

	struct fabric *f = fabric_create_with(MPI_COMM_WORLD, sv[0], &fo);
	if (!f) {
		fprintf(stderr, "rank %d: fabric_create: %s\n", rank, strerror(errno));
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	int exited = 0, done_local = 0, done_all = 0;
	double last_busy = MPI_Wtime();
	int spin_us = getenv("VC_FABRIC_SPIN_US") ? atoi(getenv("VC_FABRIC_SPIN_US")) : FABRIC_SPIN_DEFAULT;
	MPI_Request all_done = MPI_REQUEST_NULL;
	/* Forward until every endpoint has finished: an endpoint that is
	 * done may still be needed by nobody, but its rank must keep
	 * forwarding for the others. */
	/* The endpoint's exit wakes the wait through a pidfd, so no waitpid()
	 * is spent on every frame. */
	int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	while (!done_all) {
		struct pollfd p[FABRIC_POLLFDS + 1];
		int n = fabric_pollfds(f, p, FABRIC_POLLFDS);
		bool busy, child_done = pidfd < 0;
		if (pidfd >= 0 && !exited)
			p[n++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		poll(p, (nfds_t)n, fabric_poll_timeout(f, MPI_Wtime(), last_busy, spin_us));
		if (pidfd >= 0 && !exited && (p[n - 1].revents & POLLIN))
			child_done = true;
		if (fabric_progress(f, &busy) < 0)
			MPI_Abort(MPI_COMM_WORLD, 3);
		if (busy)
			last_busy = MPI_Wtime();
		if (!exited && child_done && waitpid(child, &status, WNOHANG) == child) {
			/* Frames the endpoint sent before it exited may still
			 * be in the link (a stalled rank had stopped reading):
			 * read it to its end before letting go of it. */
			exited = 1;
			fabric_drain_vm(f, true);
		}
		if (exited && !done_local && fabric_vm_link_empty(f)) {
			done_local = 1;
			fabric_detach_vm(f);
			MPI_Ibarrier(MPI_COMM_WORLD, &all_done);
		}
		if (done_local)
			MPI_Test(&all_done, &done_all, MPI_STATUS_IGNORE);
	}
	struct fabric_stats st;
	fabric_get_stats(f, &st);
	printf("FABRIC rank=%d frames_from_vm=%llu frames_to_vm=%llu flooded=%llu discarded=%llu "
	       "stalls=%llu spill_reads=%llu unarmed=%llu\n", rank,
	       (unsigned long long)st.frames_from_vm, (unsigned long long)st.frames_to_vm,
	       (unsigned long long)st.frames_flooded, (unsigned long long)st.frames_discarded,
	       (unsigned long long)st.backpressure_stalls, (unsigned long long)st.spill_reads,
	       (unsigned long long)st.unarmed_passes);
	fflush(stdout);
	if (fabric_quiesce(f, 10000) == 0) {
		/* the exit accounting (facct.h), as the launcher prints it */
		const struct facct *a = fabric_acct(f);
		char line[768];
		for (int k = 0; k < facct_size(a); k++)
			if (facct_format(a, false, 0, k, line, sizeof(line)) > 0)
				printf("%s\n", line);
		fflush(stdout);
	}
	if (pidfd >= 0)
		close(pidfd);
	fabric_destroy(f);
	int bad = !(WIFEXITED(status) && WEXITSTATUS(status) == 0), any;
	MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	MPI_Finalize();
	return any ? 1 : 0;
}
