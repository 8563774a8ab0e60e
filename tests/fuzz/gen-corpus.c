/* gen-corpus: write the seed corpus of every fuzz target.
 *
 *   build/tests/fuzz-gen-corpus OUTDIR      (make fuzz-corpus: tests/fuzz/corpus)
 *
 * Good files come from the writers' own code (rq_save, manifest_write,
 * mstream_open_files/mstream_send, vcfmt_wrap); each is then cut short at
 * a few places (trunc-*), has single bits flipped (flip-*, refused by a
 * CRC), and has fields changed with the CRCs recomputed (bad-*, so the
 * check behind the CRC is the one that must refuse it).  Text formats (job
 * files, address lists) are written out as they are.  The output is
 * deterministic: the same tree gives the same files.
 */
#include "fuzz.h"
#include "ctrlmsg.h"
#include "fbatch.h"
#include "ftcp.h"
#include "manifest.h"
#include "mstream.h"
#include "rq.h"
#include "vc_magic.h"

#include <sys/stat.h>

static const char *outdir;
static int nfiles;

static void out(const char *target, const char *name, const void *data,
		size_t len)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	fuzz_write_file(path, data, len);
	chmod(path, 0644);
	nfiles++;
}

static void out_str(const char *target, const char *name, const char *s)
{
	out(target, name, s, strlen(s));
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		abort();
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
		abort();
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Truncated copies at each cut (cuts >= len are skipped). */
static void truncs(const char *target, const char *base, const uint8_t *d,
		   size_t len, const size_t *cuts, int ncuts)
{
	char name[128];

	for (int i = 0; i < ncuts; i++) {
		if (cuts[i] >= len)
			continue;
		snprintf(name, sizeof(name), "trunc-%s-%zu", base, cuts[i]);
		out(target, name, d, cuts[i]);
	}
}

/* Copies with one bit flipped at each offset. */
static void flips(const char *target, const char *base, const uint8_t *d,
		  size_t len, const size_t *offs, int noffs)
{
	char name[128];
	uint8_t *c = fuzz_dup(d, len);

	for (int i = 0; i < noffs; i++) {
		if (offs[i] >= len)
			continue;
		c[offs[i]] ^= 0x10;
		snprintf(name, sizeof(name), "flip-%s-%zu", base, offs[i]);
		out(target, name, c, len);
		c[offs[i]] ^= 0x10;
	}
	free(c);
}

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- vcfmt -------------------------------------------------------------- */

/* A copy of a vcfmt file with fn applied and the CRCs recomputed. */
static void vcfmt_bad(const char *target, const char *name, const uint8_t *d,
		      size_t len, void (*fn)(uint8_t *, size_t *), size_t extra)
{
	size_t n = len;
	uint8_t *c = malloc(len + extra + 1);

	memcpy(c, d, len);
	fn(c, &n);
	fuzz_fix_vcfmt(c, n);
	out(target, name, c, n);
	free(c);
}

static void set_version0(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be16(p + 4, 0); }
static void set_version2(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be16(p + 4, 2); }
static void set_hdrlen25(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be16(p + 6, 25); }
static void set_flags(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be32(p + 16, 1); }
static void set_blen_long(uint8_t *p, size_t *n) { vcfmt_put_be64(p + 8, vcfmt_get_be64(p + 8) + 1); (void)n; }
static void add_trailing(uint8_t *p, size_t *n) { p[(*n)++] = 0; }

static void gen_vcfmt(void)
{
	static const uint32_t magics[] = { VC_MAGIC_RQ, VC_MAGIC_MANIFEST,
					   VC_MAGIC_MSTREAM, VC_MAGIC_CTL };
	uint8_t body[100];
	char name[64];
	size_t len;
	uint8_t *f;

	for (int i = 0; i < (int)sizeof(body); i++)
		body[i] = (uint8_t)(i * 7);
	for (int m = 0; m < N(magics); m++) {
		f = vcfmt_wrap(magics[m], 1, body, 0, &len);
		snprintf(name, sizeof(name), "good-%08x-empty", magics[m]);
		out("vcfmt", name, f, len);
		free(f);
	}
	f = vcfmt_wrap(VC_MAGIC_RQ, 1, body, sizeof(body), &len);
	out("vcfmt", "good-body100", f, len);
	static const size_t cuts[] = { 0, 4, 23, 24, 27, 60, 127 };
	truncs("vcfmt", "body100", f, len, cuts, N(cuts));
	static const size_t offs[] = { 0, 5, 7, 9, 15, 17, 21, 30, 125 };
	flips("vcfmt", "body100", f, len, offs, N(offs));
	vcfmt_bad("vcfmt", "bad-version0", f, len, set_version0, 0);
	vcfmt_bad("vcfmt", "bad-version2", f, len, set_version2, 0);
	vcfmt_bad("vcfmt", "bad-hdrlen25", f, len, set_hdrlen25, 0);
	vcfmt_bad("vcfmt", "bad-flags1", f, len, set_flags, 0);
	vcfmt_bad("vcfmt", "bad-bodylen-long", f, len, set_blen_long, 0);
	vcfmt_bad("vcfmt", "bad-trailing", f, len, add_trailing, 1);
	free(f);
	/* A header claiming more body than any limit allows. */
	struct vcfmt_hdr h = { .magic = VC_MAGIC_MANIFEST, .version = 1,
			       .body_len = 1ull << 40 };
	uint8_t hdr[VCFMT_HDR_SIZE + 4] = { 0 };
	vcfmt_hdr_encode(&h, hdr);
	out("vcfmt", "bad-bodylen-huge", hdr, sizeof(hdr));
}

/* ---- receive queue ------------------------------------------------------- */

static void set_count_up(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be32(p + 36, vcfmt_get_be32(p + 36) + 1); }
static void set_count_down(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be32(p + 36, vcfmt_get_be32(p + 36) - 1); }
static void set_count_huge(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be32(p + 36, 0xffffffffu); }
/* First frame's length one too long / far too long. */
static void set_flen_up(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be16(p + 42, vcfmt_get_be16(p + 42) + 1); }
static void set_flen_max(uint8_t *p, size_t *n) { (void)n; vcfmt_put_be16(p + 42, 0xffff); }
static void set_body_short(uint8_t *p, size_t *n)
{
	/* A 15-byte body: shorter than epoch, rank and count. */
	vcfmt_put_be64(p + 8, 15);
	*n = VCFMT_HDR_SIZE + 15 + 4;
}

static void gen_rq(const char *tmp)
{
	char path[4096];
	uint8_t frame[1514];
	struct rq *q = rq_create();
	size_t len;
	uint8_t *f;

	snprintf(path, sizeof(path), "%s/rq", tmp);
	if (rq_save(q, path, 7, 1, NULL))
		abort();
	f = slurp(path, &len);
	out("rq", "good-empty", f, len);
	free(f);

	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i ^ 0x5a);
	rq_push(q, 0, frame, 60);
	rq_push(q, 2, frame, 0);
	rq_push(q, 3, frame, 1514);
	rq_push(q, 65535, frame, 42);
	if (rq_save(q, path, 7, 1, NULL))
		abort();
	rq_destroy(q);
	f = slurp(path, &len);
	out("rq", "good-4frames", f, len);
	static const size_t cuts[] = { 0, 10, 24, 30, 40, 43, 70, 100, 1600 };
	truncs("rq", "4frames", f, len, cuts, N(cuts));
	size_t last = len - 1;
	truncs("rq", "4frames", f, len, &last, 1);
	static const size_t offs[] = { 1, 8, 16, 26, 34, 38, 42, 50, 1000 };
	flips("rq", "4frames", f, len, offs, N(offs));
	flips("rq", "4frames", f, len, &last, 1);
	vcfmt_bad("rq", "bad-count-up", f, len, set_count_up, 0);
	vcfmt_bad("rq", "bad-count-down", f, len, set_count_down, 0);
	vcfmt_bad("rq", "bad-count-huge", f, len, set_count_huge, 0);
	vcfmt_bad("rq", "bad-framelen-up", f, len, set_flen_up, 0);
	vcfmt_bad("rq", "bad-framelen-max", f, len, set_flen_max, 0);
	vcfmt_bad("rq", "bad-body-short", f, len, set_body_short, 0);
	vcfmt_bad("rq", "bad-trailing", f, len, add_trailing, 1);
	vcfmt_bad("rq", "bad-version2", f, len, set_version2, 0);
	free(f);
}

