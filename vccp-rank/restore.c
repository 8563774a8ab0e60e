#define LOG_PREFIX "restore"
#include "restore.h"
#include "qemuram.h"

#include "liveram.h"
#include "log.h"
#include "manifest.h"
#include "qmp.h"
#include "qmpmig.h"
#include "rq.h"
#include "vctime.h"

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

/* ---- loading the VM state without waiting ---------------------------- */

#define LOAD_CMD_MS		10000	/* one QMP command (QEMU busy loading may be slow) */

enum load_step {
	LOAD_CAPS,		/* live: migrate-set-capabilities x-ignore-shared */
	LOAD_GETFD,		/* the vmstate file travels to QEMU */
	LOAD_INCOMING,		/* migrate-incoming fd:vccp-load */
	LOAD_QUERY,		/* query-migrate until completed or failed */
	LOAD_DONE,
};

/* One load.  The QMP callbacks hold a pointer to it: restore_load_vm_free()
 * while a command is on its way only marks it, and the last callback
 * frees it. */
struct restore_load {
	struct qmp *q;
	char path[PATH_MAX + 32];	/* the vmstate file, for messages */
	enum load_step step;
	int fd;				/* the vmstate file until getfd has sent it, or -1 */
	int inflight;			/* commands sent whose callback has not run */
	bool querying;			/* a query-migrate is on its way */
	bool orphaned;			/* freed by the owner while inflight */
	long long deadline;		/* monotonic ms */
	int timeout_ms;
	int err;			/* first error, 0 or -errno */
	char why[600];
	char status[32];		/* QEMU's last migration status */
};

/* The first failure ends the load: "loading F: what", or, when QEMU's
 * migration failed, "QEMU could not load F: QEMU's error". */
static void load_fail(struct restore_load *ld, int err, bool qemu_said, const char *what)
{
	if (ld->err)
		return;
	ld->err = err;
	ld->step = LOAD_DONE;
	snprintf(ld->why, sizeof(ld->why), qemu_said ? "QEMU could not load %s: %s" :
		 "loading %s: %s", ld->path, what);
}

static void load_next(struct restore_load *ld);

static void load_reply(void *ctx, int err, json_t *ret, const char *why)
{
	struct restore_load *ld = ctx;
	static const char *const what[] = {
		[LOAD_CAPS] = "x-ignore-shared", [LOAD_GETFD] = "getfd",
		[LOAD_INCOMING] = "migrate-incoming",
	};
	char msg[560];

	ld->inflight--;
	if (ld->orphaned) {
		if (!ld->inflight)
			free(ld);
		return;
	}
	if (ld->err)
		return;
	if (err < 0) {
		snprintf(msg, sizeof(msg), "%s: %s", what[ld->step], why);
		load_fail(ld, err, false, msg);
		return;
	}
	ld->step++;
	if (ld->step < LOAD_QUERY)
		load_next(ld);
}

static void load_status(void *ctx, int err, json_t *ret, const char *why)
{
	struct restore_load *ld = ctx;
	struct qmpmig_status st;
	char msg[560];

	ld->inflight--;
	ld->querying = false;
	if (ld->orphaned) {
		if (!ld->inflight)
			free(ld);
		return;
	}
	if (ld->err)
		return;
	if (err == -ETIMEDOUT)
		return;	/* a QEMU busy loading may answer late: the deadline
			 * decides; the late reply is dropped by its id */
	if (err < 0) {
		snprintf(msg, sizeof(msg), "query-migrate: %s", why);
		load_fail(ld, err, false, msg);
		return;
	}
	qmpmig_parse(ret, &st);
	snprintf(ld->status, sizeof(ld->status), "%s", st.status);
	if (st.state == QMPMIG_COMPLETED)
		ld->step = LOAD_DONE;
	else if (st.state == QMPMIG_FAILED)
		load_fail(ld, -EIO, true, st.error);
}

/* Send the command of the current step (the file descriptor for getfd). */
static void load_send(struct restore_load *ld, const char *cmd, json_t *args, int fd)
{
	int r = qmp_exec_async(ld->q, cmd, args, fd, LOAD_CMD_MS, load_reply, ld);
	char msg[128];

	if (r < 0) {
		snprintf(msg, sizeof(msg), "%s: not sent: %s", cmd, strerror(-r));
		load_fail(ld, r, false, msg);
		return;
	}
	ld->inflight++;
}

