#define LOG_PREFIX "ckpt"
#include "manifest.h"

#include "afile.h"
#include "liveram.h"
#include "log.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_MAX (16u << 20)

void ckpt_epoch_dir(const char *dir, uint64_t epoch, char *out, size_t len)
{
	snprintf(out, len, "%s/epoch-%06llu", dir, (unsigned long long)epoch);
}

/* Digits only (no sign, space or 0x), no overflow, not 0. */
static int parse_epoch_number(const char *s, uint64_t *epoch)
{
	uint64_t e = 0;

	if (!*s)
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || e > (UINT64_MAX - 9) / 10)
			return -1;
		e = e * 10 + (uint64_t)(*p - '0');
	}
	if (e == 0)
		return -1;
	*epoch = e;
	return 0;
}

int ckpt_epoch_from_name(const char *name, uint64_t *epoch)
{
	char canon[48];
	uint64_t e;

	if (strncmp(name, "epoch-", 6) != 0 || parse_epoch_number(name + 6, &e) < 0)
		return -1;
	/* Exactly what ckpt_epoch_dir() writes, so that one epoch has one
	 * name ("epoch-7" and "epoch-0000007" are not epoch-000007). */
	snprintf(canon, sizeof(canon), "epoch-%06llu", (unsigned long long)e);
	if (strcmp(canon, name) != 0)
		return -1;
	*epoch = e;
	return 0;
}

#define parse_epoch_name ckpt_epoch_from_name

uint64_t ckpt_next_epoch(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t max = 0, e;

	if (!d)
		return 1;
	while ((de = readdir(d)))
		if (parse_epoch_name(de->d_name, &e) == 0 && e > max)
			max = e;
	closedir(d);
	return max + 1;
}

int manifest_write(const char *epoch_dir, json_t *m)
{
	char path[PATH_MAX];
	char *body = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
	int r;

	if (!body)
		return -ENOMEM;
	size_t total;
	uint8_t *buf = vcfmt_wrap(VC_MAGIC_MANIFEST, MANIFEST_VERSION, body, strlen(body), &total);
	free(body);
	if (!buf)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/manifest", epoch_dir);
	r = afile_publish(path, buf, total, 0600);
	free(buf);
	return r;
}

int manifest_read(const char *epoch_dir, json_t **out, char *why, size_t whylen)
{
	char path[PATH_MAX], inner[200];
	char *text;
	size_t len;
	int r;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/manifest", epoch_dir);
	r = afile_read_all(path, MANIFEST_MAX, &text, &len);
	if (r < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(-r));
		return r;
	}
	const uint8_t *body;
	uint64_t blen;
	r = vcfmt_unwrap((uint8_t *)text, len, VC_MAGIC_MANIFEST, MANIFEST_VERSION, MANIFEST_MAX,
			 &body, &blen, inner, sizeof(inner));
	if (r < 0) {
		snprintf(why, whylen, "%s: %s", path, inner);
		r = -EBADMSG;
		goto out;
	}
	json_error_t jerr;
	json_t *m = json_loadb((const char *)body, blen, 0, &jerr);
	if (!json_is_object(m) || !json_is_integer(json_object_get(m, "nranks")) ||
	    !json_is_array(json_object_get(m, "ranks")) ||
	    json_array_size(json_object_get(m, "ranks")) !=
		    (size_t)json_integer_value(json_object_get(m, "nranks"))) {
		snprintf(why, whylen, "%s: body is not a complete manifest", path);
		json_decref(m);
		r = -EBADMSG;
		goto out;
	}
	*out = m;
	r = 0;
out:
	free(text);
	return r;
}

