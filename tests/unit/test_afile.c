/* afile: private directories refuse what another user could have prepared
 * (a symlink, a directory of theirs, one they can write), publish never
 * writes through a file planted at its temporary name, and read_all
 * reports a failed fstat as that error. */
#include "test.h"
#include "afile.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/vc-test-afile.XXXXXX";
static char why[PATH_MAX + 200];

/* Linked with -Wl,--wrap=fstat: when armed, fstat fails with EIO after
 * scribbling on the result, as an uninitialised stat buffer might hold. */
static bool fail_fstat;
int __real_fstat(int fd, struct stat *st);
int __wrap_fstat(int fd, struct stat *st)
{
	if (!fail_fstat)
		return __real_fstat(fd, st);
	memset(st, 0x7f, sizeof(*st));
	errno = EIO;
	return -1;
}

static mode_t mode_of(const char *p)
{
	struct stat st;
	CHECK(lstat(p, &st) == 0);
	return st.st_mode & 07777;
}

static void path_in(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s/%s", root, name);
}

static void test_private_dir(void)
{
	char d[PATH_MAX], sub[PATH_MAX + 16], target[PATH_MAX];

	/* New: parents and the directory itself are 0700. */
	path_in(d, "a/b/c");
	CHECK_EQ(afile_mkdir_p_why(d, 0700, why, sizeof(why)), 0);
	CHECK_EQ(mode_of(d), 0700);
	path_in(sub, "a");
	CHECK_EQ(mode_of(sub), 0700);
	path_in(sub, "a/b");
	CHECK_EQ(mode_of(sub), 0700);
	/* Existing and ours: accepted (again), and a 0755 one tightened. */
	CHECK_EQ(afile_mkdir_p(d, 0700), 0);
	CHECK_EQ(chmod(d, 0755), 0);
	CHECK_EQ(afile_mkdir_p(d, 0700), 0);
	CHECK_EQ(mode_of(d), 0700);

	/* A symlink where the directory should be: refused, not followed. */
	path_in(target, "elsewhere");
	CHECK_EQ(mkdir(target, 0700), 0);
	path_in(d, "link");
	CHECK_EQ(symlink(target, d), 0);
	CHECK_EQ(afile_mkdir_p_why(d, 0700, why, sizeof(why)), -ENOTDIR);
	CHECK(strstr(why, d) && strstr(why, "symbolic link"));
	CHECK_EQ(afile_private_dir(d, 0700, why, sizeof(why)), -ENOTDIR);

	/* A file where the directory should be. */
	path_in(d, "file");
	CHECK_EQ(afile_publish(d, "x", 1, 0600), 0);
	CHECK_EQ(afile_mkdir_p_why(d, 0700, why, sizeof(why)), -ENOTDIR);
	CHECK(strstr(why, "not a directory"));

	/* Ours but writable by others or the group: refused, not chmod-ed. */
	path_in(d, "open");
	CHECK_EQ(mkdir(d, 0700), 0);
	CHECK_EQ(chmod(d, 0777), 0);
	CHECK_EQ(afile_mkdir_p_why(d, 0700, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, d) && strstr(why, "writable by other users"));
	CHECK_EQ(mode_of(d), 0777);
	CHECK_EQ(chmod(d, 0770), 0);
	CHECK_EQ(afile_private_dir(d, 0700, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, "writable by its group"));

	/* A world-writable parent without the sticky bit: anyone can swap
	 * what is in it. */
	path_in(d, "open/run");
	CHECK_EQ(chmod(sub, 0700), 0);
	path_in(sub, "open");
	CHECK_EQ(chmod(sub, 0777), 0);
	CHECK_EQ(afile_mkdir_p_why(d, 0700, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, sub) && strstr(why, "every user can replace"));
}

