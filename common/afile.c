#include "afile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int afile_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int afile_sync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	int fd, r = 0;

	snprintf(copy, sizeof(copy), "%s", path);
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

int afile_publish(const char *path, const void *data, size_t len, mode_t mode)
{
	static unsigned seq;
	char tmp[PATH_MAX];
	int fd = -1, r;

	/* A fresh name each try, created exclusively and never through a
	 * symlink: a file someone else put there is not written to. */
	for (int tries = 0; fd < 0 && tries < 8; tries++) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%x%lx", path, (int)getpid(), seq++,
			     (unsigned long)ts.tv_nsec) >= (int)sizeof(tmp))
			return -ENAMETOOLONG;
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	r = afile_write_all(fd, data, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	return afile_sync_dir_of(path);
}

/* Why an existing directory may not hold private files: NULL when it is a
 * directory (not a symlink) owned by us with no group or other write. */
static const char *private_problem(const struct stat *st, char *buf, size_t len)
{
	if (S_ISLNK(st->st_mode))
		return "is a symbolic link, not a directory";
	if (!S_ISDIR(st->st_mode))
		return "is not a directory";
	if (st->st_uid != geteuid()) {
		snprintf(buf, len, "is owned by uid %u, not by you (uid %u)",
			 (unsigned)st->st_uid, (unsigned)geteuid());
		return buf;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(buf, len, "has mode %04o: writable by %s", (unsigned)(st->st_mode & 07777),
			 st->st_mode & S_IWOTH ? "other users" : "its group");
		return buf;
	}
	return NULL;
}

/* lstat dir and check it as private_problem() does; st gets the result. */
static int check_private(const char *dir, struct stat *st, char *why, size_t whylen)
{
	char buf[96];
	const char *bad;

	if (lstat(dir, st) < 0) {
		int r = -errno;
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return r;
	}
	bad = private_problem(st, buf, sizeof(buf));
	if (bad) {
		snprintf(why, whylen, "%s %s (refusing to use it as a private directory)", dir, bad);
		return S_ISDIR(st->st_mode) ? -EPERM : -ENOTDIR;
	}
	return 0;
}

int afile_check_private(const char *dir, char *why, size_t whylen)
{
	struct stat st;

	return check_private(dir, &st, why, whylen);
}

int afile_private_dir(const char *dir, mode_t mode, char *why, size_t whylen)
{
	struct stat st;
	int r;

	mode &= 0700;
	if (mkdir(dir, mode | S_IRWXU) == 0)
		return 0;
	if (errno != EEXIST) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return r;
	}
	r = check_private(dir, &st, why, whylen);
	if (r < 0)
		return r;
	/* Ours: tighten a 0755 left by an older version (no one else could
	 * write into it), through an fd of the very directory checked. */
	if ((st.st_mode & 07777) == (mode | S_IRWXU))
		return 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat fst;
	if (fd < 0)
		r = -errno;
	else if (fstat(fd, &fst) < 0)
		r = -errno;
	else if (fst.st_ino != st.st_ino || fst.st_dev != st.st_dev)
		r = -EAGAIN;
	else if (fchmod(fd, mode | S_IRWXU) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	if (r < 0)
		snprintf(why, whylen, "%s: could not make it mode %04o: %s", dir,
			 (unsigned)(mode | S_IRWXU), r == -EAGAIN ? "it was replaced" : strerror(-r));
	return r;
}

/* An existing parent on the way to a private directory: it must be a
 * directory no other user can replace entries of (not writable by others
 * unless sticky), and where others may create names (a sticky, world-
 * writable parent such as /tmp) it must be owned by us or root. */
static int check_parent(const char *path, bool parent_shared, char *why, size_t whylen)
{
	struct stat lst, st;
	uid_t me = geteuid();

	if (lstat(path, &lst) < 0 || stat(path, &st) < 0) {
		int r = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return r;
	}
	if (parent_shared && lst.st_uid != me && lst.st_uid != 0) {
		snprintf(why, whylen, "%s is owned by uid %u, not by you (uid %u), in a directory "
			 "every user can write (refusing to use it)", path, (unsigned)lst.st_uid,
			 (unsigned)me);
		return -EPERM;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "%s is not a directory", path);
		return -ENOTDIR;
	}
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		snprintf(why, whylen, "%s has mode %04o: every user can replace what is in it "
			 "(refusing to use it)", path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	if (st.st_uid != me && st.st_uid != 0 && (parent_shared || (st.st_mode & S_IWOTH))) {
		snprintf(why, whylen, "%s (the target of a link) is owned by uid %u, not by you",
			 path, (unsigned)st.st_uid);
		return -EPERM;
	}
	return 0;
}

int afile_mkdir_p_why(const char *dir, mode_t mode, char *why, size_t whylen)
{
	char buf[PATH_MAX];
	size_t len;
	bool shared = false;	/* the current component's parent is world-writable */
	struct stat st;
	int r;

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf)) {
		snprintf(why, whylen, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	len = strlen(buf);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	if (buf[0] != '/' && stat(".", &st) == 0)
		shared = st.st_mode & S_IWOTH;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		/* A parent we create is ours and as private as the target. */
		if (mkdir(buf, (mode & 0700) | S_IRWXU) < 0 && errno != EEXIST) {
			r = -errno;
			snprintf(why, whylen, "%s: %s", buf, strerror(errno));
			return r;
		}
		r = check_parent(buf, shared, why, whylen);
		if (r < 0)
			return r;
		shared = stat(buf, &st) == 0 && (st.st_mode & S_IWOTH);
		*p = '/';
	}
	if (shared || !(mode & 077))
		return afile_private_dir(buf, mode, why, whylen);
	/* A directory meant to be shared (group/other bits in mode), in a
	 * parent only trusted users can write. */
	if (mkdir(buf, mode) < 0 && errno != EEXIST) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", buf, strerror(errno));
		return r;
	}
	if (lstat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "%s is not a directory", buf);
		return -ENOTDIR;
	}
	return 0;
}

int afile_mkdir_p(const char *dir, mode_t mode)
{
	char why[PATH_MAX + 160];

	return afile_mkdir_p_why(dir, mode, why, sizeof(why));
}

int afile_read_all(const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t off = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if (st.st_size < 0 || (uint64_t)st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;	/* EIO, EISDIR: not a short file */
			close(fd);
			free(buf);
			return r;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	*out = buf;
	if (len)
		*len = off;
	return 0;
}
