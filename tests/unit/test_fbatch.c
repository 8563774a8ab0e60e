/* The fabric's batch format: a sealed batch checks and walks back into its
 * records; each damaged header field is refused by name; records that
 * overrun the batch, a short marker and an unknown type are refused; runs
 * of frames for one system call stop at a marker, at a frame out of the
 * length bounds and at the limit, and refuse a record that overruns. */
#include "test.h"
#include "fbatch.h"
#include "vcfmt.h"

#include <errno.h>
#include <string.h>

static size_t put_rec(uint8_t *b, size_t off, uint8_t type, const void *d, uint16_t len)
{
	b[off] = type;
	b[off + 1] = 0;
	vcfmt_put_be16(b + off + 2, len);
	memcpy(b + off + FBATCH_REC_HDR, d, len);
	return off + FBATCH_REC_HDR + len;
}

/* A batch of a 60-byte frame, a marker and a 1-byte frame. */
static size_t sample(uint8_t *b, uint32_t seq)
{
	uint8_t frame[60], epoch[8];
	size_t off = FBATCH_HDR;

	for (int i = 0; i < 60; i++)
		frame[i] = (uint8_t)i;
	vcfmt_put_be64(epoch, 7);
	off = put_rec(b, off, FBATCH_FRAME, frame, sizeof(frame));
	off = put_rec(b, off, FBATCH_MARKER, epoch, sizeof(epoch));
	off = put_rec(b, off, FBATCH_FRAME, "x", 1);
	fbatch_seal(b, (uint32_t)off, seq, 5, 3);
	return off;
}

static void refused(const uint8_t *b, size_t len, uint32_t seq, const char *field)
{
	char why[128] = "";
	uint16_t credits;

	CHECK_EQ(fbatch_check(b, len, seq, &credits, why, sizeof(why)), -EBADMSG);
	if (strncmp(why, field, strlen(field))) {
		fprintf(stderr, "refused with '%s', expected the field '%s'\n", why, field);
		exit(1);
	}
}

/* fbatch_frames: what one sendmmsg of the delivery would carry. */
static void frame_runs(void)
{
	uint8_t b[512], c[512];
	struct iovec iov[4];
	size_t next[4], off;
	char why[128];
	size_t len = sample(b, 1);		/* frame 60, marker, frame 1 */

	CHECK_EQ(fbatch_frames(b, len, FBATCH_HDR, 14, 1518, iov, next, 4, why, sizeof(why)), 1);
	CHECK(iov[0].iov_len == 60 && ((uint8_t *)iov[0].iov_base)[59] == 59);
	CHECK_EQ(next[0], FBATCH_HDR + FBATCH_REC_HDR + 60);
	/* at the marker: nothing; past it, the 1-byte frame is below min_len */
	CHECK_EQ(fbatch_frames(b, len, next[0], 14, 1518, iov, next, 4, why, sizeof(why)), 0);
	off = next[0] + FBATCH_REC_HDR + 8;
	CHECK_EQ(fbatch_frames(b, len, off, 14, 1518, iov, next, 4, why, sizeof(why)), 0);
	CHECK_EQ(fbatch_frames(b, len, off, 1, 1518, iov, next, 4, why, sizeof(why)), 1);
	CHECK_EQ(next[0], len);
	CHECK_EQ(fbatch_frames(b, len, len, 1, 1518, iov, next, 4, why, sizeof(why)), 0);

	/* five 20-byte frames then a 70-byte one: runs of at most 4, and the
	 * long one (over max_len 64) ends a run */
	uint8_t fr[70];
	memset(fr, 7, sizeof(fr));
	off = FBATCH_HDR;
	for (int i = 0; i < 5; i++)
		off = put_rec(c, off, FBATCH_FRAME, fr, 20);
	off = put_rec(c, off, FBATCH_FRAME, fr, 70);
	CHECK_EQ(fbatch_frames(c, off, FBATCH_HDR, 14, 64, iov, next, 4, why, sizeof(why)), 4);
	CHECK_EQ(next[3], FBATCH_HDR + 4 * (FBATCH_REC_HDR + 20));
	CHECK_EQ(fbatch_frames(c, off, next[3], 14, 64, iov, next, 4, why, sizeof(why)), 1);
	CHECK_EQ(fbatch_frames(c, off, next[0], 14, 64, iov, next, 4, why, sizeof(why)), 0);

	/* a frame record that overruns the batch is refused, not cut */
	vcfmt_put_be16(c + FBATCH_HDR + 2 * (FBATCH_REC_HDR + 20) + 2, 400);
	CHECK_EQ(fbatch_frames(c, off, FBATCH_HDR, 14, 64, iov, next, 4, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "overruns"));
}

