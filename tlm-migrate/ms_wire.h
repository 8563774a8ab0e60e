/* mstream wire format: message layouts, encoding and the checks a reader
 * makes, field by field.  The tables are in README.md ("Wire format").
 *
 * Two versions share the layout of the chunk header: version 1 (plain, no
 * secret) and version 2 (authenticated: a challenge from the receiver,
 * hello and reply with MACs, an HMAC-SHA256 in every chunk's trailer).  A
 * handle speaks one of them, fixed by whether it was given a secret.
 */
#ifndef VC_MS_WIRE_H
#define VC_MS_WIRE_H

#include "ms_core.h"

#include <stddef.h>
#include <stdint.h>

/* ---- wire format --------------------------------------------------------
 *
 * Every message starts with magic, version, header length and kind, all
 * big-endian, and carries a CRC32C of its header in the header's last four
 * bytes.  A chunk adds a trailer: CRC32C over header and payload (and in
 * version 2 an HMAC-SHA256 of them).
 */
enum {
	MS_KIND_HELLO = 1,	/* sender -> receiver, first on each stream */
	MS_KIND_REPLY = 2,	/* receiver -> sender: hello accepted/refused */
	MS_KIND_CHUNK = 3,	/* sender -> receiver */
	MS_KIND_ENDACK = 4,	/* receiver -> sender: end-of-stream processed */
	MS_KIND_CHALLENGE = 5,	/* v2: receiver -> sender, first on a connection */
};

/* Offsets shared by every message. */
#define MS_OFF_MAGIC	0
#define MS_OFF_VERSION	4
#define MS_OFF_HDRLEN	6
#define MS_OFF_KIND	8
#define MS_PREFIX_SIZE	10

/* Challenge (v2, 40 bytes): 10..15 reserved, a nonce, 32..35 reserved. */
#define MS_CHAL_NONCE		16
#define MS_CHAL_CRC		36
#define MS_CHAL_SIZE		40

/* Hello (v1: 40 bytes; v2: 88).  v2 adds the sender's nonce and the MAC
 * of the challenge and bytes 0..39 (MS_HELLO_SIGNED). */
#define MS_HELLO_INDEX		10
#define MS_HELLO_COUNT		12
#define MS_HELLO_SESSION	16	/* 14..15 reserved, zero */
#define MS_HELLO_CRC		36	/* v1; 24..35 reserved */
#define MS_HELLO_SIZE		40
#define MS_HELLO_NONCE		24	/* v2 */
#define MS_HELLO_SIGNED		40
#define MS_HELLO_MAC		40
#define MS_HELLO2_CRC		84	/* 72..83 reserved */
#define MS_HELLO2_SIZE		88
#define MS_HELLO_MAX		MS_HELLO2_SIZE

/* Reply and end acknowledgement (v1: 104 bytes; v2: 136, with a MAC). */
#define MS_REPLY_INDEX		10
#define MS_REPLY_STATUS		12	/* 0, or a positive errno */
#define MS_REPLY_SESSION	16
#define MS_REPLY_REASON		24	/* NUL-padded text */
#define MS_REPLY_REASON_LEN	76
#define MS_REPLY_CRC		100	/* v1 */
#define MS_REPLY_SIZE		104
#define MS_REPLY_MAC		100	/* v2 */
#define MS_REPLY2_CRC		132
#define MS_REPLY2_SIZE		136
#define MS_REPLY_MAX		MS_REPLY2_SIZE

/* Chunk header (40 bytes), then payload, then the trailer: a 4-byte
 * CRC32C, and in v2 a 32-byte HMAC-SHA256 of header and payload. */
#define MS_CHUNK_FLAGS		10
#define MS_CHUNK_TYPE		12
#define MS_CHUNK_TAG		16
#define MS_CHUNK_SEQ		24
#define MS_CHUNK_LEN		32
#define MS_CHUNK_CRC		36
#define MS_CHUNK_HDR_SIZE	40
#define MS_TRAILER_SIZE		4
#define MS_TRAILER2_SIZE	(4 + MS_MAC_LEN)
#define MS_TRAILER_MAX		MS_TRAILER2_SIZE

#define MS_F_ALL	0x0001	/* one copy on every stream: a marker */
#define MS_F_END	0x0002	/* end of stream, no payload */
#define MS_F_KNOWN	(MS_F_ALL | MS_F_END)

_Static_assert(MS_CHAL_CRC + 4 == MS_CHAL_SIZE, "challenge layout");
_Static_assert(MS_CHAL_NONCE + MS_NONCE_LEN <= MS_CHAL_CRC, "challenge layout");
_Static_assert(MS_HELLO_CRC + 4 == MS_HELLO_SIZE, "hello layout");
_Static_assert(MS_HELLO_NONCE + MS_NONCE_LEN == MS_HELLO_SIGNED, "hello layout");
_Static_assert(MS_HELLO_MAC + MS_MAC_LEN <= MS_HELLO2_CRC, "hello layout");
_Static_assert(MS_HELLO2_CRC + 4 == MS_HELLO2_SIZE, "hello layout");
_Static_assert(MS_REPLY_REASON + MS_REPLY_REASON_LEN == MS_REPLY_CRC,
	       "reply layout");
