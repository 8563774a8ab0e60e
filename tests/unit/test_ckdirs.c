/* Several checkpoint directories (--checkpoint-dir D1,D2): which directory
 * a RAM file goes to, the manifest's "dirs"/"dir" resolved and checked, a
 * rank verified with its RAM files in two directories (a missing or
 * corrupt one named), the start-up check of the directories, and the
 * pruning of a further directory. */
#include "test.h"
#include "afile.h"
#include "liveram.h"
#include "manifest.h"
#include "rq.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PS	4096u
#define NPAGES	256u

static char root[] = "/tmp/vc-test-ckdirs.XXXXXX";
static char d1[PATH_MAX], d2[PATH_MAX];

static void sub(const char *name, char *out)
{
	snprintf(out, PATH_MAX, "%s/%s", root, name);
	CHECK_EQ(mkdir(out, 0700), 0);
}

static bool is_dir(const char *dir, uint64_t e)
{
	char p[PATH_MAX];
	struct stat st;
	ckpt_epoch_dir(dir, e, p, sizeof(p));
	return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
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

static json_t *file_entry(const char *dir, const char *name)
{
	char p[PATH_MAX + 64];
	uint32_t crc;
	uint64_t size;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	CHECK_EQ(ckpt_file_crc(p, &crc, &size), 0);
	return json_pack("{s:s, s:I, s:I}", "file", name, "size", (json_int_t)size, "crc32c",
			 (json_int_t)crc);
}

/* RAM file i of 2 of rank 0, epoch e, in dir; its manifest entry. */
static json_t *ram_file(const char *dir, uint64_t e, uint32_t i, int dir_index)
{
	char p[PATH_MAX + 64];
	uint8_t page[PS];
	uint64_t size;
	struct liveram_info in = { .file_index = i, .nfiles = 2, .epoch = e, .rank = 0,
				   .page_size = PS, .nblocks = 1 };
	strcpy(in.blocks[0].name, "pc.ram");
	in.blocks[0].length = (uint64_t)NPAGES * PS;
	snprintf(p, sizeof(p), "%s/rank0.ram.%u", dir, i);
	struct liveram_w *w = liveram_create(p, &in);
	CHECK(w);
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		if (liveram_file_of(pg, 2) == i) {
			memset(page, (int)(pg & 0xff), sizeof(page));
			CHECK_EQ(liveram_put(w, 0, 0, pg, 1, page), 0);
		}
	CHECK_EQ(liveram_finish(w, &size), 0);
	return json_pack("{s:s, s:I, s:i}", "file", p + strlen(dir) + 1, "size", (json_int_t)size,
			 "dir", dir_index);
}

static void test_spread(void)
{
	CHECK_EQ(ckpt_ram_dir(0, 1, 0, 1), 0);
	CHECK_EQ(ckpt_ram_dir(5, 4, 3, 1), 0);
	/* one file per rank: the ranks alternate */
	CHECK_EQ(ckpt_ram_dir(0, 1, 0, 2), 0);
	CHECK_EQ(ckpt_ram_dir(1, 1, 0, 2), 1);
	/* two files per rank: each rank's files on both disks */
	CHECK_EQ(ckpt_ram_dir(0, 2, 0, 2), 0);
	CHECK_EQ(ckpt_ram_dir(0, 2, 1, 2), 1);
	CHECK_EQ(ckpt_ram_dir(1, 2, 0, 2), 0);
	CHECK_EQ(ckpt_ram_dir(1, 2, 1, 2), 1);
	/* 3 ranks x 2 files over 4 disks: no disk gets more than one extra */
	int count[4] = { 0 };
	for (int r = 0; r < 3; r++)
		for (int f = 0; f < 2; f++)
			count[ckpt_ram_dir(r, 2, f, 4)]++;
	CHECK(count[0] == 2 && count[1] == 2 && count[2] == 1 && count[3] == 1);
}

static void test_paths(void)
{
	char out[PATH_MAX], why[512];
	json_t *m = json_pack("{s:I, s:[s, s]}", "epoch", (json_int_t)7, "dirs", "/a/ck", "/b/ck");
	json_t *f = json_pack("{s:s}", "file", "rank1.ram.0");

	CHECK_EQ(ckpt_ram_path("/x/epoch-000007", m, f, out, sizeof(out), why, sizeof(why)), 0);
	CHECK(!strcmp(out, "/x/epoch-000007/rank1.ram.0"));	/* no "dir": the manifest's */
	json_object_set_new(f, "dir", json_integer(1));
	CHECK_EQ(ckpt_ram_path("/x/epoch-000007", m, f, out, sizeof(out), why, sizeof(why)), 0);
	CHECK(!strcmp(out, "/b/ck/epoch-000007/rank1.ram.0"));
	json_object_set_new(f, "dir", json_integer(2));
	CHECK_EQ(ckpt_ram_path("/x/epoch-000007", m, f, out, sizeof(out), why, sizeof(why)),
		 -EBADMSG);
	CHECK(strstr(why, "/x/epoch-000007/manifest") && strstr(why, "rank1.ram.0"));
	json_object_set_new(f, "dir", json_string("1"));
	CHECK_EQ(ckpt_ram_path("/x/e", m, f, out, sizeof(out), why, sizeof(why)), -EBADMSG);
	json_object_set_new(f, "dir", json_integer(1));
	const char *bad_dirs[] = { "b/ck", "/b/../etc", "/b/..", "" };
	for (size_t i = 0; i < sizeof(bad_dirs) / sizeof(bad_dirs[0]); i++) {
		json_array_set_new(json_object_get(m, "dirs"), 1, json_string(bad_dirs[i]));
		CHECK_EQ(ckpt_ram_path("/x/e", m, f, out, sizeof(out), why, sizeof(why)), -EBADMSG);
		CHECK(strstr(why, "not an absolute path"));
	}
	json_array_set_new(json_object_get(m, "dirs"), 1, json_string("/b/..x/ck"));
	CHECK_EQ(ckpt_ram_path("/x/e", m, f, out, sizeof(out), why, sizeof(why)), 0);
	json_object_set_new(f, "file", json_string("../rank1.ram.0"));
	CHECK_EQ(ckpt_ram_path("/x/e", m, f, out, sizeof(out), why, sizeof(why)), -EBADMSG);
	json_decref(f);
	json_decref(m);
}

/* Epoch 3 of one rank: vmstate and rq in D1, RAM file 0 in D1, 1 in D2. */
static void test_verify(void)
{
	char e1[PATH_MAX], e2[PATH_MAX], p[PATH_MAX + 64], why[512], data[4096];
	uint64_t epoch;
	json_t *m;

	ckpt_epoch_dir(d1, 3, e1, sizeof(e1));
	ckpt_epoch_dir(d2, 3, e2, sizeof(e2));
	CHECK_EQ(afile_mkdir_p(e1, 0700), 0);
	CHECK_EQ(afile_mkdir_p(e2, 0700), 0);
	memset(data, 'v', sizeof(data));
	snprintf(p, sizeof(p), "%s/rank0.vmstate", e1);
	CHECK_EQ(afile_publish(p, data, sizeof(data), 0600), 0);
	struct rq *q = rq_create();
	snprintf(p, sizeof(p), "%s/rank0.rq", e1);
	CHECK_EQ(rq_save(q, p, 3, 0, NULL), 0);
	rq_destroy(q);
	json_t *ram = json_array();
	json_array_append_new(ram, ram_file(e1, 3, 0, 0));
	json_array_append_new(ram, ram_file(e2, 3, 1, 1));
	m = json_pack("{s:I, s:i, s:s, s:[s, s], s:{}, s:[{s:i, s:o, s:o, s:o}]}", "epoch",
		      (json_int_t)3, "nranks", 1, "mode", "live", "dirs", d1, d2, "config",
		      "ranks", "rank", 0, "vmstate", file_entry(e1, "rank0.vmstate"),
		      "rq", file_entry(e1, "rank0.rq"), "ram", ram);
	CHECK_EQ(manifest_write(e1, m), 0);
	json_decref(m);
	CHECK_EQ(ckpt_set_latest(d1, 3), 0);

	CHECK_EQ(ckpt_resolve(d1, "latest", p, sizeof(p), &epoch, &m, why, sizeof(why)), 0);
	CHECK_EQ(ckpt_verify_rank(p, m, 0, why, sizeof(why)), 0);
	/* a bit flipped in the file on the second disk: named */
	char f2[PATH_MAX + 64];
	snprintf(f2, sizeof(f2), "%s/rank0.ram.1", e2);
	flip(f2, 200);
	CHECK(ckpt_verify_rank(p, m, 0, why, sizeof(why)) < 0);
	CHECK(strstr(why, f2));
	flip(f2, 200);
	CHECK_EQ(ckpt_verify_rank(p, m, 0, why, sizeof(why)), 0);
	/* missing there: named */
	char moved[PATH_MAX + 64];
	snprintf(moved, sizeof(moved), "%s.away", f2);
	CHECK_EQ(rename(f2, moved), 0);
	CHECK_EQ(ckpt_verify_rank(p, m, 0, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, f2));
	/* the same file in D1 instead does not count: the manifest says D2 */
	char wrong[PATH_MAX + 64];
	snprintf(wrong, sizeof(wrong), "%s/rank0.ram.1", e1);
	CHECK_EQ(rename(moved, wrong), 0);
	CHECK_EQ(ckpt_verify_rank(p, m, 0, why, sizeof(why)), -ENOENT);
	CHECK_EQ(rename(wrong, f2), 0);
	CHECK_EQ(ckpt_verify_rank(p, m, 0, why, sizeof(why)), 0);
	json_decref(m);
}

static void test_check(void)
{
	char why[512], miss[PATH_MAX], file[PATH_MAX], alias[PATH_MAX + 8];
	const char *two[] = { d1, d2 };

	CHECK_EQ(ckpt_dirs_check(two, 2, why, sizeof(why)), 0);
	snprintf(miss, sizeof(miss), "%s/no-such", root);
	const char *m[] = { d1, miss };
	CHECK_EQ(ckpt_dirs_check(m, 2, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, miss) && !strchr(why, '\n'));
	snprintf(file, sizeof(file), "%s/plain", root);
	CHECK_EQ(afile_publish(file, "x", 1, 0600), 0);
	const char *f[] = { file, d2 };
	CHECK_EQ(ckpt_dirs_check(f, 2, why, sizeof(why)), -ENOTDIR);
	CHECK(strstr(why, file));
	snprintf(alias, sizeof(alias), "%s/.", d2);
	const char *dup[] = { d1, d2, alias };
	CHECK_EQ(ckpt_dirs_check(dup, 3, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "same directory"));
	/* not writable: as root mode bits do not stop a write, so a
	 * read-only file system stands in (procfs takes no new file) */
	char ro[PATH_MAX];
	const char *w[] = { d1, ro };
	if (geteuid() != 0) {
		sub("ro", ro);
		CHECK_EQ(chmod(ro, 0500), 0);
	} else {
		snprintf(ro, sizeof(ro), "/proc/self");
	}
	CHECK(ckpt_dirs_check(w, 2, why, sizeof(why)) < 0);
	CHECK(strstr(why, ro) && strstr(why, "not writable"));
	if (geteuid() != 0)
		chmod(ro, 0700);
	/* no probe file left behind */
	DIR *dd = opendir(d2);
	struct dirent *de;
	while ((de = readdir(dd)))
		CHECK(strncmp(de->d_name, ".vc-probe", 9) != 0);
	closedir(dd);
}

static void test_prune(void)
{
	char p[PATH_MAX], victim[PATH_MAX], vf[PATH_MAX + 16];

	/* D1: epoch 2 (kept there) and 3 (latest, test_verify); D2: 1 (pruned
	 * from D1), 2, 3, 4 (newer: in progress), 5 (a symlink). */
	ckpt_epoch_dir(d1, 2, p, sizeof(p));
	CHECK_EQ(mkdir(p, 0700), 0);
	for (uint64_t e = 1; e <= 4; e++) {
		ckpt_epoch_dir(d2, e, p, sizeof(p));
		if (e != 3)
			CHECK_EQ(mkdir(p, 0700), 0);
		snprintf(vf, sizeof(vf), "%s/rank0.ram.1.x", p);
		CHECK_EQ(afile_publish(vf, "x", 1, 0600), 0);
	}
	sub("victim", victim);
	snprintf(vf, sizeof(vf), "%s/precious", victim);
	CHECK_EQ(afile_publish(vf, "x", 1, 0600), 0);
	char ln[PATH_MAX];
	snprintf(ln, sizeof(ln), "%s/epoch-000001x", d2);
	CHECK_EQ(symlink(victim, ln), 0);
	CHECK_EQ(ckpt_prune_extra(d1, d2, 4), 1);
	CHECK(!is_dir(d2, 1) && is_dir(d2, 2) && is_dir(d2, 3) && is_dir(d2, 4));
	CHECK(access(vf, F_OK) == 0);
	/* epoch 2 gone from D1: its D2 part goes too; 3 stays (latest) */
	ckpt_epoch_dir(d1, 2, p, sizeof(p));
	CHECK_EQ(ckpt_remove_tree(p), 0);
	ckpt_epoch_dir(d1, 3, p, sizeof(p));
	char lnk[PATH_MAX];
	snprintf(lnk, sizeof(lnk), "%s/epoch-000001", d2);
	CHECK_EQ(symlink(victim, lnk), 0);	/* named like an epoch: not followed */
	CHECK_EQ(ckpt_prune_extra(d1, d2, 4), 1);
	CHECK(!is_dir(d2, 2) && is_dir(d2, 3) && is_dir(d2, 4));
	CHECK(access(vf, F_OK) == 0);
	/* the verify of latest still passes after pruning */
	json_t *m;
	char why[512];
	uint64_t epoch;
	CHECK_EQ(ckpt_resolve(d1, "latest", p, sizeof(p), &epoch, &m, why, sizeof(why)), 0);
	CHECK_EQ(ckpt_verify_rank(p, m, 0, why, sizeof(why)), 0);
	json_decref(m);
}

int main(void)
{
	CHECK(mkdtemp(root));
	sub("d1", d1);
	sub("d2", d2);
	test_spread();
	test_paths();
	test_verify();
	test_check();
	test_prune();
	CHECK_EQ(ckpt_remove_tree(root), 0);
	printf("ok: ckdirs\n");
	return 0;
}
