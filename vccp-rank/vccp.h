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
 * event loop, so the fabric keeps moving while a checkpoint runs.
 */
#ifndef VC_VCCP_H
#define VC_VCCP_H

#include <jansson.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

struct vccp;
struct fabric;
struct qmp;
struct rq;

struct vccp_opts {
	const char *dir;	/* checkpoint directory (shared storage) */
	int keep;		/* newest complete checkpoints to keep; 0 = all */
	int interval_s;		/* rank 0 checkpoints this often; 0 = on request */
	json_t *config;		/* VM settings a restore needs (borrowed) */
	int bandwidth_mibs;	/* cap on the VM state save; 0 = none */
	const char *disk_device;	/* QEMU drive id of the VM's disk, or NULL */
	const char *disk_active;	/* its active overlay file now */
	void (*on_resume)(void *ctx);	/* after every cont (may be NULL) */
	void *ctx;
};

/* For tests only: VC_TEST_PAUSE_DELAY_MS=N with VC_TEST_PAUSE_RANK=R makes
 * rank R pause its VM N ms after the others, so that frames are certainly
 * in flight at the cut (its VM keeps sending while the others are paused).
 * The protocol is correct with any delay; this only widens the window.
 * VC_TEST_LATE_HOLD_MS=N with VC_TEST_LATE_HOLD_RANK=R makes rank R go on
 * writing frames to its VM's link for N ms after pausing it, so that frames
 * certainly sit inside QEMU at the cut (the case qemu-patches/ covers). */

/* Collective over comm.  NULL with errno. */
struct vccp *vccp_create(MPI_Comm comm, struct fabric *f,
			 const struct vccp_opts *o);
void vccp_destroy(struct vccp *v);	/* NULL is fine */

/* The VM's QMP connection, NULL once it has gone. */
void vccp_set_qmp(struct vccp *v, struct qmp *q);

/* Rank 0: start a checkpoint now.  0, -EBUSY while one runs. */
int vccp_request(struct vccp *v, const char *reason);

/* Drive the protocol.  *busy when anything moved.  0 or -errno for a
 * fault that breaks the protocol itself (MPI failure). */
int vccp_progress(struct vccp *v, bool *busy);

/* True while an epoch is under way (its VM is paused). */
bool vccp_active(const struct vccp *v);
/* Bytes of VM state this rank has written in the current epoch. */
uint64_t vccp_bytes_saved(const struct vccp *v);

/* Collective: no more checkpoints (rank 0 tells the others); returns when
 * every rank knows, or -ETIMEDOUT. */
int vccp_finish(struct vccp *v, int timeout_ms);

/* The last epoch's outcome and timings, for vcluster-ctl status (a new
 * reference, or NULL before the first). */
json_t *vccp_last_json(const struct vccp *v);

/* Restore: feed rank's saved VM state into a QEMU started with
 * "-incoming defer -S" and wait for it to load (at most timeout_ms).
 * 0 or -errno with the reason in why. */
int vccp_load_vm(struct qmp *q, const char *epoch_dir, int rank,
		 int timeout_ms, char *why, size_t whylen);

/* Restore: read rank's receive queue of the epoch.  0 or -errno with the
 * reason (naming the file) in why. */
int vccp_load_rq(const char *epoch_dir, uint64_t epoch, int rank,
		 struct rq **out, char *why, size_t whylen);

#endif
