/* fuzz_vcfmt: the shared header and file envelope (common/vcfmt.c).
 *
 * Input: any bytes, read as a vcfmt file whose magic is its own first four
 * bytes.  Checks that vcfmt_hdr_decode() and vcfmt_unwrap() never read
 * outside the buffer whatever the limit given, that an accepted file is
 * exactly what vcfmt_wrap() makes of its body, and that a CRC32C computed
 * in two pieces equals the one computed at once.
 */
#include "fuzz.h"

static const uint64_t limits[] = { 0, 1u << 20, 1ull << 32, UINT64_MAX };

static void one(const uint8_t *data, size_t size)
{
	char why[256];
	uint32_t magic = size >= 4 ? vcfmt_get_be32(data) : 0;

	if (size >= VCFMT_HDR_SIZE) {
		struct vcfmt_hdr h;
		why[0] = 0;
		if (vcfmt_hdr_decode(data, magic, 1, 1u << 20, &h, why, sizeof(why)) < 0)
			FUZZ_ASSERT(why[0]);
		else
			FUZZ_ASSERT(h.hdr_len == VCFMT_HDR_SIZE && h.version == 1);
	}
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		const uint8_t *body;
		uint64_t blen;
		why[0] = 0;
		int r = vcfmt_unwrap(data, size, magic, 3, limits[i], &body, &blen,
				     why, sizeof(why));
		if (r < 0) {
			FUZZ_ASSERT(r == -EBADMSG || r == -E2BIG);
			FUZZ_ASSERT(why[0]);
			continue;
		}
		FUZZ_ASSERT(body == data + VCFMT_HDR_SIZE);
		FUZZ_ASSERT(blen <= limits[i] && blen + VCFMT_HDR_SIZE + 4 == size);
		/* The envelope writes flags 0; compare such files whole. */
		if (vcfmt_get_be32(data + 16) == 0) {
			size_t wlen;
			uint8_t *w = vcfmt_wrap(magic, vcfmt_get_be16(data + 4), body,
						blen, &wlen);
			FUZZ_ASSERT(w && wlen == size && !memcmp(w, data, size));
			free(w);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* CRC32C continues across pieces. */
	size_t cut = size ? data[0] % (size + 1) : 0;
	FUZZ_ASSERT(vcfmt_crc32c(vcfmt_crc32c(0, data, cut), data + cut, size - cut) ==
		    vcfmt_crc32c(0, data, size));

	one(data, size);
	uint8_t *fixed = fuzz_dup(data, size);
	if (fuzz_fix_vcfmt(fixed, size))
		one(fixed, size);
	free(fixed);
	return 0;
}
