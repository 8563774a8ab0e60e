#define LOG_PREFIX "restore"
#include "restore.h"

#include "liveram.h"
#include "log.h"
#include "manifest.h"
#include "qmp.h"
#include "qmpmig.h"
#include "rq.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_TEXT_MAX	(1 << 16)
#define LOAD_POLL_MS		20

/* Written by restore_config_build(), the only keys a restore accepts. */
const char *const restore_config_keys[] = {
	"memory", "vcpus", "subnet", "guest-cmd", "append", "kernel", "initrd", "disk",
	"vm", "synth-rate", "synth-seconds", "maxcpus", NULL,
};

struct restore {
	char dir[PATH_MAX];	/* the epoch directory */
	uint64_t epoch;
	json_t *manifest;
};

static void put(json_t *o, const char *key, const char *val)
{
	if (val && val[0])
		json_object_set_new(o, key, json_string(val));
}

json_t *restore_config_build(const struct restore_settings *s)
{
	json_t *o = json_object();

	put(o, "memory", s->memory);
	put(o, "vcpus", s->vcpus);
	put(o, "maxcpus", s->maxcpus);
	put(o, "subnet", s->subnet);
	/* an empty guest command or append is a setting too */
	json_object_set_new(o, "guest-cmd", json_string(s->guest_cmd ? s->guest_cmd : ""));
	json_object_set_new(o, "append", json_string(s->append ? s->append : ""));
	json_object_set_new(o, "kernel", json_string(s->kernel ? s->kernel : ""));
	put(o, "initrd", s->initrd);
	put(o, "disk", s->disk);
	/* A synthetic VM's state loads only into a synthetic VM (older
	 * manifests have no "vm": QEMU). */
	put(o, "vm", s->vm);
	put(o, "synth-rate", s->synth_rate);
	put(o, "synth-seconds", s->synth_seconds);
	return o;
}

static bool allowed(const char *key)
{
	for (int i = 0; restore_config_keys[i]; i++)
		if (!strcmp(key, restore_config_keys[i]))
			return true;
	return false;
}

int restore_config_check(json_t *conf, const char *where, char *why, size_t whylen)
{
	const char *key;
	json_t *val;

	if (!conf)
		return 0;
	if (!json_is_object(conf)) {
		snprintf(why, whylen, "%s: \"config\" is not an object", where);
		return -EINVAL;
	}
	json_object_foreach(conf, key, val) {
		if (!allowed(key)) {
			snprintf(why, whylen, "%s: config key '%s' is not one a checkpoint writes; "
				 "refusing to restore", where, key);
			return -EINVAL;
		}
		if (!json_is_string(val)) {
			snprintf(why, whylen, "%s: config key '%s' is not a string", where, key);
			return -EINVAL;
		}
	}
	return 0;
}

/* Rank 0: resolve, check, and encode what the others need. */
static int resolve(const char *dir, const char *which, int nranks, struct restore *r,
		   char *text, size_t tlen, char *why, size_t whylen)
{
	json_t *m = NULL;
	char where[PATH_MAX + 16];
	int rc = ckpt_resolve(dir, which, r->dir, sizeof(r->dir), &r->epoch, &m, why, whylen);

	if (rc < 0)
		return rc;
	json_int_t n = json_integer_value(json_object_get(m, "nranks"));
	if (n != nranks) {
		snprintf(why, whylen, "%s was taken with %lld ranks; this job has %d "
			 "(restart with mpirun -np %lld)", r->dir, (long long)n, nranks, (long long)n);
		rc = -EINVAL;
		goto out;
	}
	snprintf(where, sizeof(where), "%s/manifest", r->dir);
	rc = restore_config_check(json_object_get(m, "config"), where, why, whylen);
	if (rc < 0)
		goto out;
	char *t = json_dumps(m, JSON_COMPACT);
	if (!t || strlen(t) >= tlen) {
		snprintf(why, whylen, "%s: too large", where);
		rc = -E2BIG;
	} else {
		strcpy(text, t);
	}
	free(t);
out:
	json_decref(m);
	return rc;
}

/* Every rank learns whether all are fine; the lowest failing one reports. */
static bool agree(MPI_Comm comm, bool ok, bool *report)
{
	int rank, size, mine, first;

	MPI_Comm_rank(comm, &rank);
	MPI_Comm_size(comm, &size);
	mine = ok ? size : rank;
	if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS)
		first = -1;
	*report = !ok && first == rank;
	return first == size;
}

