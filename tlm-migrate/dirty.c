/* dirty: map and drive the patched QEMU's shared dirty log (see dirty.h and
 * qemu-patches/README.md, "Region format"). */
#define LOG_PREFIX "dirty"
#include "dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "qmp.h"
#include "vc_magic.h"

#define DIRTY_MAGIC	VC_MAGIC_DIRTYLOG
#define DIRTY_VERSION	DIRTY_REGION_VERSION
#define DIRTY_QMP_MS	30000
#define DIRTY_MAX_BLOCKS 16
#define DIRTY_HDR_LEN	64
#define DIRTY_DESC_SIZE	128
#define DIRTY_FDNAME	"tlm-dirty-log"	/* getfd name in QEMU */

struct dirty {
	struct qmp *q;			/* borrowed */
	int region_fd;			/* our memfd, shared with QEMU */
	uint8_t *region;		/* MAP_SHARED mapping of the region */
	size_t region_size;
	bool stopped;
	int nr_blocks;
	struct dirty_block blocks[DIRTY_MAX_BLOCKS];
};

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

int dirty_check_bitmap(uint64_t boff, uint64_t bsize, uint64_t nr_pages,
		       uint64_t region_size, uint64_t data_start, char *why, size_t whylen)
{
	uint64_t need = nr_pages / 64 + (nr_pages % 64 != 0);	/* words */

	if (boff % 8 || bsize % 8) {
		snprintf(why, whylen, "bitmap at %llu+%llu not 8-byte aligned",
			 (unsigned long long)boff, (unsigned long long)bsize);
		return -EPROTO;
	}
	if (bsize / 8 < need) {
		snprintf(why, whylen, "bitmap of %llu bytes for %llu pages",
			 (unsigned long long)bsize, (unsigned long long)nr_pages);
		return -EPROTO;
	}
	/* boff + bsize <= region_size, written so that nothing wraps. */
	if (boff < data_start || boff > region_size || bsize > region_size - boff) {
		snprintf(why, whylen, "bitmap at %llu+%llu outside bytes %llu..%llu of the region",
			 (unsigned long long)boff, (unsigned long long)bsize,
			 (unsigned long long)data_start, (unsigned long long)region_size);
		return -EPROTO;
	}
	return 0;
}

int dirty_check_block(uint64_t length, bool is_reg, uint64_t file_size, char *why,
		      size_t whylen)
{
	if (!is_reg) {
		snprintf(why, whylen, "its memory is not a regular file or memfd");
		return -EPROTO;
	}
	if (file_size < length) {
		snprintf(why, whylen, "%llu bytes long, but its memory file has %llu",
			 (unsigned long long)length, (unsigned long long)file_size);
		return -EPROTO;
	}
	return 0;
}

/* Map the region QEMU sized and wrote into our memfd, seal its size (QEMU
 * can no longer shrink it under our mapping), and check the header field
 * by field against the reply's region-size. */