int main(void)
{
	uint8_t b[512], c[512];
	char why[128];
	uint16_t credits = 0;
	struct fbatch_rec rec;
	size_t len = sample(b, 9), off;

	CHECK_EQ(fbatch_check(b, len, 9, &credits, why, sizeof(why)), 0);
	CHECK_EQ(credits, 5);
	off = FBATCH_HDR;
	CHECK_EQ(fbatch_record(b, len, off, &rec, why, sizeof(why)), 0);
	CHECK(rec.type == FBATCH_FRAME && rec.len == 60 && rec.data[59] == 59);
	off = rec.next;
	CHECK_EQ(fbatch_record(b, len, off, &rec, why, sizeof(why)), 0);
	CHECK(rec.type == FBATCH_MARKER && vcfmt_get_be64(rec.data) == 7);
	off = rec.next;
	CHECK_EQ(fbatch_record(b, len, off, &rec, why, sizeof(why)), 0);
	CHECK(rec.type == FBATCH_FRAME && rec.len == 1 && rec.data[0] == 'x');
	CHECK_EQ(rec.next, len);

	/* Header fields, each with the CRC left as sealed or resealed. */
	refused(b, FBATCH_HDR - 1, 9, "length");
	refused(b, len, 10, "sequence number");
	memcpy(c, b, len); c[0] ^= 1; refused(c, len, 9, "magic");
	memcpy(c, b, len); vcfmt_put_be16(c + 4, 2); refused(c, len, 9, "version");
	memcpy(c, b, len); vcfmt_put_be16(c + 6, 25); refused(c, len, 9, "header length");
	refused(b, len - 1, 9, "body length");
	memcpy(c, b, len); c[len - 1] ^= 0x10; refused(c, len, 9, "CRC32C");
	memcpy(c, b, len); c[12] ^= 1; refused(c, len, 9, "CRC32C");

	/* Records: a length past the end, a body with 1-3 stray bytes (a record
	 * header that does not fit), a 7-byte marker, an unknown type. */
	memcpy(c, b, len);
	vcfmt_put_be16(c + FBATCH_HDR + 2, 200);
	CHECK_EQ(fbatch_record(c, len, FBATCH_HDR, &rec, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "overruns"));
	for (size_t extra = 1; extra < FBATCH_REC_HDR; extra++) {
		memcpy(c, b, len);
		memset(c + len, 0xff, extra);
		fbatch_seal(c, (uint32_t)(len + extra), 9, 5, 3);
		CHECK_EQ(fbatch_check(c, len + extra, 9, &credits, why, sizeof(why)), 0);
		CHECK_EQ(fbatch_record(c, len + extra, len, &rec, why, sizeof(why)), -EBADMSG);
		CHECK(strstr(why, "record header"));
	}
	off = put_rec(c, FBATCH_HDR, FBATCH_MARKER, "1234567", 7);
	CHECK_EQ(fbatch_record(c, off, FBATCH_HDR, &rec, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "marker of 7 bytes"));
	off = put_rec(c, FBATCH_HDR, 9, "ab", 2);
	CHECK_EQ(fbatch_record(c, off, FBATCH_HDR, &rec, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "unknown record type 9"));
	frame_runs();
	return 0;
}