struct restore *restore_prepare(MPI_Comm comm, const char *dir, const char *which,
				bool *report, char *why, size_t whylen)
{
	struct restore *r = calloc(1, sizeof(*r));
	char *text = calloc(1, MANIFEST_TEXT_MAX);
	int rank, size, ok = r && text;
	char where[PATH_MAX + 16];

	*report = false;
	why[0] = '\0';
	MPI_Comm_rank(comm, &rank);
	MPI_Comm_size(comm, &size);
	if (!ok)
		snprintf(why, whylen, "restore: out of memory");
	if (rank == 0 && ok)
		ok = resolve(dir, which, size, r, text, MANIFEST_TEXT_MAX, why, whylen) == 0;
	if (!agree(comm, ok, report))
		goto out_free;
	if (MPI_Bcast(text, MANIFEST_TEXT_MAX, MPI_CHAR, 0, comm) != MPI_SUCCESS ||
	    MPI_Bcast(r->dir, sizeof(r->dir), MPI_CHAR, 0, comm) != MPI_SUCCESS ||
	    MPI_Bcast(&r->epoch, 1, MPI_UINT64_T, 0, comm) != MPI_SUCCESS) {
		snprintf(why, whylen, "restore: broadcasting the manifest from rank 0 failed");
		*report = rank == 0;
		goto out_free;
	}
	json_error_t jerr;
	r->manifest = json_loads(text, 0, &jerr);
	snprintf(where, sizeof(where), "%s/manifest", r->dir);
	ok = r->manifest != NULL;
	if (!ok)
		snprintf(why, whylen, "%s: %s", where, jerr.text);
	/* every rank checks the keys itself: it applies them */
	if (ok)
		ok = restore_config_check(json_object_get(r->manifest, "config"), where, why,
					  whylen) == 0;
	if (ok)
		ok = ckpt_verify_rank(r->dir, r->manifest, rank, why, whylen) == 0;
	if (!agree(comm, ok, report))
		goto out_free;
	free(text);
	return r;
out_free:
	free(text);
	restore_destroy(r);
	return NULL;
}

void restore_destroy(struct restore *r)
{
	if (!r)
		return;
	json_decref(r->manifest);
	free(r);
}

uint64_t restore_epoch(const struct restore *r)
{
	return r->epoch;
}

const char *restore_dir(const struct restore *r)
{
	return r->dir;
}

json_t *restore_config(const struct restore *r)
{
	return json_object_get(r->manifest, "config");
}

const char *restore_disk(const struct restore *r, int rank, char *buf, size_t len)
{
	json_t *ri = json_array_get(json_object_get(r->manifest, "ranks"), (size_t)rank);

	if (!json_object_get(ri, "disk"))
		return NULL;
	snprintf(buf, len, "%s/rank%d.disk.qcow2", r->dir, rank);
	return buf;
}

int restore_load_vm(const struct restore *r, struct qmp *q, int rank, int timeout_ms,
		    char *why, size_t whylen)
{
	char path[PATH_MAX + 32], inner[400];
	struct qmpmig_status st;
	int rc;

	snprintf(path, sizeof(path), "%s/rank%d.vmstate", r->dir, rank);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (restore_is_live(r, rank)) {
		/* RAM is already in the backend (restore_load_ram): the stream
		 * has none, as it was saved with x-ignore-shared. */
		rc = qmp_exec(q, "migrate-set-capabilities",
			      json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
					"x-ignore-shared", "state", 1), NULL, 10000, inner, sizeof(inner));
		if (rc < 0) {
			close(fd);
			snprintf(why, whylen, "loading %s: x-ignore-shared: %s", path, inner);
			return rc;
		}
	}
	rc = qmpmig_incoming_fd(q, "vccp-load", fd, inner, sizeof(inner));
	close(fd);
	if (rc < 0) {
		snprintf(why, whylen, "loading %s: %s", path, inner);
		return rc;
	}
	rc = qmpmig_wait(q, timeout_ms, LOAD_POLL_MS, &st, inner, sizeof(inner));
	if (rc == -EIO)
		snprintf(why, whylen, "QEMU could not load %s: %s", path, st.error);
	else if (rc == -ETIMEDOUT)
		snprintf(why, whylen, "loading %s: %s", path, inner);
	else if (rc < 0)
		snprintf(why, whylen, "loading %s: %s", path, inner);
	return rc;
}

int restore_load_rq(const struct restore *r, int rank, struct rq **out, char *why,
		    size_t whylen)
{
	char path[PATH_MAX + 32], inner[256];

	snprintf(path, sizeof(path), "%s/rank%d.rq", r->dir, rank);
	int rc = rq_load(path, r->epoch, rank, out, inner, sizeof(inner));
	if (rc < 0)
		snprintf(why, whylen, "%s: %s", path, inner);
	return rc;
}

bool restore_is_live(const struct restore *r, int rank)
{
	json_t *ri = json_array_get(json_object_get(r->manifest, "ranks"), (size_t)rank);
	return json_object_get(ri, "ram") != NULL;
}

/* QEMU's guest RAM: its memory-backend-memfd, opened read-write through
 * /proc/PID/fd (the file is QEMU's; it is ours to write before the guest
 * runs).  The fd, or -errno. */
