/* The dirty-log layout checks of tlm-migrate/dirty.c against hostile QEMU
 * replies (issue 13, finding 7): a bitmap whose offset plus size wraps
 * around 2^64 passed the old "boff + bsize > region_size" test and pointed
 * the engine's atomic exchanges anywhere in its address space; a block
 * longer than its memory file made the engine's first read a SIGBUS. */
#include "test.h"
#include "dirty.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static char why[256];

/* The check dirty.c made before, kept here to show what it let through. */
static int old_check(uint64_t boff, uint64_t bsize, uint64_t nr_words, uint64_t region)
{
	return (boff % 8 || bsize < nr_words * 8 || boff + bsize > region) ? -EPROTO : 0;
}

static void bitmap_case(uint64_t boff, uint64_t bsize, uint64_t pages, uint64_t region,
			int want, const char *text, int old_want)
{
	int r = dirty_check_bitmap(boff, bsize, pages, region, 192, why, sizeof(why));

	fprintf(stderr, "bitmap %#llx+%#llx, %llu pages, region %llu: %d %s\n",
		(unsigned long long)boff, (unsigned long long)bsize,
		(unsigned long long)pages, (unsigned long long)region, r, r ? why : "");
	CHECK_EQ(r, want);
	if (text)
		CHECK(strstr(why, text));
	CHECK_EQ(old_check(boff, bsize, (pages + 63) / 64, region), old_want);
}

int main(void)
{
	/* 256 MiB guest: 65536 pages, 8192 bytes of bitmap at 4096. */
	bitmap_case(4096, 8192, 65536, 12288, 0, NULL, 0);
	/* Wraps: the old sum came to 8 and passed. */
	bitmap_case(UINT64_MAX - 7, 16, 1, 12288, -EPROTO, "outside bytes 192..12288", 0);
	bitmap_case(8, UINT64_MAX - 7, 65536, 12288, -EPROTO, "outside", 0);
	/* Ends one word past the region. */
	bitmap_case(4096, 8200, 65536, 12288, -EPROTO, "outside", -EPROTO);
	/* Over the header and descriptors. */
	bitmap_case(64, 8192, 65536, 12288, -EPROTO, "outside bytes 192..", 0);
	bitmap_case(4100, 8184, 65536, 12288, -EPROTO, "not 8-byte aligned", -EPROTO);
	bitmap_case(4096, 4096, 65536, 12288, -EPROTO, "4096 bytes for 65536 pages", -EPROTO);
	bitmap_case(4096, 8192, UINT64_MAX / 2, 12288, -EPROTO, "for", -EPROTO);

	CHECK_EQ(dirty_check_block(256u << 20, true, 256u << 20, why, sizeof(why)), 0);
	CHECK_EQ(dirty_check_block(256u << 20, true, 128u << 20, why, sizeof(why)), -EPROTO);
	fprintf(stderr, "short memory file: %s\n", why);
	CHECK(strstr(why, "268435456 bytes long, but its memory file has 134217728"));
	CHECK_EQ(dirty_check_block(4096, false, 0, why, sizeof(why)), -EPROTO);
	CHECK(strstr(why, "not a regular file"));
	printf("ok\n");
	return 0;
}
