/* fuzz_mstream: the mstream wire checks -- hello, chunk header, payload
 * and trailer -- through the file reader (tlm-migrate/mstream.c).
 *
 * Input: one or more stream files (tlm-migrate/README.md, "Wire format"),
 * joined by the 8 bytes "\nVCFZSEP"; up to 4 files.  A receiver for that
 * many streams reads them (mstream_create, mstream_read_files,
 * mstream_wait, mstream_destroy: the public API only), as a restore from a
 * live checkpoint does; the TCP receiver runs the same hello check
 * (ms_check_hello) and chunk reader (ms_recv_one).  Properties: a refusal
 * has a reason; each chunk the callback sees is within max_chunk and its
 * stream's range, with every payload byte readable.
 *
 * The second run recomputes every CRC the wire carries (hello, chunk
 * header, trailer), walking the chunks by their length fields.  When the
 * wire gains authentication, this fix-up must also compute the tag.
 */
#include "fuzz.h"
#include "mstream.h"

#define SEP "\nVCFZSEP"
#define SEP_LEN 8
#define MAX_FILES 4

struct ctx {
	int nstreams;
	uint32_t max_chunk;
};

static int recv_cb(void *arg, const struct mstream_chunk *c)
{
	struct ctx *x = arg;
	volatile uint8_t sum = 0;

	FUZZ_ASSERT(c->stream >= 0 && c->stream < x->nstreams);
	FUZZ_ASSERT(c->len <= x->max_chunk);
	for (size_t i = 0; i < c->len; i++)
		sum += ((const uint8_t *)c->data)[i];
	(void)sum;
	return 0;
}

static void one(uint8_t *const *part, const size_t *plen, int nfiles)
{
	char paths[MAX_FILES][128], err[1024];
	const char *pp[MAX_FILES];
	struct ctx x = { .nstreams = nfiles, .max_chunk = 1u << 20 };
	struct mstream_opts o = {
		.nstreams = nfiles,
		.max_chunk = x.max_chunk,
		.timeout_ms = 5000,
		.recv_cb = recv_cb,
		.recv_arg = &x,
	};

	for (int i = 0; i < nfiles; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/stream%d", fuzz_dir(), i);
		fuzz_write_file(paths[i], part[i], plen[i]);
		pp[i] = paths[i];
	}
	struct mstream *ms = mstream_create(&o);
	FUZZ_ASSERT(ms);
	int r = mstream_read_files(ms, pp, nfiles);
	if (r == 0)
		r = mstream_wait(ms, 10000);
	FUZZ_ASSERT(r != -ETIMEDOUT);	/* files never stall */
	err[0] = 0;
	FUZZ_ASSERT(mstream_error(ms, err, sizeof(err)) == r);
	fuzz_note("  mstream (%d files): %s", nfiles, r ? err : "accepted");
	FUZZ_ASSERT(r == 0 ? !err[0] : r < 0 && err[0] != 0);
	mstream_destroy(ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *part[MAX_FILES];
	size_t plen[MAX_FILES];
	const uint8_t *p = data, *end = data + size;
	int n = 0;

	while (n < MAX_FILES) {
		const uint8_t *s = n < MAX_FILES - 1 ?
			memmem(p, (size_t)(end - p), SEP, SEP_LEN) : NULL;
		const uint8_t *e = s ? s : end;
		plen[n] = (size_t)(e - p);
		part[n] = fuzz_dup(p, plen[n]);
		n++;
		if (!s)
			break;
		p = s + SEP_LEN;
	}
	one(part, plen, n);
	for (int i = 0; i < n; i++)
		fuzz_fix_mstream(part[i], plen[i]);
	one(part, plen, n);
	for (int i = 0; i < n; i++)
		free(part[i]);
	return 0;
}
