#include "facct.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

struct facct {
	int rank, size;
	struct facct_rank r;
	struct facct_peer *p;	/* [size]; p[rank] is unused */
	uint64_t last_epoch;	/* the newest marker epoch seen */
	uint64_t run;
};

struct facct *facct_create(int rank, int size)
{
	struct facct *a;

	if (size < 1 || rank < 0 || rank >= size) {
		errno = EINVAL;
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->p = calloc((size_t)size, sizeof(*a->p));
	if (!a->p) {
		free(a);
		errno = ENOMEM;
		return NULL;
	}
	a->rank = rank;
	a->size = size;
	return a;
}

void facct_destroy(struct facct *a)
{
	if (!a)
		return;
	free(a->p);
	free(a);
}

void facct_set_run(struct facct *a, uint64_t run)
{
	a->run = run;
}

static struct facct_peer *peer_of(struct facct *a, int peer)
{
	if (peer < 0 || peer >= a->size || peer == a->rank)
		return NULL;
	return &a->p[peer];
}

enum facct_verdict facct_classify(size_t len, size_t max)
{
	if (len <= FACCT_RUNT_MAX)
		return FACCT_IS_RUNT;
	if (len > max)
		return FACCT_IS_OVERSIZE;
	return FACCT_OK;
}

enum facct_verdict facct_from_vm(struct facct *a, size_t len, size_t max)
{
	enum facct_verdict v = facct_classify(len, max);

	if (v == FACCT_IS_RUNT) {
		a->r.vm_runt++;
	} else if (v == FACCT_IS_OVERSIZE) {
		a->r.vm_oversize++;
	} else {
		a->r.from_vm++;
		a->r.from_vm_bytes += len;
	}
	return v;
}

void facct_tx(struct facct *a, int peer, size_t len)
{
	struct facct_peer *p = peer_of(a, peer);

	if (!p)
		return;
	p->tx_frames++;
	p->tx_bytes += len;
}

enum facct_verdict facct_rx(struct facct *a, int peer, size_t len, size_t max)
{
	struct facct_peer *p = peer_of(a, peer);
	enum facct_verdict v = facct_classify(len, max);

