#include "ctrlmsg.h"

#include "vc_magic.h"
#include "vcfmt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Static_assert(CTRLMSG_SIZE == 348, "control message layout changed: bump the version");

/* The migration fields, in the statistics' place (bytes 16..119). */
static void mig_encode(const struct ctrl_mig *g, uint8_t *b)
{
	vcfmt_put_be32(b + 16, g->id);
	vcfmt_put_be32(b + 20, (uint32_t)g->node);
	vcfmt_put_be32(b + 24, (uint32_t)g->from);
	vcfmt_put_be32(b + 28, (uint32_t)g->to);
	vcfmt_put_be16(b + 32, g->streams);
	vcfmt_put_be16(b + 34, g->port);
	vcfmt_put_be32(b + 36, g->bandwidth_mib);
	vcfmt_put_be64(b + 40, g->ram_bytes);
	vcfmt_put_be64(b + 48, g->sent);
	vcfmt_put_be64(b + 56, g->total);
	memcpy(b + 64, g->secret, CTRL_MIG_SECRET);
	vcfmt_put_be32(b + 96, g->ram_crc);
}

static void mig_decode(const uint8_t *b, struct ctrl_mig *g)
{
	g->id = vcfmt_get_be32(b + 16);
	g->node = (int32_t)vcfmt_get_be32(b + 20);
	g->from = (int32_t)vcfmt_get_be32(b + 24);
	g->to = (int32_t)vcfmt_get_be32(b + 28);
	g->streams = vcfmt_get_be16(b + 32);
	g->port = vcfmt_get_be16(b + 34);
	g->bandwidth_mib = vcfmt_get_be32(b + 36);
	g->ram_bytes = vcfmt_get_be64(b + 40);
	g->sent = vcfmt_get_be64(b + 48);
	g->total = vcfmt_get_be64(b + 56);
	memcpy(g->secret, b + 64, CTRL_MIG_SECRET);
	g->ram_crc = vcfmt_get_be32(b + 96);
}

void ctrlmsg_encode(const struct ctrlmsg *m, uint8_t *out)
{
	uint8_t *b = out + CTRLMSG_HDR;
	size_t tl = strnlen(m->text, CTRLMSG_TEXT);
	const uint64_t c64[9] = {
		m->fab.frames_from_vm, m->fab.bytes_from_vm, m->fab.frames_to_vm,
		m->fab.bytes_to_vm, m->fab.frames_flooded, m->fab.frames_discarded,
		m->fab.backpressure_stalls, m->fab.spill_reads, m->fab.frames_from_rq,
	};

	memset(out, 0, CTRLMSG_SIZE);
	vcfmt_put_be32(out, VC_MAGIC_CTRLMSG);
	vcfmt_put_be16(out + 4, CTRLMSG_VERSION);
	vcfmt_put_be16(out + 6, CTRLMSG_HDR);
	vcfmt_put_be32(out + 8, CTRLMSG_BODY);
	vcfmt_put_be16(out + 12, (uint16_t)m->type);
	vcfmt_put_be16(out + 14, (uint16_t)m->code);
	vcfmt_put_be32(out + 16, (uint32_t)m->rank);
	vcfmt_put_be32(b, (uint32_t)m->status);
	vcfmt_put_be32(b + 4, (uint32_t)m->signo);
	vcfmt_put_be32(b + 8, (uint32_t)m->vm_state);
	if (ctrl_is_mig(m->type)) {
		mig_encode(&m->mig, b);
	} else {
		for (int i = 0; i < 9; i++)
			vcfmt_put_be64(b + 16 + 8 * i, c64[i]);
		vcfmt_put_be32(b + 88, m->fab.rq_frames);
		vcfmt_put_be32(b + 92, m->fab.deliver_queue_bytes);
		vcfmt_put_be32(b + 96, m->fab.deliver_queue_max);
		vcfmt_put_be32(b + 100, (uint32_t)m->fab.npeers);
		vcfmt_put_be64(b + 104, m->peer_queued);
		vcfmt_put_be64(b + 112, m->ckpt_bytes);
	}
	vcfmt_put_be16(b + 120, (uint16_t)tl);
	memcpy(b + 124, m->text, tl);
	vcfmt_put_be32(out + 20, vcfmt_crc32c(0, out, CTRLMSG_SIZE));
}