/* ---- manifest ----------------------------------------------------------- */

/* A file entry for the rank files fuzz_manifest.c creates. */
static json_t *entry(const char *name, int good)
{
	char body[64];
	snprintf(body, sizeof(body), "content of %s\n", name);
	return json_pack("{s:s, s:I, s:I}", "file", name,
			 "size", (json_int_t)strlen(body),
			 "crc32c", (json_int_t)(vcfmt_crc32c(0, body, strlen(body)) ^ !good));
}

static json_t *manifest(int nranks, int disk)
{
	json_t *ranks = json_array();

	for (int r = 0; r < nranks; r++) {
		char vm[32], rqn[32];
		snprintf(vm, sizeof(vm), "rank%d.vmstate", r);
		snprintf(rqn, sizeof(rqn), "rank%d.rq", r);
		json_t *rq = entry(rqn, 1);
		json_object_set_new(rq, "frames", json_integer(r));
		json_t *ri = json_pack("{s:i, s:o, s:o, s:{s:f, s:f, s:f}}",
			"rank", r, "vmstate", entry(vm, 1), "rq", rq,
			"timing", "pause_unix", 1764600000.5, "flush_s", 0.001,
			"save_s", 0.25);
		if (disk && r == 0)
			json_object_set_new(ri, "disk", entry("rank0.disk.qcow2", 1));
		json_array_append_new(ranks, ri);
	}
	return json_pack("{s:I, s:i, s:s, s:s, s:{s:s, s:i, s:s}, s:o}",
			 "epoch", (json_int_t)1, "nranks", nranks,
			 "created", "2026-12-01T21:00:00Z", "vcluster_version", "0.1.0",
			 "config", "memory", "256M", "vcpus", 1, "guest-cmd", "true",
			 "ranks", ranks);
}

