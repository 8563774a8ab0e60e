/* vc-dirtier: rewrite guest memory flat out (or at a set rate) and check
 * that no page ever goes back in time.
 *
 * Every 4 KiB page holds its own index and the number of the pass that last
 * wrote it.  Pass p first checks that a page still holds pass p-1 (the
 * generation can only grow, and nothing else writes it) and writes p into
 * it, then reads every page back: each must hold its index and exactly p.
 * A page that a migration or a restore brought back stale holds an older
 * pass number and is reported, whichever moment the VM was moved at.
 * --full writes every word of a page, as a real write-heavy code does (the
 * default touches three words, which dirties pages far faster than any
 * code that produces data could).
 *
 *   VCDIRTY mib=M passes=P pages=N stale=0 bad_index=0 result=PASS
 */
#include "vc_guest.h"

#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, 0, 'm' }, { "seconds", required_argument, 0, 's' },
		{ "rate", required_argument, 0, 'r' }, { "full", no_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' }, { 0 }
	};
	long mib = 64, rate = 0;
	double seconds = 10;
	int c, full = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mib = atol(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'r': rate = atol(optarg); break;
		case 'f': full = 1; break;
		default:
			printf("usage: vc-dirtier [--mib M] [--seconds S] [--rate MiB/s] [--full]\n"
			       "Rewrites M MiB (default 64) for S seconds (default 10; 0 = until\n"
			       "SIGTERM), flat out or at --rate, checking every page each pass.\n"
			       "--rate paces the rewrites after the first pass (which fills\n"
			       "memory at full speed) evenly; --full writes every word of each\n"
			       "page, not three.\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (mib < 1) {
		fprintf(stderr, "vc-dirtier: --mib must be positive\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	size_t npages = (size_t)mib * 1024 * 1024 / PAGE;
	uint64_t *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED) {
		perror("vc-dirtier: mmap");
		return 2;
	}
	uint64_t stale = 0, bad_index = 0, pass = 0;
	double start = vcg_now(), next_report = start + 5;

	printf("VCDIRTY-START mib=%ld pages=%zu%s\n", mib, npages, full ? " full" : "");
	fflush(stdout);

	while (!stop && (seconds <= 0 || vcg_now() - start < seconds)) {
		pass++;
		double pass_start = vcg_now();
		for (size_t i = 0; i < npages; i++) {
			uint64_t *pg = mem + i * (PAGE / 8);
			if (pass > 1 && (pg[0] != i || pg[1] != pass - 1 ||
					 pg[PAGE / 8 - 1] != ((pass - 1) ^ i))) {
				if (pg[0] != i) {
					if (bad_index++ < 5)
						printf("vc-dirtier: page %zu holds index %llu before pass %llu\n",
						       i, (unsigned long long)pg[0], (unsigned long long)pass);
				} else if (stale++ < 5) {
					printf("vc-dirtier: page %zu holds pass %llu before pass %llu\n", i,
					       (unsigned long long)pg[1], (unsigned long long)pass);
				}
			}
			pg[0] = i;
			pg[1] = pass;
			if (full)
				for (size_t w = 2; w < PAGE / 8 - 1; w++)
					pg[w] = pass ^ i ^ w;
			pg[PAGE / 8 - 1] = pass ^ i;
			/* --rate: spread the rewrites evenly (every 1 MiB) rather
			 * than in bursts, so each moment sees the same dirty rate.
			 * The first pass fills memory at full speed. */
			if (rate > 0 && pass > 1 && (i & 255) == 255) {
				double want = (double)(i + 1) * PAGE / 1048576.0 / (double)rate;
				double took = vcg_now() - pass_start;
				if (want > took)
					usleep((useconds_t)((want - took) * 1e6));
			}
		}
		/* Make the compiler forget what it wrote: the check must read
		 * memory, or it would prove nothing. */
		__asm__ volatile("" ::: "memory");
		for (size_t i = 0; i < npages; i++) {
			uint64_t *pg = mem + i * (PAGE / 8);
			if (pg[0] != i) {
				if (bad_index++ < 5)
					printf("vc-dirtier: page %zu holds index %llu\n", i,
					       (unsigned long long)pg[0]);
			} else if (pg[1] != pass || pg[PAGE / 8 - 1] != (pass ^ i)) {
				if (stale++ < 5)
					printf("vc-dirtier: page %zu holds pass %llu, expected %llu\n",
					       i, (unsigned long long)pg[1], (unsigned long long)pass);
			}
		}
		if (pass == 1) {
			/* Every page now holds data: benchmarks wait for this
			 * line before they measure a save of "full" memory. */
			printf("VCDIRTY-FILLED mib=%ld seconds=%.1f\n", mib, vcg_now() - start);
			fflush(stdout);
		}
		if (rate > 0) {
			double want = (double)mib / (double)rate;
			double took = vcg_now() - pass_start;
			if (want > took)
				usleep((useconds_t)((want - took) * 1e6));
		}
		if (vcg_now() > next_report) {
			printf("vc-dirtier: pass %llu, %.1f MiB/s\n", (unsigned long long)pass,
			       (double)mib * (double)pass / (vcg_now() - start));
			fflush(stdout);
			next_report += 5;
		}
	}
	int ok = stale == 0 && bad_index == 0;
	printf("VCDIRTY mib=%ld passes=%llu pages=%zu stale=%llu bad_index=%llu result=%s\n",
	       mib, (unsigned long long)pass, npages, (unsigned long long)stale,
	       (unsigned long long)bad_index, ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
