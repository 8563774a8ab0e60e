/* Control messages between ranks: every field survives the wire in a fixed
 * byte order; a damaged message is refused naming the bad field. */
#include "test.h"
#include "ctrlmsg.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <errno.h>
#include <string.h>

static void reseal(uint8_t *b)
{
	vcfmt_put_be32(b + 20, 0);
	vcfmt_put_be32(b + 20, vcfmt_crc32c(0, b, CTRLMSG_SIZE));
}

int main(void)
{
	struct ctrlmsg m = { .type = CTRL_ABORT, .code = CTRL_CODE_TIMEOUT, .rank = 3,
			     .status = -1, .signo = 15, .vm_state = 2,
			     .peer_queued = 7, .ckpt_bytes = 1ull << 40 }, d;
	uint8_t b[CTRLMSG_SIZE];
	char why[160];

	m.fab.frames_from_vm = 1;
	m.fab.bytes_to_vm = 0x0102030405060708ull;
	m.fab.frames_from_rq = 9;
	m.fab.deliver_queue_max = 11;
	m.fab.npeers = 4;
	snprintf(m.text, sizeof(m.text), "timeout: the run passed 5 s");
	ctrlmsg_encode(&m, b);
	CHECK_EQ(vcfmt_get_be32(b), VC_MAGIC_CTRLMSG);
	CHECK_EQ(vcfmt_get_be16(b + 14), CTRL_CODE_TIMEOUT);	/* big-endian, fixed place */
	CHECK_EQ(ctrlmsg_decode(b, sizeof(b), 3, &d, why, sizeof(why)), 0);
	CHECK_EQ(d.type, CTRL_ABORT);
	CHECK_EQ(d.code, CTRL_CODE_TIMEOUT);
	CHECK_EQ(d.rank, 3);
	CHECK_EQ(d.status, -1);
	CHECK_EQ(d.signo, 15);
	CHECK_EQ(d.vm_state, 2);
	CHECK_EQ(d.peer_queued, 7);
	CHECK(d.ckpt_bytes == 1ull << 40);
	CHECK(d.fab.bytes_to_vm == 0x0102030405060708ull);
	CHECK_EQ(d.fab.frames_from_rq, 9);
	CHECK_EQ(d.fab.deliver_queue_max, 11);
	CHECK_EQ(d.fab.npeers, 4);
	CHECK(!strcmp(d.text, m.text));

	/* each damage named */
	CHECK_EQ(ctrlmsg_decode(b, sizeof(b) - 1, 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "length"));
	CHECK_EQ(ctrlmsg_decode(b, sizeof(b), 2, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "sender rank 0x3, expected 0x2"));
	uint8_t c[CTRLMSG_SIZE];
	memcpy(c, b, sizeof(c));
	c[100] ^= 1;
	CHECK_EQ(ctrlmsg_decode(c, sizeof(c), 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "CRC32C"));
	memcpy(c, b, sizeof(c));
	vcfmt_put_be32(c, 0x12345678);
	CHECK_EQ(ctrlmsg_decode(c, sizeof(c), 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "magic 0x12345678"));
	memcpy(c, b, sizeof(c));
	vcfmt_put_be16(c + 4, 1);	/* before the migration types */
	CHECK_EQ(ctrlmsg_decode(c, sizeof(c), 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "version 0x1, expected 0x2"));
	memcpy(c, b, sizeof(c));
	vcfmt_put_be16(c + 12, 99);
	reseal(c);
	CHECK_EQ(ctrlmsg_decode(c, sizeof(c), 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "type 0x63"));
	memcpy(c, b, sizeof(c));
	vcfmt_put_be16(c + 14, 77);
	reseal(c);
	CHECK_EQ(ctrlmsg_decode(c, sizeof(c), 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "code 0x4d"));
	memcpy(c, b, sizeof(c));
	vcfmt_put_be16(c + CTRLMSG_HDR + 120, CTRLMSG_TEXT + 1);
	reseal(c);
	CHECK_EQ(ctrlmsg_decode(c, sizeof(c), 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "text length"));

	/* a migration message: its fields in the statistics' place */
	struct ctrlmsg g = { .type = CTRL_MIG_READY, .rank = 3 };
	g.mig = (struct ctrl_mig){ .id = 7, .node = 1, .from = 1, .to = 3, .streams = 4, .bandwidth_mib = 100, .ram_crc = 0xdeadbeef,
				   .port = 40123, .ram_bytes = 256ull << 20, .sent = 5,
				   .total = 1ull << 33 };
	for (int i = 0; i < CTRL_MIG_SECRET; i++)
		g.mig.secret[i] = (uint8_t)(0xa0 + i);
	snprintf(g.text, sizeof(g.text), "10.77.0.4");
	ctrlmsg_encode(&g, b);
	CHECK_EQ(vcfmt_get_be32(b + CTRLMSG_HDR + 20), 1);	/* node, big-endian */
	CHECK_EQ(vcfmt_get_be16(b + CTRLMSG_HDR + 34), 40123);
	CHECK_EQ(ctrlmsg_decode(b, sizeof(b), 3, &d, why, sizeof(why)), 0);
	CHECK_EQ(d.type, CTRL_MIG_READY);
	CHECK_EQ(d.mig.id, 7);
	CHECK_EQ(d.mig.node, 1);
	CHECK_EQ(d.mig.from, 1);
	CHECK_EQ(d.mig.to, 3);
	CHECK_EQ(d.mig.streams, 4);
	CHECK_EQ(d.mig.port, 40123);
	CHECK_EQ(d.mig.bandwidth_mib, 100);
	CHECK(d.mig.ram_crc == 0xdeadbeef);
	CHECK(d.mig.ram_bytes == 256ull << 20);
	CHECK_EQ(d.mig.sent, 5);
	CHECK(d.mig.total == 1ull << 33);
	CHECK(!memcmp(d.mig.secret, g.mig.secret, CTRL_MIG_SECRET));
	CHECK(!strcmp(d.text, "10.77.0.4"));
	CHECK_EQ(d.fab.frames_from_vm, 0);	/* no statistics in it */
	memcpy(c, b, sizeof(c));
	c[CTRLMSG_HDR + 70] ^= 1;			/* the secret is under the CRC */
	CHECK_EQ(ctrlmsg_decode(c, sizeof(c), 3, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "CRC32C"));
	return 0;
}
