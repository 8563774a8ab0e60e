/* fuzz_mstream_addr: mstream's address lists (mstream_addrs_parse and
 * mstream_addrs_load, tlm-migrate/mstream.c), as given to --listen and
 * --connect or in an address file.
 *
 * Input: the text.  Properties: an accepted list has at least one entry,
 * each host a NUL-terminated non-empty name; a refusal frees nothing the
 * caller must free and says why.
 */
#include "fuzz.h"
#include "mstream.h"

static void check(int r, struct mstream_addr *a, int n, const char *err)
{
	if (r < 0) {
		FUZZ_ASSERT(r == -EINVAL || r == -ENOMEM || r == -EIO);
		FUZZ_ASSERT(!a && err[0]);
		return;
	}
	FUZZ_ASSERT(r == 0 && a && n >= 1);
	for (int i = 0; i < n; i++) {
		size_t hl = strnlen(a[i].host, sizeof(a[i].host));
		FUZZ_ASSERT(hl > 0 && hl < sizeof(a[i].host));
	}
	free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mstream_addr *a = NULL;
	char err[512], path[128];
	int n = 0, r;
	char *text = fuzz_str(data, size);

	err[0] = 0;
	r = mstream_addrs_parse(text, &a, &n, err, sizeof(err));
	fuzz_note("  addrs: %s", r ? err : "accepted");
	check(r, a, n, err);
	free(text);

	snprintf(path, sizeof(path), "%s/addrs", fuzz_dir());
	fuzz_write_file(path, data, size);
	a = NULL;
	n = 0;
	err[0] = 0;
	r = mstream_addrs_load(path, &a, &n, err, sizeof(err));
	check(r, a, n, err);
	return 0;
}
