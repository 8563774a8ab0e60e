/* mstream wire format: encoding and checks (see ms_wire.h, README.md). */
#define LOG_PREFIX "mstream"
#include "ms_wire.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- encoding and checks ------------------------------------------------- */

static void ms_put_prefix(uint8_t *p, uint16_t size, uint16_t kind)
{
	vcfmt_put_be32(p + MS_OFF_MAGIC, VC_MAGIC_MSTREAM);
	vcfmt_put_be16(p + MS_OFF_VERSION, MSTREAM_WIRE_VERSION);
	vcfmt_put_be16(p + MS_OFF_HDRLEN, size);
	vcfmt_put_be16(p + MS_OFF_KIND, kind);
}

static void ms_put_crc(uint8_t *p, size_t size)
{
	vcfmt_put_be32(p + size - 4, vcfmt_crc32c(0, p, size - 4));
}

void ms_encode_hello(uint8_t *p, int idx, int count, uint64_t session)
{
	memset(p, 0, MS_HELLO_SIZE);
	ms_put_prefix(p, MS_HELLO_SIZE, MS_KIND_HELLO);
	vcfmt_put_be16(p + MS_HELLO_INDEX, (uint16_t)idx);
	vcfmt_put_be16(p + MS_HELLO_COUNT, (uint16_t)count);
	vcfmt_put_be64(p + MS_HELLO_SESSION, session);
	ms_put_crc(p, MS_HELLO_SIZE);
}

void ms_encode_reply(uint8_t *p, uint16_t kind, int idx, int status,
		     uint64_t session, const char *reason)
{
	memset(p, 0, MS_REPLY_SIZE);
	ms_put_prefix(p, MS_REPLY_SIZE, kind);
	vcfmt_put_be16(p + MS_REPLY_INDEX, (uint16_t)idx);
	vcfmt_put_be32(p + MS_REPLY_STATUS, (uint32_t)status);
	vcfmt_put_be64(p + MS_REPLY_SESSION, session);
	/* Truncated to fit, always NUL-terminated (the buffer is zeroed). */
	memcpy(p + MS_REPLY_REASON, reason,
	       strnlen(reason, MS_REPLY_REASON_LEN - 1));
	ms_put_crc(p, MS_REPLY_SIZE);
}

void ms_encode_chunk_hdr(uint8_t *p, const struct ms_out *o, uint64_t seq)
{
	memset(p, 0, MS_CHUNK_HDR_SIZE);
	ms_put_prefix(p, MS_CHUNK_HDR_SIZE, MS_KIND_CHUNK);
	vcfmt_put_be16(p + MS_CHUNK_FLAGS, o->flags);
	vcfmt_put_be32(p + MS_CHUNK_TYPE, o->type);
	vcfmt_put_be64(p + MS_CHUNK_TAG, o->tag);
	vcfmt_put_be64(p + MS_CHUNK_SEQ, seq);
	vcfmt_put_be32(p + MS_CHUNK_LEN, o->len);
	ms_put_crc(p, MS_CHUNK_HDR_SIZE);
}

static const char *ms_kind_name(unsigned kind)
{
	switch (kind) {
	case MS_KIND_HELLO:
		return "hello";
	case MS_KIND_REPLY:
		return "hello reply";
	case MS_KIND_CHUNK:
		return "chunk";
	case MS_KIND_ENDACK:
		return "end acknowledgement";
	}
	return "unknown";
}

/*
 * Check the fields every message starts with, then its header CRC.  The
 * fields come first so a stray or newer peer is named for what it is; a
 * flipped bit elsewhere is caught by the CRC.  0 or -EBADMSG with why.
 */
