/* fbatch: the wire format of the fabric's batches, one MPI message each.
 *
 * Big-endian:
 *   0  u32 magic "VCFB"     4  u16 version   6  u16 header length (24)
 *   8  u32 channel sequence number (per ordered pair, from 0)
 *  12  u16 credits returned to the receiver of this batch
 *  14  u16 number of records
 *  16  u32 body length     20  u32 CRC32C of header (this field 0) + body
 * body: records, each  u8 type, u8 flags, u16 length, then length bytes
 *   (a frame, or for a marker the 64-bit epoch).
 *
 * Pure functions on a buffer: the fabric (fabric.c) owns the channels and
 * their state; this is what a peer's bytes are checked against, kept apart
 * so that it can be unit-tested and fuzzed without MPI.
 */
#ifndef VC_FBATCH_H
#define VC_FBATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define FBATCH_VERSION	1
#define FBATCH_HDR	24
#define FBATCH_REC_HDR	4

enum fbatch_rec_type { FBATCH_FRAME = 1, FBATCH_MARKER = 2 };

/* One record of a checked batch; data points into the batch. */
struct fbatch_rec {
	uint8_t type;
	uint16_t len;
	const uint8_t *data;
	size_t next;		/* offset of the record after it */
};

/* Fill the header of the batch b of len bytes (header included) holding
 * nrec records, and seal it with its CRC. */
void fbatch_seal(uint8_t *b, uint32_t len, uint32_t seq, uint16_t credits,
		 uint16_t nrec);

/* Check a batch of len bytes received on a channel that expects sequence
 * number want_seq.  0 with the credits it returns in *credits, or -EBADMSG
 * with "FIELD 0xX, expected 0xY" in why.  b is not modified. */
int fbatch_check(const uint8_t *b, size_t len, uint32_t want_seq,
		 uint16_t *credits, char *why, size_t whylen);

/* The record at offset off (FBATCH_HDR <= off < len) of a checked batch:
 * 0 with *rec, or -EBADMSG with the reason in why (a record that overruns
 * the batch, a marker that is not 8 bytes, an unknown type). */
int fbatch_record(const uint8_t *b, size_t len, size_t off,
		  struct fbatch_rec *rec, char *why, size_t whylen);

/* The run of frame records at offset off of a checked batch that can go
 * to the VM in one system call: at most max consecutive frames whose
 * length is within [min_len, max_len], stopping before any other record.
 * Fills iov[k] with frame k and next[k] with the offset after it; returns
 * how many (0: the record at off is not such a frame, or off == len), or
 * -EBADMSG with the reason in why. */
int fbatch_frames(const uint8_t *b, size_t len, size_t off, size_t min_len,
		  size_t max_len, struct iovec *iov, size_t *next, int max,
		  char *why, size_t whylen);

#endif
