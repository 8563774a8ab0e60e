/* liveram: a RAM image written over 3 files reads back page for page (later
 * records override earlier ones), and a file that is corrupt, truncated,
 * unfinished or has trailing bytes is refused with the reason. */
#include "test.h"
#include "liveram.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PS	4096u
#define NPAGES	1000u	/* not a multiple of 64: the last run is short */
#define NFILES	3u

static char dir[] = "/tmp/test_liveram.XXXXXX";

static void path_of(char *out, size_t len, uint32_t i)
{
	snprintf(out, len, "%s/ram.%u", dir, i);
}

static void fill(uint8_t *page, uint64_t pno, uint32_t round)
{
	for (uint32_t i = 0; i < PS; i += 8) {
		uint64_t v = pno * 1000003u + round * 7919u + i;
		memcpy(page + i, &v, 8);
	}
}

static struct liveram_info info_for(uint32_t idx)
{
	struct liveram_info in = { .file_index = idx, .nfiles = NFILES, .epoch = 9, .rank = 2,
				   .page_size = PS, .nblocks = 2 };
	strcpy(in.blocks[0].name, "pc.ram");
	in.blocks[0].length = (uint64_t)NPAGES * PS;
	strcpy(in.blocks[1].name, "small");
	in.blocks[1].length = 8 * PS;
	return in;
}

static uint8_t *image;	/* what the reader rebuilds, block 0 only */
static uint64_t applied;

static int apply(void *arg, const struct liveram_info *in, uint32_t block, uint64_t first,
		 uint32_t n, const void *pages)
{
	(void)arg;
	CHECK_EQ(in->page_size, PS);
	if (block == 0)
		memcpy(image + first * PS, pages, (size_t)n * PS);
	applied += n;
	return 0;
}

/* Round 0: every page; round 1: pages 0..99 again (runs cut at 64 and at
 * the file boundary), which must win. */
static void write_files(void)
{
	uint8_t run[LIVERAM_RUN_PAGES * PS];

	for (uint32_t f = 0; f < NFILES; f++) {
		char p[128];
		path_of(p, sizeof(p), f);
		struct liveram_info in = info_for(f);
		struct liveram_w *w = liveram_create(p, &in);
		CHECK(w);
		for (uint32_t round = 0; round < 2; round++) {
			uint64_t last = round ? 100 : NPAGES;
			for (uint64_t pg = 0; pg < last; pg += LIVERAM_RUN_PAGES) {
				if (liveram_file_of(pg, NFILES) != f)
					continue;
				uint32_t n = (uint32_t)(last - pg < LIVERAM_RUN_PAGES ? last - pg :
							LIVERAM_RUN_PAGES);
				for (uint32_t i = 0; i < n; i++)
					fill(run + (size_t)i * PS, pg + i, round);
				CHECK_EQ(liveram_put(w, 0, round, pg, n, run), 0);
			}
		}
		if (f == 0)
			CHECK_EQ(liveram_put(w, 1, 0, 0, 8, run), 0);
		/* refused: another file's page, a run across 64, outside */
		CHECK_EQ(liveram_put(w, 0, 0, (f + 1) % NFILES * 64, 1, run), -EXDEV);
		CHECK_EQ(liveram_put(w, 0, 0, f * 64 + 60, 8, run), -EXDEV);
		CHECK_EQ(liveram_put(w, 1, 0, 7, 2, run), -ERANGE);
		CHECK_EQ(liveram_put(w, 2, 0, 0, 1, run), -ERANGE);
		uint64_t size = 0;
		CHECK_EQ(liveram_finish(w, &size), 0);
		struct stat st;
		CHECK(stat(p, &st) == 0);
		CHECK_EQ(st.st_size, size);
		CHECK_EQ(st.st_mode & 0777, 0600);
	}
}

