/* vccpio's root jobs with two checkpoint directories: the commit writes the
 * manifest and latest in the first and, with --keep, prunes both (what the
 * first no longer has goes from the second); the clean-up of an aborted
 * epoch removes its directory from both. */
#include "test.h"
#include "afile.h"
#include "manifest.h"
#include "vccpio.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/vc-test-vccpio-dirs.XXXXXX";
static char d1[PATH_MAX], d2[PATH_MAX];

static bool has(const char *dir, uint64_t e)
{
	char p[PATH_MAX];
	struct stat st;
	ckpt_epoch_dir(dir, e, p, sizeof(p));
	return lstat(p, &st) == 0;
}

/* What the ranks leave before the commit: epoch e's directory in both, a
 * RAM file in the second. */
static void ranks_saved(uint64_t e)
{
	char p[PATH_MAX], f[PATH_MAX + 16];
	ckpt_epoch_dir(d1, e, p, sizeof(p));
	CHECK_EQ(afile_mkdir_p(p, 0700), 0);
	ckpt_epoch_dir(d2, e, p, sizeof(p));
	CHECK_EQ(afile_mkdir_p(p, 0700), 0);
	snprintf(f, sizeof(f), "%s/rank0.ram.1", p);
	CHECK_EQ(afile_publish(f, "x", 1, 0600), 0);
}

static void commit(uint64_t e, int keep)
{
	static struct commit_job j;	/* large: PATH_MAX x 9 */

	memset(&j, 0, sizeof(j));
	j.manifest = json_pack("{s:I, s:i, s:[{s:i}], s:{}, s:[s, s]}", "epoch", (json_int_t)e,
			       "nranks", 1, "ranks", "rank", 0, "config", "dirs", d1, d2);
	snprintf(j.dir, sizeof(j.dir), "%s", d1);
	ckpt_epoch_dir(d1, e, j.epoch_dir, sizeof(j.epoch_dir));
	j.epoch = e;
	j.prev_epoch = e - 1;
	j.keep = keep;
	snprintf(j.more[0], sizeof(j.more[0]), "%s", d2);
	j.nmore = 1;
	vccpio_commit(&j);
	CHECK_EQ(j.err, 0);
}

int main(void)
{
	char p[PATH_MAX];

	CHECK(mkdtemp(root));
	snprintf(d1, sizeof(d1), "%s/d1", root);
	snprintf(d2, sizeof(d2), "%s/d2", root);
	CHECK_EQ(mkdir(d1, 0700), 0);
	CHECK_EQ(mkdir(d2, 0700), 0);

	for (uint64_t e = 1; e <= 3; e++) {
		ranks_saved(e);
		commit(e, 2);
	}
	/* --keep 2: epoch 1 gone from both */
	CHECK(!has(d1, 1) && !has(d2, 1));
	CHECK(has(d1, 2) && has(d2, 2) && has(d1, 3) && has(d2, 3));

	/* epoch 4 aborts: its directory goes from both */
	ranks_saved(4);
	struct cleanup_job *c = calloc(1, sizeof(*c));
	CHECK(c);
	ckpt_epoch_dir(d1, 4, c->tree, sizeof(c->tree));
	ckpt_epoch_dir(d2, 4, c->more[0], sizeof(c->more[0]));
	vccpio_cleanup(c);
	free(c);
	CHECK(!has(d1, 4) && !has(d2, 4));

	/* a crash left epoch 5 in the second directory only (its rank
	 * created its RAM files, the first never got its directory): the
	 * next commit removes it; with --keep 0 nothing else goes */
	ckpt_epoch_dir(d2, 5, p, sizeof(p));
	CHECK_EQ(mkdir(p, 0700), 0);
	ranks_saved(6);
	commit(6, 0);
	CHECK(!has(d2, 5));
	CHECK(has(d1, 2) && has(d2, 2) && has(d1, 3) && has(d2, 3) && has(d1, 6) && has(d2, 6));
	json_t *m;
	char why[512];
	uint64_t epoch;
	CHECK_EQ(ckpt_resolve(d1, "latest", p, sizeof(p), &epoch, &m, why, sizeof(why)), 0);
	CHECK_EQ(epoch, 6);
	json_decref(m);

	CHECK_EQ(ckpt_remove_tree(root), 0);
	printf("ok: vccpio_dirs\n");
	return 0;
}