static void out_manifest(const char *tmp, const char *name, json_t *m,
			 uint8_t **keep, size_t *keeplen)
{
	char path[4096];
	size_t len;
	uint8_t *f;

	if (manifest_write(tmp, m))
		abort();
	json_decref(m);
	snprintf(path, sizeof(path), "%s/manifest", tmp);
	f = slurp(path, &len);
	out("manifest", name, f, len);
	if (keep) {
		*keep = f;
		*keeplen = len;
	} else {
		free(f);
	}
}

static void gen_manifest(const char *tmp)
{
	uint8_t *f;
	size_t len;
	json_t *m, *r1;

	out_manifest(tmp, "good-2ranks", manifest(2, 0), &f, &len);
	out_manifest(tmp, "good-1rank-disk", manifest(1, 1), NULL, NULL);
	static const size_t cuts[] = { 0, 20, 24, 100, 400 };
	truncs("manifest", "2ranks", f, len, cuts, N(cuts));
	size_t last = len - 1;
	truncs("manifest", "2ranks", f, len, &last, 1);
	static const size_t offs[] = { 2, 9, 22, 30, 200 };
	flips("manifest", "2ranks", f, len, offs, N(offs));
	vcfmt_bad("manifest", "bad-version2", f, len, set_version2, 0);
	vcfmt_bad("manifest", "bad-trailing", f, len, add_trailing, 1);
	free(f);

	m = manifest(2, 0);
	r1 = json_array_get(json_object_get(m, "ranks"), 1);
	json_object_set_new(r1, "vmstate", entry("rank1.vmstate", 0));
	out_manifest(tmp, "bad-crc", m, NULL, NULL);

	m = manifest(2, 0);
	r1 = json_array_get(json_object_get(m, "ranks"), 1);
	json_integer_set(json_object_get(json_object_get(r1, "rq"), "size"), 3);
	out_manifest(tmp, "bad-size", m, NULL, NULL);

	m = manifest(2, 0);
	r1 = json_array_get(json_object_get(m, "ranks"), 0);
	json_string_set(json_object_get(json_object_get(r1, "vmstate"), "file"), "../ckpt/latest");
	out_manifest(tmp, "bad-file-slash", m, NULL, NULL);

	m = manifest(2, 0);
	r1 = json_array_get(json_object_get(m, "ranks"), 0);
	json_string_set(json_object_get(json_object_get(r1, "vmstate"), "file"), "..");
	out_manifest(tmp, "bad-file-dotdot", m, NULL, NULL);

	m = manifest(2, 0);
	r1 = json_array_get(json_object_get(m, "ranks"), 1);
	json_object_set_new(r1, "rank", json_integer(0));
	out_manifest(tmp, "bad-rank-number", m, NULL, NULL);

	m = manifest(2, 0);
	json_object_set_new(m, "nranks", json_integer(3));
	out_manifest(tmp, "bad-nranks", m, NULL, NULL);

	m = manifest(2, 0);
	json_object_set_new(m, "nranks", json_integer(-1));
	out_manifest(tmp, "bad-nranks-negative", m, NULL, NULL);

	m = manifest(2, 0);
	json_object_set_new(m, "epoch", json_integer(2));
	out_manifest(tmp, "bad-epoch", m, NULL, NULL);

	m = manifest(2, 0);
	json_object_set_new(m, "ranks", json_string("none"));
	out_manifest(tmp, "bad-ranks-type", m, NULL, NULL);

	out_manifest(tmp, "bad-array", json_pack("[i, i]", 1, 2), NULL, NULL);

	static const char notjson[] = "{\"epoch\": 1, \"nranks\": 2, \"ranks\": [";
	f = vcfmt_wrap(VC_MAGIC_MANIFEST, 1, notjson, sizeof(notjson) - 1, &len);
	out("manifest", "bad-json", f, len);
	free(f);
}

