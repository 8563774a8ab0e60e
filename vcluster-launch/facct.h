/* facct: exact frame accounting of one rank's fabric, per peer.
 *
 * The fabric calls in here at every place a frame changes hands: read from
 * the VM, enqueued for a peer, received from a peer, written to the VM,
 * appended to the receive queue, discarded.  At every checkpoint cut and at
 * exit the rank prints its counters as machine-readable lines, which
 * tests/lib/vc-test.sh (check_accounting) balances across all ranks.
 *
 * THE LINES (one per peer, then one for the rank; all counts since this
 * run started, decimal):
 *
 *   VC-ACCT run=ID rank=R when=cut|exit epoch=E peer=P tx_frames=N tx_bytes=N
 *           rx_frames=N rx_bytes=N delivered=N queued=N discarded=N gone=N runt=N
 *           oversize=N restored=N unsent=N unsent_bytes=N [cut_tx_frames=N cut_tx_bytes=N
 *           cut_rx_frames=N cut_rx_bytes=N]
 *   VC-ACCT run=ID rank=R when=cut|exit epoch=E peers=K from_vm=N from_vm_bytes=N
 *           vm_runt=N vm_oversize=N local_delivered=N local_queued=N
 *           restored_epoch=E0
 *
 *   run        the run's id, the same on every rank (rank 0's start time in
 *              microseconds): the runs of one run directory (a restore
 *              appends to the same logs) are told apart by it
 *   tx_*       frames (and their bytes) this rank enqueued for P, behind
 *              which any later marker goes (the FIFO promise, fabric.h)
 *   rx_*       frames received from P (everything P's batches carried)
 *   delivered  of the frames from P, written to this rank's VM (directly or
 *              from the receive queue)
 *   queued     frames from P in the receive queue now
 *   discarded  frames from P accepted for the VM (in the receive queue)
 *              and dropped because the VM went before they were delivered
 *   gone       frames from P that arrived after the VM had gone (powered
 *              off or died), or whose write to its link found it gone
 *              (EPIPE), from the receive queue too: a switch port with
 *              nothing plugged in; unlike discarded, no running guest could
 *              have received them
 *   runt, oversize  frames from P refused: shorter than an Ethernet header
 *              (FACCT_RUNT_MAX + 1 bytes) or longer than FABRIC_FRAME_MAX
 *   restored   frames from P that the receive queue held when it was loaded
 *              by a restore (P sent them in the run that was checkpointed)
 *   unsent     frames enqueued for P that never left: the channels were shut
 *              down at exit with them still waiting (exit lines only non-0)
 *   cut_tx_*   (cut lines) tx_* when this rank queued its marker of epoch E
 *              for P
 *   cut_rx_*   (cut lines) rx_* when P's marker of epoch E arrived; "-"
 *              when it did not
 *   from_vm*   frames read from the VM and accepted
 *   vm_runt, vm_oversize  frames read from the VM and refused: never cut,
 *              never forwarded, only counted
 *   local_*    frames of the rank's own (its clock, fabric_inject), which are
 *              not peer frames: delivered to the VM, still queued
 *   restored_epoch  the epoch this run was restored from, 0 if none
 *
 * What balances, exactly, for every ordered pair of ranks (A, B):
 *   each line of B:   rx[A] + restored[A] = delivered[A] + queued[A]
 *                              + discarded[A] + gone[A] + runt[A] + oversize[A]
 *   cut E:            A.cut_tx[B] = B.cut_rx[A]  (frames and bytes)
 *   exit:             A.tx[B] - A.unsent[B] = B.rx[A]  (frames, and bytes
 *                                                    with unsent_bytes)
 *   a restore from E: B.restored[A] = B.queued[A] at B's cut line of E
 *
 * A cut line is printed at the save point, when the receive queue is taken
 * to be written (vccp's end_save): every marker has arrived, so queued is
 * what the checkpoint holds.  The exit line is printed after the channels
 * are shut down (fabric_quiesce): nothing is in flight then.
 *
 * Threading: the rank's event loop only, like the fabric.
 */