static int open_ram(int pid, uint64_t length, char *why, size_t whylen)
{
	char dir[64], link[PATH_MAX + 80], target[PATH_MAX];
	int found = -ENOENT;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	if (!(d = opendir(dir))) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	for (struct dirent *e; found < 0 && (e = readdir(d));) {
		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = 0;
		if (strncmp(target, "/memfd:memory-backend-memfd", 27))
			continue;
		int fd = open(link, O_RDWR | O_CLOEXEC);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == length)
			found = fd;
		else if (fd >= 0)
			close(fd);
	}
	closedir(d);
	if (found < 0)
		snprintf(why, whylen, "QEMU (pid %d) has no shared RAM backend of %llu bytes", pid,
			 (unsigned long long)length);
	return found;
}

struct ram_load {
	pthread_t tid;
	char path[PATH_MAX + 32];
	int fd;
	int rc;
	uint64_t pages;
	char why[300];
};

static int ram_apply(void *arg, const struct liveram_info *in, uint32_t block, uint64_t first,
		     uint32_t n, const void *pages)
{
	struct ram_load *l = arg;
	size_t len = (size_t)n * in->page_size;
	off_t off = (off_t)(first * in->page_size);
	const uint8_t *p = pages;

	while (len) {
		ssize_t w = pwrite(l->fd, p, len, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		len -= (size_t)w;
		off += w;
	}
	l->pages += n;
	return 0;
}

static void *ram_load_main(void *arg)
{
	struct ram_load *l = arg;
	char inner[256] = "";

	l->rc = liveram_read(l->path, ram_apply, l, NULL, inner, sizeof(inner));
	if (l->rc)
		snprintf(l->why, sizeof(l->why), "%s: %s", l->path, inner);
	return NULL;
}

int restore_load_ram(const struct restore *r, int rank, int qemu_pid, char *why, size_t whylen)
{
	json_t *ri = json_array_get(json_object_get(r->manifest, "ranks"), (size_t)rank);
	json_t *ram = json_object_get(ri, "ram");
	size_t n = json_array_size(ram);
	struct ram_load l[LIVERAM_MAX_FILES];
	struct liveram_info in;
	char path[PATH_MAX + 32], inner[256] = "";
	int rc = 0, fd;

	if (!ram)
		return 0;
	if (n < 1 || n > LIVERAM_MAX_FILES) {
		snprintf(why, whylen, "%s/manifest: rank %d: bad ram file list", r->dir, rank);
		return -EBADMSG;
	}
	/* checked by restore_prepare(); the first file gives the layout */
	rc = ckpt_ram_path(r->dir, r->manifest, json_array_get(ram, 0), path, sizeof(path), why,
			   whylen);
	if (rc < 0)
		return rc;
	rc = liveram_read(path, NULL, NULL, &in, inner, sizeof(inner));
	if (rc < 0) {
		snprintf(why, whylen, "%s: %s", path, inner);
		return rc;
	}
	if (in.nblocks != 1) {
		snprintf(why, whylen, "%s: %u RAM blocks; a restore loads one", path, in.nblocks);
		return -EINVAL;
	}
	if ((fd = open_ram(qemu_pid, in.blocks[0].length, inner, sizeof(inner))) < 0) {
		snprintf(why, whylen, "rank %d: %s (%s)", rank, inner, path);
		return fd;
	}
	/* One thread per file: they write disjoint pages (liveram.h). */
	size_t started = 0;
	for (size_t i = 0; i < n; i++) {
		memset(&l[i], 0, sizeof(l[i]));
		/* each in the directory the manifest names (manifest.h) */
		if (ckpt_ram_path(r->dir, r->manifest, json_array_get(ram, i), l[i].path,
				  sizeof(l[i].path), l[i].why, sizeof(l[i].why)) < 0) {
			l[i].rc = -EBADMSG;
			break;
		}
		l[i].fd = fd;
		if (pthread_create(&l[i].tid, NULL, ram_load_main, &l[i]) != 0) {
			l[i].rc = -EAGAIN;
			snprintf(l[i].why, sizeof(l[i].why), "pthread_create failed");
			break;
		}
		started++;
	}
	uint64_t pages = 0;
	for (size_t i = 0; i < started; i++)
		pthread_join(l[i].tid, NULL);
	for (size_t i = 0; i < n && i <= started; i++) {
		if (l[i].rc && !rc) {
			rc = l[i].rc < 0 ? l[i].rc : -EIO;
			snprintf(why, whylen, "loading RAM: %s", l[i].why);
		}
		pages += l[i].pages;
	}
	close(fd);
	if (rc == 0)
		pr_info("RAM of epoch %llu loaded from %zu files: %llu pages",
			(unsigned long long)r->epoch, n, (unsigned long long)pages);
	return rc;
}