/* ---- mstream ------------------------------------------------------------- */

#define SEP "\nVCFZSEP"

/* Write a transfer of nstreams files with mstream's sender; what says which
 * chunks.  Returns the files joined by SEP (the fuzz_mstream input). */
static uint8_t *mstream_files(const char *tmp, int nstreams, int what,
			      size_t *outlen, uint8_t **first, size_t *firstlen)
{
	char paths[4][4096];
	const char *pp[4];
	struct mstream_opts o = { .nstreams = nstreams,
				  .session_id = 0x1122334455667788ull };
	uint8_t payload[3000];
	struct mstream *ms = mstream_create(&o);

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 13);
	for (int i = 0; i < nstreams; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/stream%d", tmp, i);
		pp[i] = paths[i];
	}
	if (!ms || mstream_open_files(ms, pp, nstreams))
		abort();
	if (what >= 1) {
		mstream_send(ms, 0x544c0002, 0, payload, 100);
		mstream_send(ms, 0x544c0002, 4096, payload, 0);
		mstream_send_all(ms, 0x544c0003, 1, payload, 8);
	}
	if (what >= 2) {
		mstream_send(ms, 0x544c0002, 8192, payload, sizeof(payload));
		mstream_send(ms, 7, UINT64_MAX, payload, 1);
	}
	if (mstream_finish(ms))
		abort();
	mstream_destroy(ms);

	uint8_t *all = NULL;
	size_t total = 0;
	for (int i = 0; i < nstreams; i++) {
		size_t len;
		uint8_t *f = slurp(paths[i], &len);
		all = realloc(all, total + len + 8);
		if (i) {
			memcpy(all + total, SEP, 8);
			total += 8;
		}
		memcpy(all + total, f, len);
		total += len;
		if (i == 0 && first) {
			*first = f;
			*firstlen = len;
		} else {
			free(f);
		}
	}
	*outlen = total;
	return all;
}

/* A copy of a one-stream file with fn applied at the chunk at off, CRCs
 * recomputed. */
static void ms_bad(const char *name, const uint8_t *d, size_t len,
		   size_t off, void (*fn)(uint8_t *h, size_t *n, size_t off))
{
	uint8_t *c = malloc(len + 64);
	size_t n = len;

	memcpy(c, d, len);
	fn(c, &n, off);
	fuzz_fix_mstream(c, n);
	out("mstream", name, c, n);
	free(c);
}

