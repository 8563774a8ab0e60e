#include "vcfmt.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <limits.h>
#include <stdio.h>

uint32_t vcfmt_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	/* ISA-L's crc32_iscsi takes an int length and works on the raw
	 * (uninverted) register, so chunk and invert around it. */
	crc = ~crc;
	while (len) {
		int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
		crc = crc32_iscsi((unsigned char *)p, n, crc);
		p += n;
		len -= (size_t)n;
	}
	return ~crc;
}

void vcfmt_hdr_encode(const struct vcfmt_hdr *h, uint8_t *out)
{
	vcfmt_put_be32(out, h->magic);
	vcfmt_put_be16(out + 4, h->version);
	vcfmt_put_be16(out + 6, VCFMT_HDR_SIZE);
	vcfmt_put_be64(out + 8, h->body_len);
	vcfmt_put_be32(out + 16, h->flags);
	vcfmt_put_be32(out + 20, vcfmt_crc32c(0, out, 20));
}

int vcfmt_hdr_decode(const uint8_t *in, uint32_t magic, uint16_t max_version,
		     uint64_t max_body, struct vcfmt_hdr *h,
		     char *why, size_t whylen)
{
	uint32_t crc = vcfmt_crc32c(0, in, 20);

	h->magic = vcfmt_get_be32(in);
	h->version = vcfmt_get_be16(in + 4);
	h->hdr_len = vcfmt_get_be16(in + 6);
	h->body_len = vcfmt_get_be64(in + 8);
	h->flags = vcfmt_get_be32(in + 16);

	if (h->magic != magic) {
		snprintf(why, whylen, "bad magic 0x%08x, expected 0x%08x",
			 h->magic, magic);
		return -EBADMSG;
	}
	if (vcfmt_get_be32(in + 20) != crc) {
		snprintf(why, whylen, "header CRC32C 0x%08x, computed 0x%08x",
			 vcfmt_get_be32(in + 20), crc);
		return -EBADMSG;
	}
	if (h->version == 0 || h->version > max_version) {
		snprintf(why, whylen, "unsupported version %u (this build reads up to %u)",
			 h->version, max_version);
		return -EBADMSG;
	}
	if (h->hdr_len != VCFMT_HDR_SIZE) {
		snprintf(why, whylen, "header length %u, expected %u",
			 h->hdr_len, VCFMT_HDR_SIZE);
		return -EBADMSG;
	}
	if (h->body_len > max_body) {
		snprintf(why, whylen, "body length %llu exceeds limit %llu",
			 (unsigned long long)h->body_len,
			 (unsigned long long)max_body);
		return -E2BIG;
	}
	return 0;
}
