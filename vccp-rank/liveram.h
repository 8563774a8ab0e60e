/* liveram: a VM's RAM image split over N files (live checkpoints).
 *
 * A live checkpoint writes guest RAM while the VM runs: a full pass, then
 * the pages dirtied since, epoch by epoch, so the same page may be written
 * more than once.  Page p of a block always goes to file (p / 64) % N (64
 * pages: one word of the dirty bitmap), so the files are independent: a
 * reader applies each file's records in order, a later record for a page
 * overriding an earlier one, and N files can be read in parallel.
 *
 * File (integers big-endian):
 *   vcfmt header: magic "VCLR", version 1, body length (written last: a
 *                 file never finished has a zero header and is refused)
 *   meta:   u32 file index, u32 file count, u64 epoch, u32 rank,
 *           u32 page size, u32 block count, u32 reserved, u64 record count,
 *           per block: char name[64] (NUL-padded), u64 length in bytes;
 *           u32 CRC32C of the meta
 *   records: u32 block, u32 round, u64 first page, u32 page count,
 *            u32 CRC32C of these 20 bytes and the pages; the pages
 * The file's exact length is checked against the header (truncated or
 * trailing bytes), every record against its CRC and its block's bounds.
 *
 * Threads: a writer or a reader belongs to one thread at a time.
 */
#ifndef VC_LIVERAM_H
#define VC_LIVERAM_H

#include <stddef.h>
#include <stdint.h>

#define LIVERAM_VERSION		1
#define LIVERAM_NAME_MAX	64
#define LIVERAM_MAX_BLOCKS	16
#define LIVERAM_MAX_FILES	16
#define LIVERAM_RUN_PAGES	64	/* pages per run: a file gets whole runs */
#define LIVERAM_MAX_REC_PAGES	LIVERAM_RUN_PAGES

struct liveram_block {
	char name[LIVERAM_NAME_MAX];	/* RAMBlock id, e.g. "pc.ram" */
	uint64_t length;		/* bytes */
};

/* What a file says about itself (the header and meta). */
struct liveram_info {
	uint32_t file_index, nfiles;
	uint64_t epoch;
	uint32_t rank;
	uint32_t page_size;
	uint32_t nblocks;
	struct liveram_block blocks[LIVERAM_MAX_BLOCKS];
	uint64_t records;		/* filled by the reader */
};

/* The file a page belongs to. */
static inline uint32_t liveram_file_of(uint64_t page, uint32_t nfiles)
{
	return (uint32_t)((page / LIVERAM_RUN_PAGES) % nfiles);
}

struct liveram_w;

/* Create path (O_EXCL, mode 0600) for the file info->file_index of
 * info->nfiles.  NULL with errno (EINVAL for a bad info). */
struct liveram_w *liveram_create(const char *path, const struct liveram_info *info);

/* Append a record: npages (1..LIVERAM_MAX_REC_PAGES) pages of block from
 * first_page, written in the given round.  0 or -errno (-ERANGE outside the
 * block, -EXDEV for a page that belongs to another file). */
int liveram_put(struct liveram_w *w, uint32_t block, uint32_t round, uint64_t first_page,
		uint32_t npages, const void *pages);

/* Write the header, fsync, close.  *size (may be NULL): the file's bytes.
 * The handle is freed whatever the result.  0 or -errno. */
int liveram_finish(struct liveram_w *w, uint64_t *size);

/* Close and remove an unfinished file; NULL is fine. */
void liveram_abort(struct liveram_w *w);

/* Bytes written so far (header included). */
uint64_t liveram_bytes(const struct liveram_w *w);

/* Called for every record of a file, in file order; non-zero stops the
 * read and is returned. */
typedef int (*liveram_apply_fn)(void *arg, const struct liveram_info *info, uint32_t block,
				uint64_t first_page, uint32_t npages, const void *pages);

/* Read and check the whole file: header, exact length, meta CRC, every
 * record's CRC and bounds, the record count; apply (may be NULL: verify
 * only) gets each record as it is read, so a caller that must change
 * nothing on a bad file verifies first.  info (may be NULL) is filled.
 * 0, -errno of the read, -EBADMSG with the reason in why (the caller names
 * the file), or what apply returned. */
int liveram_read(const char *path, liveram_apply_fn apply, void *arg,
		 struct liveram_info *info, char *why, size_t whylen);

#endif