static void ms_seq(uint8_t *p, size_t *n, size_t o) { (void)n; vcfmt_put_be64(p + o + 24, 5); }
static void ms_flags(uint8_t *p, size_t *n, size_t o) { (void)n; vcfmt_put_be16(p + o + 10, 0x0004); }
static void ms_len_big(uint8_t *p, size_t *n, size_t o) { (void)n; vcfmt_put_be32(p + o + 32, 2u << 20); }
static void ms_len_max(uint8_t *p, size_t *n, size_t o) { (void)n; vcfmt_put_be32(p + o + 32, 0xffffffffu); }
static void ms_kind(uint8_t *p, size_t *n, size_t o) { (void)n; vcfmt_put_be16(p + o + 8, 2); }
static void ms_hdrlen(uint8_t *p, size_t *n, size_t o) { (void)n; vcfmt_put_be16(p + o + 6, 104); }
static void ms_count(uint8_t *p, size_t *n, size_t o) { (void)n; (void)o; vcfmt_put_be16(p + 12, 2); }
static void ms_index(uint8_t *p, size_t *n, size_t o) { (void)n; (void)o; vcfmt_put_be16(p + 10, 1); }
static void ms_trailing(uint8_t *p, size_t *n, size_t o) { (void)o; memset(p + *n, 0, 10); *n += 10; }
static void ms_endlen(uint8_t *p, size_t *n, size_t o)
{
	/* The end-of-stream chunk (last 44 bytes) claiming a payload. */
	(void)o;
	vcfmt_put_be32(p + *n - 44 + 32, 4);
	memset(p + *n, 0, 4);
	*n += 4;
}

static void gen_mstream(const char *tmp)
{
	uint8_t *f, *one;
	size_t len, onelen;

	f = mstream_files(tmp, 1, 0, &len, NULL, NULL);
	out("mstream", "good-1stream-empty", f, len);
	free(f);
	f = mstream_files(tmp, 1, 2, &len, NULL, NULL);
	out("mstream", "good-1stream-chunks", f, len);
	static const size_t cuts[] = { 0, 20, 39, 40, 60, 80, 84, 150, 3000 };
	truncs("mstream", "1stream", f, len, cuts, N(cuts));
	size_t last = len - 1;
	truncs("mstream", "1stream", f, len, &last, 1);
	static const size_t offs[] = { 0, 5, 11, 13, 20, 37, 41, 52, 75, 90, 150 };
	flips("mstream", "1stream", f, len, offs, N(offs));
	flips("mstream", "1stream", f, len, &last, 1);
	/* The first chunk header is at 40. */
	ms_bad("bad-seq", f, len, 40, ms_seq);
	ms_bad("bad-flags", f, len, 40, ms_flags);
	ms_bad("bad-len-over-limit", f, len, 40, ms_len_big);
	ms_bad("bad-len-max", f, len, 40, ms_len_max);
	ms_bad("bad-kind", f, len, 40, ms_kind);
	ms_bad("bad-hdrlen", f, len, 40, ms_hdrlen);
	ms_bad("bad-hello-count", f, len, 0, ms_count);
	ms_bad("bad-hello-index", f, len, 0, ms_index);
	ms_bad("bad-trailing", f, len, 0, ms_trailing);
	ms_bad("bad-end-with-payload", f, len, 0, ms_endlen);
	free(f);

	f = mstream_files(tmp, 2, 1, &len, &one, &onelen);
	out("mstream", "good-2streams", f, len);
	free(f);
	/* Two files that both hold stream 0. */
	f = malloc(2 * onelen + 8);
	memcpy(f, one, onelen);
	memcpy(f + onelen, SEP, 8);
	memcpy(f + onelen + 8, one, onelen);
	out("mstream", "bad-2streams-same-index", f, 2 * onelen + 8);
	/* The second one of another session. */
	vcfmt_put_be64(f + onelen + 8 + 16, 0x99);
	vcfmt_put_be16(f + onelen + 8 + 10, 1);
	fuzz_fix_mstream(f + onelen + 8, onelen);
	out("mstream", "bad-2streams-session", f, 2 * onelen + 8);
	free(f);
	free(one);
}

/* ---- text formats --------------------------------------------------------- */