	if (!p)
		return v;
	p->rx_frames++;
	p->rx_bytes += len;
	if (v == FACCT_IS_RUNT)
		p->runt++;
	else if (v == FACCT_IS_OVERSIZE)
		p->oversize++;
	return v;
}

void facct_queued(struct facct *a, int from)
{
	struct facct_peer *p = peer_of(a, from);

	if (p)
		p->queued++;
	else if (from == a->rank)
		a->r.local_queued++;
}

/* A frame left the receive queue. */
static void dequeued(struct facct *a, int from)
{
	struct facct_peer *p = peer_of(a, from);

	if (p && p->queued)
		p->queued--;
	else if (!p && from == a->rank && a->r.local_queued)
		a->r.local_queued--;
}

void facct_delivered(struct facct *a, int from, bool from_rq)
{
	struct facct_peer *p = peer_of(a, from);

	if (from_rq)
		dequeued(a, from);
	if (p)
		p->delivered++;
	else if (from == a->rank)
		a->r.local_delivered++;
}

void facct_discarded(struct facct *a, int from, bool from_rq)
{
	struct facct_peer *p = peer_of(a, from);

	if (from_rq)
		dequeued(a, from);
	if (p && from_rq)
		p->discarded++;
	else if (p)
		p->gone++;
}

void facct_gone(struct facct *a, int from, bool from_rq)
{
	struct facct_peer *p = peer_of(a, from);

	if (from_rq)
		dequeued(a, from);
	if (p)
		p->gone++;
}

void facct_set_restored_epoch(struct facct *a, uint64_t epoch)
{
	a->r.restored_epoch = epoch;
}

void facct_restored(struct facct *a, int from)
{
	struct facct_peer *p = peer_of(a, from);

	if (p)
		p->restored++;
	facct_queued(a, from);
}

void facct_unsent(struct facct *a, int peer, size_t len)
{
	struct facct_peer *p = peer_of(a, peer);

	if (!p)
		return;
	p->unsent++;
	p->unsent_bytes += len;
}

void facct_marker_sent(struct facct *a, uint64_t epoch)
{
	for (int i = 0; i < a->size; i++) {
		struct facct_peer *p = &a->p[i];

		if (i == a->rank)
			continue;
		p->cut_tx_frames = p->tx_frames;
		p->cut_tx_bytes = p->tx_bytes;
		p->cut_tx_epoch = epoch;
	}
	if (epoch > a->last_epoch)
		a->last_epoch = epoch;
}

void facct_marker_rcvd(struct facct *a, int peer, uint64_t epoch)
{
	struct facct_peer *p = peer_of(a, peer);

	if (!p)
		return;
	p->cut_rx_frames = p->rx_frames;
	p->cut_rx_bytes = p->rx_bytes;
	p->cut_rx_epoch = epoch;
	if (epoch > a->last_epoch)
		a->last_epoch = epoch;
}

void facct_get_peer(const struct facct *a, int peer, struct facct_peer *out)
{
	if (peer < 0 || peer >= a->size || peer == a->rank) {
		*out = (struct facct_peer){ 0 };
		return;
	}
	*out = a->p[peer];
}

void facct_get_rank(const struct facct *a, struct facct_rank *out)
{
	*out = a->r;
}

int facct_size(const struct facct *a)
{
	return a->size;
}

/* "-" unless the snapshot belongs to epoch. */
static void snap(char *out, size_t len, uint64_t have_epoch, uint64_t epoch, uint64_t v)
{
	if (have_epoch == epoch && epoch)
		snprintf(out, len, "%" PRIu64, v);
	else
		snprintf(out, len, "-");
}

int facct_format(const struct facct *a, bool cut, uint64_t epoch, int k, char *buf,
		 size_t len)
{
	const char *when = cut ? "cut" : "exit";
	int n;

	if (k < 0 || k >= a->size)
		return -EINVAL;
	if (!cut)
		epoch = a->last_epoch;
	if (k == a->size - 1) {
		const struct facct_rank *r = &a->r;

		n = snprintf(buf, len,
			     "VC-ACCT run=%" PRIu64 " rank=%d when=%s epoch=%" PRIu64 " peers=%d from_vm=%" PRIu64
			     " from_vm_bytes=%" PRIu64 " vm_runt=%" PRIu64 " vm_oversize=%" PRIu64
			     " local_delivered=%" PRIu64 " local_queued=%" PRIu64
			     " restored_epoch=%" PRIu64,
			     a->run, a->rank, when, epoch, a->size - 1, r->from_vm, r->from_vm_bytes,
			     r->vm_runt, r->vm_oversize, r->local_delivered, r->local_queued,
			     r->restored_epoch);
		return n < 0 || (size_t)n >= len ? -ENOSPC : n;
	}
	int peer = k < a->rank ? k : k + 1;
	const struct facct_peer *p = &a->p[peer];

	n = snprintf(buf, len,
		     "VC-ACCT run=%" PRIu64 " rank=%d when=%s epoch=%" PRIu64 " peer=%d tx_frames=%" PRIu64
		     " tx_bytes=%" PRIu64 " rx_frames=%" PRIu64 " rx_bytes=%" PRIu64
		     " delivered=%" PRIu64 " queued=%" PRIu64 " discarded=%" PRIu64
		     " gone=%" PRIu64 " runt=%" PRIu64 " oversize=%" PRIu64 " restored=%" PRIu64
		     " unsent=%" PRIu64 " unsent_bytes=%" PRIu64,
		     a->run, a->rank, when, epoch, peer, p->tx_frames, p->tx_bytes, p->rx_frames,
		     p->rx_bytes, p->delivered, p->queued, p->discarded, p->gone, p->runt, p->oversize,
		     p->restored, p->unsent, p->unsent_bytes);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	if (cut) {
		char tf[24], tb[24], rf[24], rb[24];
		int m;

		snap(tf, sizeof(tf), p->cut_tx_epoch, epoch, p->cut_tx_frames);
		snap(tb, sizeof(tb), p->cut_tx_epoch, epoch, p->cut_tx_bytes);
		snap(rf, sizeof(rf), p->cut_rx_epoch, epoch, p->cut_rx_frames);
		snap(rb, sizeof(rb), p->cut_rx_epoch, epoch, p->cut_rx_bytes);
		m = snprintf(buf + n, len - (size_t)n,
			     " cut_tx_frames=%s cut_tx_bytes=%s cut_rx_frames=%s cut_rx_bytes=%s",
			     tf, tb, rf, rb);
		if (m < 0 || (size_t)m >= len - (size_t)n)
			return -ENOSPC;
		n += m;
	}
	return n;
}
