/* vccp: coordinated checkpoint of the whole virtual cluster, at the
 * hypervisor level (VCCP: Ong, Saragol, Chanchio, Leangsuksun, Cluster 2009).
 *
 * Rank 0 coordinates.  One epoch:
 *   1. rank 0 broadcasts the request (MPI_Ibcast that every other rank
 *      keeps posted);
 *   2. every rank pauses its VM (QMP stop), holds delivery to it (frames go
 *      to the receive queue), reads what the VM had already written to its
 *      link, and sends a marker to every other rank behind those frames;
 *   3. it keeps receiving until it holds the marker of every other rank:
 *      by the fabric's FIFO promise the channels are then empty, and the
 *      receive queue holds exactly the frames that were in flight;
 *   4. it saves the VM (QEMU's migration stream to a file) and the receive
 *      queue, and reports (MPI_Igather) its status, files and timings;
 *   5. rank 0 writes the manifest last and moves `latest`, or on any
 *      failure aborts the epoch (its files are removed, the previous
 *      checkpoint is untouched), then broadcasts the decision; all ranks
 *      meet in a barrier and resume (QMP cont) together; the receive queue
 *      is delivered to each VM before any newer frame.
 *
 * Everything is non-blocking and driven by vccp_progress() from the rank's
 * event loop, so the fabric keeps moving while a checkpoint runs: QMP
 * commands are asynchronous (their replies are callbacks from qmp_pump()),
 * and file work (fsync, CRC32C of whole files, qemu-img, the receive queue
 * and the manifest) runs on the worker (common/worker.h).
 *
 * The fabric is seen only through struct vccp_fabric_ops, given by the
 * launcher: vccp-rank/ depends on common/ alone, never on the launcher.
 */
#ifndef VC_VCCP_H
#define VC_VCCP_H

#include <jansson.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

struct vccp;
struct qmp;
struct rq;
struct worker;

/* Called by the fabric for each marker that arrives, in channel order. */
typedef void (*vccp_marker_cb)(void *vctx, int from_rank, uint64_t epoch);

/* What vccp needs of the frame transport (ctx is the launcher's).  The
 * promise it relies on: the channel between two ranks is FIFO and reliable,
 * markers included (vcluster-launch/fabric.h). */
struct vccp_fabric_ops {
	/* true: frames arriving for the VM go to the receive queue; false:
	 * the queue is written to the VM first, then newer frames */
	void (*hold)(void *ctx, bool hold);
	/* true: read the (paused) VM's link to the end, past the bounds */
	void (*drain)(void *ctx, bool drain);
	/* the last read of the VM link found it empty (or the VM is gone) */
	bool (*link_empty)(void *ctx);
	/* bytes written to the VM link that QEMU has not read yet */
	int (*unread)(void *ctx);
	/* enqueue a marker to every other rank behind every frame taken from
	 * the VM so far; 0 or -errno */
	int (*send_marker)(void *ctx, uint64_t epoch);
	/* take the receive queue (the fabric goes on with an empty one) */
	struct rq *(*take_rq)(void *ctx);
	/* give it back: its frames go before any queued meanwhile */
	void (*put_rq)(void *ctx, struct rq *q);
	/* frames in the receive queue now */
	size_t (*rq_count)(void *ctx);
	void (*set_marker_cb)(void *ctx, vccp_marker_cb cb, void *vctx);
	/* One pass of the rank's other work (frames, QMP replies, worker
	 * completions), sleeping at most 1 ms; vccp_finish() calls it. */
	void (*progress)(void *ctx);
	/* The save point of epoch: every marker is in and the receive queue
	 * has just been taken to be written; the launcher reports its frame
	 * accounting there (VC-ACCT when=cut, vcluster-launch/facct.h).  May
	 * be NULL. */
	void (*cut)(void *ctx, uint64_t epoch);
};

/* Live checkpoints (issue 15; NULL in vccp_opts: the stop mode).  The
 * launcher saves RAM into files while the VM runs (vccp-rank/livesave.h);
 * vccp cuts when every rank's save is READY.  None of these may block. */
