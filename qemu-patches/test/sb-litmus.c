/*
 * sb-litmus.c: the store-buffering litmus test between a TCG guest's vCPU
 * and a host thread, the pattern of virtio's notification suppression
 * (qemu-patches/README.md "0005").
 *
 *   guest (this program as /init):  x = i; smp_mb(); r0 = y;
 *   host  (this program, "host"):   y = i; mfence;   r1 = x;
 *
 * With working barriers at least one side sees the other's store: r0 == i
 * or r1 == i.  Both old (r0 < i && r1 < i) is the reordering that loses a
 * virtio kick or interrupt.  smp_mb() is Linux's x86-64 one,
 * "lock; addl $0,-4(%rsp)".
 *
 * Guest: prints "SBLITMUS phys=0x..." (the shared page's guest-physical
 * address, from /proc/self/pagemap), then runs the iterations as the host
 * drives them, then powers off.
 * Host:  sb-litmus host QEMU_PID PHYS ITERATIONS [SPREAD]: maps the page from
 * QEMU's memory-backend-memfd (guest RAM, offset = physical address below
 * 4 GiB) and drives the iterations; prints the count of reorderings.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

struct shared {
	volatile uint64_t x;
	char pad0[56];
	volatile uint64_t y;
	char pad1[56];
	volatile uint64_t ready;	/* guest: ready for iteration i */
	char pad2[56];
	volatile uint64_t go;		/* host: start iteration i */
	char pad3[56];
	volatile uint64_t done;		/* guest: finished iteration i */
	volatile uint64_t r0;		/* guest's load of y */
	volatile uint64_t quit;
};

static char page[4096] __attribute__((aligned(4096)));

static int guest(void)
{
	struct shared *s = (struct shared *)page;
	uint64_t ent = 0, i;
	int fd;

	mount("proc", "/proc", "proc", 0, NULL);
	mlockall(MCL_CURRENT);
	memset(page, 0, sizeof(page));
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0 || pread(fd, &ent, 8, ((uintptr_t)page / 4096) * 8) != 8 ||
	    !(ent & (1ULL << 63))) {
		printf("SBLITMUS error: pagemap\n");
		fflush(stdout);
		goto out;
	}
	printf("SBLITMUS phys=0x%" PRIx64 "\n", (uint64_t)((ent & ((1ULL << 55) - 1)) * 4096));
	fflush(stdout);
	for (i = 1; !s->quit; i++) {
		s->ready = i;
		while (s->go != i && !s->quit)
			;
		s->x = i;
		__asm__ volatile("lock; addl $0,-4(%%rsp)" ::: "memory", "cc");
		s->r0 = s->y;
		s->done = i;
	}
	printf("SBLITMUS guest done after %" PRIu64 " iterations\n", i - 1);
	fflush(stdout);
out:
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}

static struct shared *map_guest(const char *pid, uint64_t phys)
{
	char dir[64], path[600], link[256];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%s/fd", pid);
	d = opendir(dir);
	if (!d)
		return NULL;
	while ((e = readdir(d))) {
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "/memfd:", 7) == 0) {
			int fd = open(path, O_RDWR);
			void *p;

			closedir(d);
			if (fd < 0)
				return NULL;
			p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, phys);
			return p == MAP_FAILED ? NULL : p;
		}
	}
	closedir(d);
	return NULL;
}

static int host(const char *pid, uint64_t phys, uint64_t n, uint64_t spread)
{
	struct shared *s = map_guest(pid, phys);
	uint64_t i, r1, both_old = 0, host_old = 0, guest_old = 0;
	struct timespec t0, t1;

	if (!s) {
		fprintf(stderr, "sb-litmus: cannot map guest page 0x%" PRIx64 " of QEMU %s\n",
			phys, pid);
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 1; i <= n; i++) {
		while (s->ready != i)
			;
		s->go = i;
		/* The guest needs some time to see go and reach its store: sweep
		 * the host's start over it. */
		for (volatile uint64_t k = (i * 2654435761u) % spread; k; k--)
			;
		s->y = i;
		__asm__ volatile("mfence" ::: "memory");
		r1 = s->x;
		while (s->done != i)
			;
		if (r1 < i && s->r0 < i)
			both_old++;
		else if (r1 < i)
			host_old++;
		else if (s->r0 < i)
			guest_old++;
	}
	s->quit = 1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("sb-litmus: %" PRIu64 " iterations in %.1f s: both old (reordered) %" PRIu64
	       ", only host old %" PRIu64 ", only guest old %" PRIu64 "\n", n,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, both_old,
	       host_old, guest_old);
	return both_old ? 1 : 0;
}

int main(int argc, char **argv)
{
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "host") == 0)
		return host(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0),
			    argc == 6 ? strtoull(argv[5], NULL, 0) : 3000);
	if (getpid() == 1)
		return guest();
	fprintf(stderr, "usage: sb-litmus host QEMU_PID PHYS ITERATIONS [SPREAD] (or as a guest's /init)\n");
	return 2;
}
