/* vccpio: the file work of a checkpoint epoch, run on the worker threads
 * (common/worker.h) so that the rank's event loop never waits for a disk.
 *
 * Each job is a struct and a function that runs it on a worker thread;
 * vccp.c submits them and reads their results in the job's done().  The
 * functions never call MPI and never log: they report in the struct.
 */
#ifndef VC_VCCPIO_H
#define VC_VCCPIO_H

#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "manifest.h"

struct rq;
struct vccp;

/*
 * Worker jobs.  Ownership, as in QEMU's multifd: [loop] fields are set by
 * the loop thread before worker_submit() and only read by run(); [worker]
 * fields are written by run() and read by the loop thread only after the
 * job's done() has been called; [shared] fields are atomics both touch.
 * Between submit and done() the loop thread touches nothing else of a job.
 */

/* Prepare: the epoch directory and the VM state file. */
struct prep_job {
	char epoch_dir[PATH_MAX];	/* [loop] */
	char tmp[PATH_MAX];		/* [loop] */
	int wfd, rfd;			/* [worker] QEMU's and our view; -1 */
	int err;			/* [worker] 0 or -errno */
	char why[200];			/* [worker] */
};

/* Follow the VM state file while QEMU writes it; then fsync, rename. */
struct follow_job {
	int fd;				/* [loop] our read view; run() closes it */
	char tmp[PATH_MAX], path[PATH_MAX];	/* [loop] */
	atomic_bool qemu_done;		/* [shared] loop: QEMU has finished */
	atomic_bool cancel;		/* [shared] loop: the epoch failed */
	atomic_ullong followed;		/* [shared] worker: bytes in the CRC */
	uint32_t crc;			/* [worker] of the whole file */
	uint64_t size;			/* [worker] */
	int err;			/* [worker] */
	char why[200];			/* [worker] */
};

/* Flatten the frozen disk chain with qemu-img; fsync, CRC, rename. */
struct disk_job {
	char frozen[PATH_MAX];		/* [loop] the overlay QEMU no longer writes */
	char tmp[PATH_MAX], path[PATH_MAX];	/* [loop] */
	atomic_bool cancel;		/* [shared] */
	uint32_t crc;			/* [worker] */
	uint64_t size;			/* [worker] */
	int err;			/* [worker] */
	char why[200];			/* [worker] */
};

/* Receive queue file and the directory fsyncs that make the epoch's files
 * durable before the report says so. */
struct finish_job {
	struct rq *q;			/* [loop] taken from the fabric; run() reads it */
	char rq_path[PATH_MAX];		/* [loop] */
	char vm_path[PATH_MAX];		/* [loop] a file in the epoch directory */
	char epoch_dir[PATH_MAX];	/* [loop] */
	uint64_t epoch;			/* [loop] */
	int rank;			/* [loop] */
	uint32_t crc;			/* [worker] */
	uint64_t size;			/* [worker] */
	int err;			/* [worker] */
	char why[200];			/* [worker] */
};

/* Root: manifest, then latest (then pruning). */
struct commit_job {
	json_t *manifest;		/* [loop] a tree of its own; run() frees it */
	char dir[PATH_MAX];		/* [loop] */
	char epoch_dir[PATH_MAX];	/* [loop] */
	uint64_t epoch;			/* [loop] */
	uint64_t prev_epoch;		/* [loop] latest before this one, or 0 */
	int keep;			/* [loop] */
	char more[CKPT_MAX_DIRS - 1][PATH_MAX];	/* [loop] further directories */
	int nmore;			/* [loop] */
	int pruned;			/* [worker] */
	int err;			/* [worker] */
	char why[256];			/* [worker] */
};

/* Remove what an aborted epoch left (fire and forget). */
struct cleanup_job {
	struct vccp *v;			/* [loop] for done() */
	char paths[5][PATH_MAX];	/* [loop] files to unlink, "" unused */
	char tree[PATH_MAX];		/* [loop] a directory to remove, or "" */
	char more[CKPT_MAX_DIRS - 1][PATH_MAX];	/* [loop] more of them, or "" */
};

void vccpio_prep(void *job);	/* struct prep_job */
void vccpio_follow(void *job);	/* struct follow_job */
void vccpio_disk(void *job);	/* struct disk_job */
void vccpio_finish(void *job);	/* struct finish_job */
void vccpio_commit(void *job);	/* struct commit_job */
void vccpio_cleanup(void *job);	/* struct cleanup_job */

#endif
