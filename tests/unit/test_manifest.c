/* Manifest and checkpoint directory: write/read, resolve latest, verify
 * files, refuse corrupt manifests and files, prune keeping the newest. */
#include "test.h"
#include "afile.h"
#include "manifest.h"
#include "rq.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/vc-test-manifest.XXXXXX";

/* Linked with -Wl,--wrap=fsync: the next fail_fsync calls fail with EIO
 * (a disk that drops a write). */
static int fail_fsync;
int __real_fsync(int fd);
int __wrap_fsync(int fd)
{
	if (fail_fsync > 0) {
		fail_fsync--;
		errno = EIO;
		return -1;
	}
	return __real_fsync(fd);
}

static bool exists(uint64_t e)
{
	char d[PATH_MAX];
	struct stat st;
	ckpt_epoch_dir(root, e, d, sizeof(d));
	return lstat(d, &st) == 0;
}

static void latest_is(const char *want)
{
	char link[PATH_MAX + 16], t[64];
	snprintf(link, sizeof(link), "%s/latest", root);
	ssize_t n = readlink(link, t, sizeof(t) - 1);
	CHECK(n > 0);
	t[n] = '\0';
	if (strcmp(t, want)) {
		fprintf(stderr, "latest -> %s, expected %s\n", t, want);
		exit(1);
	}
}

static void mkdir_in(const char *name, char *out)
{
	snprintf(out, PATH_MAX, "%s/%s", root, name);
	CHECK_EQ(mkdir(out, 0700), 0);
}

static void make_epoch(uint64_t e, int nranks, int complete)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	json_t *ranks = json_array();

	ckpt_epoch_dir(root, e, dir, sizeof(dir));
	CHECK_EQ(afile_mkdir_p(dir, 0700), 0);
	for (int r = 0; r < nranks; r++) {
		char data[4096];
		memset(data, 'a' + r, sizeof(data));
		snprintf(path, sizeof(path), "%s/rank%d.vmstate", dir, r);
		CHECK_EQ(afile_publish(path, data, sizeof(data), 0600), 0);
		uint32_t vcrc, rcrc;
		uint64_t vsize, rsize;
		CHECK_EQ(ckpt_file_crc(path, &vcrc, &vsize), 0);
		struct rq *q = rq_create();
		rq_push(q, 0, data, 100);
		snprintf(path, sizeof(path), "%s/rank%d.rq", dir, r);
		CHECK_EQ(rq_save(q, path, e, r, NULL), 0);
		rq_destroy(q);
		CHECK_EQ(ckpt_file_crc(path, &rcrc, &rsize), 0);
		char vn[32], rn[32];
		snprintf(vn, sizeof(vn), "rank%d.vmstate", r);
		snprintf(rn, sizeof(rn), "rank%d.rq", r);
		json_array_append_new(ranks, json_pack("{s:i, s:{s:s, s:I, s:I}, s:{s:s, s:I, s:I}}",
			"rank", r, "vmstate", "file", vn, "size", (json_int_t)vsize, "crc32c", (json_int_t)vcrc,
			"rq", "file", rn, "size", (json_int_t)rsize, "crc32c", (json_int_t)rcrc));
	}
	if (complete) {
		json_t *m = json_pack("{s:I, s:i, s:o, s:{}}", "epoch", (json_int_t)e,
				      "nranks", nranks, "ranks", ranks, "config");
		CHECK_EQ(manifest_write(dir, m), 0);
		json_decref(m);
		CHECK_EQ(ckpt_set_latest(root, e), 0);
	} else {
		json_decref(ranks);
	}
}

static void flip(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	unsigned char b;
	CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1);
	b ^= 1;
	CHECK(pwrite(fd, &b, 1, off) == 1);
	close(fd);
}

