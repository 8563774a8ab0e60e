/* Frames for a VM that has gone (facct.h: gone, not discarded), on 2 real
 * MPI ranks and real VM links (SOCK_SEQPACKET socketpairs, as vm.c makes).
 * Rank 1's VM has closed its end before anything moves (QEMU exited), so
 * every write to it fails with EPIPE:
 *  - frames rank 0's VM sends arrive in batches and go straight to the
 *    link (deliver_run);
 *  - frames in rank 1's receive queue (as a restore loads them, or as they
 *    wait behind a clock frame) are written from the queue (deliver_rq).
 * Both kinds arrived or were written after the VM had gone: each counts
 * as gone, none as discarded, and the accounting balances. */
#include "test.h"
#include "test_mpi.h"
#include "fabric.h"
#include "facct.h"
#include "rq.h"

#include <mpi.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NRANKS	 2
#define N_DIRECT 5	/* frames rank 0's VM sends */
#define N_RQ	 3	/* frames in rank 1's receive queue */
#define TAG_DONE 77

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}


/* A broadcast frame from the VM of rank r: flooded to every peer. */
static void make_frame(uint8_t *fr, int r, int k)
{
	memset(fr, 0, 64);
	memset(fr, 0xff, 6);
	fr[6] = 0x02;
	fr[11] = (uint8_t)(r + 1);
	fr[12] = 0x08;
	fr[14] = (uint8_t)k;
}

/* Frames from rank 0 that rank 1 has dropped for its VM, either way. */
static uint64_t dropped_from0(struct fabric *f)
{
	struct facct_peer p;

	facct_get_peer(fabric_acct(f), 0, &p);
	return p.gone + p.discarded;
}

int main(int argc, char **argv)
{
	int provided, rank, size, sv[2];
	uint8_t fr[64];
	bool busy;

	if (!getenv("OMPI_COMM_WORLD_SIZE"))
		test_mpi_relaunch(argv, "2");
	signal(SIGPIPE, SIG_IGN);	/* as the launcher does */
	MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	CHECK_EQ(size, NRANKS);

	CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	struct fabric_opts o = { .transport = FABRIC_MPI };
	struct fabric *f = fabric_create_with(MPI_COMM_WORLD, sv[0], &o);
	CHECK(f);
	if (rank == 1) {
		close(sv[1]);	/* the VM has gone */
		struct rq *q = rq_create();
		CHECK(q);
		for (int k = 0; k < N_RQ; k++) {
			make_frame(fr, 0, 100 + k);
			CHECK_EQ(rq_push(q, 0, fr, sizeof(fr)), 0);
		}
		fabric_set_rq(f, q);
	} else {
		for (int k = 0; k < N_DIRECT; k++) {
			make_frame(fr, 0, k);
			CHECK_EQ(send(sv[1], fr, sizeof(fr), 0), (long)sizeof(fr));
		}
	}

	/* Rank 1 progresses until every frame has been counted, then says so;
	 * rank 0 progresses until told. */
	double end = now_s() + 30;
	int done = 0;
	while (!done) {
		CHECK(now_s() < end);
		CHECK_EQ(fabric_progress(f, &busy), 0);
		if (rank == 1 && dropped_from0(f) >= N_DIRECT + N_RQ) {
			done = 1;
			MPI_Send(&done, 1, MPI_INT, 0, TAG_DONE, MPI_COMM_WORLD);
		} else if (rank == 0) {
			MPI_Iprobe(1, TAG_DONE, MPI_COMM_WORLD, &done, MPI_STATUS_IGNORE);
			if (done)
				MPI_Recv(&done, 1, MPI_INT, 1, TAG_DONE, MPI_COMM_WORLD,
					 MPI_STATUS_IGNORE);
		}
		if (!busy)
			usleep(1000);
	}
	fabric_detach_vm(f);
	CHECK_EQ(fabric_quiesce(f, 10000), 0);

	if (rank == 1) {
		struct facct_peer p;
		facct_get_peer(fabric_acct(f), 0, &p);
		fprintf(stderr, "rank 1 from rank 0: rx=%llu restored=%llu delivered=%llu "
			"queued=%llu discarded=%llu gone=%llu\n",
			(unsigned long long)p.rx_frames, (unsigned long long)p.restored,
			(unsigned long long)p.delivered, (unsigned long long)p.queued,
			(unsigned long long)p.discarded, (unsigned long long)p.gone);
		CHECK_EQ(p.rx_frames, N_DIRECT);
		CHECK_EQ(p.restored, N_RQ);
		CHECK_EQ(p.delivered, 0);
		CHECK_EQ(p.queued, 0);
		CHECK_EQ(p.discarded, 0);
		CHECK_EQ(p.gone, N_DIRECT + N_RQ);
	} else {
		struct facct_peer p;
		facct_get_peer(fabric_acct(f), 1, &p);
		CHECK_EQ(p.tx_frames, N_DIRECT);
		close(sv[1]);
	}
	fabric_destroy(f);
	MPI_Finalize();
	if (rank == 0)
		printf("ok: %d frames sent to a VM that had gone and %d left in its receive queue, "
		       "all counted as gone\n", N_DIRECT, N_RQ);
	return 0;
}
