/* liveram: RAM image files of a live checkpoint (see liveram.h). */
#include "liveram.h"

#include "afile.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_FIXED	40	/* meta before the block table */
#define META_BLOCK	(LIVERAM_NAME_MAX + 8)
#define REC_HDR		24
#define BUF_SIZE	(1u << 20)	/* writes go out in 1 MiB pieces */

struct liveram_w {
	int fd;
	char *path;
	struct liveram_info info;
	uint64_t offset;	/* bytes written (header and meta included) */
	uint64_t records;
	uint8_t *buf;		/* pending bytes, flushed at BUF_SIZE */
	size_t buflen;
};

static size_t meta_len(uint32_t nblocks)
{
	return META_FIXED + (size_t)nblocks * META_BLOCK + 4;
}

static int info_ok(const struct liveram_info *in)
{
	if (in->nfiles < 1 || in->nfiles > LIVERAM_MAX_FILES || in->file_index >= in->nfiles ||
	    in->nblocks < 1 || in->nblocks > LIVERAM_MAX_BLOCKS || in->page_size < 512 ||
	    in->page_size > (1u << 16) || (in->page_size & (in->page_size - 1)))
		return 0;
	for (uint32_t i = 0; i < in->nblocks; i++)
		if (in->blocks[i].length % in->page_size ||
		    !memchr(in->blocks[i].name, 0, LIVERAM_NAME_MAX))
			return 0;
	return 1;
}

static void meta_encode(const struct liveram_info *in, uint64_t records, uint8_t *p)
{
	uint8_t *s = p;

	memset(p, 0, meta_len(in->nblocks));
	vcfmt_put_be32(p, in->file_index);
	vcfmt_put_be32(p + 4, in->nfiles);
	vcfmt_put_be64(p + 8, in->epoch);
	vcfmt_put_be32(p + 16, in->rank);
	vcfmt_put_be32(p + 20, in->page_size);
	vcfmt_put_be32(p + 24, in->nblocks);
	vcfmt_put_be64(p + 32, records);
	p += META_FIXED;
	for (uint32_t i = 0; i < in->nblocks; i++, p += META_BLOCK) {
		memcpy(p, in->blocks[i].name, strnlen(in->blocks[i].name, LIVERAM_NAME_MAX - 1));
		vcfmt_put_be64(p + LIVERAM_NAME_MAX, in->blocks[i].length);
	}
	vcfmt_put_be32(p, vcfmt_crc32c(0, s, (size_t)(p - s)));
}

static int w_flush(struct liveram_w *w)
{
	int r = afile_write_all(w->fd, w->buf, w->buflen);
	w->buflen = 0;
	return r;
}