_Static_assert(MS_REPLY_CRC + 4 == MS_REPLY_SIZE, "reply layout");
_Static_assert(MS_REPLY_MAC + MS_MAC_LEN == MS_REPLY2_CRC, "reply layout");
_Static_assert(MS_REPLY2_CRC + 4 == MS_REPLY2_SIZE, "reply layout");
_Static_assert(MS_CHUNK_CRC + 4 == MS_CHUNK_HDR_SIZE, "chunk layout");
_Static_assert(MSTREAM_MAX_STREAMS <= UINT16_MAX, "index fits in 16 bits");
_Static_assert(MSTREAM_CHUNK_LIMIT <= UINT32_MAX - MS_CHUNK_HDR_SIZE,
	       "length fits in 32 bits");

/* Sizes and version of the handle's wire. */
static inline unsigned ms_version(const struct mstream *ms)
{
	return ms->auth ? MSTREAM_WIRE_VERSION_AUTH : MSTREAM_WIRE_VERSION;
}

static inline size_t ms_hello_size(const struct mstream *ms)
{
	return ms->auth ? MS_HELLO2_SIZE : MS_HELLO_SIZE;
}

static inline size_t ms_reply_size(const struct mstream *ms)
{
	return ms->auth ? MS_REPLY2_SIZE : MS_REPLY_SIZE;
}

static inline size_t ms_trailer_size(const struct mstream *ms)
{
	return ms->auth ? MS_TRAILER2_SIZE : MS_TRAILER_SIZE;
}

/* A fresh challenge (v2) with a random nonce.  0 or -errno. */
int ms_encode_challenge(uint8_t *p);
/* A challenge as the sender reads it: 0 or -EBADMSG with why. */
int ms_check_challenge(struct mstream *ms, const uint8_t *p, char *why,
		       size_t whylen);

/* The hello of stream idx; v2: a random nonce and the MAC over chal (the
 * receiver's challenge; NULL for a file: 40 zero bytes).  0 or -errno. */
int ms_encode_hello(struct mstream *ms, uint8_t *p, int idx,
		    const uint8_t *chal);
/* A reply (kind MS_KIND_REPLY) or end acknowledgement (MS_KIND_ENDACK).
 * v2: a reply with status 0 carries the MAC over challenge, hello and its
 * own bytes under the handshake key; an end acknowledgement the MAC of its
 * bytes under ch's stream key; a refusal none (zeros).  0 or -errno. */
int ms_encode_reply(struct mstream *ms, struct ms_chan *ch, uint8_t *p,
		    uint16_t kind, int idx, int status, const char *reason,
		    const uint8_t *chal, const uint8_t *hello);
void ms_encode_chunk_hdr(struct mstream *ms, uint8_t *p,
			 const struct ms_out *o, uint64_t seq);

/* Magic, version, header length and kind from the first MS_PREFIX_SIZE
 * bytes of a message expected to be size bytes: 0 or -EBADMSG with why. */
int ms_check_head(struct mstream *ms, const uint8_t *p, size_t size,
		  unsigned kind, char *why, size_t whylen);
/* The head, then the header CRC of a whole message: 0 or -EBADMSG. */
int ms_check_prefix(struct mstream *ms, const uint8_t *p, size_t size,
		    unsigned kind, char *why, size_t whylen);
/*
 * A hello from a stranger or from our sender?  Head, CRC and (v2) the MAC
 * over chal (NULL: zeros): 0, or -EBADMSG with why (not an mstream hello,
 * or not from someone holding the secret).
 */
int ms_check_hello_auth(struct mstream *ms, const uint8_t *p,
			const uint8_t *chal, char *why, size_t whylen);
/* The fields of an authentic hello against this receiver (adopts its
 * session if none is fixed yet): the stream index, or -EPROTO with why. */
int ms_check_hello_fields(struct mstream *ms, const uint8_t *p, char *why,
			  size_t whylen);
/* A reply (chal and hello: what this stream sent and got) or end
 * acknowledgement (ch's key) for stream idx: 0, -EBADMSG (malformed or,
 * v2, a MAC that does not match: the peer lacks the secret) or -EPROTO
 * (refused, the receiver's reason in why). */
int ms_check_reply(struct mstream *ms, struct ms_chan *ch, const uint8_t *p,
		   unsigned kind, int idx, const uint8_t *chal,
		   const uint8_t *hello, char *why, size_t whylen);

#endif
