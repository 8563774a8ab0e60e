/* dirty: QEMU's per-epoch dirty log, shared through a file (qemu-patches 0002).
 *
 * dirty_start() creates the region as a memfd, hands it to the patched QEMU
 * over the QMP socket (getfd, SCM_RIGHTS) and asks QEMU to track its shared
 * RAM blocks in it (x-vc-dirty-log-start fdname), seals its size, maps it
 * and checks its layout; it maps each tracked block's memory read-only
 * through /proc/QEMU_PID/fd/FD, so the engine reads guest RAM directly.
 * Nothing has a name another user could take or replace.  dirty_sync() closes an epoch (x-vc-dirty-log-sync,
 * merge mode: QEMU ORs the epoch's pages into the bitmaps and the engine
 * clears what it consumed with dirty_take_word()).  dirty_stop() ends the
 * logging; dirty_destroy() unmaps and closes everything.
 *
 * Threads: the QMP handle belongs to whoever calls start/sync/stop, one at a
 * time; dirty_take_word() may run concurrently with nothing but reads.
 */
#ifndef VC_DIRTY_H
#define VC_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qmp;

#define DIRTY_PAGE_SIZE	4096u
#define DIRTY_NAME_MAX	64
#define DIRTY_REGION_VERSION 1	/* region format (qemu-patches/README.md) */

/* One tracked RAM block. */
struct dirty_block {
	char name[DIRTY_NAME_MAX];	/* RAMBlock id, e.g. "mem" */
	uint64_t length;		/* bytes of guest RAM in the block */
	uint64_t nr_pages;		/* length / DIRTY_PAGE_SIZE */
	const uint8_t *mem;		/* read-only mapping of the block */
	int fd;				/* the block's memory file, read-only */
	uint64_t *bitmap;		/* in the shared region, nr_words words */
	uint64_t nr_words;
};

struct dirty;

/*
 * Start the dirty log of the QEMU behind q (pid: its process id, for
 * /proc/PID/fd).  Returns a handle, or NULL with errno set and a reason in
 * why: ENOSYS when QEMU has no x-vc-dirty-log-start (not the patched
 * build), EIO for another QMP error (QEMU's text), EPROTO for a layout that
 * does not fit the region or the block's memory, or the mapping error.
 */
struct dirty *dirty_start(struct qmp *q, int pid, char *why, size_t whylen);

/*
 * Whether a block's bitmap as QEMU describes it (byte offset boff, bsize
 * bytes) lies inside a region of region_size bytes, after its first
 * data_start bytes (header and descriptors), 8-byte aligned, and holds
 * nr_pages bits.  Checked without any sum that can wrap: the values come
 * from QEMU's reply.  0, or -EPROTO with why.
 */
int dirty_check_bitmap(uint64_t boff, uint64_t bsize, uint64_t nr_pages,
		       uint64_t region_size, uint64_t data_start, char *why, size_t whylen);

/* Whether a block of length bytes can be mapped from a memory file of
 * file_size bytes (regular: is_reg).  0, or -EPROTO with why. */
int dirty_check_block(uint64_t length, bool is_reg, uint64_t file_size, char *why,
		      size_t whylen);

/* Close an epoch: QEMU ORs the pages written since the last sync into the
 * bitmaps.  On success returns 0 and the epoch's count of dirty pages in
 * *pages (may be NULL).  -errno and why on failure. */
int dirty_sync(struct dirty *d, uint64_t *pages, char *why, size_t whylen);

/* Stop the logging (QMP).  0 or -errno and why.  Idempotent. */
int dirty_stop(struct dirty *d, char *why, size_t whylen);

/* Unmap everything and remove the region file; NULL is fine.  Does not talk
 * to QEMU: call dirty_stop() first. */
void dirty_destroy(struct dirty *d);

int dirty_nr_blocks(const struct dirty *d);
const struct dirty_block *dirty_block(const struct dirty *d, int i);

/* Take word w of block b's bitmap (64 pages from page w * 64), clearing it. */
static inline uint64_t dirty_take_word(const struct dirty_block *b, uint64_t w)
{
	if (!__atomic_load_n(&b->bitmap[w], __ATOMIC_RELAXED))
		return 0;
	return __atomic_exchange_n(&b->bitmap[w], 0, __ATOMIC_ACQ_REL);
}

/* The first page at or after `page` that may hold data, or nr_pages when
 * the rest is a hole; *data_end: the end of that run of data pages.  The
 * file's holes (pages the guest never wrote) read as zeros, so they need
 * not be read, which on a kernel without a shared zero page would allocate
 * each one.  The answer is as of the call: take it after publishing what
 * the dirty log must cover.  A file system without SEEK_DATA reports
 * everything as data. */
uint64_t dirty_next_data(const struct dirty_block *b, uint64_t page, uint64_t *data_end);

/* Count the set bits of every block (pages waiting). */
uint64_t dirty_count(const struct dirty *d);

#endif
