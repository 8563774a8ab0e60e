/* dirty-probe: how many guest pages a running VM dirties per epoch, the figure epoch replication
 * (issue 16) has to send to a backup every epoch.  It attaches to a patched QEMU (qemu-patches 0002)
 * through its QMP socket, starts the dirty log, and for each epoch length given closes epochs of
 * that length for a number of seconds, taking (and clearing) the epoch's pages after each close.
 * One CSV line per epoch length: pages per epoch (median, p95, max), the MiB that is, and how long
 * QEMU took to close an epoch (the sync is what a primary's pause would have to include).
 *   dirty-probe QMP_SOCKET QEMU_PID SECONDS EPOCH_MS...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dirty.h"
#include "qmp.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
	struct timespec ts = { (time_t)(ms / 1e3), (long)((ms - (time_t)(ms / 1e3) * 1e3) * 1e6) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Take every set bit of every block: the pages of the epoch just closed. */
static uint64_t take_all(struct dirty *d)
{
	uint64_t n = 0;

	for (int i = 0; i < dirty_nr_blocks(d); i++) {
		const struct dirty_block *b = dirty_block(d, i);

		for (uint64_t w = 0; w < b->nr_words; w++)
			n += (uint64_t)__builtin_popcountll(dirty_take_word(b, w));
	}
	return n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Epochs of epoch_ms for seconds; one CSV line. */
static int probe(struct dirty *d, double epoch_ms, double seconds)
{
	size_t n = (size_t)(seconds * 1e3 / epoch_ms), k;
	uint64_t *pages = calloc(n ? n : 1, sizeof(*pages));
	double *sync_ms = calloc(n ? n : 1, sizeof(*sync_ms));
	char why[256];

	if (!pages || !sync_ms || n == 0) {
		free(pages);
		free(sync_ms);
		return -ENOMEM;
	}
	dirty_sync(d, NULL, why, sizeof(why));	/* start clean */
	take_all(d);
	for (k = 0; k < n; k++) {
		sleep_ms(epoch_ms);
		double t1 = now_ms();
		if (dirty_sync(d, NULL, why, sizeof(why)) < 0) {
			fprintf(stderr, "dirty-probe: sync: %s\n", why);
			break;
		}
		sync_ms[k] = now_ms() - t1;
		pages[k] = take_all(d);
	}
	qsort(pages, k, sizeof(*pages), cmp_u64);
	qsort(sync_ms, k, sizeof(*sync_ms), cmp_dbl);
	if (k)
		printf("%.0f,%zu,%llu,%llu,%llu,%.2f,%.2f,%.2f,%.2f\n", epoch_ms, k,
		       (unsigned long long)pages[k / 2], (unsigned long long)pages[k * 95 / 100],
		       (unsigned long long)pages[k - 1], pages[k / 2] * 4096.0 / 1048576,
		       pages[k * 95 / 100] * 4096.0 / 1048576, sync_ms[k / 2], sync_ms[k - 1]);
	fflush(stdout);
	free(pages);
	free(sync_ms);
	return k == n ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	char why[256];
	int rc = 0;

	if (argc < 5) {
		fprintf(stderr, "usage: dirty-probe QMP_SOCKET QEMU_PID SECONDS EPOCH_MS...\n");
		return 2;
	}
	struct qmp *q = qmp_connect(argv[1], 10000, why, sizeof(why));
	if (!q) {
		fprintf(stderr, "dirty-probe: %s: %s\n", argv[1], why);
		return 1;
	}
	struct dirty *d = dirty_start(q, atoi(argv[2]), why, sizeof(why));
	if (!d) {
		fprintf(stderr, "dirty-probe: dirty log of QEMU %s: %s\n", argv[2], why);
		qmp_close(q);
		return 1;
	}
	printf("epoch_ms,epochs,pages_med,pages_p95,pages_max,mib_med,mib_p95,sync_ms_med,sync_ms_max\n");
	for (int i = 4; i < argc && rc == 0; i++)
		rc = probe(d, atof(argv[i]), atof(argv[3]));
	dirty_stop(d, why, sizeof(why));
	dirty_destroy(d);
	qmp_close(q);
	return rc ? 1 : 0;
}