int ckpt_resolve(const char *dir, const char *which, char *epoch_dir,
		 size_t len, uint64_t *epoch, json_t **manifest, char *why,
		 size_t whylen)
{
	char path[PATH_MAX], target[PATH_MAX];
	uint64_t e;

	*manifest = NULL;
	if (!strcmp(which, "latest")) {
		snprintf(path, sizeof(path), "%s/latest", dir);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n < 0) {
			snprintf(why, whylen, "%s: %s (no complete checkpoint in %s)", path,
				 strerror(errno), dir);
			return -ENOENT;
		}
		target[n] = '\0';
		if (parse_epoch_name(target, &e) < 0) {
			snprintf(why, whylen, "%s points to '%s', not an epoch directory", path, target);
			return -EINVAL;
		}
	} else {
		if (parse_epoch_number(which, &e) < 0) {
			snprintf(why, whylen, "--restore '%s': not 'latest' or an epoch number", which);
			return -EINVAL;
		}
	}
	ckpt_epoch_dir(dir, e, epoch_dir, len);
	struct stat st;
	if (stat(epoch_dir, &st) < 0) {
		snprintf(why, whylen, "%s: %s", epoch_dir, strerror(errno));
		return -errno;
	}
	int r = manifest_read(epoch_dir, manifest, why, whylen);
	if (r < 0)
		return r;
	if ((uint64_t)json_integer_value(json_object_get(*manifest, "epoch")) != e) {
		snprintf(why, whylen, "%s/manifest: says epoch %lld", epoch_dir,
			 json_integer_value(json_object_get(*manifest, "epoch")));
		json_decref(*manifest);
		*manifest = NULL;
		return -EBADMSG;
	}
	*epoch = e;
	return 0;
}

int ckpt_file_crc(const char *path, uint32_t *crc, uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	static __thread uint8_t buf[1 << 20];
	uint32_t c = 0;
	uint64_t total = 0;

	if (fd < 0)
		return -errno;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;
			close(fd);
			return r;
		}
		if (n == 0)
			break;
		c = vcfmt_crc32c(c, buf, (size_t)n);
		total += (uint64_t)n;
	}
	close(fd);
	*crc = c;
	*size = total;
	return 0;
}

static int verify_file(const char *epoch_dir, json_t *f, const char *what, int rank,
		       char *why, size_t whylen)
{
	const char *name = json_string_value(json_object_get(f, "file"));
	char path[PATH_MAX];
	uint32_t crc;
	uint64_t size;

	if (!name || strchr(name, '/')) {
		snprintf(why, whylen, "%s/manifest: rank %d has no valid %s file entry",
			 epoch_dir, rank, what);
		return -EBADMSG;
	}
	snprintf(path, sizeof(path), "%s/%s", epoch_dir, name);
	int r = ckpt_file_crc(path, &crc, &size);
	if (r < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(-r));
		return r;
	}
	uint64_t want_size = (uint64_t)json_integer_value(json_object_get(f, "size"));
	uint32_t want_crc = (uint32_t)json_integer_value(json_object_get(f, "crc32c"));
	if (size != want_size) {
		snprintf(why, whylen, "%s: %llu bytes, manifest says %llu (%s)", path,
			 (unsigned long long)size, (unsigned long long)want_size,
			 size < want_size ? "truncated" : "extended");
		return -EBADMSG;
	}
	if (crc != want_crc) {
		snprintf(why, whylen, "%s: CRC32C 0x%08x, manifest says 0x%08x (corrupt)",
			 path, crc, want_crc);
		return -EBADMSG;
	}
	return 0;
}

int ckpt_ram_dir(int rank, int nfiles, int file, int ndirs)
{
	if (ndirs < 2 || rank < 0 || nfiles < 1 || file < 0)
		return 0;
	return (int)(((long long)rank * nfiles + file) % ndirs);
}

/* An absolute path without a ".." component (a manifest is data someone
 * else handed over: it names where to read, never where to climb). */
static bool plain_abs_path(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) >= PATH_MAX - 64)
		return false;
	for (const char *c = p; (c = strstr(c, "..")); c += 2)
		if (c[-1] == '/' && (c[2] == '/' || c[2] == '\0'))
			return false;
	return true;
}

