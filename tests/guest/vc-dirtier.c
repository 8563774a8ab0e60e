/* vc-dirtier: rewrite guest memory flat out (or at a set rate) and check
 * that no page ever goes back in time and no byte of it is wrong.
 *
 * Every 4 KiB page holds its own index (word 0), the number of the pass
 * that last wrote it (word 1), a check word (pass ^ index, the last word)
 * and a body (the 509 words between) that is a function of the index, the
 * word and the body's generation.  Pass 1 fills every page whole; later
 * passes rewrite the three words (and, with --full, the body too, as a real
 * write-heavy code does; without it pages are dirtied far faster than any
 * code that produces data could).  Pass p first checks a page (it must
 * still hold pass p-1: the generation only grows and nothing else writes
 * it), then writes p into it, then reads the pages back.  The check before
 * a write reads every byte of the page with --full (whose body it is about
 * to overwrite); without --full it reads the three words, and every byte of
 * 1/64 of the pages in turn: the body is never rewritten, so a wrong byte
 * in it stays until it is found.  After the last pass every byte of every
 * page is checked once more.  A page that a
 * migration or a restore brought back stale holds an older pass number and
 * is reported, a page torn or corrupted anywhere in its 4096 bytes too,
 * whichever moment the VM was moved at.
 *
 *   VCDIRTY mib=M passes=P pages=N corrupt=0 stale=0 bad_index=0 result=PASS
 *
 * (checks that found a page whose index and pass are right but some other
 * byte is not: corrupt; one holding another pass: stale; one holding another
 * page's index: bad_index.)  For tests of the check itself, --flip-byte OFF flips the
 * byte at offset OFF of the region after the second pass's writes.
 */
#include "vc_guest.h"

#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)
#define SLICE 64	/* without --full, each pass reads 1/SLICE of the pages whole */

/* Body word w of page i in body generation g (every byte varies). */
static inline uint64_t body_word(size_t i, size_t w, uint64_t g)
{
	uint64_t x = ((uint64_t)i << 9 | w) * 0x9e3779b97f4a7c15ull ^ g * 0xc2b2ae3d27d4eb4full;
	return x ^ x >> 29;
}

/* The body generation that pass p leaves in a page. */
static inline uint64_t body_gen(int full, uint64_t p)
{
	return full ? p : 1;
}

/* 0 when page i holds exactly what pass p wrote; else 1 bad index, 2 older
 * or newer pass, 3 another byte wrong (*word says which word). */
static int check_page(const uint64_t *pg, size_t i, uint64_t p, int full, size_t *word)
{
	uint64_t g = body_gen(full, p), bad = 0;

	if (pg[0] != i)
		return 1;
	if (pg[1] != p)
		return 2;
	for (size_t w = 2; w < WORDS - 1; w++)
		bad |= pg[w] ^ body_word(i, w, g);
	bad |= pg[WORDS - 1] ^ (p ^ i);
	if (!bad)
		return 0;
	for (*word = 2; *word < WORDS - 1; (*word)++)
		if (pg[*word] != body_word(i, *word, g))
			break;
	return 3;
}

static uint64_t stale, bad_index, corrupt;

/* Count and (the first few of each kind) describe page i, which does not
 * hold pass want; the check ran before or after (when) pass now's writes. */
