/* mstream wire format: encoding and checks (see ms_wire.h, README.md). */
#define LOG_PREFIX "mstream"
#include "ms_wire.h"
#include "ms_auth.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- encoding and checks ------------------------------------------------- */

static const uint8_t ms_no_chal[MS_CHAL_SIZE];	/* files: no challenge */

static void ms_put_prefix(uint8_t *p, unsigned version, uint16_t size,
			  uint16_t kind)
{
	vcfmt_put_be32(p + MS_OFF_MAGIC, VC_MAGIC_MSTREAM);
	vcfmt_put_be16(p + MS_OFF_VERSION, (uint16_t)version);
	vcfmt_put_be16(p + MS_OFF_HDRLEN, size);
	vcfmt_put_be16(p + MS_OFF_KIND, kind);
}

static void ms_put_crc(uint8_t *p, size_t size)
{
	vcfmt_put_be32(p + size - 4, vcfmt_crc32c(0, p, size - 4));
}

int ms_encode_challenge(uint8_t *p)
{
	int r;

	memset(p, 0, MS_CHAL_SIZE);
	ms_put_prefix(p, MSTREAM_WIRE_VERSION_AUTH, MS_CHAL_SIZE,
		      MS_KIND_CHALLENGE);
	r = ms_auth_random(p + MS_CHAL_NONCE, MS_NONCE_LEN);
	if (r)
		return r;
	ms_put_crc(p, MS_CHAL_SIZE);
	return 0;
}

int ms_encode_hello(struct mstream *ms, uint8_t *p, int idx,
		    const uint8_t *chal)
{
	size_t size = ms_hello_size(ms);
	int r;

	memset(p, 0, size);
	ms_put_prefix(p, ms_version(ms), (uint16_t)size, MS_KIND_HELLO);
	vcfmt_put_be16(p + MS_HELLO_INDEX, (uint16_t)idx);
	vcfmt_put_be16(p + MS_HELLO_COUNT, (uint16_t)ms->o.nstreams);
	vcfmt_put_be64(p + MS_HELLO_SESSION, ms->session);
	if (ms->auth) {
		r = ms_auth_random(p + MS_HELLO_NONCE, MS_NONCE_LEN);
		if (!r)
			r = ms_auth_mac(ms->khs, "hello", p + MS_HELLO_MAC, 2,
					chal ? chal : ms_no_chal,
					(size_t)MS_CHAL_SIZE, p,
					(size_t)MS_HELLO_SIGNED);
		if (r)
			return r;
	}
	ms_put_crc(p, size);
	return 0;
}

/* The MAC a reply or end acknowledgement carries (v2). */
static int ms_reply_mac(struct mstream *ms, struct ms_chan *ch,
			const uint8_t *p, unsigned kind, const uint8_t *chal,
			const uint8_t *hello, uint8_t *out)
{
	if (kind == MS_KIND_ENDACK)
		return ms_auth_mac(ch->key, "endack", out, 1, p,
				   (size_t)MS_REPLY_MAC);
	return ms_auth_mac(ms->khs, "reply", out, 3, chal, (size_t)MS_CHAL_SIZE,
			   hello, (size_t)MS_HELLO2_SIZE, p,
			   (size_t)MS_REPLY_MAC);
}

int ms_encode_reply(struct mstream *ms, struct ms_chan *ch, uint8_t *p,
		    uint16_t kind, int idx, int status, const char *reason,
		    const uint8_t *chal, const uint8_t *hello)
{
	size_t size = ms_reply_size(ms);
	int r;

	memset(p, 0, size);
	ms_put_prefix(p, ms_version(ms), (uint16_t)size, kind);
	vcfmt_put_be16(p + MS_REPLY_INDEX, (uint16_t)idx);
	vcfmt_put_be32(p + MS_REPLY_STATUS, (uint32_t)status);
	vcfmt_put_be64(p + MS_REPLY_SESSION, ms->session);
	/* Truncated to fit, always NUL-terminated (the buffer is zeroed). */
	memcpy(p + MS_REPLY_REASON, reason,
	       strnlen(reason, MS_REPLY_REASON_LEN - 1));
	if (ms->auth && !status) {
		r = ms_reply_mac(ms, ch, p, kind, chal, hello,
				 p + MS_REPLY_MAC);
		if (r)
			return r;
	}
	ms_put_crc(p, size);
	return 0;
}

void ms_encode_chunk_hdr(struct mstream *ms, uint8_t *p,
			 const struct ms_out *o, uint64_t seq)
{
	memset(p, 0, MS_CHUNK_HDR_SIZE);
	ms_put_prefix(p, ms_version(ms), MS_CHUNK_HDR_SIZE, MS_KIND_CHUNK);
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
	case MS_KIND_CHALLENGE:
		return "challenge";
	}
	return "unknown";
}

/*
 * The fields every message starts with.  They come before the CRC so a
 * stray or differently configured peer is named for what it is; a flipped
 * bit elsewhere is caught by the CRC.
 */
