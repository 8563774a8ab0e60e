/* The fabric's TCP hello and proof (ftcp.h): a hello and a proof made with
 * the job's secret check; each damaged field is refused by name; a proof
 * under another secret, for other nonces, for another receiver, or sent
 * back to its maker (reflection) does not check. */
#include "test.h"
#include "ftcp.h"
#include "vcfmt.h"

#include <errno.h>
#include <string.h>

static const uint8_t secret[32] = "0123456789abcdef0123456789abcde";
static const uint8_t other[32] = "0123456789abcdef0123456789abcdX";
static const uint8_t na[16] = "nonce of rank 2";	/* the sender's */
static const uint8_t nb[16] = "nonce of rank 0";	/* the receiver's */

static void refused(const uint8_t *m, int type, int to, const char *field, int err)
{
	uint8_t pn[16];
	char why[160] = "";
	int from = -1;

	memcpy(pn, na, 16);
	CHECK_EQ(ftcp_check_hello(m, type, to, 3, secret, nb, pn, &from, why, sizeof(why)), err);
	if (!strstr(why, field)) {
		fprintf(stderr, "refused with '%s', expected '%s'\n", why, field);
		exit(1);
	}
}

int main(void)
{
	uint8_t h[FTCP_HELLO_LEN], p[FTCP_HELLO_LEN], c[FTCP_HELLO_LEN], pn[16];
	char why[160];
	int from = -1;

	/* rank 2 says hello to rank 0 of a 3-rank job, then proves itself */
	ftcp_fill_hello(h, 1, 2, 0, 3, na, secret, NULL);
	CHECK_EQ(ftcp_check_hello(h, 1, 0, 3, secret, nb, pn, &from, why, sizeof(why)), 0);
	CHECK_EQ(from, 2);
	CHECK(memcmp(pn, na, 16) == 0);
	ftcp_fill_hello(p, 2, 2, 0, 3, na, secret, nb);
	CHECK_EQ(ftcp_check_hello(p, 2, 0, 3, secret, nb, pn, &from, why, sizeof(why)), 0);

	/* header fields (the CRC resealed so the field itself is reached) */
	memcpy(c, h, sizeof(c)); c[0] ^= 1; refused(c, 1, 0, "magic", -EBADMSG);
	memcpy(c, h, sizeof(c)); c[72] ^= 1; refused(c, 1, 0, "crc", -EBADMSG);
	memcpy(c, h, sizeof(c)); c[30] ^= 1; refused(c, 1, 0, "crc", -EBADMSG);
#define RESEAL(c) vcfmt_put_be32((c) + 72, vcfmt_crc32c(0, (c), 72))
	memcpy(c, h, sizeof(c)); vcfmt_put_be16(c + 4, 2); RESEAL(c); refused(c, 1, 0, "version", -EBADMSG);
	memcpy(c, h, sizeof(c)); vcfmt_put_be16(c + 6, 75); RESEAL(c); refused(c, 1, 0, "length", -EBADMSG);
	memcpy(c, h, sizeof(c)); vcfmt_put_be32(c + 20, 4); RESEAL(c); refused(c, 1, 0, "job size", -EBADMSG);
	memcpy(c, h, sizeof(c)); vcfmt_put_be32(c + 12, 3); RESEAL(c); refused(c, 1, 0, "sender rank", -EBADMSG);
	memcpy(c, h, sizeof(c)); vcfmt_put_be32(c + 12, 0); RESEAL(c); refused(c, 1, 0, "sender rank", -EBADMSG);
	refused(h, 1, 1, "receiver rank", -EBADMSG);
	refused(h, 2, 0, "type", -EBADMSG);

	/* proofs that must not check */
	ftcp_fill_hello(c, 2, 2, 0, 3, na, other, nb);		/* another job's secret */
	refused(c, 2, 0, "does not check", -EACCES);
	ftcp_fill_hello(c, 2, 2, 0, 3, na, secret, na);		/* for another challenge */
	refused(c, 2, 0, "does not check", -EACCES);
	memcpy(c, p, sizeof(c)); c[41] ^= 1; RESEAL(c);		/* a damaged MAC */
	refused(c, 2, 0, "does not check", -EACCES);
	memcpy(c, p, sizeof(c));				/* claims rank 1: the MAC covers it */
	vcfmt_put_be32(c + 12, 1); RESEAL(c);
	refused(c, 2, 0, "does not check", -EACCES);
	/* reflection: rank 0's own proof to rank 2, sent back to rank 0 as
	 * if from 2, with the ranks swapped to pass the field checks */
	ftcp_fill_hello(c, 2, 0, 2, 3, nb, secret, na);
	vcfmt_put_be32(c + 12, 2); vcfmt_put_be32(c + 16, 0); RESEAL(c);
	refused(c, 2, 0, "does not check", -EACCES);
	return 0;
}
