#include "fbatch.h"

#include "vc_magic.h"
#include "vcfmt.h"

#include <errno.h>
#include <stdio.h>

void fbatch_seal(uint8_t *b, uint32_t len, uint32_t seq, uint16_t credits,
		 uint16_t nrec)
{
	vcfmt_put_be32(b, VC_MAGIC_FABRIC_MSG);
	vcfmt_put_be16(b + 4, FBATCH_VERSION);
	vcfmt_put_be16(b + 6, FBATCH_HDR);
	vcfmt_put_be32(b + 8, seq);
	vcfmt_put_be16(b + 12, credits);
	vcfmt_put_be16(b + 14, nrec);
	vcfmt_put_be32(b + 16, len - FBATCH_HDR);
	vcfmt_put_be32(b + 20, 0);
	vcfmt_put_be32(b + 20, vcfmt_crc32c(0, b, len));
}

/* The CRC of a batch as sealed: its CRC field counted as 0. */
static uint32_t batch_crc(const uint8_t *b, size_t len)
{
	static const uint8_t zero[4];
	uint32_t crc = vcfmt_crc32c(0, b, 20);

	crc = vcfmt_crc32c(crc, zero, sizeof(zero));
	return vcfmt_crc32c(crc, b + FBATCH_HDR, len - FBATCH_HDR);
}

int fbatch_check(const uint8_t *b, size_t len, uint32_t want_seq,
		 uint16_t *credits, char *why, size_t whylen)
{
	const char *what = NULL;
	unsigned long got = 0, want = 0;

	if (len < FBATCH_HDR) {
		what = "length"; got = len; want = FBATCH_HDR;
	} else if (vcfmt_get_be32(b) != VC_MAGIC_FABRIC_MSG) {
		what = "magic"; got = vcfmt_get_be32(b); want = VC_MAGIC_FABRIC_MSG;
	} else if (vcfmt_get_be16(b + 4) != FBATCH_VERSION) {
		what = "version"; got = vcfmt_get_be16(b + 4); want = FBATCH_VERSION;
	} else if (vcfmt_get_be16(b + 6) != FBATCH_HDR) {
		what = "header length"; got = vcfmt_get_be16(b + 6); want = FBATCH_HDR;
	} else if (vcfmt_get_be32(b + 16) != len - FBATCH_HDR) {
		what = "body length"; got = vcfmt_get_be32(b + 16); want = len - FBATCH_HDR;
	} else if (vcfmt_get_be32(b + 8) != want_seq) {
		what = "sequence number"; got = vcfmt_get_be32(b + 8); want = want_seq;
	} else if (vcfmt_get_be32(b + 20) != batch_crc(b, len)) {
		what = "CRC32C"; got = vcfmt_get_be32(b + 20); want = batch_crc(b, len);
	}
	if (what) {
		snprintf(why, whylen, "%s 0x%lx, expected 0x%lx", what, got, want);
		return -EBADMSG;
	}
	*credits = vcfmt_get_be16(b + 12);
	return 0;
}

int fbatch_record(const uint8_t *b, size_t len, size_t off,
		  struct fbatch_rec *rec, char *why, size_t whylen)
{
	if (off < FBATCH_HDR || off > len || len - off < FBATCH_REC_HDR) {
		snprintf(why, whylen, "record header at %zu overruns the batch (%zu bytes)", off, len);
		return -EBADMSG;
	}
	rec->type = b[off];
	rec->len = vcfmt_get_be16(b + off + 2);
	rec->data = b + off + FBATCH_REC_HDR;
	rec->next = off + FBATCH_REC_HDR + rec->len;
	if (rec->next > len) {
		snprintf(why, whylen, "record at %zu overruns the batch", off);
		return -EBADMSG;
	}
	if (rec->type == FBATCH_MARKER && rec->len != 8) {
		snprintf(why, whylen, "marker of %u bytes", rec->len);
		return -EBADMSG;
	}
	if (rec->type != FBATCH_MARKER && rec->type != FBATCH_FRAME) {
		snprintf(why, whylen, "unknown record type %u", rec->type);
		return -EBADMSG;
	}
	return 0;
}

int fbatch_frames(const uint8_t *b, size_t len, size_t off, size_t min_len,
		  size_t max_len, struct iovec *iov, size_t *next, int max,
		  char *why, size_t whylen)
{
	struct fbatch_rec rec;
	int n = 0;

	while (n < max && off < len) {
		if (fbatch_record(b, len, off, &rec, why, whylen) < 0)
			return -EBADMSG;
		if (rec.type != FBATCH_FRAME || rec.len < min_len || rec.len > max_len)
			break;
		iov[n].iov_base = (void *)rec.data;
		iov[n].iov_len = rec.len;
		next[n++] = rec.next;
		off = rec.next;
	}
	return n;
}
