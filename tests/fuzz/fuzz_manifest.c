/* fuzz_manifest: the checkpoint manifest reader (vccp-rank/manifest.c).
 *
 * Input: a manifest file (manifest.h: vcfmt envelope, JSON body).  It is
 * written as DIR/epoch-000001/manifest, DIR/latest points there, and the
 * restore path's calls run on it: ckpt_resolve("latest"), which reads and
 * checks the manifest, then ckpt_verify_rank() for each rank it lists
 * (the first few), against small rank files that exist in the epoch
 * directory.  Every refusal must say why.
 */
#include "fuzz.h"
#include "manifest.h"

#include <sys/stat.h>

static char ckdir[128], epdir[160], mpath[192];

/* The files a 2-rank checkpoint holds; the generator's seeds name them
 * with these sizes and CRCs. */
static void setup(void)
{
	static const char *files[] = { "rank0.vmstate", "rank0.rq",
				       "rank1.vmstate", "rank1.rq",
				       "rank0.disk.qcow2" };
	char p[256], body[64];

	snprintf(ckdir, sizeof(ckdir), "%s/ckpt", fuzz_dir());
	snprintf(epdir, sizeof(epdir), "%s/epoch-000001", ckdir);
	snprintf(mpath, sizeof(mpath), "%s/manifest", epdir);
	if (mkdir(ckdir, 0700) < 0 || mkdir(epdir, 0700) < 0)
		abort();
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", epdir, files[i]);
		snprintf(body, sizeof(body), "content of %s\n", files[i]);
		fuzz_write_file(p, body, strlen(body));
	}
	snprintf(p, sizeof(p), "%s/latest", ckdir);
	if (symlink("epoch-000001", p) < 0)
		abort();
}

static void one(const uint8_t *data, size_t size)
{
	char why[512], dir[256];
	uint64_t epoch = 0;
	json_t *m = NULL;

	fuzz_write_file(mpath, data, size);
	why[0] = 0;
	int r = ckpt_resolve(ckdir, "latest", dir, sizeof(dir), &epoch, &m, why,
			     sizeof(why));
	fuzz_note("  manifest: %s", r < 0 ? why : "accepted");
	if (r < 0) {
		FUZZ_ASSERT(!m && why[0]);
		return;
	}
	FUZZ_ASSERT(m && epoch == 1 && !strcmp(dir, epdir));
	json_int_t n = json_integer_value(json_object_get(m, "nranks"));
	FUZZ_ASSERT(n >= 0 && (size_t)n == json_array_size(json_object_get(m, "ranks")));
	for (int rank = 0; rank < n && rank < 4; rank++) {
		why[0] = 0;
		r = ckpt_verify_rank(dir, m, rank, why, sizeof(why));
		fuzz_note("  rank %d: %s", rank, r < 0 ? why : "verified");
		if (r < 0)
			FUZZ_ASSERT(why[0]);
	}
	json_decref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	uint8_t *copy = fuzz_dup(data, size);

	if (!ready) {
		setup();
		ready = 1;
	}
	one(copy, size);
	if (fuzz_fix_vcfmt(copy, size))
		one(copy, size);
	free(copy);
	return 0;
}