static void gen_jobs(void)
{
	static const struct { const char *name, *text; } jobs[] = {
		{ "good-traffic", "# 4 ranks of traffic\nmemory = 256M\nvcpus = 1\n"
		  "guest-cmd = \"vcluster-traffic --all --seconds 20\"\ntimeout = 120\n" },
		{ "good-all", "kernel = /boot/vmlinuz\ninitrd = /boot/initrd.img\n"
		  "append = console=ttyS0 quiet\ndisk = /var/img/base.qcow2\nmemory = 2G\n"
		  "vcpus = 4\naccel = tcg\nkvm-probe-ms = 500\nsubnet = 10.20.0.0/16\n"
		  "run-dir = /tmp/run\nguest-cmd = \"echo \\\"hi\\\" \\\\ there\"\ntimeout = 0\n"
		  "grace = 5\nhead-ssh-port = 2222\nqemu = /usr/bin/qemu-system-x86_64\n"
		  "pin = none\nfabric-spin-us = 0\ncheckpoint-dir = /tmp/ck\n"
		  "checkpoint-interval = 30\nkeep = 2\ncheckpoint-bandwidth = 100\n"
		  "restore = latest\nclock-sync = yes\nconsole = off\n" },
		{ "good-crlf", "memory = 512MiB\r\nvcpus = 2\r\n# c\r\n\r\n" },
		{ "good-empty", "" },
		{ "good-comments", "   # only comments\n\n\t\n#x = y\n" },
		{ "good-restore-epoch", "checkpoint-dir = /x\nrestore = 12\n" },
		{ "good-ckpt-dirs", "checkpoint-dir = /a/ck,/b/ck,/c\nrestore = latest\n" },
		{ "bad-ckpt-dirs-empty", "checkpoint-dir = /a/ck,,/c\n" },
		{ "bad-no-equals", "memory 256M\n" },
		{ "bad-empty-key", " = 3\n" },
		{ "bad-key-char", "mem.ory = 3\n" },
		{ "bad-escape", "guest-cmd = \"a\\nb\"\n" },
		{ "bad-open-quote", "guest-cmd = \"abc\n" },
		{ "bad-after-quote", "guest-cmd = \"abc\" x\n" },
		{ "bad-unknown-key", "memroy = 256M\n" },
		{ "bad-memory", "memory = 12T\n" },
		{ "bad-memory-small", "memory = 63M\n" },
		{ "bad-memory-negative", "memory = -1G\n" },
		{ "bad-vcpus", "vcpus = 65\n" },
		{ "bad-vcpus-text", "vcpus = two\n" },
		{ "bad-subnet-hostbits", "subnet = 10.10.0.1/24\n" },
		{ "bad-subnet-prefix", "subnet = 10.0.0.0/31\n" },
		{ "bad-subnet-long", "subnet = 10.10.0.0.10.10.0.0.10.10.0.0.10.10.0.0.10.10.0.0/24\n" },
		{ "bad-accel", "accel = hvf\n" },
		{ "bad-bool", "console = maybe\n" },
		{ "bad-restore-word", "checkpoint-dir = /x\nrestore = newest\n" },
		{ "bad-restore-no-dir", "restore = latest\n" },
		{ "bad-initrd-no-kernel", "initrd = /boot/initrd.img\n" },
		{ "bad-interval-no-dir", "checkpoint-interval = 10\n" },
		{ "bad-reject", "a = 1\nreject = 2\n" },
	};
	for (int i = 0; i < N(jobs); i++) {
		out_str("jobspec", jobs[i].name, jobs[i].text);
		out_str("config", jobs[i].name, jobs[i].text);
	}
	static const char nul[] = "memory = 256M\n\0vcpus = 2\n";
	out("jobspec", "bad-nul", nul, sizeof(nul) - 1);
	out("config", "bad-nul", nul, sizeof(nul) - 1);
	/* Values at and over the length limits. */
	char *big = malloc(5000);
	memset(big, 'a', 5000);
	memcpy(big, "append = ", 9);
	big[4096] = '\n';
	out("jobspec", "good-line-4096", big, 4097);
	out("config", "bad-append-long", big, 4097);
	big[4096] = 'a';
	big[4097] = '\n';
	out("jobspec", "bad-line-4097", big, 4098);
	memcpy(big, "guest-cmd = ", 12);
	big[12 + 601] = '\n';
	out("config", "bad-guest-cmd-601", big, 12 + 602);
	big[12 + 600] = '\n';
	out("config", "good-guest-cmd-600", big, 12 + 601);
	free(big);
}

