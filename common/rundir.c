#include "rundir.h"

#include "afile.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* $XDG_RUNTIME_DIR when it is set, absolute and private; else NULL. */
static const char *xdg_dir(void)
{
	const char *x = getenv("XDG_RUNTIME_DIR");
	char why[PATH_MAX + 160];

	if (!x || x[0] != '/' || afile_check_private(x, why, sizeof(why)) < 0)
		return NULL;
	return x;
}

static int tmp_root(char *out, size_t len)
{
	if (snprintf(out, len, "/tmp/vcluster-%u", (unsigned)geteuid()) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int rundir_root(char *out, size_t len)
{
	const char *x = xdg_dir();

	if (!x)
		return tmp_root(out, len);
	if (snprintf(out, len, "%s/vcluster", x) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int rundir_new(char *out, size_t len)
{
	char root[PATH_MAX], stamp[32];
	time_t t = time(NULL);
	struct tm tm;
	int r = rundir_root(root, sizeof(root));

	if (r < 0)
		return r;
	localtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
	if (snprintf(out, len, "%s/job-%s-%d", root, stamp, (int)getpid()) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int rundir_set_latest(const char *run_dir, char *why, size_t whylen)
{
	static unsigned seq;
	char pbuf[PATH_MAX], bbuf[PATH_MAX], tmp[PATH_MAX + 64], link[PATH_MAX + 16];
	int r = -EEXIST;

	snprintf(pbuf, sizeof(pbuf), "%s", run_dir);
	snprintf(bbuf, sizeof(bbuf), "%s", run_dir);
	const char *parent = dirname(pbuf), *base = basename(bbuf);
	r = afile_check_private(parent, why, whylen);
	if (r < 0)
		return r;
	snprintf(link, sizeof(link), "%s/latest", parent);
	r = -EEXIST;
	for (int tries = 0; r == -EEXIST && tries < 8; tries++) {
		snprintf(tmp, sizeof(tmp), "%s/.latest.tmp.%d.%u", parent, (int)getpid(), seq++);
		r = symlink(base, tmp) < 0 ? -errno : 0;
	}
	if (r == 0 && rename(tmp, link) < 0) {
		r = -errno;
		unlink(tmp);
	}
	if (r < 0)
		snprintf(why, whylen, "%s: %s", link, strerror(-r));
	return r;
}

/* ROOT/latest -> NAME with ROOT, the link and ROOT/NAME ours and private.
 * -ENOENT (and why) when ROOT has no latest. */
static int latest_in(const char *root, char *out, size_t len, char *why, size_t whylen)
{
	char link[PATH_MAX + 16], target[PATH_MAX];
	struct stat st;
	ssize_t n;
	int r;

	snprintf(link, sizeof(link), "%s/latest", root);
	if (lstat(link, &st) < 0) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", link, strerror(errno));
		return r;
	}
	r = afile_check_private(root, why, whylen);
	if (r < 0)
		return r;
	if (!S_ISLNK(st.st_mode)) {
		snprintf(why, whylen, "%s is not a symbolic link (refusing to follow it)", link);
		return -EINVAL;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, whylen, "%s is owned by uid %u, not by you (refusing to follow it)",
			 link, (unsigned)st.st_uid);
		return -EPERM;
	}
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", link, strerror(errno));
		return r;
	}
	target[n] = '\0';
	if (!n || strchr(target, '/') || !strcmp(target, ".") || !strcmp(target, "..")) {
		snprintf(why, whylen, "%s points to '%s', not to a run directory beside it", link,
			 target);
		return -EINVAL;
	}
	if (snprintf(out, len, "%s/%s", root, target) >= (int)len) {
		snprintf(why, whylen, "%s: path too long", link);
		return -ENAMETOOLONG;
	}
	return afile_check_private(out, why, whylen);
}

int rundir_find_latest(char *out, size_t len, char *why, size_t whylen)
{
	char root[PATH_MAX];
	const char *x = xdg_dir();
	int r;

	if (x && snprintf(root, sizeof(root), "%s/vcluster", x) < (int)sizeof(root)) {
		r = latest_in(root, out, len, why, whylen);
		if (r != -ENOENT)
			return r;
	}
	tmp_root(root, sizeof(root));
	return latest_in(root, out, len, why, whylen);
}

int rundir_check(const char *dir, char *why, size_t whylen)
{
	char real[PATH_MAX];

	if (!realpath(dir, real)) {
		int r = -errno;
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return r;
	}
	int r = afile_check_private(real, why, whylen);
	if (r < 0 && strcmp(real, dir))
		snprintf(why + strlen(why), whylen - strlen(why), " (%s)", dir);
	return r;
}
