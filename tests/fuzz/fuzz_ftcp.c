/* fuzz_ftcp: the check of a TCP fabric hello or proof from a stranger
 * (vcluster-launch/ftcp.c, the first bytes any connection to a rank's
 * fabric port sends; anyone on the network can send them).
 *
 * Input: the first FTCP_HELLO_LEN bytes a connection sends (shorter inputs
 * are padded with zeros, as the reader waits for exactly that many).  Both
 * a hello and a proof are checked, as they are and with the CRC made
 * right.  The job's secret and this rank's nonce are fixed here; a stranger
 * does not know them.
 * Properties: a refusal is -EBADMSG or -EACCES with a reason; an accepted
 * message names a sender rank of the job other than ours; an accepted
 * proof is exactly the one the secret makes (no forgery passes), and the
 * fabric's own hello and proof are accepted.
 */
#include "fuzz.h"
#include "ftcp.h"

#define ME	1
#define SIZE	4
enum { HELLO = 1, PROOF = 2 };

static const uint8_t secret[32] = "vcluster fuzz job secret 0123456";
static const uint8_t my_nonce[16] = "my nonce 0123456";

static void check(const uint8_t *m, int type)
{
	uint8_t peer_nonce[16] = "peer nonce 01234", want[FTCP_HELLO_LEN];
	char why[160] = "";
	int from = -1;
	int r = ftcp_check_hello(m, type, ME, SIZE, secret, my_nonce, peer_nonce, &from,
				 why, sizeof(why));

	if (r) {
		FUZZ_ASSERT((r == -EBADMSG || r == -EACCES) && why[0]);
		fuzz_note("  ftcp: %s refused: %s", type == HELLO ? "hello" : "proof", why);
		return;
	}
	FUZZ_ASSERT(from >= 0 && from < SIZE && from != ME);
	if (type == PROOF) {
		ftcp_fill_hello(want, PROOF, from, ME, SIZE, (const uint8_t *)"peer nonce 01234",
				secret, my_nonce);
		FUZZ_ASSERT(memcmp(want + 40, m + 40, 32) == 0);
	}
	fuzz_note("  ftcp: %s of rank %d accepted", type == HELLO ? "hello" : "proof", from);
}

/* The fabric's own messages pass: the oracle above is not vacuous. */
static void own_messages_pass(void)
{
	uint8_t m[FTCP_HELLO_LEN], peer_nonce[16];
	char why[160];
	int from;

	ftcp_fill_hello(m, HELLO, 2, ME, SIZE, (const uint8_t *)"peer nonce 01234", secret, NULL);
	FUZZ_ASSERT(ftcp_check_hello(m, HELLO, ME, SIZE, secret, my_nonce, peer_nonce, &from,
				     why, sizeof(why)) == 0 && from == 2);
	ftcp_fill_hello(m, PROOF, 2, ME, SIZE, peer_nonce, secret, my_nonce);
	FUZZ_ASSERT(ftcp_check_hello(m, PROOF, ME, SIZE, secret, my_nonce, peer_nonce, &from,
				     why, sizeof(why)) == 0 && from == 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *m = calloc(1, FTCP_HELLO_LEN);

	FUZZ_ASSERT(m);
	memcpy(m, data, size < FTCP_HELLO_LEN ? size : FTCP_HELLO_LEN);
	own_messages_pass();
	check(m, HELLO);
	check(m, PROOF);
	vcfmt_put_be32(m + 72, vcfmt_crc32c(0, m, 72));
	check(m, HELLO);
	check(m, PROOF);
	free(m);
	return 0;
}