static void gen_addrs(void)
{
	static const struct { const char *name, *text; } a[] = {
		{ "good-one", "127.0.0.1:7000" },
		{ "good-list", " 10.0.0.1:7000 , node2:7001,[::1]:7002 " },
		{ "good-file", "# streams\n10.0.0.1:7000\n\n10.0.0.2:7000  # second\n" },
		{ "good-port0", "localhost:0" },
		{ "bad-port", "db1:http" },
		{ "bad-port-big", "a:65536" },
		{ "bad-port-long", "a:000001" },
		{ "bad-no-port", "a" },
		{ "bad-no-host", ":7000" },
		{ "bad-v6-nobrackets", "::1:7000" },
		{ "bad-v6-open", "[::1:7000" },
		{ "bad-v6-noport", "[::1]" },
		{ "bad-empty-entry", "a:1,,b:2" },
		{ "bad-host-char", "a b:1" },
		{ "bad-empty", "   " },
	};
	for (int i = 0; i < N(a); i++)
		out_str("mstream_addr", a[i].name, a[i].text);
	char many[65 * 8 + 1], *p = many;
	for (int i = 0; i < 65; i++)
		p += sprintf(p, "%sh:%d", i ? "," : "", 1000 + i);
	out_str("mstream_addr", "bad-65-entries", many);
	char host[300];
	memset(host, 'h', sizeof(host));
	strcpy(host + 256, ":7000");
	out_str("mstream_addr", "bad-host-256", host);
	host[255] = ':';
	strcpy(host + 256, "7000");
	out_str("mstream_addr", "good-host-255", host);
}

/* ---- ctrlmsg ------------------------------------------------------------ */

/* One control message of each type as the launcher writes it, short and
 * flipped copies, and copies with one header field wrong (CRC fixed). */
static void ctrl_out(const char *name, uint8_t *b)
{
	vcfmt_put_be32(b + 20, 0);
	vcfmt_put_be32(b + 20, vcfmt_crc32c(0, b, CTRLMSG_SIZE));
	out("ctrlmsg", name, b, CTRLMSG_SIZE);
}

static void gen_ctrlmsg(void)
{
	static const char *names[] = { "exit", "abort", "shutdown", "stats" };
	const size_t cuts[] = { 0, 4, 23, 24, CTRLMSG_SIZE - 1 };
	const size_t offs[] = { 0, 5, 13, 17, 21, CTRLMSG_HDR + 120, CTRLMSG_HDR + 130 };
	uint8_t b[CTRLMSG_SIZE];

	for (int t = CTRL_EXIT; t <= CTRL_TYPE_MAX; t++) {
		struct ctrlmsg m = { .type = t, .rank = 0, .status = t == CTRL_EXIT ? 1 : 0,
				     .signo = t == CTRL_SHUTDOWN ? 15 : 0 };
		if (t == CTRL_ABORT)
			m.code = CTRL_CODE_TIMEOUT;
		if (t == CTRL_STATS) {
			m.fab.frames_from_vm = 1234;
			m.fab.npeers = 3;
			m.ckpt_bytes = 1 << 20;
		}
		snprintf(m.text, sizeof(m.text), "rank 0: %s", names[t - 1]);
		ctrlmsg_encode(&m, b);
		out("ctrlmsg", names[t - 1], b, sizeof(b));
	}
	truncs("ctrlmsg", "abort", b, sizeof(b), cuts, N(cuts));
	flips("ctrlmsg", "stats", b, sizeof(b), offs, N(offs));
	uint8_t c[CTRLMSG_SIZE];
	memcpy(c, b, sizeof(c)); vcfmt_put_be16(c + 12, 9); ctrl_out("bad-type", c);
	memcpy(c, b, sizeof(c)); vcfmt_put_be16(c + 14, 99); ctrl_out("bad-code", c);
	memcpy(c, b, sizeof(c)); vcfmt_put_be16(c + CTRLMSG_HDR + 120, CTRLMSG_TEXT + 1);
	ctrl_out("bad-textlen", c);
	memcpy(c, b, sizeof(c)); vcfmt_put_be32(c + 16, 2); ctrl_out("bad-sender", c);
	memcpy(c, b, sizeof(c)); vcfmt_put_be16(c + 4, 2); ctrl_out("bad-version", c);
}

/* ---- fbatch ------------------------------------------------------------- */

static size_t fb_rec(uint8_t *b, size_t off, uint8_t type, const void *d, uint16_t len)
{
	b[off] = type;
	b[off + 1] = 0;
	vcfmt_put_be16(b + off + 2, len);
	memcpy(b + off + FBATCH_REC_HDR, d, len);
	return off + FBATCH_REC_HDR + len;
}

/* Batches as the fabric seals them (frames of 1, 60 and 1514 bytes, a
 * marker, an empty batch), short and flipped copies, and resealed copies
 * with a record that overruns, stray bytes, a short marker, a bad type. */