#define VCCP_LIVE_MAX_FILES 16
struct vccp_live_ops {
	/* Start saving RAM for epoch into files in the epoch's directory
	 * in each of the ndirs checkpoint directories (epoch_dirs[0] holds
	 * the manifest; file I of N of rank R goes to epoch_dirs[
	 * ckpt_ram_dir(R, N, I, ndirs)], manifest.h).  The callee creates the
	 * directories it uses and makes their entries durable.  0 or -errno
	 * with why. */
	int (*begin)(void *ctx, uint64_t epoch, const char *const *epoch_dirs, int ndirs,
		     char *why, size_t whylen);
	/* 0 running, 1 ready (the cut may come), 2 done (files durable),
	 * -errno failed with why. */
	int (*poll)(void *ctx, char *why, size_t whylen);
	/* The VM is paused: write the last pages and finish the files. */
	int (*finish)(void *ctx);
	/* After done: file names (in epoch_dir) and sizes; returns the count. */
	int (*files)(void *ctx, char names[][64], uint64_t *sizes, int max);
	/* The epoch is over: stop the dirty log, drop the save. */
	void (*end)(void *ctx);
};

struct vccp_opts {
	const char *dir;	/* checkpoint directory (shared storage) */
	const char *const *more_dirs;	/* further ones, live RAM files only
					 * (absolute paths; manifest.h) */
	int nmore;		/* 0 .. CKPT_MAX_DIRS - 1 */
	int keep;		/* newest complete checkpoints to keep; 0 = all */
	int interval_s;		/* rank 0 checkpoints this often; 0 = on request */
	json_t *config;		/* VM settings a restore needs (borrowed); only
				 * the keys of restore_config_keys (restore.h) */
	int bandwidth_mibs;	/* cap on the VM state save; 0 = none */
	const char *disk_device;	/* QEMU drive id of the VM's disk, or NULL */
	const char *disk_active;	/* its active overlay file now */
	void (*on_resume)(void *ctx);	/* after every cont (may be NULL) */
	void *ctx;
	const struct vccp_fabric_ops *fab;	/* the frame transport */
	void *fab_ctx;
	struct worker *worker;	/* runs the file work (borrowed) */
	const struct vccp_live_ops *live;	/* NULL: stop mode */
	void *live_ctx;
};

/* For tests only: VC_TEST_PAUSE_DELAY_MS=N with VC_TEST_PAUSE_RANK=R makes
 * rank R pause its VM N ms after the others, so that frames are certainly
 * in flight at the cut (its VM keeps sending while the others are paused).
 * The protocol is correct with any delay; this only widens the window.
 * VC_TEST_LATE_HOLD_MS=N with VC_TEST_LATE_HOLD_RANK=R makes rank R go on
 * writing frames to its VM's link for N ms after pausing it, so that frames
 * certainly sit inside QEMU at the cut (the case qemu-patches/ covers). */

/* Collective over comm.  NULL with errno (EINVAL: config holds a key a
 * restore would refuse). */
struct vccp *vccp_create(MPI_Comm comm, const struct vccp_opts *o);
void vccp_destroy(struct vccp *v);	/* NULL is fine */

/* The VM's QMP connection, NULL once it has gone. */
void vccp_set_qmp(struct vccp *v, struct qmp *q);

/* Rank 0: start a checkpoint now.  0, -EBUSY while one runs. */
int vccp_request(struct vccp *v, const char *reason);
/* The same, of a given kind: VCCP_MODE_DEFAULT (live when opts.live was
 * given), _STOP, or _LIVE (-EINVAL without opts.live). */
#define VCCP_MODE_DEFAULT	0
#define VCCP_MODE_STOP		1
#define VCCP_MODE_LIVE		2
int vccp_request_mode(struct vccp *v, const char *reason, int mode);

/* Rank 0: no more --checkpoint-interval epochs (a VM has powered off, so
 * the cluster can no longer be saved whole; an epoch would only abort).
 * Says so once when an interval was set. */
void vccp_interval_off(struct vccp *v, const char *why);

/* Drive the protocol.  *busy when anything moved.  0 or -errno for a
 * fault that breaks the protocol itself (MPI failure). */
int vccp_progress(struct vccp *v, bool *busy);

/* True while an epoch is under way (its VM is paused). */
bool vccp_active(const struct vccp *v);
/* Bytes of VM state this rank has written in the current epoch. */
uint64_t vccp_bytes_saved(const struct vccp *v);

/* Collective: no more checkpoints (rank 0 tells the others); returns when
 * every rank knows and this rank's file work is done, or -ETIMEDOUT. */
int vccp_finish(struct vccp *v, int timeout_ms);

/* The last epoch's outcome and timings, for vcluster-ctl status (a new
 * reference, or NULL before the first). */
json_t *vccp_last_json(const struct vccp *v);

#endif