static int dirty_map_region(struct dirty *d, uint64_t reply_size, char *why, size_t whylen)
{
	struct stat st;

	if (fstat(d->region_fd, &st) < 0) {
		snprintf(why, whylen, "dirty-log region: fstat: %s", strerror(errno));
		return -errno;
	}
	if (st.st_size < DIRTY_HDR_LEN || (uint64_t)st.st_size != reply_size) {
		snprintf(why, whylen, "dirty-log region of %lld bytes, QEMU said %llu",
			 (long long)st.st_size, (unsigned long long)reply_size);
		return -EPROTO;
	}
	if (fcntl(d->region_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		snprintf(why, whylen, "dirty-log region: sealing its size: %s", strerror(errno));
		return -errno;
	}
	d->region_size = (size_t)st.st_size;
	d->region = mmap(NULL, d->region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 d->region_fd, 0);
	if (d->region == MAP_FAILED) {
		d->region = NULL;
		snprintf(why, whylen, "dirty-log region: mmap: %s", strerror(errno));
		return -errno;
	}
	const uint8_t *h = d->region;
	if (get_le32(h) != DIRTY_MAGIC) {
		snprintf(why, whylen, "dirty-log region: magic 0x%08x, expected 0x%08x (VCDL)",
			 get_le32(h), DIRTY_MAGIC);
		return -EBADMSG;
	}
	if (get_le32(h + 4) != DIRTY_VERSION) {
		snprintf(why, whylen, "dirty-log region: version %u, expected %u",
			 get_le32(h + 4), DIRTY_VERSION);
		return -EBADMSG;
	}
	if (get_le32(h + 8) < DIRTY_HDR_LEN || get_le32(h + 16) < DIRTY_DESC_SIZE ||
	    get_le32(h + 20) != DIRTY_PAGE_SIZE || get_le64(h + 24) != d->region_size) {
		snprintf(why, whylen, "dirty-log region: bad header (header_len %u, desc_size %u, page_size %u, region_size %llu for %zu bytes)",
			 get_le32(h + 8), get_le32(h + 16), get_le32(h + 20),
			 (unsigned long long)get_le64(h + 24), d->region_size);
		return -EBADMSG;
	}
	return 0;
}

/* Fill block i from its QMP description and the region descriptor, and map
 * its memory through QEMU's fd. */
static int dirty_map_block(struct dirty *d, int pid, json_t *jb, char *why, size_t whylen)
{
	struct dirty_block *b = &d->blocks[d->nr_blocks];
	const char *name = json_string_value(json_object_get(jb, "name"));
	uint64_t length = json_integer_value(json_object_get(jb, "length"));
	uint64_t psize = json_integer_value(json_object_get(jb, "page-size"));
	uint64_t boff = json_integer_value(json_object_get(jb, "bitmap-offset"));
	uint64_t bsize = json_integer_value(json_object_get(jb, "bitmap-size"));
	int qfd = (int)json_integer_value(json_object_get(jb, "fd"));
	const uint8_t *h = d->region;
	uint64_t data_start = (uint64_t)get_le32(h + 8) +
			      (uint64_t)get_le32(h + 12) * get_le32(h + 16);
	char fdpath[64], cwhy[256];
	struct stat st;

	snprintf(b->name, sizeof(b->name), "%s", name ? name : "?");
	if (psize != DIRTY_PAGE_SIZE || !length || length % DIRTY_PAGE_SIZE ||
	    length / DIRTY_PAGE_SIZE > UINT32_MAX) {
		snprintf(why, whylen, "block '%s': page size %llu, length %llu (expected 4096 and a multiple of it, below 16 TiB)",
			 b->name, (unsigned long long)psize, (unsigned long long)length);
		return -EPROTO;
	}
	b->length = length;
	b->nr_pages = length / DIRTY_PAGE_SIZE;
	b->nr_words = (b->nr_pages + 63) / 64;
	if (dirty_check_bitmap(boff, bsize, b->nr_pages, d->region_size, data_start, cwhy,
			       sizeof(cwhy))) {
		snprintf(why, whylen, "block '%s': %s", b->name, cwhy);
		return -EPROTO;
	}
	b->bitmap = (uint64_t *)(d->region + boff);
	if (qfd < 0) {
		snprintf(why, whylen, "block '%s' has no memory fd: back guest RAM with memory-backend-memfd or -file and share=on",
			 b->name);
		return -EPROTO;
	}
	snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%d", pid, qfd);
	int fd = open(fdpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "block '%s': open %s: %s", b->name, fdpath, strerror(errno));
		return -errno;
	}
	/* Mapping past the end of the file would fault on the first read. */
	if (fstat(fd, &st) < 0 ||
	    dirty_check_block(length, S_ISREG(st.st_mode), (uint64_t)st.st_size, cwhy,
			      sizeof(cwhy))) {
		close(fd);
		snprintf(why, whylen, "block '%s' (%s): %s", b->name, fdpath, cwhy);
		return -EPROTO;
	}
	void *m = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
	int err = errno;
	if (m == MAP_FAILED) {
		close(fd);
		snprintf(why, whylen, "block '%s': mmap %s: %s", b->name, fdpath, strerror(err));
		return -err;
	}
	b->mem = m;
	b->fd = fd;
	d->nr_blocks++;
	return 0;
}

struct dirty *dirty_start(struct qmp *q, int pid, char *why, size_t whylen)
{
	struct dirty *d = calloc(1, sizeof(*d));
	json_t *reply = NULL;
	char qwhy[512];
	int err;

