/* fuzz_ctrlmsg: the reader of the launcher's inter-rank control messages
 * (vcluster-launch/ctrlmsg.c).
 *
 * Input: one message as MPI would deliver it.  It is decoded as it is
 * (from rank 0), then with its sender rank taken from the input and its
 * CRC recomputed, so that mutations reach the checks behind the CRC.
 * Properties: a refusal is -EBADMSG with a reason; an accepted message has
 * a known type and code and a text no longer than its field, and encoding
 * it again and decoding that gives the same message.
 */
#include "fuzz.h"
#include "ctrlmsg.h"

static void same_message(const struct ctrlmsg *a, const struct ctrlmsg *b)
{
	FUZZ_ASSERT(a->type == b->type && a->code == b->code && a->rank == b->rank);
	FUZZ_ASSERT(a->status == b->status && a->signo == b->signo &&
		    a->vm_state == b->vm_state);
	FUZZ_ASSERT(a->fab.frames_from_vm == b->fab.frames_from_vm &&
		    a->fab.frames_from_rq == b->fab.frames_from_rq &&
		    a->fab.npeers == b->fab.npeers);
	FUZZ_ASSERT(a->peer_queued == b->peer_queued && a->ckpt_bytes == b->ckpt_bytes);
	FUZZ_ASSERT(!strcmp(a->text, b->text));
}

static void decode_one(const uint8_t *in, size_t len, int from)
{
	struct ctrlmsg m, again;
	uint8_t out[CTRLMSG_SIZE];
	char why[160] = "";
	int r = ctrlmsg_decode(in, len, from, &m, why, sizeof(why));

	fuzz_note("  ctrlmsg from %d: %s", from, r ? why : "accepted");
	if (r) {
		FUZZ_ASSERT(r == -EBADMSG && why[0]);
		return;
	}
	FUZZ_ASSERT(m.type >= 1 && m.type <= CTRL_TYPE_MAX);
	FUZZ_ASSERT(m.code <= CTRL_CODE_MAX);
	FUZZ_ASSERT(strlen(m.text) <= CTRLMSG_TEXT);
	ctrlmsg_encode(&m, out);
	FUZZ_ASSERT(ctrlmsg_decode(out, sizeof(out), from, &again, why, sizeof(why)) == 0);
	same_message(&m, &again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_one(data, size, 0);
	if (size == CTRLMSG_SIZE) {
		uint8_t fixed[CTRLMSG_SIZE];
		memcpy(fixed, data, size);
		vcfmt_put_be32(fixed + 20, 0);
		vcfmt_put_be32(fixed + 20, vcfmt_crc32c(0, fixed, size));
		decode_one(fixed, size, (int32_t)vcfmt_get_be32(fixed + 16));
	}
	return 0;
}
