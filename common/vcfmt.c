#include "vcfmt.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

uint8_t *vcfmt_wrap(uint32_t magic, uint16_t version, const void *body,
		    size_t blen, size_t *outlen)
{
	size_t total = VCFMT_HDR_SIZE + blen + 4;
	uint8_t *buf = malloc(total);
	struct vcfmt_hdr h = { .magic = magic, .version = version, .body_len = blen };

	if (!buf)
		return NULL;
	vcfmt_hdr_encode(&h, buf);
	memcpy(buf + VCFMT_HDR_SIZE, body, blen);
	vcfmt_put_be32(buf + VCFMT_HDR_SIZE + blen, vcfmt_crc32c(0, body, blen));
	*outlen = total;
	return buf;
}

int vcfmt_unwrap(const uint8_t *buf, size_t len, uint32_t magic,
		 uint16_t max_version, uint64_t max_body, const uint8_t **body,
		 uint64_t *blen, char *why, size_t whylen)
{
	struct vcfmt_hdr h;
	int r;

	if (len < VCFMT_HDR_SIZE) {
		snprintf(why, whylen, "truncated: %zu bytes, shorter than its header", len);
		return -EBADMSG;
	}
	r = vcfmt_hdr_decode(buf, magic, max_version, max_body, &h, why, whylen);
	if (r < 0)
		return r;
	/* Compare without adding to body_len: a huge one (max_body allowing)
	 * would wrap the sum around to len. */
	int trunc = h.body_len > len - VCFMT_HDR_SIZE ||
		    len - VCFMT_HDR_SIZE - h.body_len < 4;
	if (trunc || len - VCFMT_HDR_SIZE - h.body_len != 4) {
		snprintf(why, whylen, "%s: %zu bytes, the header says a %llu-byte body",
			 trunc ? "truncated" : "trailing data", len,
			 (unsigned long long)h.body_len);
		return -EBADMSG;
	}
	uint32_t crc = vcfmt_crc32c(0, buf + VCFMT_HDR_SIZE, h.body_len);
	uint32_t want = vcfmt_get_be32(buf + VCFMT_HDR_SIZE + h.body_len);
	if (crc != want) {
		snprintf(why, whylen, "body CRC32C 0x%08x, computed 0x%08x", want, crc);
		return -EBADMSG;
	}
	*body = buf + VCFMT_HDR_SIZE;
	*blen = h.body_len;
	return 0;
}