	if (!d) {
		snprintf(why, whylen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	d->q = q;
	/* A memfd, handed over the QMP socket: no name in a shared directory
	 * that another user could create first or swap (issue 13). */
	d->region_fd = memfd_create("tlm-dirty-log", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (d->region_fd < 0) {
		err = -errno;
		snprintf(why, whylen, "memfd_create: %s", strerror(errno));
		free(d);
		errno = -err;
		return NULL;
	}
	err = qmp_getfd(q, DIRTY_FDNAME, d->region_fd, DIRTY_QMP_MS, qwhy, sizeof(qwhy));
	if (err) {
		snprintf(why, whylen, "getfd: %s", err == -EIO ? qwhy : strerror(-err));
		close(d->region_fd);
		free(d);
		errno = -err;
		return NULL;
	}
	err = qmp_exec(q, "x-vc-dirty-log-start", json_pack("{s:s}", "fdname", DIRTY_FDNAME),
		       &reply, DIRTY_QMP_MS, qwhy, sizeof(qwhy));
	if (err == -EIO && strstr(qwhy, "CommandNotFound")) {
		snprintf(why, whylen, "this QEMU has no x-vc-dirty-log-start: run the source VM with the patched QEMU (make qemu; build/qemu/bin/qemu-system-x86_64)");
		close(d->region_fd);
		free(d);
		errno = ENOSYS;
		return NULL;
	}
	if (err) {
		snprintf(why, whylen, "x-vc-dirty-log-start: %s", err == -EIO ? qwhy : strerror(-err));
		close(d->region_fd);
		free(d);
		errno = -err;
		return NULL;
	}
	d->stopped = false;
	err = dirty_map_region(d, json_integer_value(json_object_get(reply, "region-size")),
			       why, whylen);
	json_t *blocks = json_object_get(reply, "blocks");
	size_t i;
	json_t *jb;
	if (!err && (!json_is_array(blocks) || json_array_size(blocks) == 0 ||
		     json_array_size(blocks) > DIRTY_MAX_BLOCKS)) {
		snprintf(why, whylen, "x-vc-dirty-log-start: %zu blocks in the reply",
			 json_array_size(blocks));
		err = -EPROTO;
	}
	if (!err) {
		json_array_foreach(blocks, i, jb) {
			err = dirty_map_block(d, pid, jb, why, whylen);
			if (err)
				break;
		}
	}
	json_decref(reply);
	if (err) {
		char w2[256];
		dirty_stop(d, w2, sizeof(w2));
		dirty_destroy(d);
		errno = -err;
		return NULL;
	}
	return d;
}

int dirty_sync(struct dirty *d, uint64_t *pages, char *why, size_t whylen)
{
	json_t *reply = NULL;
	char qwhy[512];
	int err = qmp_exec(d->q, "x-vc-dirty-log-sync", json_pack("{s:b}", "merge", 1),
			   &reply, DIRTY_QMP_MS, qwhy, sizeof(qwhy));

	if (err) {
		snprintf(why, whylen, "x-vc-dirty-log-sync: %s", err == -EIO ? qwhy : strerror(-err));
		return err;
	}
	if (pages)
		*pages = json_integer_value(json_object_get(reply, "dirty-pages"));
	json_decref(reply);
	return 0;
}

int dirty_stop(struct dirty *d, char *why, size_t whylen)
{
	char qwhy[512];
	int err;

	if (!d || d->stopped)
		return 0;
	err = qmp_exec(d->q, "x-vc-dirty-log-stop", NULL, NULL, DIRTY_QMP_MS, qwhy, sizeof(qwhy));
	if (err) {
		snprintf(why, whylen, "x-vc-dirty-log-stop: %s", err == -EIO ? qwhy : strerror(-err));
		return err;
	}
	d->stopped = true;
	return 0;
}

void dirty_destroy(struct dirty *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->nr_blocks; i++) {
		munmap((void *)d->blocks[i].mem, d->blocks[i].length);
		close(d->blocks[i].fd);
	}
	if (d->region)
		munmap(d->region, d->region_size);
	close(d->region_fd);
	free(d);
}

int dirty_nr_blocks(const struct dirty *d)
{
	return d->nr_blocks;
}

const struct dirty_block *dirty_block(const struct dirty *d, int i)
{
	return i >= 0 && i < d->nr_blocks ? &d->blocks[i] : NULL;
}

uint64_t dirty_count(const struct dirty *d)
{
	uint64_t n = 0;

	for (int i = 0; i < d->nr_blocks; i++)
		for (uint64_t w = 0; w < d->blocks[i].nr_words; w++)
			n += (uint64_t)__builtin_popcountll(__atomic_load_n(&d->blocks[i].bitmap[w], __ATOMIC_RELAXED));
	return n;
}

uint64_t dirty_next_data(const struct dirty_block *b, uint64_t page, uint64_t *data_end)
{
	off_t data = lseek(b->fd, (off_t)(page * DIRTY_PAGE_SIZE), SEEK_DATA);

	if (data < 0) {
		*data_end = b->nr_pages;
		return errno == ENXIO ? b->nr_pages : page;
	}
	off_t hole = lseek(b->fd, data, SEEK_HOLE);
	uint64_t end = hole < 0 ? b->nr_pages : ((uint64_t)hole + DIRTY_PAGE_SIZE - 1) / DIRTY_PAGE_SIZE;
	uint64_t first = (uint64_t)data / DIRTY_PAGE_SIZE;

	*data_end = end < b->nr_pages ? end : b->nr_pages;
	return first < b->nr_pages ? first : b->nr_pages;
}
