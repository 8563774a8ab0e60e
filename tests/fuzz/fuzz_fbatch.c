/* fuzz_fbatch: the check of a batch of frames from a peer rank
 * (vcluster-launch/fbatch.c, what fabric.c runs on every MPI message).
 *
 * Input: one batch as MPI would deliver it.  It is checked as it is, then
 * with its body length and CRC made right (the sequence number expected is
 * always the one it carries, so mutations reach the record walk).
 * Properties: a refusal is -EBADMSG with a reason; in an accepted batch the
 * record walk either refuses a record with a reason or ends exactly at the
 * end of the batch, every record lying inside it (ASan sees a read past
 * the input: the buffer is exactly the input's size).
 */
#include "fuzz.h"
#include "fbatch.h"

static void walk(const uint8_t *b, size_t len)
{
	struct fbatch_rec rec;
	char why[128];
	size_t off = FBATCH_HDR, n = 0;

	while (off < len) {
		why[0] = 0;
		if (fbatch_record(b, len, off, &rec, why, sizeof(why)) < 0) {
			FUZZ_ASSERT(why[0]);
			fuzz_note("  fbatch: record %zu refused: %s", n, why);
			return;
		}
		FUZZ_ASSERT(rec.next > off && rec.next <= len);
		FUZZ_ASSERT(rec.data + rec.len == b + rec.next);
		if (rec.type == FBATCH_MARKER)
			FUZZ_ASSERT(rec.len == 8);
		if (rec.len) {	/* read the record's last byte: ASan checks it */
			volatile uint8_t last = rec.data[rec.len - 1];
			(void)last;
		}
		off = rec.next;
		n++;
	}
	FUZZ_ASSERT(off == len);
	fuzz_note("  fbatch: %zu records", n);
}

static void check_one(const uint8_t *b, size_t len)
{
	char why[128] = "";
	uint16_t credits;
	uint32_t seq = len >= 12 ? vcfmt_get_be32(b + 8) : 0;
	int r = fbatch_check(b, len, seq, &credits, why, sizeof(why));

	if (r) {
		FUZZ_ASSERT(r == -EBADMSG && why[0]);
		fuzz_note("  fbatch: refused: %s", why);
		return;
	}
	FUZZ_ASSERT(credits == vcfmt_get_be16(b + 12));
	walk(b, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = fuzz_dup(data, size);

	check_one(copy, size);
	if (size >= FBATCH_HDR) {
		fbatch_seal(copy, (uint32_t)size, vcfmt_get_be32(copy + 8),
			    vcfmt_get_be16(copy + 12), vcfmt_get_be16(copy + 14));
		check_one(copy, size);
	}
	free(copy);
	return 0;
}
