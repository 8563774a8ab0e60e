/* rundir: the per-user root ($XDG_RUNTIME_DIR/vcluster when private, else
 * /tmp/vcluster-UID), latest set atomically, and followed only when the
 * root, the link and its target are ours and private. */
#include "test.h"
#include "afile.h"
#include "rundir.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char xdg[] = "/tmp/vc-test-rundir.XXXXXX";

int main(void)
{
	char root[PATH_MAX], run[PATH_MAX], found[PATH_MAX], why[2 * PATH_MAX], want[PATH_MAX];
	char link[PATH_MAX + 16];

	CHECK(mkdtemp(xdg));
	unsetenv("XDG_RUNTIME_DIR");
	CHECK_EQ(rundir_root(root, sizeof(root)), 0);
	snprintf(want, sizeof(want), "/tmp/vcluster-%u", (unsigned)geteuid());
	CHECK(!strcmp(root, want));
	/* Not private (0777): not used. */
	CHECK_EQ(chmod(xdg, 0777), 0);
	setenv("XDG_RUNTIME_DIR", xdg, 1);
	CHECK_EQ(rundir_root(root, sizeof(root)), 0);
	CHECK(!strcmp(root, want));
	setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
	CHECK_EQ(rundir_root(root, sizeof(root)), 0);
	CHECK(!strcmp(root, want));
	CHECK_EQ(chmod(xdg, 0700), 0);
	setenv("XDG_RUNTIME_DIR", xdg, 1);
	CHECK_EQ(rundir_root(root, sizeof(root)), 0);
	snprintf(want, sizeof(want), "%s/vcluster", xdg);
	CHECK(!strcmp(root, want));

	CHECK_EQ(rundir_new(run, sizeof(run)), 0);
	CHECK(!strncmp(run, want, strlen(want)) && strstr(run, "/job-"));
	CHECK_EQ(afile_mkdir_p_why(run, 0700, why, sizeof(why)), 0);
	CHECK_EQ(rundir_set_latest(run, why, sizeof(why)), 0);
	CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), 0);
	CHECK(!strcmp(found, run));
	CHECK_EQ(rundir_check(run, why, sizeof(why)), 0);

	/* A second run moves latest. */
	char run2[PATH_MAX + 8];
	snprintf(run2, sizeof(run2), "%s/job-2", root);
	CHECK_EQ(afile_mkdir_p_why(run2, 0700, why, sizeof(why)), 0);
	CHECK_EQ(rundir_set_latest(run2, why, sizeof(why)), 0);
	CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), 0);
	CHECK(!strcmp(found, run2));

	/* latest leading out of the root, or at a directory others can write. */
	snprintf(link, sizeof(link), "%s/latest", root);
	CHECK_EQ(unlink(link), 0);
	CHECK_EQ(symlink("../..", link), 0);
	CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "not to a run directory beside it"));
	CHECK_EQ(rundir_set_latest(run2, why, sizeof(why)), 0);
	CHECK_EQ(chmod(run2, 0777), 0);
	CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), -EPERM);
	CHECK(strstr(why, run2) && strstr(why, "writable by other users"));
	CHECK_EQ(rundir_check(run2, why, sizeof(why)), -EPERM);
	CHECK_EQ(chmod(run2, 0700), 0);
	/* The root itself open to others. */
	CHECK_EQ(chmod(root, 0733), 0);
	CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), -EPERM);
	CHECK(strstr(why, root));
	CHECK_EQ(rundir_set_latest(run2, why, sizeof(why)), -EPERM);
	CHECK_EQ(chmod(root, 0700), 0);
	/* latest a real directory, not a link. */
	CHECK_EQ(unlink(link), 0);
	CHECK_EQ(mkdir(link, 0700), 0);
	CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "not a symbolic link"));
	if (geteuid() == 0) {
		CHECK_EQ(rmdir(link), 0);
		CHECK_EQ(symlink("job-2", link), 0);
		CHECK_EQ(lchown(link, 65534, 65534), 0);
		CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), -EPERM);
		CHECK(strstr(why, "owned by uid 65534"));
		CHECK_EQ(unlink(link), 0);
		CHECK_EQ(symlink("job-2", link), 0);
		CHECK_EQ(chown(run2, 65534, 65534), 0);
		CHECK_EQ(rundir_find_latest(found, sizeof(found), why, sizeof(why)), -EPERM);
		CHECK(strstr(why, "owned by uid 65534"));
		CHECK_EQ(chown(run2, 0, 0), 0);
		unlink(link);
	} else {
		rmdir(link);
	}
	rmdir(run2);
	rmdir(run);
	rmdir(root);
	rmdir(xdg);
	printf("ok: rundir\n");
	return 0;
}
