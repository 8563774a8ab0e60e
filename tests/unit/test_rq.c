/* Receive queue: FIFO order, and its file refused when truncated, bit-
 * flipped, or belonging to another epoch or rank. */
#include "test.h"
#include "rq.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void rewrite(const char *path, long off, int flip, long truncate_to)
{
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	if (flip) {
		unsigned char b;
		CHECK(pread(fd, &b, 1, off) == 1);
		b ^= 0x04;
		CHECK(pwrite(fd, &b, 1, off) == 1);
	}
	if (truncate_to >= 0)
		CHECK(ftruncate(fd, truncate_to) == 0);
	close(fd);
}

/* The queue given back after a save goes first; frames queued meanwhile
 * follow in their order, across a wrapped ring on both sides. */
static void test_splice(void)
{
	struct rq *a = rq_create(), *b = rq_create();
	uint8_t frame[64];
	int from;
	const uint8_t *d;
	uint16_t len;

	CHECK(a && b);
	for (int i = 0; i < 300; i++) {	/* a wraps: head moves past 0 */
		memset(frame, i & 0xff, sizeof(frame));
		CHECK_EQ(rq_push(a, 1, frame, (uint16_t)(1 + i % 64)), 0);
		if (i < 100)
			rq_pop(a);
	}
	for (int i = 300; i < 700; i++) {
		memset(frame, i & 0xff, sizeof(frame));
		CHECK_EQ(rq_push(b, 2, frame, (uint16_t)(1 + i % 64)), 0);
	}
	size_t bytes = rq_bytes(a) + rq_bytes(b);
	CHECK_EQ(rq_splice(a, b), 0);
	CHECK_EQ(rq_count(b), 0);
	CHECK_EQ(rq_bytes(b), 0);
	CHECK_EQ(rq_count(a), 600);
	CHECK_EQ(rq_bytes(a), bytes);
	for (int i = 100; i < 700; i++) {
		CHECK_EQ(rq_peek(a, &from, &d, &len), 0);
		CHECK_EQ(from, i < 300 ? 1 : 2);
		CHECK_EQ(len, 1 + i % 64);
		CHECK_EQ(d[0], i & 0xff);
		rq_pop(a);
	}
	CHECK_EQ(rq_peek(b, &from, &d, &len), -ENOENT);
	CHECK_EQ(rq_push(b, 0, frame, 10), 0);	/* b still usable */
	rq_destroy(a);
	rq_destroy(b);
}

int main(void)
{
	test_splice();
	struct rq *q = rq_create(), *l;
	char path[] = "/tmp/vc-test-rq.XXXXXX", why[256];
	uint8_t frame[1500];
	int from;
	const uint8_t *f;
	uint16_t len;

	CHECK(q);
	CHECK_EQ(rq_peek(q, &from, &f, &len), -ENOENT);
	/* Enough frames to make the ring grow and wrap. */
	for (int i = 0; i < 1000; i++) {
		memset(frame, i & 0xff, sizeof(frame));
		CHECK_EQ(rq_push(q, i % 3, frame, (uint16_t)(60 + i)), 0);
		if (i % 4 == 3)
			rq_pop(q);
	}
	CHECK_EQ(rq_count(q), 750);
	int fd = mkstemp(path);
	close(fd);
	uint32_t crc;
	CHECK_EQ(rq_save(q, path, 7, 2, &crc), 0);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

	CHECK_EQ(rq_load(path, 7, 2, &l, why, sizeof(why)), 0);
	CHECK_EQ(rq_count(l), 750);
	CHECK_EQ(rq_bytes(l), rq_bytes(q));
	while (rq_count(q)) {
		int f1, f2;
		const uint8_t *d1, *d2;
		uint16_t l1, l2;
		rq_peek(q, &f1, &d1, &l1);
		rq_peek(l, &f2, &d2, &l2);
		CHECK(f1 == f2 && l1 == l2 && memcmp(d1, d2, l1) == 0);
		rq_pop(q);
		rq_pop(l);
	}
	rq_destroy(l);

	/* Another epoch or rank: refused. */
	CHECK_EQ(rq_load(path, 8, 2, &l, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "expected epoch 8 rank 2"));
	CHECK_EQ(rq_load(path, 7, 1, &l, why, sizeof(why)), -EBADMSG);

	/* Empty queue round trip (the common case at a quiet cut). */
	CHECK_EQ(rq_save(q, path, 9, 0, NULL), 0);
	CHECK_EQ(rq_load(path, 9, 0, &l, why, sizeof(why)), 0);
	CHECK_EQ(rq_count(l), 0);
	rq_destroy(l);

	/* Bit flips in the body, the header, and truncation: refused. */
	for (int i = 0; i < 3; i++) {
		memset(frame, 0xab, sizeof(frame));
		rq_push(q, 1, frame, 200);
	}
	CHECK_EQ(rq_save(q, path, 3, 1, NULL), 0);
	rewrite(path, 300, 1, -1);
	CHECK_EQ(rq_load(path, 3, 1, &l, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "CRC32C"));
	CHECK_EQ(rq_save(q, path, 3, 1, NULL), 0);
	rewrite(path, 2, 1, -1);
	CHECK_EQ(rq_load(path, 3, 1, &l, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "magic"));
	CHECK_EQ(rq_save(q, path, 3, 1, NULL), 0);
	rewrite(path, 0, 0, 100);
	CHECK_EQ(rq_load(path, 3, 1, &l, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "truncated"));
	rewrite(path, 0, 0, 10);
	CHECK_EQ(rq_load(path, 3, 1, &l, why, sizeof(why)), -EBADMSG);
	unlink(path);
	CHECK_EQ(rq_load(path, 3, 1, &l, why, sizeof(why)), -ENOENT);
	rq_destroy(q);
	return 0;
}