static void report(const uint64_t *pg, size_t i, uint64_t want, int full, const char *when,
		   uint64_t now)
{
	size_t w = 0;
	int k = check_page(pg, i, want, full, &w);

	if (k == 1 && bad_index++ < 5)
		printf("vc-dirtier: page %zu holds index %llu %s pass %llu\n", i,
		       (unsigned long long)pg[0], when, (unsigned long long)now);
	else if (k == 2 && stale++ < 5)
		printf("vc-dirtier: page %zu holds pass %llu %s pass %llu (expected %llu)\n", i,
		       (unsigned long long)pg[1], when, (unsigned long long)now,
		       (unsigned long long)want);
	else if (k == 3 && corrupt++ < 5)
		printf("vc-dirtier: page %zu of pass %llu holds wrong data at byte %zu %s pass %llu\n",
		       i, (unsigned long long)pg[1], w * 8, when, (unsigned long long)now);
}

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
		{ "flip-byte", required_argument, 0, 'F' }, { "help", no_argument, 0, 'h' }, { 0 }
	};
	long mib = 64, rate = 0, flip = -1;
	double seconds = 10;
	int c, full = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mib = atol(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'r': rate = atol(optarg); break;
		case 'f': full = 1; break;
		case 'F': flip = atol(optarg); break;
		default:
			printf("usage: vc-dirtier [--mib M] [--seconds S] [--rate MiB/s] [--full]\n"
			       "Rewrites M MiB (default 64) for S seconds (default 10; 0 = until\n"
			       "SIGTERM), flat out or at --rate, checking every byte of every\n"
			       "page each pass.  --rate paces the rewrites after the first pass\n"
			       "(which fills memory at full speed) evenly; --full rewrites every\n"
			       "word of each page, not three.  --flip-byte OFF (tests of the\n"
			       "check) corrupts byte OFF after the second pass's writes.\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (mib < 1) {
		fprintf(stderr, "vc-dirtier: --mib must be positive\n");
		return 2;
	}
	if (flip >= mib * 1048576) {
		fprintf(stderr, "vc-dirtier: --flip-byte %ld is beyond the %ld MiB\n", flip, mib);
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
	uint64_t pass = 0;
	double start = vcg_now(), next_report = start + 5;

	printf("VCDIRTY-START mib=%ld pages=%zu%s\n", mib, npages, full ? " full" : "");
	fflush(stdout);

	while (!stop && (seconds <= 0 || vcg_now() - start < seconds)) {
		pass++;
		double pass_start = vcg_now();
		for (size_t i = 0; i < npages; i++) {
			uint64_t *pg = mem + i * WORDS;
			size_t w;
			/* What the previous pass left: every byte with --full
			 * (the body is about to be rewritten); without it the
			 * three words, and every byte of one page in SLICE (the
			 * body is not rewritten, so a wrong byte stays wrong
			 * until it is found, at the latest by the final check). */
			if (pass > 1 && (full || i % SLICE == pass % SLICE ||
					 pg[0] != i || pg[1] != pass - 1 ||
					 pg[WORDS - 1] != ((pass - 1) ^ i)) &&
			    check_page(pg, i, pass - 1, full, &w))
				report(pg, i, pass - 1, full, "before", pass);
			pg[0] = i;
			pg[1] = pass;
			if (pass == 1 || full) {
				uint64_t g = body_gen(full, pass);
				for (size_t x = 2; x < WORDS - 1; x++)
					pg[x] = body_word(i, x, g);
			}
			pg[WORDS - 1] = pass ^ i;
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
		if (pass == 2 && flip >= 0)
			((volatile uint8_t *)mem)[flip] ^= 0x55;
		/* Make the compiler forget what it wrote: the check must read
		 * memory, or it would prove nothing.  The words just written
		 * are read back here; the whole page before the next write. */
		__asm__ volatile("" ::: "memory");
		for (size_t i = 0; i < npages; i++) {
			uint64_t *pg = mem + i * WORDS;
			if (pg[0] != i || pg[1] != pass || pg[WORDS - 1] != (pass ^ i))
				report(pg, i, pass, full, "after", pass);
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
	/* The last pass's pages, every byte. */
	__asm__ volatile("" ::: "memory");
	for (size_t i = 0; pass && i < npages; i++) {
		size_t w;
		if (check_page(mem + i * WORDS, i, pass, full, &w))
			report(mem + i * WORDS, i, pass, full, "after", pass);
	}
	int ok = stale == 0 && bad_index == 0 && corrupt == 0;
	printf("VCDIRTY mib=%ld passes=%llu pages=%zu corrupt=%llu stale=%llu bad_index=%llu result=%s\n",
	       mib, (unsigned long long)pass, npages, (unsigned long long)corrupt,
	       (unsigned long long)stale, (unsigned long long)bad_index, ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
