/* vcwrite: guest workload for the qemu-patches experiments (PID 1 of a tiny
 * initramfs built by qemu-patches/test/run).
 * Writes round number r to the first and last word of every page of a
 * buffer, after checking that each page still holds r - 1; a page that
 * went back in time (lost write after migration) is reported.
 * env (from the kernel command line): vcwkb=KiB of buffer (default 65536),
 * vcwbusy=seconds writing, vcwidle=seconds idle (default 0 = always busy). */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	long kb = getenv("vcwkb") ? atol(getenv("vcwkb")) : 65536;
	long busy = getenv("vcwbusy") ? atol(getenv("vcwbusy")) : 0;
	long idle = getenv("vcwidle") ? atol(getenv("vcwidle")) : 0;
	size_t pages = kb / 4, i;
	uint64_t r = 1, errors = 0;
	double t0 = now(), last = t0, phase = t0;
	volatile uint64_t *buf;

	setvbuf(stdout, NULL, _IONBF, 0);
	buf = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (buf == MAP_FAILED) {
		printf("VCWRITE mmap failed\n");
		for (;;) pause();
	}
	memset((void *)buf, 0, pages * 4096);
	printf("VCWRITE start pages=%zu busy=%ld idle=%ld\n", pages, busy, idle);
	for (;;) {
		if (busy && idle && now() - phase > busy) {
			printf("VCWRITE idle round=%llu errors=%llu\n",
			       (unsigned long long)r, (unsigned long long)errors);
			sleep(idle);
			phase = now();
			printf("VCWRITE busy\n");
		}
		for (i = 0; i < pages; i++) {
			uint64_t a = buf[i * 512], b = buf[i * 512 + 511];
			if (a != r - 1 || b != r - 1) {
				if (errors < 20)
					printf("VCWRITE CORRUPT round=%llu page=%zu first=%llu last=%llu\n",
					       (unsigned long long)r, i,
					       (unsigned long long)a, (unsigned long long)b);
				errors++;
			}
			buf[i * 512] = r;
			buf[i * 512 + 511] = r;
		}
		r++;
		if (now() - last >= 2) {
			last = now();
			printf("VCWRITE round=%llu errors=%llu t=%.0f\n",
			       (unsigned long long)r, (unsigned long long)errors, last - t0);
		}
	}
}
