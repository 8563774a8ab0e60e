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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "qmp.h"

#define DIRTY_MAGIC	0x4c444356u	/* "VCDL" little-endian */
#define DIRTY_VERSION	1
#define DIRTY_QMP_MS	30000
#define DIRTY_MAX_BLOCKS 16

struct dirty {
	struct qmp *q;			/* borrowed */
	char path[256];			/* region file */
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

/* Map the region file QEMU wrote and check its header field by field. */
static int dirty_map_region(struct dirty *d, char *why, size_t whylen)
{
	struct stat st;
	int fd = open(d->path, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", d->path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || st.st_size < 64) {
		snprintf(why, whylen, "%s: region too small (%lld bytes)", d->path,
			 (long long)st.st_size);
		close(fd);
		return -EBADMSG;
	}
	d->region_size = (size_t)st.st_size;
	d->region = mmap(NULL, d->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (d->region == MAP_FAILED) {
		d->region = NULL;
		snprintf(why, whylen, "%s: mmap: %s", d->path, strerror(errno));
		return -errno;
	}
	const uint8_t *h = d->region;
	if (get_le32(h) != DIRTY_MAGIC) {
		snprintf(why, whylen, "%s: magic 0x%08x, expected 0x%08x", d->path,
			 get_le32(h), DIRTY_MAGIC);
		return -EBADMSG;
	}
	if (get_le32(h + 4) != DIRTY_VERSION) {
		snprintf(why, whylen, "%s: version %u, expected %u", d->path,
			 get_le32(h + 4), DIRTY_VERSION);
		return -EBADMSG;
	}
	if (get_le32(h + 8) < 64 || get_le32(h + 16) < 128 ||
	    get_le32(h + 20) != DIRTY_PAGE_SIZE || get_le64(h + 24) != d->region_size) {
		snprintf(why, whylen, "%s: bad header (header_len %u, desc_size %u, page_size %u, region_size %llu for a %zu-byte file)",
			 d->path, get_le32(h + 8), get_le32(h + 16), get_le32(h + 20),
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
	char fdpath[64];

	snprintf(b->name, sizeof(b->name), "%s", name ? name : "?");
	if (psize != DIRTY_PAGE_SIZE || !length || length % DIRTY_PAGE_SIZE) {
		snprintf(why, whylen, "block '%s': page size %llu, length %llu (expected 4096 and a multiple of it)",
			 b->name, (unsigned long long)psize, (unsigned long long)length);
		return -EPROTO;
	}
	b->length = length;
	b->nr_pages = length / DIRTY_PAGE_SIZE;
	b->nr_words = (b->nr_pages + 63) / 64;
	if (boff % 8 || bsize < b->nr_words * 8 || boff + bsize > d->region_size) {
		snprintf(why, whylen, "block '%s': bitmap at %llu+%llu outside the %zu-byte region",
			 b->name, (unsigned long long)boff, (unsigned long long)bsize,
			 d->region_size);
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

struct dirty *dirty_start(struct qmp *q, int pid, const char *region_path,
			  char *why, size_t whylen)
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
	snprintf(d->path, sizeof(d->path), "%s", region_path);
	err = qmp_exec(q, "x-vc-dirty-log-start", json_pack("{s:s}", "path", region_path),
		       &reply, DIRTY_QMP_MS, qwhy, sizeof(qwhy));
	if (err == -EIO && strstr(qwhy, "CommandNotFound")) {
		snprintf(why, whylen, "this QEMU has no x-vc-dirty-log-start: run the source VM with the patched QEMU (make qemu; build/qemu/bin/qemu-system-x86_64)");
		free(d);
		errno = ENOSYS;
		return NULL;
	}
	if (err) {
		snprintf(why, whylen, "x-vc-dirty-log-start: %s", err == -EIO ? qwhy : strerror(-err));
		free(d);
		errno = -err;
		return NULL;
	}
	d->stopped = false;
	err = dirty_map_region(d, why, whylen);
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
	unlink(d->path);
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
