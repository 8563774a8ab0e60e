/* fuzz_rq: the receive-queue file reader (vccp-rank/rq.c, rq_parse()).
 *
 * Input: a receive-queue file (rq.h), as rq_save() writes it.  The epoch
 * and rank expected are the ones the body names (the mismatch check is one
 * comparison; the frames behind it are what needs fuzzing), and once with
 * a different epoch, which must be refused.  An accepted file is saved
 * again with rq_save(): the bytes must come back identical, and the queue
 * must pop exactly as many frames and bytes as it says it holds.
 */
#include "fuzz.h"
#include "rq.h"

static void one(const uint8_t *data, size_t size)
{
	uint64_t epoch = 7;
	int rank = 1;
	struct rq *q;
	char why[256];

	if (size >= VCFMT_HDR_SIZE + 16) {
		epoch = vcfmt_get_be64(data + VCFMT_HDR_SIZE);
		rank = (int)vcfmt_get_be32(data + VCFMT_HDR_SIZE + 8);
	}
	why[0] = 0;
	int r = rq_parse(data, size, epoch + 1, rank, &q, why, sizeof(why));
	FUZZ_ASSERT(r < 0 && !q && why[0]);

	why[0] = 0;
	r = rq_parse(data, size, epoch, rank, &q, why, sizeof(why));
	fuzz_note("  rq: %s", r < 0 ? why : "accepted");
	if (r < 0) {
		FUZZ_ASSERT(!q && why[0]);
		return;
	}
	FUZZ_ASSERT(q);

	/* Saved again, the file is the same (flags aside: rq_save writes 0). */
	char path[128];
	uint32_t crc;
	snprintf(path, sizeof(path), "%s/rq", fuzz_dir());
	FUZZ_ASSERT(rq_save(q, path, epoch, rank, &crc) == 0);
	FILE *f = fopen(path, "rb");
	FUZZ_ASSERT(f);
	uint8_t *back = malloc(size + 1);
	FUZZ_ASSERT(back);
	size_t n = fread(back, 1, size + 1, f);
	fclose(f);
	FUZZ_ASSERT(n == size);
	FUZZ_ASSERT(crc == vcfmt_crc32c(0, back, n));
	if (vcfmt_get_be32(data + 16) == 0)
		FUZZ_ASSERT(!memcmp(back, data, size));
	else
		FUZZ_ASSERT(!memcmp(back + VCFMT_HDR_SIZE, data + VCFMT_HDR_SIZE,
				    size - VCFMT_HDR_SIZE));
	free(back);

	/* The counters match what pops out. */
	size_t count = rq_count(q), bytes = rq_bytes(q), c = 0, b = 0;
	const uint8_t *fr;
	uint16_t len;
	int from;
	while (rq_peek(q, &from, &fr, &len) == 0) {
		FUZZ_ASSERT(from >= 0 && from <= 0xffff);
		volatile uint8_t sum = 0;
		for (uint16_t i = 0; i < len; i++)
			sum += fr[i];
		(void)sum;
		c++;
		b += len;
		rq_pop(q);
	}
	FUZZ_ASSERT(c == count && b == bytes && rq_count(q) == 0);
	rq_destroy(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = fuzz_dup(data, size);

	one(copy, size);
	if (fuzz_fix_vcfmt(copy, size))
		one(copy, size);
	free(copy);
	return 0;
}