static int w_append(struct liveram_w *w, const void *data, size_t len)
{
	const uint8_t *d = data;

	while (len) {
		size_t n = BUF_SIZE - w->buflen;
		if (n > len)
			n = len;
		memcpy(w->buf + w->buflen, d, n);
		w->buflen += n;
		d += n;
		len -= n;
		w->offset += n;
		if (w->buflen == BUF_SIZE) {
			int r = w_flush(w);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

struct liveram_w *liveram_create(const char *path, const struct liveram_info *info)
{
	struct liveram_w *w;
	uint8_t zero[VCFMT_HDR_SIZE] = { 0 };
	uint8_t meta[META_FIXED + LIVERAM_MAX_BLOCKS * META_BLOCK + 4];

	if (!info_ok(info)) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w || !(w->path = strdup(path)) || !(w->buf = malloc(BUF_SIZE)))
		goto fail_nomem;
	w->info = *info;
	w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (w->fd < 0)
		goto fail;
	/* A zero header until liveram_finish(): an unfinished file is refused. */
	meta_encode(info, 0, meta);
	if (w_append(w, zero, sizeof(zero)) < 0 || w_append(w, meta, meta_len(info->nblocks)) < 0) {
		int e = errno;
		liveram_abort(w);
		errno = e;
		return NULL;
	}
	return w;
fail_nomem:
	errno = ENOMEM;
fail:;
	int e = errno;
	if (w) {
		free(w->buf);
		free(w->path);
	}
	free(w);
	errno = e;
	return NULL;
}

int liveram_put(struct liveram_w *w, uint32_t block, uint32_t round, uint64_t first_page,
		uint32_t npages, const void *pages)
{
	uint8_t h[REC_HDR];
	size_t dlen = (size_t)npages * w->info.page_size;

	if (block >= w->info.nblocks || npages < 1 || npages > LIVERAM_MAX_REC_PAGES)
		return -ERANGE;
	uint64_t bpages = w->info.blocks[block].length / w->info.page_size;
	if (first_page >= bpages || npages > bpages - first_page)
		return -ERANGE;
	if (liveram_file_of(first_page, w->info.nfiles) != w->info.file_index ||
	    liveram_file_of(first_page + npages - 1, w->info.nfiles) != w->info.file_index ||
	    first_page / LIVERAM_RUN_PAGES != (first_page + npages - 1) / LIVERAM_RUN_PAGES)
		return -EXDEV;
	vcfmt_put_be32(h, block);
	vcfmt_put_be32(h + 4, round);
	vcfmt_put_be64(h + 8, first_page);
	vcfmt_put_be32(h + 16, npages);
	vcfmt_put_be32(h + 20, vcfmt_crc32c(vcfmt_crc32c(0, h, 20), pages, dlen));
	int r = w_append(w, h, sizeof(h));
	if (r == 0)
		r = w_append(w, pages, dlen);
	if (r == 0)
		w->records++;
	return r;
}

uint64_t liveram_bytes(const struct liveram_w *w)
{
	return w->offset;
}

static void w_free(struct liveram_w *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->buf);
	free(w->path);
	free(w);
}

int liveram_finish(struct liveram_w *w, uint64_t *size)
{
	uint8_t hdr[VCFMT_HDR_SIZE];
	uint8_t meta[META_FIXED + LIVERAM_MAX_BLOCKS * META_BLOCK + 4];
	struct vcfmt_hdr h = {
		.magic = VC_MAGIC_LIVERAM, .version = LIVERAM_VERSION,
		.hdr_len = VCFMT_HDR_SIZE, .body_len = w->offset - VCFMT_HDR_SIZE,
	};
	size_t mlen = meta_len(w->info.nblocks);
	int r = w_flush(w);

	/* Records first on disk, then the header that makes them a file. */
	if (r == 0 && fsync(w->fd) < 0)
		r = -errno;
	meta_encode(&w->info, w->records, meta);
	vcfmt_hdr_encode(&h, hdr);
	if (r == 0 && (pwrite(w->fd, meta, mlen, VCFMT_HDR_SIZE) != (ssize_t)mlen ||
		       pwrite(w->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)))
		r = errno ? -errno : -EIO;
	if (r == 0 && fsync(w->fd) < 0)
		r = -errno;
	if (r == 0 && size)
		*size = w->offset;
	if (r < 0)
		unlink(w->path);
	w_free(w);
	return r;
}

void liveram_abort(struct liveram_w *w)
{
	if (!w)
		return;
	unlink(w->path);
	w_free(w);
}

/* ---- reading ------------------------------------------------------------ */

static int read_exact(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int meta_decode(const uint8_t *p, size_t avail, struct liveram_info *in, char *why,
		       size_t whylen)
{
	if (avail < META_FIXED + 4) {
		snprintf(why, whylen, "body of %zu bytes, shorter than its meta", avail);
		return -EBADMSG;
	}
	memset(in, 0, sizeof(*in));
	in->file_index = vcfmt_get_be32(p);
	in->nfiles = vcfmt_get_be32(p + 4);
	in->epoch = vcfmt_get_be64(p + 8);
	in->rank = vcfmt_get_be32(p + 16);
	in->page_size = vcfmt_get_be32(p + 20);
	in->nblocks = vcfmt_get_be32(p + 24);
	in->records = vcfmt_get_be64(p + 32);
	if (in->nblocks < 1 || in->nblocks > LIVERAM_MAX_BLOCKS ||
	    avail < meta_len(in->nblocks)) {
		snprintf(why, whylen, "meta with %u blocks (1..%d, in %zu bytes)", in->nblocks,
			 LIVERAM_MAX_BLOCKS, avail);
		return -EBADMSG;
	}
	size_t ml = meta_len(in->nblocks);
	if (vcfmt_get_be32(p + ml - 4) != vcfmt_crc32c(0, p, ml - 4)) {
		snprintf(why, whylen, "meta CRC32C mismatch");
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < in->nblocks; i++) {
		const uint8_t *b = p + META_FIXED + (size_t)i * META_BLOCK;
		memcpy(in->blocks[i].name, b, LIVERAM_NAME_MAX);
		in->blocks[i].name[LIVERAM_NAME_MAX - 1] = 0;
		in->blocks[i].length = vcfmt_get_be64(b + LIVERAM_NAME_MAX);
	}
	if (!info_ok(in)) {
		snprintf(why, whylen, "meta out of range (file %u of %u, page size %u)",
			 in->file_index, in->nfiles, in->page_size);
		return -EBADMSG;
	}
	return 0;
}

int liveram_read(const char *path, liveram_apply_fn apply, void *arg,
		 struct liveram_info *info, char *why, size_t whylen)
{
	uint8_t hdr[VCFMT_HDR_SIZE];
	uint8_t meta[META_FIXED + LIVERAM_MAX_BLOCKS * META_BLOCK + 4];
	struct liveram_info in;
	struct vcfmt_hdr h;
	struct stat st;
	uint8_t *buf = NULL;
	uint64_t off, end, n = 0;
	int r, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(why, whylen, "%s", strerror(errno));
		goto out;
	}
	if ((r = read_exact(fd, hdr, sizeof(hdr), 0)) < 0)
		goto short_file;
	r = vcfmt_hdr_decode(hdr, VC_MAGIC_LIVERAM, LIVERAM_VERSION, UINT64_MAX - VCFMT_HDR_SIZE,
			     &h, why, whylen);
	if (r < 0)
		goto out;
	end = VCFMT_HDR_SIZE + h.body_len;
	if ((uint64_t)st.st_size != end) {
		snprintf(why, whylen, "%lld bytes, its header says %llu (%s)", (long long)st.st_size,
			 (unsigned long long)end, (uint64_t)st.st_size < end ? "truncated" :
			 "trailing bytes");
		r = -EBADMSG;
		goto out;
	}
	size_t mavail = h.body_len < sizeof(meta) ? (size_t)h.body_len : sizeof(meta);
	if ((r = read_exact(fd, meta, mavail, VCFMT_HDR_SIZE)) < 0)
		goto short_file;
	if ((r = meta_decode(meta, mavail, &in, why, whylen)) < 0)
		goto out;
	size_t maxrec = REC_HDR + (size_t)LIVERAM_MAX_REC_PAGES * in.page_size;
	if (!(buf = malloc(maxrec))) {
		r = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	for (off = VCFMT_HDR_SIZE + meta_len(in.nblocks); off < end; n++) {
		if (end - off < REC_HDR) {
			snprintf(why, whylen, "record %llu at byte %llu overruns the file",
				 (unsigned long long)n, (unsigned long long)off);
			r = -EBADMSG;
			goto out;
		}
		if ((r = read_exact(fd, buf, REC_HDR, off)) < 0)
			goto short_file;
		uint32_t blk = vcfmt_get_be32(buf), np = vcfmt_get_be32(buf + 16);
		uint64_t first = vcfmt_get_be64(buf + 8);
		size_t dlen = (size_t)np * in.page_size;
		if (blk >= in.nblocks || np < 1 || np > LIVERAM_MAX_REC_PAGES ||
		    first >= in.blocks[blk].length / in.page_size ||
		    np > in.blocks[blk].length / in.page_size - first ||
		    end - off - REC_HDR < dlen) {
			snprintf(why, whylen, "record %llu at byte %llu: block %u pages %llu+%u out of range",
				 (unsigned long long)n, (unsigned long long)off, blk,
				 (unsigned long long)first, np);
			r = -EBADMSG;
			goto out;
		}
		if ((r = read_exact(fd, buf + REC_HDR, dlen, off + REC_HDR)) < 0)
			goto short_file;
		if (vcfmt_get_be32(buf + 20) !=
		    vcfmt_crc32c(vcfmt_crc32c(0, buf, 20), buf + REC_HDR, dlen)) {
			snprintf(why, whylen, "record %llu at byte %llu: CRC32C mismatch",
				 (unsigned long long)n, (unsigned long long)off);
			r = -EBADMSG;
			goto out;
		}
		if (apply && (r = apply(arg, &in, blk, first, np, buf + REC_HDR)) != 0) {
			snprintf(why, whylen, "record %llu: %s", (unsigned long long)n,
				 r < 0 ? strerror(-r) : "refused");
			goto out;
		}
		off += REC_HDR + dlen;
	}
	if (n != in.records) {
		snprintf(why, whylen, "%llu records, its meta says %llu", (unsigned long long)n,
			 (unsigned long long)in.records);
		r = -EBADMSG;
		goto out;
	}
	if (info)
		*info = in;
	r = 0;
	goto out;
short_file:
	snprintf(why, whylen, "%s", r == -ENODATA ? "truncated" : strerror(-r));
	if (r == -ENODATA)
		r = -EBADMSG;
out:
	free(buf);
	close(fd);
	return r;
}