static void test_round_trip(void)
{
	uint8_t want[PS];

	image = calloc(NPAGES, PS);
	CHECK(image);
	for (uint32_t f = 0; f < NFILES; f++) {
		char p[128], why[256] = "";
		struct liveram_info in;
		path_of(p, sizeof(p), f);
		CHECK_EQ(liveram_read(p, apply, NULL, &in, why, sizeof(why)), 0);
		CHECK_EQ(in.file_index, f);
		CHECK_EQ(in.nfiles, NFILES);
		CHECK_EQ(in.epoch, 9);
		CHECK_EQ(in.rank, 2);
		CHECK(!strcmp(in.blocks[0].name, "pc.ram"));
		CHECK_EQ(in.blocks[1].length, 8 * PS);
	}
	CHECK_EQ(applied, NPAGES + 100 + 8);
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		fill(want, pg, pg < 100);
		CHECK(!memcmp(image + pg * PS, want, PS));
	}
	free(image);
}

static void expect_refused(const char *p, const char *reason)
{
	char why[256] = "";
	int r = liveram_read(p, NULL, NULL, NULL, why, sizeof(why));
	if (r != -EBADMSG || !strstr(why, reason)) {
		fprintf(stderr, "%s: got %d \"%s\", expected -EBADMSG \"%s\"\n", p, r, why, reason);
		exit(1);
	}
}

static void copy(const char *from, const char *to)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp %s %s", from, to);
	CHECK(system(cmd) == 0);
}

static void patch(const char *p, off_t off, int flip, off_t trunc, int append)
{
	int fd = open(p, O_RDWR);
	CHECK(fd >= 0);
	if (flip) {
		uint8_t b;
		CHECK(pread(fd, &b, 1, off) == 1);
		b ^= 0x10;
		CHECK(pwrite(fd, &b, 1, off) == 1);
	}
	if (trunc >= 0)
		CHECK(ftruncate(fd, trunc) == 0);
	if (append)
		CHECK(pwrite(fd, "x", 1, lseek(fd, 0, SEEK_END)) == 1);
	close(fd);
}

static void test_refused(void)
{
	char good[128], bad[128];
	struct stat st;

	path_of(good, sizeof(good), 1);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	CHECK(stat(good, &st) == 0);

	copy(good, bad);
	patch(bad, st.st_size - 100, 1, -1, 0);		/* a page of the last record */
	expect_refused(bad, "CRC32C mismatch");
	copy(good, bad);
	patch(bad, 24 + 8, 1, -1, 0);			/* the meta (epoch) */
	expect_refused(bad, "meta CRC32C");
	copy(good, bad);
	patch(bad, 0, 0, st.st_size - 5000, 0);
	expect_refused(bad, "truncated");
	copy(good, bad);
	patch(bad, 0, 0, -1, 1);
	expect_refused(bad, "trailing");
	copy(good, bad);
	patch(bad, 2, 1, -1, 0);			/* the header */
	expect_refused(bad, "");

	/* Unfinished: the writer died before liveram_finish(). */
	unlink(bad);
	struct liveram_info in = info_for(0);
	struct liveram_w *w = liveram_create(bad, &in);
	uint8_t pg[PS] = { 1 };
	CHECK(w);
	CHECK_EQ(liveram_put(w, 0, 0, 0, 1, pg), 0);
	CHECK(liveram_create(bad, &in) == NULL && errno == EEXIST);
	liveram_abort(w);
	CHECK(access(bad, F_OK) < 0);
	w = liveram_create(bad, &in);
	CHECK(w);
	CHECK_EQ(liveram_put(w, 0, 0, 0, 1, pg), 0);
	char cmd[512];	/* what is on disk before finish: refused */
	snprintf(cmd, sizeof(cmd), "%s.copy", bad);
	copy(bad, cmd);
	liveram_abort(w);
	expect_refused(cmd, "");
	unlink(cmd);

	/* A bad info is refused at create. */
	in.nfiles = 0;
	CHECK(liveram_create(bad, &in) == NULL && errno == EINVAL);
}

int main(void)
{
	CHECK(mkdtemp(dir));
	write_files();
	test_round_trip();
	test_refused();
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -r %s", dir);
	CHECK(system(cmd) == 0);
	printf("test_liveram: ok\n");
	return 0;
}