int ms_check_prefix(const uint8_t *p, size_t size, unsigned kind,
		    char *why, size_t whylen)
{
	uint32_t magic = vcfmt_get_be32(p + MS_OFF_MAGIC);
	unsigned version = vcfmt_get_be16(p + MS_OFF_VERSION);
	unsigned hdr_len = vcfmt_get_be16(p + MS_OFF_HDRLEN);
	unsigned got_kind = vcfmt_get_be16(p + MS_OFF_KIND);
	uint32_t crc = vcfmt_get_be32(p + size - 4);
	uint32_t want = vcfmt_crc32c(0, p, size - 4);

	if (magic != VC_MAGIC_MSTREAM)
		snprintf(why, whylen, "magic 0x%08x, expected 0x%08x (VCMS)",
			 magic, VC_MAGIC_MSTREAM);
	else if (version != MSTREAM_WIRE_VERSION)
		snprintf(why, whylen, "version %u, expected %u", version,
			 MSTREAM_WIRE_VERSION);
	else if (hdr_len != size)
		snprintf(why, whylen, "header length %u, expected %zu",
			 hdr_len, size);
	else if (got_kind != kind)
		snprintf(why, whylen, "message kind %u (%s), expected %u (%s)",
			 got_kind, ms_kind_name(got_kind), kind,
			 ms_kind_name(kind));
	else if (crc != want)
		snprintf(why, whylen, "%s header CRC32C 0x%08x, computed 0x%08x",
			 ms_kind_name(kind), crc, want);
	else
		return 0;
	return -EBADMSG;
}

/* Check a hello against this receiver; adopt its session if none is fixed
 * yet.  Returns the stream index, or -EPROTO with why. */
int ms_check_hello(struct mstream *ms, const uint8_t *p, char *why,
		   size_t whylen)
{
	unsigned idx = vcfmt_get_be16(p + MS_HELLO_INDEX);
	unsigned count = vcfmt_get_be16(p + MS_HELLO_COUNT);
	uint64_t session = vcfmt_get_be64(p + MS_HELLO_SESSION);

	if (ms_check_prefix(p, MS_HELLO_SIZE, MS_KIND_HELLO, why, whylen))
		return -EPROTO;
	if (count != (unsigned)ms->o.nstreams) {
		snprintf(why, whylen, "stream count %u, expected %d", count,
			 ms->o.nstreams);
		return -EPROTO;
	}
	if (idx >= count) {
		snprintf(why, whylen, "stream index %u, expected below %u",
			 idx, count);
		return -EPROTO;
	}
	if (ms->session_known && session != ms->session) {
		snprintf(why, whylen, "session 0x%016llx, expected 0x%016llx",
			 (unsigned long long)session,
			 (unsigned long long)ms->session);
		return -EPROTO;
	}
	ms->session = session;
	ms->session_known = true;
	return (int)idx;
}

/* Check a reply or end acknowledgement for stream idx.  0, -EBADMSG for a
 * malformed one, or -EPROTO when the receiver refused (its reason in why). */
int ms_check_reply(struct mstream *ms, const uint8_t *p, unsigned kind,
		   int idx, char *why, size_t whylen)
{
	unsigned got_idx = vcfmt_get_be16(p + MS_REPLY_INDEX);
	uint32_t status = vcfmt_get_be32(p + MS_REPLY_STATUS);
	uint64_t session = vcfmt_get_be64(p + MS_REPLY_SESSION);
	char reason[MS_REPLY_REASON_LEN];
	int r, i;

	r = ms_check_prefix(p, MS_REPLY_SIZE, kind, why, whylen);
	if (r)
		return r;
	if (status) {
		/* The text came from the network: keep it printable. */
		memcpy(reason, p + MS_REPLY_REASON, sizeof(reason));
		reason[sizeof(reason) - 1] = '\0';
		for (i = 0; reason[i]; i++)
			if (!isprint((unsigned char)reason[i]))
				reason[i] = '?';
		snprintf(why, whylen, "receiver refused: %s", reason);
		return -EPROTO;
	}
	if (got_idx != (unsigned)idx) {
		snprintf(why, whylen, "%s for stream %u, expected %d",
			 ms_kind_name(kind), got_idx, idx);
		return -EBADMSG;
	}
	if (session != ms->session) {
		snprintf(why, whylen, "%s session 0x%016llx, expected 0x%016llx",
			 ms_kind_name(kind), (unsigned long long)session,
			 (unsigned long long)ms->session);
		return -EBADMSG;
	}
	return 0;
}