int main(void)
{
	char edir[PATH_MAX], why[512], path[PATH_MAX + 32];
	uint64_t epoch;
	json_t *m;

	CHECK(mkdtemp(root));
	CHECK_EQ(ckpt_next_epoch(root), 1);
	CHECK_EQ(ckpt_resolve(root, "latest", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, "no complete checkpoint"));

	make_epoch(1, 3, 1);
	make_epoch(2, 3, 1);
	CHECK_EQ(ckpt_next_epoch(root), 3);
	CHECK_EQ(ckpt_resolve(root, "latest", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), 0);
	CHECK_EQ(epoch, 2);
	for (int r = 0; r < 3; r++)
		CHECK_EQ(ckpt_verify_rank(edir, m, r, why, sizeof(why)), 0);
	CHECK_EQ(ckpt_verify_rank(edir, m, 3, why, sizeof(why)), -EBADMSG);
	json_decref(m);

	/* A bit flip in a VM state file: named, refused. */
	snprintf(path, sizeof(path), "%s/rank1.vmstate", edir);
	flip(path, 1000);
	CHECK_EQ(ckpt_resolve(root, "2", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), 0);
	CHECK_EQ(ckpt_verify_rank(edir, m, 1, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "rank1.vmstate") && strstr(why, "corrupt"));
	flip(path, 1000);
	/* Truncated. */
	CHECK(truncate(path, 100) == 0);
	CHECK_EQ(ckpt_verify_rank(edir, m, 1, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "rank1.vmstate") && strstr(why, "truncated"));
	/* Missing. */
	unlink(path);
	CHECK_EQ(ckpt_verify_rank(edir, m, 1, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, "rank1.vmstate"));
	json_decref(m);

	/* A corrupt manifest: refused, naming it. */
	snprintf(path, sizeof(path), "%s/manifest", edir);
	flip(path, 40);
	CHECK_EQ(ckpt_resolve(root, "2", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "manifest") && strstr(why, "CRC32C"));
	CHECK_EQ(ckpt_resolve(root, "9", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), -ENOENT);
	CHECK_EQ(ckpt_resolve(root, "x", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), -EINVAL);

	/* Prune: keep the newest 2 complete; an incomplete newer one stays;
	 * the corrupt 2 is kept (it is not known to be no checkpoint). */
	make_epoch(3, 1, 1);
	make_epoch(4, 1, 1);
	make_epoch(5, 1, 0);
	CHECK_EQ(ckpt_prune(root, 2, 4), 1);	/* 1 */
	CHECK(exists(2) && exists(3) && exists(4) && exists(5));
	CHECK(!exists(1));
	snprintf(path, sizeof(path), "%s/manifest", edir);

	/* Canonical names only: what ckpt_epoch_dir writes. */
	uint64_t e = 0;
	CHECK_EQ(ckpt_epoch_from_name("epoch-000007", &e), 0);
	CHECK_EQ(e, 7);
	CHECK_EQ(ckpt_epoch_from_name("epoch-1234567", &e), 0);
	CHECK_EQ(e, 1234567);
	const char *bad[] = { "epoch-7", "epoch-+7", "epoch-0000007", "epoch- 00007", "epoch-000000",
			      "epoch-00000x", "epoch-", "epoch-01234567", "epoch--00007",
			      "epoch-99999999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ckpt_epoch_from_name(bad[i], &e) == 0) {
			fprintf(stderr, "'%s' accepted as an epoch name\n", bad[i]);
			return 1;
		}
	char d[PATH_MAX];
	mkdir_in("epoch-99", d);
	CHECK_EQ(ckpt_next_epoch(root), 6);
	CHECK_EQ(ckpt_resolve(root, "+4", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), -EINVAL);

	/* An alias of the kept epoch ("epoch-6" beside epoch-000006) is not
	 * counted a second time: epoch 4 stays with --keep 2. */
	make_epoch(6, 1, 1);
	mkdir_in("epoch-6", d);
	CHECK_EQ(ckpt_prune(root, 2, 6), 2);	/* the corrupt 2 kept; 3 and the incomplete 5 */
	CHECK(exists(4) && exists(6) && exists(2));
	CHECK(!exists(3) && !exists(5));

	/* A manifest that is there but unreadable, or of a newer version:
	 * kept (and reported), never taken for "incomplete". */
	make_epoch(7, 1, 1);
	make_epoch(8, 1, 1);
	ckpt_epoch_dir(root, 4, edir, sizeof(edir));
	snprintf(path, sizeof(path), "%s/manifest", edir);
	size_t total;
	uint8_t *v2 = vcfmt_wrap(VC_MAGIC_MANIFEST, MANIFEST_VERSION + 1, "{}", 2, &total);
	CHECK(v2 && afile_publish(path, v2, total, 0600) == 0);
	free(v2);
	ckpt_epoch_dir(root, 6, edir, sizeof(edir));
	snprintf(path, sizeof(path), "%s/manifest", edir);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(mkdir(path, 0700), 0);		/* read fails with EISDIR */
	CHECK_EQ(ckpt_prune(root, 1, 8), 1);	/* only 7 */
	CHECK(exists(2) && exists(4) && exists(6) && exists(8) && !exists(7));

	/* A symlink named like an old epoch, pointing at someone's files:
	 * prune neither follows nor counts it; remove_tree removes the link
	 * only. */
	char victim[PATH_MAX], vf[PATH_MAX + 16], ln[PATH_MAX];
	mkdir_in("victim", victim);
	snprintf(vf, sizeof(vf), "%s/precious", victim);
	CHECK_EQ(afile_publish(vf, "x", 1, 0600), 0);
	ckpt_epoch_dir(root, 3, ln, sizeof(ln));
	CHECK_EQ(symlink(victim, ln), 0);
	ckpt_prune(root, 1, 8);
	CHECK(access(vf, F_OK) == 0);
	CHECK_EQ(ckpt_remove_tree(ln), 0);
	CHECK(access(vf, F_OK) == 0 && !exists(3));

	/* latest is durable or unchanged: the directory fsync after the
	 * rename fails, latest still names 8, so aborting 9 is safe. */
	latest_is("epoch-000008");
	make_epoch(9, 1, 0);
	ckpt_epoch_dir(root, 9, edir, sizeof(edir));
	json_t *m9 = json_pack("{s:I, s:i, s:[{s:i}], s:{}}", "epoch", (json_int_t)9, "nranks", 1,
			       "ranks", "rank", 0, "config");
	CHECK_EQ(manifest_write(edir, m9), 0);
	json_decref(m9);
	fail_fsync = 1;
	CHECK_EQ(ckpt_set_latest(root, 9), -EIO);
	CHECK_EQ(fail_fsync, 0);
	latest_is("epoch-000008");
	CHECK_EQ(ckpt_remove_tree(edir), 0);	/* the caller aborts epoch 9 */
	CHECK_EQ(ckpt_resolve(root, "latest", edir, sizeof(edir), &epoch, &m, why, sizeof(why)), 0);
	CHECK_EQ(epoch, 8);
	CHECK_EQ(ckpt_verify_rank(edir, m, 0, why, sizeof(why)), 0);
	json_decref(m);
	/* Even the restore's own fsync failing leaves latest on 8. */
	fail_fsync = 2;
	CHECK_EQ(ckpt_set_latest(root, 10), -EIO);
	latest_is("epoch-000008");
	/* No latest before: none after a failure. */
	char sub[PATH_MAX];
	mkdir_in("fresh", sub);
	fail_fsync = 1;
	CHECK_EQ(ckpt_set_latest(sub, 1), -EIO);
	snprintf(path, sizeof(path), "%s/latest", sub);
	CHECK(access(path, F_OK) < 0 && errno == ENOENT);

	/* --keep 1: prune never removes the epoch latest names, whatever
	 * keep_epoch says (a caller that pruned with a newer, failed epoch). */
	make_epoch(10, 1, 0);
	CHECK_EQ(ckpt_prune(root, 1, 10), 0);
	CHECK(exists(8));
	/* No temporary links left behind. */
	DIR *dd = opendir(root);
	struct dirent *de;
	while ((de = readdir(dd)))
		CHECK(strncmp(de->d_name, ".latest.tmp", 11) != 0);
	closedir(dd);

	CHECK_EQ(ckpt_remove_tree(root), 0);
	printf("ok: manifest\n");
	return 0;
}