/* As root: directories made first by another user (uid 65534). */
static void test_foreign_owner(void)
{
	char tmp[PATH_MAX], d[PATH_MAX + 32], job[PATH_MAX + 64];

	if (geteuid() != 0) {
		printf("skip: ownership cases need root (chown)\n");
		return;
	}
	/* A shared, sticky directory like /tmp ... */
	path_in(tmp, "tmp");
	CHECK_EQ(mkdir(tmp, 0700), 0);
	CHECK_EQ(chmod(tmp, 01777), 0);
	/* ... where someone else created our vcluster-UID first. */
	snprintf(d, sizeof(d), "%s/vcluster-0", tmp);
	CHECK_EQ(mkdir(d, 0700), 0);
	CHECK_EQ(chmod(d, 0755), 0);
	CHECK_EQ(chown(d, 65534, 65534), 0);
	snprintf(job, sizeof(job), "%s/job-1", d);
	CHECK_EQ(afile_mkdir_p_why(job, 0700, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, d) && strstr(why, "owned by uid 65534"));
	CHECK(access(job, F_OK) < 0);		/* nothing made inside it */
	CHECK_EQ(afile_private_dir(d, 0700, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, "owned by uid 65534, not by you (uid 0)"));

	/* Their symlink in /tmp pointing at a directory of ours. */
	char mine[PATH_MAX], link[PATH_MAX + 32], sub[PATH_MAX + 64];
	path_in(mine, "mine");
	CHECK_EQ(mkdir(mine, 0700), 0);
	snprintf(link, sizeof(link), "%s/vcluster-x", tmp);
	CHECK_EQ(symlink(mine, link), 0);
	CHECK_EQ(lchown(link, 65534, 65534), 0);
	snprintf(sub, sizeof(sub), "%s/job-2", link);
	CHECK_EQ(afile_mkdir_p_why(sub, 0700, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, link) && strstr(why, "owned by uid 65534"));

	/* Our own fresh one in the sticky directory is fine. */
	snprintf(d, sizeof(d), "%s/vcluster-ok/job-3", tmp);
	CHECK_EQ(afile_mkdir_p_why(d, 0700, why, sizeof(why)), 0);
}

static void test_publish(void)
{
	char path[PATH_MAX], victim[PATH_MAX], planted[PATH_MAX + 32], *text;
	size_t len;

	/* A symlink planted at the temporary name the old code used. */
	path_in(victim, "victim");
	CHECK_EQ(afile_publish(victim, "precious", 8, 0600), 0);
	path_in(path, "target");
	snprintf(planted, sizeof(planted), "%s.tmp.%d", path, (int)getpid());
	CHECK_EQ(symlink(victim, planted), 0);
	CHECK_EQ(afile_publish(path, "new", 3, 0600), 0);
	CHECK_EQ(afile_read_all(victim, 100, &text, &len), 0);
	CHECK(len == 8 && !memcmp(text, "precious", 8));
	free(text);
	CHECK_EQ(afile_read_all(path, 100, &text, &len), 0);
	CHECK(len == 3 && !memcmp(text, "new", 3));
	free(text);
	CHECK_EQ(mode_of(path), 0600);
}

static void test_read_all(void)
{
	char path[PATH_MAX], *text = NULL;
	size_t len;

	path_in(path, "small");
	CHECK_EQ(afile_publish(path, "0123456789", 10, 0600), 0);
	CHECK_EQ(afile_read_all(path, 9, &text, &len), -EFBIG);
	CHECK_EQ(afile_read_all(path, 10, &text, &len), 0);
	CHECK_EQ(len, 10);
	free(text);
	fail_fstat = true;
	CHECK_EQ(afile_read_all(path, 100, &text, &len), -EIO);
	fail_fstat = false;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void rm_rf(void)
{
	if (nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "could not remove %s\n", root);
}

int main(void)
{
	CHECK(mkdtemp(root));
	test_private_dir();
	test_foreign_owner();
	test_publish();
	test_read_all();
	rm_rf();
	printf("ok: afile\n");
	return 0;
}
