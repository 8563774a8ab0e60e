/* Manifest and checkpoint directory: write/read, resolve latest, verify
 * files, refuse corrupt manifests and files, prune keeping the newest. */
#include "test.h"
#include "afile.h"
#include "manifest.h"
#include "rq.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/vc-test-manifest.XXXXXX";

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

	/* Prune: keep the newest 2 complete; an incomplete newer one stays. */
	make_epoch(3, 1, 1);
	make_epoch(4, 1, 1);
	make_epoch(5, 1, 0);
	CHECK_EQ(ckpt_prune(root, 2, 4), 2);	/* 1, and the corrupt 2 */
	struct stat st;
	ckpt_epoch_dir(root, 3, edir, sizeof(edir));
	CHECK(stat(edir, &st) == 0);
	ckpt_epoch_dir(root, 5, edir, sizeof(edir));
	CHECK(stat(edir, &st) == 0);
	ckpt_epoch_dir(root, 1, edir, sizeof(edir));
	CHECK(stat(edir, &st) < 0);
	CHECK_EQ(ckpt_remove_tree(root), 0);
	return 0;
}