static void load_next(struct restore_load *ld)
{
	switch (ld->step) {
	case LOAD_CAPS:
		load_send(ld, "migrate-set-capabilities",
			  json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				    "x-ignore-shared", "state", 1), -1);
		break;
	case LOAD_GETFD:
		/* SCM_RIGHTS copies it now: ours can go */
		load_send(ld, "getfd", qmpmig_getfd_args("vccp-load"), ld->fd);
		close(ld->fd);
		ld->fd = -1;
		break;
	case LOAD_INCOMING:
		load_send(ld, "migrate-incoming", qmpmig_fd_uri_args("vccp-load"), -1);
		break;
	default:
		break;
	}
}

struct restore_load *restore_load_file_start(const char *path, bool live, struct qmp *q,
					     int timeout_ms, char *why, size_t whylen)
{
	struct restore_load *ld = calloc(1, sizeof(*ld));
	int fd, e;

	if (!ld) {
		snprintf(why, whylen, "loading the VM state: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	ld->q = q;
	ld->timeout_ms = timeout_ms;
	ld->deadline = vc_mono_ms() + timeout_ms;
	snprintf(ld->path, sizeof(ld->path), "%s", path);
	if ((fd = open(ld->path, O_RDONLY | O_CLOEXEC)) < 0) {
		e = errno;
		snprintf(why, whylen, "%s: %s", ld->path, strerror(e));
		free(ld);
		errno = e;
		return NULL;
	}
	/* One command at a time, each reply sending the next (load_reply):
	 * the descriptor travels with getfd alone, never in a read that QEMU's
	 * monitor shares with another command. */
	ld->fd = fd;
	/* live: RAM is already in the backend (restore_load_ram); the stream
	 * has none, as it was saved with x-ignore-shared */
	ld->step = live ? LOAD_CAPS : LOAD_GETFD;
	load_next(ld);
	if (ld->err && !ld->inflight) {
		snprintf(why, whylen, "%s", ld->why);
		e = -ld->err;
		restore_load_vm_free(ld);
		errno = e;
		return NULL;
	}
	return ld;
}

struct restore_load *restore_load_vm_start(const struct restore *r, struct qmp *q, int rank,
					   int timeout_ms, char *why, size_t whylen)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/rank%d.vmstate", r->dir, rank);
	return restore_load_file_start(path, restore_is_live(r, rank), q, timeout_ms, why, whylen);
}

int restore_load_vm_poll(struct restore_load *ld, char *why, size_t whylen)
{
	if (!ld->err && ld->step != LOAD_DONE && vc_mono_ms() > ld->deadline) {
		char msg[160];
		snprintf(msg, sizeof(msg), "not loaded within %d s (QEMU's status: %s)",
			 (ld->timeout_ms + 999) / 1000, ld->status[0] ? ld->status : "no answer");
		load_fail(ld, -ETIMEDOUT, false, msg);
	}
	if (ld->err) {
		snprintf(why, whylen, "%s", ld->why);
		return ld->err;
	}
	if (ld->step == LOAD_DONE)
		return 1;
	if (ld->step == LOAD_QUERY && !ld->querying) {
		int r = qmp_exec_async(ld->q, "query-migrate", NULL, -1, LOAD_CMD_MS, load_status, ld);
		if (r < 0) {
			char msg[128];
			snprintf(msg, sizeof(msg), "query-migrate: not sent: %s", strerror(-r));
			load_fail(ld, r, false, msg);
			snprintf(why, whylen, "%s", ld->why);
			return r;
		}
		ld->inflight++;
		ld->querying = true;
	}
	return 0;
}

void restore_load_vm_free(struct restore_load *ld)
{
	if (!ld)
		return;
	if (ld->fd >= 0)
		close(ld->fd);
	ld->fd = -1;
	if (ld->inflight)
		ld->orphaned = true;	/* the last callback frees it */
	else
		free(ld);
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
	int fd = qemuram_open(pid, length, O_RDWR);

	if (fd == -ENOENT)
		snprintf(why, whylen, "QEMU (pid %d) has no shared RAM backend of %llu bytes", pid,
			 (unsigned long long)length);
	else if (fd < 0)
		snprintf(why, whylen, "/proc/%d/fd: %s", pid, strerror(-fd));
	return fd;
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

int restore_load_ram(const struct restore *r, int rank, int qemu_pid, size_t *nfiles,
		     uint64_t *npages, char *why, size_t whylen)
{
	json_t *ri = json_array_get(json_object_get(r->manifest, "ranks"), (size_t)rank);
	json_t *ram = json_object_get(ri, "ram");
	size_t n = json_array_size(ram);
	struct ram_load l[LIVERAM_MAX_FILES];
	struct liveram_info in;
	char path[PATH_MAX + 32], inner[256] = "";
	int rc = 0, fd;

	*nfiles = 0;
	*npages = 0;
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
	*nfiles = n;
	*npages = pages;
	return rc;
}