#ifndef VC_FACCT_H
#define VC_FACCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FACCT_RUNT_MAX	13	/* a frame of 13 bytes or fewer is a runt */

struct facct;

struct facct_peer {
	uint64_t tx_frames, tx_bytes;
	uint64_t rx_frames, rx_bytes;
	uint64_t delivered, queued, discarded, gone, runt, oversize, restored;
	uint64_t unsent, unsent_bytes;
	uint64_t cut_tx_frames, cut_tx_bytes, cut_rx_frames, cut_rx_bytes;
	uint64_t cut_tx_epoch, cut_rx_epoch;	/* 0 = no marker yet */
};

struct facct_rank {
	uint64_t from_vm, from_vm_bytes, vm_runt, vm_oversize;
	uint64_t local_delivered, local_queued;
	uint64_t restored_epoch;
};

enum facct_verdict { FACCT_OK = 0, FACCT_IS_RUNT, FACCT_IS_OVERSIZE };

/* For rank `rank` of `size`.  NULL with errno. */
struct facct *facct_create(int rank, int size);
void facct_destroy(struct facct *a);	/* NULL is fine */
/* The run's id (the same on every rank of one run; the lines' run=). */
void facct_set_run(struct facct *a, uint64_t run);

/* What a frame of len bytes is, given the largest the link takes. */
enum facct_verdict facct_classify(size_t len, size_t max);

/* A frame read from the VM: counts it and says whether it may be
 * forwarded (FACCT_OK) or is refused (runt, oversize). */
enum facct_verdict facct_from_vm(struct facct *a, size_t len, size_t max);
/* Enqueued for peer. */
void facct_tx(struct facct *a, int peer, size_t len);
/* Received from peer: counts it and says whether it may be delivered or
 * queued (FACCT_OK) or is refused (counted as runt or oversize). */
enum facct_verdict facct_rx(struct facct *a, int peer, size_t len, size_t max);
/* A frame from `from` (a peer, or this rank: local) appended to the
 * receive queue. */
void facct_queued(struct facct *a, int from);
/* A frame from `from` written to the VM; from_rq: it came off the queue. */
void facct_delivered(struct facct *a, int from, bool from_rq);
/* A frame from `from` dropped because the VM had gone: from_rq, it was in
 * the receive queue (discarded), else it arrived after the VM went (gone). */
void facct_discarded(struct facct *a, int from, bool from_rq);
/* A frame from `from` whose write to the VM link failed because the VM had
 * gone (EPIPE: QEMU exited before the rank noticed): gone, even off the
 * receive queue (from_rq; it leaves the queue), as no guest was there to
 * take it when it was written. */
void facct_gone(struct facct *a, int from, bool from_rq);
/* A frame from `from` found in the receive queue a restore loaded, and
 * the epoch it was restored from. */
void facct_restored(struct facct *a, int from);
void facct_set_restored_epoch(struct facct *a, uint64_t epoch);
/* A frame of len bytes enqueued for peer that will never be sent
 * (shutdown). */
void facct_unsent(struct facct *a, int peer, size_t len);
/* This rank queued its marker of epoch for every peer. */
void facct_marker_sent(struct facct *a, uint64_t epoch);
/* The marker of epoch from peer arrived. */
void facct_marker_rcvd(struct facct *a, int peer, uint64_t epoch);

void facct_get_peer(const struct facct *a, int peer, struct facct_peer *out);
void facct_get_rank(const struct facct *a, struct facct_rank *out);
int facct_size(const struct facct *a);

/* Format line k of the report (k = 0 .. size-1: the peers in rank order,
 * skipping this rank, then the rank line; size lines in all) into buf.
 * cut: a cut line of epoch (cut_* fields), else an exit line (epoch is the
 * last one seen, 0 if none).  Returns the length, or -ENOSPC when buf is
 * too small, -EINVAL for k out of range. */
int facct_format(const struct facct *a, bool cut, uint64_t epoch, int k, char *buf,
		 size_t len);

#endif
