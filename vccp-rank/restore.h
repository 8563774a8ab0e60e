/* restore: restart this rank from a checkpoint, and the VM settings a
 * checkpoint records.
 *
 * A restore takes the VM settings from the manifest (QEMU must rebuild the
 * same machine).  A manifest is data handed over by someone else: its CRC
 * is no authentication, so a restore accepts only the keys a checkpoint
 * writes (restore_config_keys, used by both the writer and the reader),
 * each a string; any other key refuses the restore with one line naming
 * the manifest file and the key.  Paths of programs (qemu), of the run and
 * checkpoint directories and every other launcher option stay the user's.
 *
 * Order of a restore: restore_prepare() (collective: rank 0 resolves the
 * epoch and checks the number of ranks and the keys, every rank checks its
 * own files), then the launcher applies restore_config() and starts QEMU
 * with "-incoming defer -S", then restore_load_ram() (live checkpoints),
 * restore_load_vm_start() and its polls, and restore_load_rq().
 */
#ifndef VC_RESTORE_H
#define VC_RESTORE_H

#include <jansson.h>
#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct restore;
struct qmp;
struct rq;

/* Every key a checkpoint's "config" may hold (NULL-terminated). */
extern const char *const restore_config_keys[];

/* The VM settings a checkpoint records (strings; NULL or "" left out). */
struct restore_settings {
	const char *memory;	/* "512M" */
	const char *vcpus;	/* "2" */
	const char *maxcpus;	/* "2"; older checkpoints have none: = vcpus */
	const char *subnet;	/* "10.77.0.0/24" */
	const char *guest_cmd;
	const char *append;
	const char *kernel;	/* absolute paths */
	const char *initrd;
	const char *disk;
	const char *vm;		/* "qemu" or "none" */
	const char *synth_rate;	/* --vm none only */
	const char *synth_seconds;
};

/* The "config" object of a manifest (a new reference). */
json_t *restore_config_build(const struct restore_settings *s);

/* 0 when conf (may be NULL) is an object holding only allowed keys with
 * string values; else -EINVAL and "WHERE: ..." naming the key in why. */
int restore_config_check(json_t *conf, const char *where, char *why, size_t whylen);

/* Collective over comm: find epoch `which` ("latest" or a number) in dir,
 * check it was taken with this many ranks and holds only allowed keys (rank
 * 0), and check this rank's files (sizes and CRC32C).  Returns the restore
 * on every rank, or NULL on every rank when any failed; then *report is
 * true on the one rank (the lowest that failed) whose why should be printed. */
struct restore *restore_prepare(MPI_Comm comm, const char *dir, const char *which,
				bool *report, char *why, size_t whylen);
void restore_destroy(struct restore *r);	/* NULL is fine */

uint64_t restore_epoch(const struct restore *r);
const char *restore_dir(const struct restore *r);	/* the epoch directory */
/* The checked VM settings (borrowed; keys of restore_config_keys). */
json_t *restore_config(const struct restore *r);
/* rank's saved disk image into buf, or NULL when it had none. */
const char *restore_disk(const struct restore *r, int rank, char *buf, size_t len);

/* Feed rank's saved VM state into a QEMU started with "-incoming defer -S",
 * without waiting: the rank's loop keeps running (nothing blocks in it).
 *
 * restore_load_vm_start() opens RDIR/rankR.vmstate and sends, as
 * asynchronous QMP commands on q (qmp_exec_async), x-ignore-shared (live
 * checkpoints), getfd and migrate-incoming; their replies are read by
 * whoever pumps q (qmp_pump).  The owner then calls restore_load_vm_poll()
 * every few ms (a loop timer), which asks query-migrate and keeps the
 * deadline of timeout_ms.  NULL with errno and why when nothing could be
 * sent (a missing file, QMP closed).
 *
 * restore_load_vm_poll(): 0 while loading (call again), 1 once QEMU has
 * loaded it, -errno once it failed: why holds one line naming the file and
 * what QEMU said ("QEMU could not load F: ..."), or the deadline
 * (-ETIMEDOUT), or the command that failed.  The caller adds the rank.
 *
 * restore_load_vm_free() may run at any time (NULL is fine); commands
 * still on their way then end on their own (their replies are dropped). */
struct restore_load;
struct restore_load *restore_load_vm_start(const struct restore *r, struct qmp *q, int rank,
					   int timeout_ms, char *why, size_t whylen);
/* The same for a vmstate file named by the caller (live: saved with
 * x-ignore-shared); restore_load_vm_start() names RDIR/rankR.vmstate. */
struct restore_load *restore_load_file_start(const char *path, bool live, struct qmp *q,
					     int timeout_ms, char *why, size_t whylen);
int restore_load_vm_poll(struct restore_load *ld, char *why, size_t whylen);
void restore_load_vm_free(struct restore_load *ld);

/* Whether rank's checkpoint is a live one (its RAM in liveram files, its
 * VM state saved with x-ignore-shared). */
bool restore_is_live(const struct restore *r, int rank);

/* Live checkpoints: write rank's RAM files, in parallel, into the RAM
 * backend of the QEMU (pid) started with "-incoming defer -S", before
 * restore_load_vm_start() (which then turns on x-ignore-shared).  0 (also
 * when the checkpoint is not live: *nfiles 0) or -errno with why naming the
 * file; *nfiles and *npages say what was loaded.  Slow (the whole RAM) and
 * blocking: it never logs and touches nothing but r (read) and QEMU's RAM,
 * so the launcher runs it on its worker thread while the loop goes on. */
int restore_load_ram(const struct restore *r, int rank, int qemu_pid, size_t *nfiles,
		     uint64_t *npages, char *why, size_t whylen);

/* Read rank's receive queue.  0 or -errno with the reason (naming the file)
 * in why. */
int restore_load_rq(const struct restore *r, int rank, struct rq **out, char *why,
		    size_t whylen);

#endif
