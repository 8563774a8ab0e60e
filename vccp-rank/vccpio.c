#include "vccpio.h"

#include "afile.h"
#include "child.h"
#include "manifest.h"
#include "rq.h"
#include "vcfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FOLLOW_NAP_MS	20

/* ---- what the worker runs (no MPI, no logging) ------------------------- */

void vccpio_prep(void *p)
{
	struct prep_job *j = p;
	int r = afile_mkdir_p(j->epoch_dir, 0700);

	j->wfd = j->rfd = -1;
	if (r < 0) {
		j->err = r;
		snprintf(j->why, sizeof(j->why), "%s: %s", j->epoch_dir, strerror(-r));
		return;
	}
	j->wfd = open(j->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (j->wfd >= 0)
		j->rfd = open(j->tmp, O_RDONLY | O_CLOEXEC);
	if (j->wfd < 0 || j->rfd < 0) {
		j->err = -errno;
		snprintf(j->why, sizeof(j->why), "%s: %s", j->tmp, strerror(errno));
		if (j->wfd >= 0)
			close(j->wfd);
		j->wfd = -1;
	}
}

/* Overlap the tail work with QEMU's writing: start writeback of what it
 * has written (so the final fsync finds little left) and fold into the CRC
 * what it has finished with.  QEMU writes the stream sequentially in
 * buffers of tens of KiB and never rewrites, so everything more than `lag`
 * bytes below the end is final. */
static int follow_catch_up(struct follow_job *j, uint64_t lag, uint64_t *off,
			   uint8_t *buf, size_t blen)
{
	struct stat st;

	if (fstat(j->fd, &st) < 0)
		return -errno;
	sync_file_range(j->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	uint64_t upto = (uint64_t)st.st_size > lag ? (uint64_t)st.st_size - lag : 0;
	while (*off < upto) {
		size_t want = upto - *off < blen ? upto - *off : blen;
		ssize_t n = pread(j->fd, buf, want, (off_t)*off);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		j->crc = vcfmt_crc32c(j->crc, buf, (size_t)n);
		*off += (uint64_t)n;
		atomic_store(&j->followed, *off);
	}
	return 0;
}

void vccpio_follow(void *p)
{
	struct follow_job *j = p;
	const size_t blen = 1 << 20;
	uint8_t *buf = malloc(blen);
	uint64_t off = 0;
	int r = buf ? 0 : -ENOMEM;

	j->crc = 0;
	while (r == 0 && !atomic_load(&j->cancel)) {
		bool last = atomic_load(&j->qemu_done);
		r = follow_catch_up(j, last ? 0 : 1 << 20, &off, buf, blen);
		if (last)
			break;
		struct timespec ts = { 0, FOLLOW_NAP_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	free(buf);
	if (r == 0 && atomic_load(&j->cancel))
		r = -ECANCELED;
	if (r < 0) {
		snprintf(j->why, sizeof(j->why), "reading back %s: %s", j->tmp, strerror(-r));
	} else if (fsync(j->fd) < 0) {
		r = -errno;
		snprintf(j->why, sizeof(j->why), "fsync %s: %s", j->tmp, strerror(errno));
	} else if (rename(j->tmp, j->path) < 0) {
		r = -errno;
		snprintf(j->why, sizeof(j->why), "rename %s: %s", j->tmp, strerror(errno));
	}
	close(j->fd);
	j->fd = -1;
	j->size = off;
	j->err = r;
}

void vccpio_disk(void *p)
{
	struct disk_job *j = p;
	char *argv[] = { "qemu-img", "convert", "-q", "-O", "qcow2", j->frozen, j->tmp, NULL };
	pid_t pid;
	int st = 0, r;

	/* Tied to this worker thread, which waits for it below: qemu-img dies
	 * with the rank, so it never writes into a checkpoint a restore uses. */
	pid = child_spawn(argv, -1, -1, 2, 0, j->why, sizeof(j->why));
	if (pid < 0) {
		j->err = pid;
		return;
	}
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			j->err = -errno;
			snprintf(j->why, sizeof(j->why), "waiting for qemu-img: %s", strerror(errno));
			return;
		}
		if (atomic_load(&j->cancel)) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			j->err = -ECANCELED;
			snprintf(j->why, sizeof(j->why), "disk copy cancelled");
			return;
		}
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		j->err = -EIO;
		snprintf(j->why, sizeof(j->why), "qemu-img could not copy the disk to %s (disk full?)",
			 j->tmp);
		return;
	}
	int fd = open(j->tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		j->err = -errno;
		snprintf(j->why, sizeof(j->why), "fsync %s: %s", j->tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	r = ckpt_file_crc(j->tmp, &j->crc, &j->size);
	if (r == 0 && rename(j->tmp, j->path) < 0)
		r = -errno;
	if (r < 0)
		snprintf(j->why, sizeof(j->why), "%s: %s", j->tmp, strerror(-r));
	j->err = r;
}

/* Test hook, inert unless VC_TEST_HOOK_DIR names a directory D holding a
 * file named after this point ("rq": before a rank writes its receive
 * queue; "manifest": before the coordinator writes the manifest).  Then the
 * worker creates D/POINT.reached.RANK and waits (at most 120 s) until
 * D/POINT.go exists, so that a test can fill the disk at exactly that
 * moment; the write that follows is the normal one. */
static void test_hook(const char *point, int rank)
{
	const char *d = getenv("VC_TEST_HOOK_DIR");
	char arm[PATH_MAX], path[PATH_MAX];

	if (!d || !*d)
		return;
	snprintf(arm, sizeof(arm), "%s/%s", d, point);
	if (access(arm, F_OK) < 0)
		return;
	snprintf(path, sizeof(path), "%s/%s.reached.%d", d, point, rank);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof(path), "%s/%s.go", d, point);
	for (int i = 0; i < 2400 && access(path, F_OK) < 0; i++) {
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

void vccpio_finish(void *p)
{
	struct finish_job *j = p;
	struct stat st;
	int r;

	test_hook("rq", j->rank);
	r = rq_save(j->q, j->rq_path, j->epoch, j->rank, &j->crc);
	if (r < 0) {
		snprintf(j->why, sizeof(j->why), "writing %s: %s", j->rq_path, strerror(-r));
		goto out;
	}
	if (stat(j->rq_path, &st) < 0) {
		r = -errno;
		snprintf(j->why, sizeof(j->why), "stat %s: %s", j->rq_path, strerror(errno));
		goto out;
	}
	j->size = (uint64_t)st.st_size;
	/* The renames inside the epoch directory, then the epoch directory's
	 * own entry: durable before the report says "saved". */
	r = afile_sync_dir_of(j->vm_path);
	if (r < 0) {
		snprintf(j->why, sizeof(j->why), "fsync of the directory %s: %s", j->epoch_dir,
			 strerror(-r));
		goto out;
	}
	r = afile_sync_dir_of(j->epoch_dir);
	if (r < 0)
		snprintf(j->why, sizeof(j->why), "fsync of the directory holding %s: %s",
			 j->epoch_dir, strerror(-r));
out:
	j->err = r;
}

/* Manifest first, latest last: latest never names an epoch whose files are
 * not all durable (every rank fsynced its files and directories before it
 * reported).  When moving latest fails, it is put back on the previous
 * epoch, which is still whole. */
void vccpio_commit(void *p)
{
	struct commit_job *j = p;
	char mpath[PATH_MAX + 16];
	int r;

	test_hook("manifest", 0);
	r = manifest_write(j->epoch_dir, j->manifest);
	json_decref(j->manifest);
	j->manifest = NULL;
	if (r < 0) {
		snprintf(j->why, sizeof(j->why), "writing %s/manifest: %s", j->epoch_dir,
			 strerror(-r));
		goto out_abort;
	}
	r = ckpt_set_latest(j->dir, j->epoch);
	if (r < 0) {
		char lpath[PATH_MAX + 16];
		int back = 0;
		snprintf(lpath, sizeof(lpath), "%s/latest", j->dir);
		if (j->prev_epoch)
			back = ckpt_set_latest(j->dir, j->prev_epoch);
		else if (unlink(lpath) < 0 && errno != ENOENT)
			back = -errno;
		snprintf(j->why, sizeof(j->why), "moving %s/latest to epoch %llu: %s%s", j->dir,
			 (unsigned long long)j->epoch, strerror(-r),
			 back < 0 ? " (and putting it back failed)" : "");
		goto out_abort;
	}
	j->err = 0;
	if (j->keep > 0)
		j->pruned = ckpt_prune(j->dir, j->keep, j->epoch);
	/* what the main directory no longer has goes from the others too
	 * (with --keep 0 that is only what aborted epochs left) */
	for (int i = 0; i < j->nmore; i++)
		ckpt_prune_extra(j->dir, j->more[i], j->epoch);
	return;
out_abort:
	snprintf(mpath, sizeof(mpath), "%s/manifest", j->epoch_dir);
	unlink(mpath);
	j->err = r;
}

void vccpio_cleanup(void *p)
{
	struct cleanup_job *j = p;

	for (int i = 0; i < 5; i++)
		if (j->paths[i][0])
			unlink(j->paths[i]);
	if (j->tree[0])
		ckpt_remove_tree(j->tree);
	for (int i = 0; i < CKPT_MAX_DIRS - 1; i++)
		if (j->more[i][0])
			ckpt_remove_tree(j->more[i]);
}

