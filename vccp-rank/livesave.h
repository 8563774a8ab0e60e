/* livesave: save a running VM's RAM into N liveram files (live checkpoint).
 *
 * Started while the VM runs, it makes a full pass over the guest's RAM
 * (pread() of the RAM backend's file: the rank maps nothing), then rounds:
 * close a dirty epoch (ops->sync) and write the pages dirtied since.  When
 * the full pass is done and a round found few dirty pages (or after
 * max_rounds rounds, for a guest that writes faster than we save) it
 * reports READY and keeps the files open.  At the cut, with the VM paused,
 * livesave_finish() asks for the last round: the pages dirtied since the
 * previous one, then every file is fsynced and finished; DONE.
 *
 * Threads: one coordinator thread (it alone calls ops->sync) and one writer
 * thread per file (each reads and writes only its pages, page P going to
 * file (P / 64) % N, see liveram.h; ops->take_word is called from all of
 * them, for disjoint words).  The caller's thread (the rank's event loop)
 * never waits for them: it watches livesave_fd(), an eventfd written at
 * every change of state, and reads the state with livesave_poll().
 * livesave_destroy() is the one call that joins the threads; it first asks
 * them to stop, which they do within one record's write.
 */
#ifndef VC_LIVESAVE_H
#define VC_LIVESAVE_H

#include <stddef.h>
#include <stdint.h>

#include "liveram.h"

/* Where the RAM and its dirty log come from (the launcher wraps the
 * patched QEMU's dirty log, tlm-migrate/dirty.h; tests wrap a memfd). */
struct livesave_src_ops {
	/* Close a dirty epoch: every page written since the previous sync is
	 * now set in the bitmaps.  Coordinator thread.  0 or -errno and why. */
	int (*sync)(void *ctx, char *why, size_t whylen);
	/* Take and clear word w (pages w*64 .. w*64+63) of block b's bitmap.
	 * Writer threads, never the same word from two threads. */
	uint64_t (*take_word)(void *ctx, int block, uint64_t w);
};

struct livesave_block {
	char name[LIVERAM_NAME_MAX];
	uint64_t length;	/* bytes, a multiple of page_size */
	int fd;			/* the block's memory, read with pread(); borrowed */
};

struct livesave_params {
	uint64_t epoch;
	int rank;
	uint32_t page_size;
	int nfiles;				/* 1..LIVERAM_MAX_FILES */
	const char *paths[LIVERAM_MAX_FILES];	/* created O_EXCL; copied */
	int nblocks;
	struct livesave_block blocks[LIVERAM_MAX_BLOCKS];
	int max_rounds;		/* dirty rounds before the cut at most (>= 1) */
	uint64_t ready_pages;	/* READY once a round finds at most this many */
	int round_ms;		/* pause between rounds once READY */
	uint64_t max_bytes;	/* no more rounds before the cut once the files
				 * hold this much (0: no cap): a guest that writes
				 * faster than the save cannot fill the disk */
};

enum livesave_state {
	LIVESAVE_RUNNING,	/* full pass or first rounds */
	LIVESAVE_READY,		/* the cut may come */
	LIVESAVE_FINISHING,	/* livesave_finish() called */
	LIVESAVE_DONE,		/* files durable, livesave_result() valid */
	LIVESAVE_FAILED,	/* files removed, livesave_why() says why */
};

struct livesave_result {
	int nfiles;
	uint64_t file_size[LIVERAM_MAX_FILES];
	uint64_t bytes;		/* all files */
	uint64_t pages;		/* records' pages, every round */
	uint64_t full_pages;	/* pages of the full pass (zero pages skipped) */
	uint64_t last_pages;	/* pages of the last round, at the cut */
	int rounds;		/* dirty rounds, the last one included */
	int bound;		/* why the rounds stopped: 0 quiet, 1 max_rounds, 2 max_bytes */
	double full_s;		/* full pass, seconds */
	double final_s;		/* from livesave_finish() to DONE */
};

struct livesave;

/* Start the threads.  NULL with errno (EINVAL for bad params, or the
 * error creating a file: then why names it). */
struct livesave *livesave_start(const struct livesave_params *p,
				const struct livesave_src_ops *ops, void *ctx,
				char *why, size_t whylen);

/* Readable (eventfd) when the state may have changed. */
int livesave_fd(const struct livesave *ls);

/* Drain the eventfd and return the current state. */
enum livesave_state livesave_poll(struct livesave *ls);

/* The VM is paused: take the last round and finish the files.  0, or
 * -EALREADY once called, -EBUSY before READY (the cut waits for READY). */
int livesave_finish(struct livesave *ls);

/* After DONE: sizes and counts. */
void livesave_result(const struct livesave *ls, struct livesave_result *out);

/* After FAILED: the first error, one phrase naming the file. */
const char *livesave_why(const struct livesave *ls);

/* Stop and join the threads; unless DONE, remove the files.  NULL is fine. */
void livesave_destroy(struct livesave *ls);

#endif