static void gen_fbatch(void)
{
	static uint8_t b[4096], c[4096];
	uint8_t frame[1514], epoch[8];
	const size_t cuts[] = { 0, 3, 23, 24, 27, 90 };
	const size_t offs[] = { 0, 5, 7, 9, 13, 17, 21, 26, 30 };
	size_t off = FBATCH_HDR, len;

	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i * 7);
	vcfmt_put_be64(epoch, 3);
	fbatch_seal(b, FBATCH_HDR, 0, 16, 0);
	out("fbatch", "empty", b, FBATCH_HDR);
	off = fb_rec(b, off, FBATCH_FRAME, frame, 60);
	off = fb_rec(b, off, FBATCH_MARKER, epoch, 8);
	off = fb_rec(b, off, FBATCH_FRAME, frame, 1);
	off = fb_rec(b, off, FBATCH_FRAME, frame, sizeof(frame));
	len = off;
	fbatch_seal(b, (uint32_t)len, 41, 3, 4);
	out("fbatch", "frames-marker", b, len);
	truncs("fbatch", "frames-marker", b, len, cuts, N(cuts));
	flips("fbatch", "frames-marker", b, len, offs, N(offs));
	memcpy(c, b, len);
	vcfmt_put_be16(c + FBATCH_HDR + 2, 2000);
	fbatch_seal(c, (uint32_t)len, 41, 3, 4);
	out("fbatch", "bad-rec-overrun", c, len);
	memcpy(c, b, len);
	c[len] = 1; c[len + 1] = 0;
	fbatch_seal(c, (uint32_t)len + 2, 41, 3, 4);
	out("fbatch", "bad-stray-bytes", c, len + 2);
	off = fb_rec(c, FBATCH_HDR, FBATCH_MARKER, epoch, 7);
	fbatch_seal(c, (uint32_t)off, 0, 0, 1);
	out("fbatch", "bad-marker-7", c, off);
	off = fb_rec(c, FBATCH_HDR, 9, epoch, 2);
	fbatch_seal(c, (uint32_t)off, 0, 0, 1);
	out("fbatch", "bad-type", c, off);
}

/* ftcp: the same job secret and nonces as fuzz_ftcp.c (rank 1 of 4). */
static void ftcp_msg(const char *name, int type, int from, int to, int size,
		     const char *secret)
{
	uint8_t m[FTCP_HELLO_LEN];

	ftcp_fill_hello(m, type, from, to, size, (const uint8_t *)"peer nonce 01234",
			(const uint8_t *)secret, (const uint8_t *)"my nonce 0123456");
	out("ftcp", name, m, sizeof(m));
}

static void gen_ftcp(void)
{
	const char *job = "vcluster fuzz job secret 0123456";
	const size_t cuts[] = { 0, 8, 40, 75 };
	const size_t offs[] = { 4, 6, 8, 12, 16, 20, 24, 40, 72 };
	uint8_t m[FTCP_HELLO_LEN];

	ftcp_msg("hello", 1, 2, 1, 4, job);
	ftcp_msg("proof", 2, 2, 1, 4, job);
	ftcp_msg("proof-other-job", 2, 2, 1, 4, "another job's secret 0123456789a");
	ftcp_msg("hello-to-other-rank", 1, 2, 3, 4, job);
	ftcp_msg("hello-from-self", 1, 1, 1, 4, job);
	ftcp_msg("hello-from-beyond", 1, 4, 1, 4, job);
	ftcp_msg("hello-other-size", 1, 2, 1, 5, job);
	ftcp_fill_hello(m, 2, 3, 1, 4, (const uint8_t *)"peer nonce 01234",
			(const uint8_t *)job, (const uint8_t *)"my nonce 0123456");
	truncs("ftcp", "proof", m, sizeof(m), cuts, N(cuts));
	flips("ftcp", "proof", m, sizeof(m), offs, N(offs));
}

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/vcfuzz-gen-XXXXXX";

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	gen_vcfmt();
	gen_rq(tmp);
	gen_manifest(tmp);
	gen_mstream(tmp);
	gen_jobs();
	gen_addrs();
	gen_ctrlmsg();
	gen_fbatch();
	gen_ftcp();
	fuzz_dir_path[0] = 0;
	snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s", tmp);
	fuzz_dir_cleanup();
	printf("gen-corpus: %d files in %s\n", nfiles, outdir);
	return 0;
}
