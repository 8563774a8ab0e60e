/* mstream wire format: message layouts, encoding and the checks a reader
 * makes, field by field.  The tables are in README.md ("Wire format").
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
 * bytes.  A chunk adds a trailer: CRC32C over header and payload.
 */
enum {
	MS_KIND_HELLO = 1,	/* sender -> receiver, first on each stream */
	MS_KIND_REPLY = 2,	/* receiver -> sender: hello accepted/refused */
	MS_KIND_CHUNK = 3,	/* sender -> receiver */
	MS_KIND_ENDACK = 4,	/* receiver -> sender: end-of-stream processed */
};

/* Offsets shared by every message. */
#define MS_OFF_MAGIC	0
#define MS_OFF_VERSION	4
#define MS_OFF_HDRLEN	6
#define MS_OFF_KIND	8

/* Hello (40 bytes). */
#define MS_HELLO_INDEX		10
#define MS_HELLO_COUNT		12
#define MS_HELLO_SESSION	16	/* 14..15 and 24..35 reserved, zero */
#define MS_HELLO_CRC		36
#define MS_HELLO_SIZE		40

/* Reply and end acknowledgement (104 bytes). */
#define MS_REPLY_INDEX		10
#define MS_REPLY_STATUS		12	/* 0, or a positive errno */
#define MS_REPLY_SESSION	16
#define MS_REPLY_REASON		24	/* NUL-padded text */
#define MS_REPLY_REASON_LEN	76
#define MS_REPLY_CRC		100
#define MS_REPLY_SIZE		104

/* Chunk header (40 bytes), then payload, then a 4-byte CRC32C. */
#define MS_CHUNK_FLAGS		10
#define MS_CHUNK_TYPE		12
#define MS_CHUNK_TAG		16
#define MS_CHUNK_SEQ		24
#define MS_CHUNK_LEN		32
#define MS_CHUNK_CRC		36
#define MS_CHUNK_HDR_SIZE	40
#define MS_TRAILER_SIZE		4

#define MS_F_ALL	0x0001	/* one copy on every stream: a marker */
#define MS_F_END	0x0002	/* end of stream, no payload */
#define MS_F_KNOWN	(MS_F_ALL | MS_F_END)

_Static_assert(MS_HELLO_CRC + 4 == MS_HELLO_SIZE, "hello layout");
_Static_assert(MS_REPLY_REASON + MS_REPLY_REASON_LEN == MS_REPLY_CRC,
	       "reply layout");
_Static_assert(MS_REPLY_CRC + 4 == MS_REPLY_SIZE, "reply layout");
_Static_assert(MS_CHUNK_CRC + 4 == MS_CHUNK_HDR_SIZE, "chunk layout");
_Static_assert(MSTREAM_MAX_STREAMS <= UINT16_MAX, "index fits in 16 bits");
_Static_assert(MSTREAM_CHUNK_LIMIT <= UINT32_MAX - MS_CHUNK_HDR_SIZE,
	       "length fits in 32 bits");


void ms_encode_hello(uint8_t *p, int idx, int count, uint64_t session);
void ms_encode_reply(uint8_t *p, uint16_t kind, int idx, int status,
		     uint64_t session, const char *reason);
void ms_encode_chunk_hdr(uint8_t *p, const struct ms_out *o, uint64_t seq);

/* Magic, version, header length, kind, then the header CRC of a message of
 * size bytes.  0 or -EBADMSG with why. */
int ms_check_prefix(const uint8_t *p, size_t size, unsigned kind, char *why,
		    size_t whylen);
/* A hello against this receiver (adopts its session if none is fixed yet):
 * the stream index, or -EPROTO with why. */
int ms_check_hello(struct mstream *ms, const uint8_t *p, char *why,
		   size_t whylen);
/* A reply or end acknowledgement for stream idx: 0, -EBADMSG (malformed) or
 * -EPROTO (refused, the receiver's reason in why). */
int ms_check_reply(struct mstream *ms, const uint8_t *p, unsigned kind,
		   int idx, char *why, size_t whylen);

#endif
