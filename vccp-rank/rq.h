/* rq: a rank's receive queue -- the frames that were in flight towards its
 * VM at a checkpoint cut, in arrival order, and their file.
 *
 * During a checkpoint the fabric appends every frame that arrives for the
 * paused VM here; the queue is saved with the VM state and, after a resume
 * or a restore, delivered to the VM before any frame that arrives later.
 *
 * File (all integers big-endian):
 *   vcfmt header: magic "VCRQ", version 1, body length
 *   body:  u64 epoch, u32 rank, u32 frame count,
 *          then per frame: u16 from-rank, u16 length, length bytes
 *   trailer: u32 CRC32C of the body
 */
#ifndef VC_RQ_H
#define VC_RQ_H

#include <stddef.h>
#include <stdint.h>

#define RQ_VERSION 1

struct rq;

struct rq *rq_create(void);		/* NULL with errno */
void rq_destroy(struct rq *q);		/* NULL is fine */

/* Append a copy of frame.  0 or -ENOMEM. */
int rq_push(struct rq *q, int from, const void *frame, uint16_t len);
/* The oldest frame, or -ENOENT when empty.  Valid until rq_pop(). */
int rq_peek(const struct rq *q, int *from, const uint8_t **frame, uint16_t *len);
void rq_pop(struct rq *q);
/* Move every frame of src, in order, behind dst's; src is left empty.
 * No frame is copied; 0, or -ENOMEM with both queues unchanged. */
int rq_splice(struct rq *dst, struct rq *src);
void rq_clear(struct rq *q);
size_t rq_count(const struct rq *q);
size_t rq_bytes(const struct rq *q);

/* Write the queue to path (temporary file, fsync, rename; mode 0600).
 * *crc gets the CRC32C of the whole file.  0 or -errno. */
int rq_save(const struct rq *q, const char *path, uint64_t epoch, int rank,
	    uint32_t *crc);

/* Read path into a new queue, checking magic, version, lengths, CRC and
 * that it belongs to epoch/rank.  0, or -EBADMSG/-errno with the reason in
 * why (the caller adds the file name). */
int rq_load(const char *path, uint64_t epoch, int rank, struct rq **out,
	    char *why, size_t whylen);

/* The same checks on a file already in memory: len bytes at buf. */
int rq_parse(const void *buf, size_t len, uint64_t epoch, int rank,
	     struct rq **out, char *why, size_t whylen);

#endif
