/* vcfmt: helpers every vcluster on-disk and wire format shares.
 *
 * A format begins with a vcfmt_hdr: magic, version, header length and the
 * length of what follows, all big-endian, protected by a CRC32C of the
 * header itself.  Readers check each field and say which one is wrong.
 * Magic numbers for all formats live in vc_magic.h.
 */
#ifndef VC_VCFMT_H
#define VC_VCFMT_H

#include <stddef.h>
#include <stdint.h>

/* CRC32C (Castagnoli) of len bytes, continuing from crc (start with 0). */
uint32_t vcfmt_crc32c(uint32_t crc, const void *buf, size_t len);

static inline void vcfmt_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static inline void vcfmt_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static inline void vcfmt_put_be64(uint8_t *p, uint64_t v)
{
	vcfmt_put_be32(p, v >> 32);
	vcfmt_put_be32(p + 4, (uint32_t)v);
}

static inline uint16_t vcfmt_get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t vcfmt_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t vcfmt_get_be64(const uint8_t *p)
{
	return (uint64_t)vcfmt_get_be32(p) << 32 | vcfmt_get_be32(p + 4);
}

/* The common 24-byte header, as it is in memory after decoding. */
struct vcfmt_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t hdr_len;	/* bytes of this header on the wire */
	uint64_t body_len;	/* bytes that follow the header */
	uint32_t flags;
};

#define VCFMT_HDR_SIZE 24

/* Encode h into out[VCFMT_HDR_SIZE], with its CRC32C in the last 4 bytes. */
void vcfmt_hdr_encode(const struct vcfmt_hdr *h, uint8_t *out);

/* Decode and check a header: CRC, magic, version <= max_version and
 * body_len <= max_body.  On failure returns -EBADMSG (or -E2BIG for an
 * oversized body) and writes the reason ("bad magic 0x..., expected ...")
 * into why. */
int vcfmt_hdr_decode(const uint8_t *in, uint32_t magic, uint16_t max_version,
		     uint64_t max_body, struct vcfmt_hdr *h,
		     char *why, size_t whylen);

/* The whole-file envelope used by vcluster's files: header, body, and the
 * CRC32C of the body (4 bytes, big-endian).  vcfmt_wrap() returns a malloc'd
 * buffer of *outlen bytes (NULL on ENOMEM).  vcfmt_unwrap() checks the
 * header, the exact length (truncated / trailing data) and the body CRC, and
 * points *body into buf; 0 or -EBADMSG/-E2BIG with the reason in why. */
uint8_t *vcfmt_wrap(uint32_t magic, uint16_t version, const void *body,
		    size_t blen, size_t *outlen);
int vcfmt_unwrap(const uint8_t *buf, size_t len, uint32_t magic,
		 uint16_t max_version, uint64_t max_body, const uint8_t **body,
		 uint64_t *blen, char *why, size_t whylen);

#endif