int ckpt_ram_path(const char *epoch_dir, json_t *m, json_t *f, char *out, size_t len,
		  char *why, size_t whylen)
{
	const char *name = json_string_value(json_object_get(f, "file"));
	json_t *jd = json_object_get(f, "dir"), *dirs = json_object_get(m, "dirs");
	json_int_t d = jd ? json_integer_value(jd) : 0;
	const char *dir;

	if (!name || !name[0] || strchr(name, '/')) {
		snprintf(why, whylen, "%s/manifest: a ram file entry has no valid name", epoch_dir);
		return -EBADMSG;
	}
	if ((jd && !json_is_integer(jd)) || d < 0 || (d > 0 && (!json_is_array(dirs) ||
	    (size_t)d >= json_array_size(dirs) || json_array_size(dirs) > CKPT_MAX_DIRS))) {
		snprintf(why, whylen, "%s/manifest: %s: no such checkpoint directory in \"dirs\"",
			 epoch_dir, name);
		return -EBADMSG;
	}
	if (d == 0) {
		snprintf(out, len, "%s/%s", epoch_dir, name);
		return 0;
	}
	dir = json_string_value(json_array_get(dirs, (size_t)d));
	if (!plain_abs_path(dir)) {
		snprintf(why, whylen, "%s/manifest: checkpoint directory %lld of \"dirs\" is not "
			 "an absolute path", epoch_dir, (long long)d);
		return -EBADMSG;
	}
	uint64_t e = (uint64_t)json_integer_value(json_object_get(m, "epoch"));
	snprintf(out, len, "%s/epoch-%06llu/%s", dir, (unsigned long long)e, name);
	return 0;
}

int ckpt_dirs_check(const char *const *dirs, int n, char *why, size_t whylen)
{
	struct stat st[CKPT_MAX_DIRS];
	char probe[PATH_MAX + 32];

	if (n < 1 || n > CKPT_MAX_DIRS) {
		snprintf(why, whylen, "--checkpoint-dir: %d directories, at most %d", n,
			 CKPT_MAX_DIRS);
		return -EINVAL;
	}
	for (int i = 0; i < n; i++) {
		if (stat(dirs[i], &st[i]) < 0) {
			int e = errno;
			snprintf(why, whylen, "checkpoint directory %s: %s", dirs[i], strerror(e));
			return -e;
		}
		if (!S_ISDIR(st[i].st_mode)) {
			snprintf(why, whylen, "checkpoint directory %s: not a directory", dirs[i]);
			return -ENOTDIR;
		}
		for (int k = 0; k < i; k++)
			if (st[k].st_dev == st[i].st_dev && st[k].st_ino == st[i].st_ino) {
				snprintf(why, whylen, "checkpoint directories %s and %s are the "
					 "same directory", dirs[k], dirs[i]);
				return -EINVAL;
			}
		/* A real file rather than access(W_OK): it meets a read-only
		 * mount, a quota or an ACL the way the save's files would. */
		snprintf(probe, sizeof(probe), "%s/.vc-probe.XXXXXX", dirs[i]);
		int fd = mkstemp(probe);
		if (fd < 0) {
			int e = errno;
			snprintf(why, whylen, "checkpoint directory %s: not writable: %s", dirs[i],
				 strerror(e));
			return -e;
		}
		close(fd);
		unlink(probe);
	}
	return 0;
}

/* A live checkpoint's RAM files ("ram": [{file, size, dir}, ...]): each
 * read whole, every record's CRC checked (liveram.h), and its meta must
 * name this epoch, this rank, its place and the count of files. */
static int verify_ram(const char *epoch_dir, json_t *m, json_t *ram, int rank, char *why,
		      size_t whylen)
{
	size_t n = json_array_size(ram);
	uint64_t epoch = (uint64_t)json_integer_value(json_object_get(m, "epoch"));

	if (!json_is_array(ram) || n < 1 || n > LIVERAM_MAX_FILES) {
		snprintf(why, whylen, "%s/manifest: rank %d has no valid ram file list",
			 epoch_dir, rank);
		return -EBADMSG;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *f = json_array_get(ram, i);
		char path[PATH_MAX], inner[256] = "";
		struct liveram_info in;
		struct stat st;

		int r = ckpt_ram_path(epoch_dir, m, f, path, sizeof(path), why, whylen);
		if (r < 0)
			return r;
		uint64_t want = (uint64_t)json_integer_value(json_object_get(f, "size"));
		if (stat(path, &st) < 0) {
			snprintf(why, whylen, "%s: %s", path, strerror(errno));
			return -errno;
		}
		if ((uint64_t)st.st_size != want) {
			snprintf(why, whylen, "%s: %llu bytes, manifest says %llu (%s)", path,
				 (unsigned long long)st.st_size, (unsigned long long)want,
				 (uint64_t)st.st_size < want ? "truncated" : "extended");
			return -EBADMSG;
		}
		r = liveram_read(path, NULL, NULL, &in, inner, sizeof(inner));
		if (r < 0) {
			snprintf(why, whylen, "%s: %s", path, inner);
			return r;
		}
		if (in.epoch != epoch || in.rank != (uint32_t)rank || in.file_index != i ||
		    in.nfiles != n) {
			snprintf(why, whylen, "%s: file %u of %u of epoch %llu rank %u, expected "
				 "file %zu of %zu of epoch %llu rank %d", path, in.file_index,
				 in.nfiles, (unsigned long long)in.epoch, in.rank, i, n,
				 (unsigned long long)epoch, rank);
			return -EBADMSG;
		}
	}
	return 0;
}