int ms_check_head(struct mstream *ms, const uint8_t *p, size_t size,
		  unsigned kind, char *why, size_t whylen)
{
	uint32_t magic = vcfmt_get_be32(p + MS_OFF_MAGIC);
	unsigned version = vcfmt_get_be16(p + MS_OFF_VERSION);
	unsigned hdr_len = vcfmt_get_be16(p + MS_OFF_HDRLEN);
	unsigned got_kind = vcfmt_get_be16(p + MS_OFF_KIND);
	unsigned want_version = kind == MS_KIND_CHALLENGE ?
				MSTREAM_WIRE_VERSION_AUTH : ms_version(ms);

	if (magic != VC_MAGIC_MSTREAM)
		snprintf(why, whylen, "magic 0x%08x, expected 0x%08x (VCMS)",
			 magic, VC_MAGIC_MSTREAM);
	else if (version != want_version)
		snprintf(why, whylen, "version %u, expected %u%s", version,
			 want_version,
			 ms->auth ? " (authenticated: both sides need the secret)" :
			 version == MSTREAM_WIRE_VERSION_AUTH ?
			 " (the peer authenticates: give this side the secret too)" : "");
	else if (hdr_len != size)
		snprintf(why, whylen, "header length %u, expected %zu",
			 hdr_len, size);
	else if (got_kind != kind)
		snprintf(why, whylen, "message kind %u (%s), expected %u (%s)",
			 got_kind, ms_kind_name(got_kind), kind,
			 ms_kind_name(kind));
	else
		return 0;
	return -EBADMSG;
}

int ms_check_prefix(struct mstream *ms, const uint8_t *p, size_t size,
		    unsigned kind, char *why, size_t whylen)
{
	uint32_t crc, want;
	int r;

	r = ms_check_head(ms, p, size, kind, why, whylen);
	if (r)
		return r;
	crc = vcfmt_get_be32(p + size - 4);
	want = vcfmt_crc32c(0, p, size - 4);
	if (crc != want) {
		snprintf(why, whylen, "%s header CRC32C 0x%08x, computed 0x%08x",
			 ms_kind_name(kind), crc, want);
		return -EBADMSG;
	}
	return 0;
}

int ms_check_challenge(struct mstream *ms, const uint8_t *p, char *why,
		       size_t whylen)
{
	return ms_check_prefix(ms, p, MS_CHAL_SIZE, MS_KIND_CHALLENGE, why,
			       whylen);
}

int ms_check_hello_auth(struct mstream *ms, const uint8_t *p,
			const uint8_t *chal, char *why, size_t whylen)
{
	uint8_t mac[MS_MAC_LEN];
	int r;

	r = ms_check_prefix(ms, p, ms_hello_size(ms), MS_KIND_HELLO, why,
			    whylen);
	if (r || !ms->auth)
		return r;
	r = ms_auth_mac(ms->khs, "hello", mac, 2, chal ? chal : ms_no_chal,
			(size_t)MS_CHAL_SIZE, p, (size_t)MS_HELLO_SIGNED);
	if (r) {
		snprintf(why, whylen, "HMAC: %s", strerror(-r));
		return r;
	}
	if (!ms_auth_equal(mac, p + MS_HELLO_MAC)) {
		snprintf(why, whylen, "hello HMAC does not match: the peer does not hold the shared secret");
		return -EBADMSG;
	}
	return 0;
}

int ms_check_hello_fields(struct mstream *ms, const uint8_t *p, char *why,
			  size_t whylen)
{
	unsigned idx = vcfmt_get_be16(p + MS_HELLO_INDEX);
	unsigned count = vcfmt_get_be16(p + MS_HELLO_COUNT);
	uint64_t session = vcfmt_get_be64(p + MS_HELLO_SESSION);

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

int ms_check_reply(struct mstream *ms, struct ms_chan *ch, const uint8_t *p,
		   unsigned kind, int idx, const uint8_t *chal,
		   const uint8_t *hello, char *why, size_t whylen)
{
	unsigned got_idx = vcfmt_get_be16(p + MS_REPLY_INDEX);
	uint32_t status = vcfmt_get_be32(p + MS_REPLY_STATUS);
	uint64_t session = vcfmt_get_be64(p + MS_REPLY_SESSION);
	char reason[MS_REPLY_REASON_LEN];
	uint8_t mac[MS_MAC_LEN];
	int r, i;

	r = ms_check_prefix(ms, p, ms_reply_size(ms), kind, why, whylen);
	if (r)
		return r;
	if (status) {
		/* The text came from the network: keep it printable.  A
		 * refusal carries no MAC (the receiver may not trust us). */
		memcpy(reason, p + MS_REPLY_REASON, sizeof(reason));
		reason[sizeof(reason) - 1] = '\0';
		for (i = 0; reason[i]; i++)
			if (!isprint((unsigned char)reason[i]))
				reason[i] = '?';
		snprintf(why, whylen, "receiver refused: %s", reason);
		return -EPROTO;
	}
	if (ms->auth) {
		r = ms_reply_mac(ms, ch, p, kind, chal, hello, mac);
		if (r) {
			snprintf(why, whylen, "HMAC: %s", strerror(-r));
			return r;
		}
		if (!ms_auth_equal(mac, p + MS_REPLY_MAC)) {
			snprintf(why, whylen, "%s HMAC does not match: the receiver does not hold the shared secret",
				 ms_kind_name(kind));
			return -EBADMSG;
		}
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
