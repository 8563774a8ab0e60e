/* facct: frames are classified (runt, oversize) at the edges; counters
 * follow a frame from one rank's tx to another's rx, delivery or receive
 * queue; the marker snapshots of a cut balance across two ranks; own
 * (clock) frames are not peer frames; restored and unsent frames are
 * counted; the VC-ACCT lines carry exactly those numbers. */
#include "test.h"
#include "facct.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#define MAX 9234

/* The value of key= in line, or -1 when absent; -2 for "-". */
static long long field(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(line, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	if (*p == '-')
		return -2;
	return strtoll(p, NULL, 10);
}

static void line_of(const struct facct *a, bool cut, uint64_t e, int k, char *buf, size_t len)
{
	int n = facct_format(a, cut, e, k, buf, len);

	CHECK(n > 0);
	CHECK_EQ(strlen(buf), n);
}

static void test_classify(void)
{
	CHECK_EQ(facct_classify(0, MAX), FACCT_IS_RUNT);
	CHECK_EQ(facct_classify(13, MAX), FACCT_IS_RUNT);
	CHECK_EQ(facct_classify(14, MAX), FACCT_OK);
	CHECK_EQ(facct_classify(MAX, MAX), FACCT_OK);
	CHECK_EQ(facct_classify(MAX + 1, MAX), FACCT_IS_OVERSIZE);
	CHECK_EQ(facct_classify(1500, 1514), FACCT_OK);
	CHECK_EQ(facct_classify(1515, 1514), FACCT_IS_OVERSIZE);
}

static void test_create(void)
{
	errno = 0;
	CHECK(facct_create(2, 2) == NULL);
	CHECK_EQ(errno, EINVAL);
	CHECK(facct_create(-1, 2) == NULL);
	CHECK(facct_create(0, 0) == NULL);
	facct_destroy(NULL);
	struct facct *a = facct_create(0, 1);	/* one rank: only its own line */
	char buf[512];
	CHECK(a);
	line_of(a, false, 0, 0, buf, sizeof(buf));
	CHECK(strstr(buf, "VC-ACCT run=0 rank=0 when=exit epoch=0 peers=0 ") == buf);
	CHECK_EQ(facct_format(a, false, 0, 1, buf, sizeof(buf)), -EINVAL);
	CHECK_EQ(facct_format(a, false, 0, -1, buf, sizeof(buf)), -EINVAL);
	facct_destroy(a);
}

/* From the VM: refused frames are counted, never forwarded. */
static void test_from_vm(void)
{
	struct facct *a = facct_create(1, 3);
	struct facct_rank r;

	CHECK_EQ(facct_from_vm(a, 60, MAX), FACCT_OK);
	CHECK_EQ(facct_from_vm(a, 1514, MAX), FACCT_OK);
	CHECK_EQ(facct_from_vm(a, 10, MAX), FACCT_IS_RUNT);
	CHECK_EQ(facct_from_vm(a, MAX + 1, MAX), FACCT_IS_OVERSIZE);
	CHECK_EQ(facct_from_vm(a, MAX + 1, MAX), FACCT_IS_OVERSIZE);
	facct_get_rank(a, &r);
	CHECK_EQ(r.from_vm, 2);
	CHECK_EQ(r.from_vm_bytes, 60 + 1514);
	CHECK_EQ(r.vm_runt, 1);
	CHECK_EQ(r.vm_oversize, 2);
	facct_destroy(a);
}

/* Two ranks, A = 0 and B = 1 of 3: A sends, B delivers some at once and
 * queues the rest behind a held VM; markers cut the stream; the lines
 * balance as check_accounting (tests/lib/vc-test.sh) balances them. */
static void test_pair_and_cut(void)
{
	struct facct *a = facct_create(0, 3), *b = facct_create(1, 3);
	struct facct_peer pa, pb;
	char la[512], lb[512];

	facct_set_run(a, 77);
	facct_set_run(b, 77);
	/* 5 frames before the cut: 3 delivered, 2 queued (held) */
	for (int i = 0; i < 5; i++) {
		size_t len = 60 + (size_t)i * 100;
		facct_tx(a, 1, len);
		CHECK_EQ(facct_rx(b, 0, len, MAX), FACCT_OK);
		if (i < 3) {
			facct_delivered(b, 0, false);
		} else {
			facct_queued(b, 0);
		}
	}
	facct_marker_sent(a, 4);
	/* a clock frame of B's own, queued: not a peer frame */
	facct_queued(b, 1);
	facct_marker_rcvd(b, 0, 4);
	/* B's cut line of epoch 4, at its save point */
	line_of(b, true, 4, 0, lb, sizeof(lb));
	CHECK(strstr(lb, "VC-ACCT run=77 rank=1 when=cut epoch=4 peer=0 ") == lb);
	CHECK_EQ(field(lb, "rx_frames"), 5);
	CHECK_EQ(field(lb, "delivered"), 3);
	CHECK_EQ(field(lb, "queued"), 2);
	CHECK_EQ(field(lb, "cut_rx_frames"), 5);
	CHECK_EQ(field(lb, "cut_rx_bytes"), 60 + 160 + 260 + 360 + 460);
	/* B has not had rank 2's marker: no snapshot, "-" */
	line_of(b, true, 4, 1, lb, sizeof(lb));
	CHECK(strstr(lb, " peer=2 "));
	CHECK_EQ(field(lb, "cut_rx_frames"), -2);
	CHECK_EQ(field(lb, "cut_tx_frames"), -2);	/* B sent no marker */
	line_of(a, true, 4, 0, la, sizeof(la));
	CHECK(strstr(la, " peer=1 "));
	line_of(b, true, 4, 0, lb, sizeof(lb));
	CHECK_EQ(field(la, "cut_tx_frames"), field(lb, "cut_rx_frames"));
	CHECK_EQ(field(la, "cut_tx_bytes"), field(lb, "cut_rx_bytes"));
	/* after the cut A sends 2 more (B's queue is not empty: they queue
	 * behind), then B delivers its queue, own frame included */
	facct_tx(a, 1, 100);
	facct_tx(a, 1, 200);
	facct_rx(b, 0, 100, MAX);
	facct_queued(b, 0);
	facct_rx(b, 0, 200, MAX);
	facct_queued(b, 0);
	for (int i = 0; i < 2; i++)
		facct_delivered(b, 0, true);
	facct_delivered(b, 1, true);	/* the clock frame */
	facct_delivered(b, 0, true);
	facct_delivered(b, 0, true);
	facct_get_peer(a, 1, &pa);
	facct_get_peer(b, 0, &pb);
	CHECK_EQ(pa.tx_frames, 7);
	CHECK_EQ(pb.rx_frames, 7);
	CHECK_EQ(pa.tx_bytes, pb.rx_bytes);
	CHECK_EQ(pb.delivered, 7);
	CHECK_EQ(pb.queued, 0);
	CHECK_EQ(pb.rx_frames + pb.restored,
		 pb.delivered + pb.queued + pb.discarded + pb.gone + pb.runt + pb.oversize);
	/* a frame that arrives after the VM went is gone, not discarded */
	facct_rx(b, 0, 70, MAX);
	facct_discarded(b, 0, false);
	facct_get_peer(b, 0, &pb);
	CHECK_EQ(pb.gone, 1);
	CHECK_EQ(pb.discarded, 0);
	CHECK_EQ(pb.rx_frames, 8);
	CHECK_EQ(pb.rx_frames + pb.restored,
		 pb.delivered + pb.queued + pb.discarded + pb.gone + pb.runt + pb.oversize);
	struct facct_rank rb;
	facct_get_rank(b, &rb);
	CHECK_EQ(rb.local_delivered, 1);
	CHECK_EQ(rb.local_queued, 0);
	/* the exit line: no cut fields, the last epoch seen */
	line_of(b, false, 0, 0, lb, sizeof(lb));
	CHECK(strstr(lb, "when=exit epoch=4 peer=0 "));
	CHECK_EQ(field(lb, "cut_rx_frames"), -1);
	CHECK_EQ(field(lb, "delivered"), 7);
	CHECK_EQ(field(lb, "gone"), 1);
	line_of(b, false, 0, 2, lb, sizeof(lb));
	CHECK(strstr(lb, " peers=2 "));
	CHECK_EQ(field(lb, "local_delivered"), 1);
	/* a peer's runt and oversize frames are received, refused, counted */
	CHECK_EQ(facct_rx(b, 2, 5, MAX), FACCT_IS_RUNT);
	CHECK_EQ(facct_rx(b, 2, MAX + 1, MAX), FACCT_IS_OVERSIZE);
	facct_get_peer(b, 2, &pb);
	CHECK_EQ(pb.rx_frames, 2);
	CHECK_EQ(pb.runt, 1);
	CHECK_EQ(pb.oversize, 1);
	CHECK_EQ(pb.delivered, 0);
	/* own rank and out of range are not peers */
	facct_tx(a, 0, 60);
	facct_tx(a, 9, 60);
	facct_get_peer(a, 0, &pa);
	CHECK_EQ(pa.tx_frames, 0);
	facct_destroy(a);
	facct_destroy(b);
}

/* A restore: the loaded queue is counted by sender, and delivered; frames
 * discarded from the queue (the VM went) leave it; unsent frames at
 * shutdown are counted with their bytes; a small buffer is refused. */
/* A write that finds the VM gone counts the frame as gone, off the
 * receive queue or not; a local (clock) frame only leaves the queue. */
static void test_gone_on_write(void)
{
	struct facct *b = facct_create(1, 2);
	struct facct_peer p;
	struct facct_rank r;

	facct_restored(b, 0);
	facct_restored(b, 1);
	facct_rx(b, 0, 60, 1514);
	facct_gone(b, 0, true);
	facct_gone(b, 0, false);
	facct_gone(b, 1, true);
	facct_get_peer(b, 0, &p);
	facct_get_rank(b, &r);
	CHECK_EQ(p.queued, 0);
	CHECK_EQ(p.gone, 2);
	CHECK_EQ(p.discarded, 0);
	CHECK_EQ(r.local_queued, 0);
	CHECK_EQ(p.rx_frames + p.restored, p.delivered + p.queued + p.discarded + p.gone);
	facct_destroy(b);
}

static void test_restore_unsent(void)
{
	struct facct *b = facct_create(1, 2);
	struct facct_peer p;
	char buf[512];

	facct_set_restored_epoch(b, 3);
	facct_restored(b, 0);
	facct_restored(b, 0);
	facct_restored(b, 0);
	facct_restored(b, 1);	/* a clock frame saved with the queue */
	facct_get_peer(b, 0, &p);
	CHECK_EQ(p.restored, 3);
	CHECK_EQ(p.queued, 3);
	facct_delivered(b, 0, true);
	facct_discarded(b, 0, true);
	facct_discarded(b, 0, true);
	facct_unsent(b, 0, 60);
	facct_unsent(b, 0, 1514);
	facct_get_peer(b, 0, &p);
	CHECK_EQ(p.queued, 0);
	CHECK_EQ(p.delivered, 1);
	CHECK_EQ(p.discarded, 2);
	CHECK_EQ(p.gone, 0);
	CHECK_EQ(p.rx_frames + p.restored, p.delivered + p.queued + p.discarded);
	CHECK_EQ(p.unsent, 2);
	CHECK_EQ(p.unsent_bytes, 60 + 1514);
	line_of(b, false, 0, 0, buf, sizeof(buf));
	CHECK_EQ(field(buf, "restored"), 3);
	CHECK_EQ(field(buf, "discarded"), 2);
	CHECK_EQ(field(buf, "unsent_bytes"), 1574);
	line_of(b, false, 0, 1, buf, sizeof(buf));
	CHECK_EQ(field(buf, "restored_epoch"), 3);
	CHECK_EQ(field(buf, "local_queued"), 1);
	CHECK_EQ(facct_format(b, true, 3, 0, buf, 40), -ENOSPC);
	CHECK_EQ(facct_format(b, false, 0, 1, buf, 40), -ENOSPC);
	/* the cut fields need room too */
	int n = facct_format(b, false, 0, 0, buf, sizeof(buf));
	CHECK(n > 0);
	CHECK_EQ(facct_format(b, true, 3, 0, buf, (size_t)n + 8), -ENOSPC);
	facct_destroy(b);
}

int main(void)
{
	test_classify();
	test_create();
	test_from_vm();
	test_pair_and_cut();
	test_restore_unsent();
	test_gone_on_write();
	printf("test_facct: ok\n");
	return 0;
}