int ctrlmsg_decode(const uint8_t *in, size_t len, int from, struct ctrlmsg *m,
		   char *why, size_t whylen)
{
	const uint8_t *b = in + CTRLMSG_HDR;
	const char *what = NULL;
	unsigned long got = 0, want = 0;

	if (len != CTRLMSG_SIZE) {
		what = "length"; got = len; want = CTRLMSG_SIZE;
	} else if (vcfmt_get_be32(in) != VC_MAGIC_CTRLMSG) {
		what = "magic"; got = vcfmt_get_be32(in); want = VC_MAGIC_CTRLMSG;
	} else if (vcfmt_get_be16(in + 4) != CTRLMSG_VERSION) {
		what = "version"; got = vcfmt_get_be16(in + 4); want = CTRLMSG_VERSION;
	} else if (vcfmt_get_be16(in + 6) != CTRLMSG_HDR) {
		what = "header length"; got = vcfmt_get_be16(in + 6); want = CTRLMSG_HDR;
	} else if (vcfmt_get_be32(in + 8) != CTRLMSG_BODY) {
		what = "body length"; got = vcfmt_get_be32(in + 8); want = CTRLMSG_BODY;
	} else {
		uint8_t copy[CTRLMSG_SIZE];
		memcpy(copy, in, CTRLMSG_SIZE);
		vcfmt_put_be32(copy + 20, 0);
		uint32_t calc = vcfmt_crc32c(0, copy, CTRLMSG_SIZE);
		if (vcfmt_get_be32(in + 20) != calc) {
			what = "CRC32C"; got = vcfmt_get_be32(in + 20); want = calc;
		} else if ((int32_t)vcfmt_get_be32(in + 16) != from) {
			what = "sender rank"; got = vcfmt_get_be32(in + 16); want = (unsigned)from;
		} else if (vcfmt_get_be16(in + 12) < 1 || vcfmt_get_be16(in + 12) > CTRL_TYPE_MAX) {
			what = "type"; got = vcfmt_get_be16(in + 12); want = CTRL_TYPE_MAX;
		} else if (vcfmt_get_be16(in + 14) > CTRL_CODE_MAX) {
			what = "code"; got = vcfmt_get_be16(in + 14); want = CTRL_CODE_MAX;
		} else if (vcfmt_get_be16(b + 120) > CTRLMSG_TEXT) {
			what = "text length"; got = vcfmt_get_be16(b + 120); want = CTRLMSG_TEXT;
		}
	}
	if (what) {
		snprintf(why, whylen, "%s 0x%lx, expected %s0x%lx", what, got,
			 !strcmp(what, "type") || !strcmp(what, "code") ||
			 !strcmp(what, "text length") ? "at most " : "", want);
		return -EBADMSG;
	}
	memset(m, 0, sizeof(*m));
	m->type = (enum ctrl_type)vcfmt_get_be16(in + 12);
	m->code = (enum ctrl_code)vcfmt_get_be16(in + 14);
	m->rank = (int32_t)vcfmt_get_be32(in + 16);
	m->status = (int32_t)vcfmt_get_be32(b);
	m->signo = (int32_t)vcfmt_get_be32(b + 4);
	m->vm_state = (int32_t)vcfmt_get_be32(b + 8);
	size_t tl = vcfmt_get_be16(b + 120);
	memcpy(m->text, b + 124, tl);
	m->text[tl] = '\0';
	if (ctrl_is_mig(m->type)) {
		mig_decode(b, &m->mig);
		return 0;
	}
	uint64_t *c64[9] = {
		&m->fab.frames_from_vm, &m->fab.bytes_from_vm, &m->fab.frames_to_vm,
		&m->fab.bytes_to_vm, &m->fab.frames_flooded, &m->fab.frames_discarded,
		&m->fab.backpressure_stalls, &m->fab.spill_reads, &m->fab.frames_from_rq,
	};
	for (int i = 0; i < 9; i++)
		*c64[i] = vcfmt_get_be64(b + 16 + 8 * i);
	m->fab.rq_frames = vcfmt_get_be32(b + 88);
	m->fab.deliver_queue_bytes = vcfmt_get_be32(b + 92);
	m->fab.deliver_queue_max = vcfmt_get_be32(b + 96);
	m->fab.npeers = (int32_t)vcfmt_get_be32(b + 100);
	m->peer_queued = vcfmt_get_be64(b + 104);
	m->ckpt_bytes = vcfmt_get_be64(b + 112);
	return 0;
}