int ckpt_verify_rank(const char *epoch_dir, json_t *m, int rank, char *why,
		     size_t whylen)
{
	json_t *ri = json_array_get(json_object_get(m, "ranks"), (size_t)rank);
	int r;

	if (!json_is_object(ri) || json_integer_value(json_object_get(ri, "rank")) != rank) {
		snprintf(why, whylen, "%s/manifest: no entry for rank %d", epoch_dir, rank);
		return -EBADMSG;
	}
	r = verify_file(epoch_dir, json_object_get(ri, "vmstate"), "vmstate", rank, why, whylen);
	if (r == 0)
		r = verify_file(epoch_dir, json_object_get(ri, "rq"), "receive queue", rank, why, whylen);
	if (r == 0 && json_object_get(ri, "disk"))
		r = verify_file(epoch_dir, json_object_get(ri, "disk"), "disk", rank, why, whylen);
	if (r == 0 && json_object_get(ri, "ram"))
		r = verify_ram(epoch_dir, m, json_object_get(ri, "ram"), rank, why, whylen);
	return r;
}

/* Replace dir/latest by a symlink to target (a fresh temporary link
 * renamed over it).  0 or -errno; nothing is left behind on failure. */
static int link_latest(const char *dir, const char *target)
{
	static unsigned seq;
	char tmp[PATH_MAX], link[PATH_MAX];
	int r = -EEXIST;

	snprintf(link, sizeof(link), "%s/latest", dir);
	for (int tries = 0; r == -EEXIST && tries < 8; tries++) {
		snprintf(tmp, sizeof(tmp), "%s/.latest.tmp.%d.%u", dir, (int)getpid(), seq++);
		r = symlink(target, tmp) < 0 ? -errno : 0;
	}
	if (r < 0)
		return r;
	if (rename(tmp, link) < 0) {
		r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

int ckpt_set_latest(const char *dir, uint64_t epoch)
{
	char link[PATH_MAX], target[64], old[PATH_MAX];
	ssize_t n;
	int r;

	snprintf(target, sizeof(target), "epoch-%06llu", (unsigned long long)epoch);
	snprintf(link, sizeof(link), "%s/latest", dir);
	n = readlink(link, old, sizeof(old) - 1);
	if (n < 0 && errno != ENOENT && errno != EINVAL)
		return -errno;
	if (n >= 0)
		old[n] = '\0';
	r = link_latest(dir, target);
	if (r < 0)
		return r;
	r = afile_sync_dir_of(link);
	if (r == 0)
		return 0;
	/* Not known to be durable: put the old link back, so that a caller
	 * that now aborts this epoch does not leave latest naming it. */
	if (n >= 0)
		link_latest(dir, old);
	else if (n < 0 && errno != EINVAL)
		unlink(link);
	afile_sync_dir_of(link);
	return r;
}

/* Remove name (a file, or a directory tree) inside dirfd, never following a
 * symlink: a symlink is removed itself.  0 or the first -errno. */
static int remove_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r = 0;

	if (fd < 0) {
		if (errno != ENOTDIR && errno != ELOOP)
			return -errno;
		return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int e = remove_at(fd, de->d_name);
		if (e < 0 && r == 0)
			r = e;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && r == 0)
		r = -errno;
	return r;
}

int ckpt_remove_tree(const char *path)
{
	char parent[PATH_MAX];
	const char *base;
	int dfd, r;

	if (snprintf(parent, sizeof(parent), "%s", path) >= (int)sizeof(parent))
		return -ENAMETOOLONG;
	size_t len = strlen(parent);
	while (len > 1 && parent[len - 1] == '/')
		parent[--len] = '\0';
	char *slash = strrchr(parent, '/');
	if (!slash) {
		base = parent;
		dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		*slash = '\0';
		base = slash + 1;
		dfd = open(slash == parent ? "/" : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd < 0)
		return -errno;
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		r = -EINVAL;
	else
		r = remove_at(dfd, base);
	close(dfd);
	return r;
}

static int cmp_u64_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

int ckpt_prune(const char *dir, int keep, uint64_t keep_epoch)
{
	static uint64_t epochs[4096];
	char path[PATH_MAX], why[PATH_MAX + 200], target[64];
	uint64_t e, latest = 0;
	int n = 0, removed = 0, complete = 0;
	struct dirent *de;
	struct stat st;

	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	while ((de = readdir(d)) && n < 4096) {
		if (parse_epoch_name(de->d_name, &e) < 0)
			continue;
		/* Only real directories: a symlink named like an epoch is
		 * neither counted nor followed. */
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		epochs[n++] = e;
	}
	/* Whatever latest names stays, even if it is older than keep allows. */
	snprintf(path, sizeof(path), "%s/latest", dir);
	ssize_t tn = readlink(path, target, sizeof(target) - 1);
	if (tn > 0) {
		target[tn] = '\0';
		if (parse_epoch_name(target, &e) == 0)
			latest = e;
	}
	qsort(epochs, (size_t)n, sizeof(uint64_t), cmp_u64_desc);
	for (int i = 0; i < n; i++) {
		json_t *m;
		ckpt_epoch_dir(dir, epochs[i], path, sizeof(path));
		int r = manifest_read(path, &m, why, sizeof(why));
		json_decref(m);
		if (epochs[i] == keep_epoch || epochs[i] == latest) {
			complete += r == 0;
			continue;
		}
		if (r < 0 && r != -ENOENT) {
			/* Present but unreadable (EIO, EMFILE, a newer format,
			 * damage): maybe a checkpoint; never delete it. */
			pr_warn("keeping %s: %s", path, why);
			continue;
		}
		/* Newer incomplete epochs may be in progress: leave them. */
		if ((r == 0 && ++complete > keep) || (r == -ENOENT && complete > 0)) {
			char name[64];
			snprintf(name, sizeof(name), "epoch-%06llu", (unsigned long long)epochs[i]);
			int e2 = remove_at(dfd, name);
			if (e2 == 0)
				removed++;
			else
				pr_warn("could not remove %s: %s", path, strerror(-e2));
		}
	}
	closedir(d);
	return removed;
}

int ckpt_prune_extra(const char *main_dir, const char *extra, uint64_t keep_epoch)
{
	char path[PATH_MAX], target[64], name[64];
	uint64_t e, latest = 0;
	struct dirent *de;
	struct stat st;
	int removed = 0;

	snprintf(path, sizeof(path), "%s/latest", main_dir);
	ssize_t tn = readlink(path, target, sizeof(target) - 1);
	if (tn > 0) {
		target[tn] = '\0';
		if (parse_epoch_name(target, &e) == 0)
			latest = e;
	}
	int dfd = open(extra, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	while ((de = readdir(d))) {
		if (parse_epoch_name(de->d_name, &e) < 0 || e >= keep_epoch || e == latest)
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		ckpt_epoch_dir(main_dir, e, path, sizeof(path));
		if (lstat(path, &st) == 0 || errno != ENOENT)
			continue;	/* still in main (kept, or unknown): keep */
		snprintf(name, sizeof(name), "%s", de->d_name);
		int r = remove_at(dfd, name);
		if (r == 0)
			removed++;
		else
			pr_warn("could not remove %s/%s: %s", extra, name, strerror(-r));
	}
	closedir(d);
	return removed;
}
