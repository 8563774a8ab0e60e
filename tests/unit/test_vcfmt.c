#include "test.h"
#include "vcfmt.h"
#include "vc_magic.h"

#include <errno.h>
#include <string.h>

int main(void)
{
	/* The CRC32C check value from the iSCSI RFC 3720 appendix. */
	CHECK_EQ(vcfmt_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Continuing over pieces equals one pass. */
	CHECK_EQ(vcfmt_crc32c(vcfmt_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
	/* 32 zero bytes (RFC 3720 B.4). */
	unsigned char zeros[32] = { 0 };
	CHECK_EQ(vcfmt_crc32c(0, zeros, 32), 0x8a9136aau);

	struct vcfmt_hdr h = { .magic = VC_MAGIC_RQ, .version = 1,
			       .body_len = 1234, .flags = 7 }, d;
	uint8_t buf[VCFMT_HDR_SIZE];
	char why[128];

	vcfmt_hdr_encode(&h, buf);
	CHECK_EQ(vcfmt_hdr_decode(buf, VC_MAGIC_RQ, 1, 4096, &d, why, sizeof(why)), 0);
	CHECK_EQ(d.body_len, 1234);
	CHECK_EQ(d.flags, 7);

	/* Wrong magic, flipped bit, newer version, oversized body: refused. */
	CHECK_EQ(vcfmt_hdr_decode(buf, VC_MAGIC_MANIFEST, 1, 4096, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "bad magic"));
	buf[9] ^= 0x10;
	CHECK_EQ(vcfmt_hdr_decode(buf, VC_MAGIC_RQ, 1, 1 << 30, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "CRC32C"));
	buf[9] ^= 0x10;
	h.version = 2;
	vcfmt_hdr_encode(&h, buf);
	CHECK_EQ(vcfmt_hdr_decode(buf, VC_MAGIC_RQ, 1, 4096, &d, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "version 2"));
	h.version = 1;
	vcfmt_hdr_encode(&h, buf);
	CHECK_EQ(vcfmt_hdr_decode(buf, VC_MAGIC_RQ, 1, 100, &d, why, sizeof(why)), -E2BIG);
	return 0;
}
