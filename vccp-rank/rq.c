#include "rq.h"

#include "afile.h"
#include "vc_magic.h"
#include "vcfmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RQ_MAX_FILE (1ull << 32)

struct rq_frame {
	int from;
	uint16_t len;
	uint8_t *data;
};

struct rq {
	struct rq_frame *v;	/* ring */
	size_t head, count, cap;
	size_t bytes;
};

struct rq *rq_create(void)
{
	struct rq *q = calloc(1, sizeof(*q));
	if (!q)
		errno = ENOMEM;
	return q;
}

void rq_clear(struct rq *q)
{
	while (q->count)
		rq_pop(q);
}

void rq_destroy(struct rq *q)
{
	if (!q)
		return;
	rq_clear(q);
	free(q->v);
	free(q);
}

/* Room for want frames in the ring.  0 or -ENOMEM (q unchanged). */
static int rq_reserve(struct rq *q, size_t want)
{
	if (want <= q->cap)
		return 0;
	size_t ncap = q->cap ? q->cap : 256;
	while (ncap < want)
		ncap *= 2;
	struct rq_frame *nv = malloc(ncap * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	for (size_t i = 0; i < q->count; i++)
		nv[i] = q->v[(q->head + i) % q->cap];
	free(q->v);
	q->v = nv;
	q->cap = ncap;
	q->head = 0;
	return 0;
}

int rq_splice(struct rq *dst, struct rq *src)
{
	if (rq_reserve(dst, dst->count + src->count) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < src->count; i++)
		dst->v[(dst->head + dst->count + i) % dst->cap] =
			src->v[(src->head + i) % src->cap];
	dst->count += src->count;
	dst->bytes += src->bytes;
	src->count = src->bytes = src->head = 0;
	return 0;
}

int rq_push(struct rq *q, int from, const void *frame, uint16_t len)
{
	if (rq_reserve(q, q->count + 1) < 0)
		return -ENOMEM;
	uint8_t *data = malloc(len ? len : 1);
	if (!data)
		return -ENOMEM;
	memcpy(data, frame, len);
	q->v[(q->head + q->count) % q->cap] = (struct rq_frame){ from, len, data };
	q->count++;
	q->bytes += len;
	return 0;
}

int rq_peek(const struct rq *q, int *from, const uint8_t **frame, uint16_t *len)
{
	if (!q->count)
		return -ENOENT;
	const struct rq_frame *f = &q->v[q->head];
	*from = f->from;
	*frame = f->data;
	*len = f->len;
	return 0;
}

void rq_pop(struct rq *q)
{
	if (!q->count)
		return;
	struct rq_frame *f = &q->v[q->head];
	q->bytes -= f->len;
	free(f->data);
	q->head = (q->head + 1) % q->cap;
	q->count--;
}

size_t rq_count(const struct rq *q)
{
	return q->count;
}

size_t rq_bytes(const struct rq *q)
{
	return q->bytes;
}

int rq_save(const struct rq *q, const char *path, uint64_t epoch, int rank,
	    uint32_t *crc)
{
	size_t blen = 16 + q->count * 4 + q->bytes, total;
	uint8_t *body = malloc(blen), *p = body;
	int r;

	if (!body)
		return -ENOMEM;
	vcfmt_put_be64(p, epoch);
	vcfmt_put_be32(p + 8, (uint32_t)rank);
	vcfmt_put_be32(p + 12, (uint32_t)q->count);
	p += 16;
	for (size_t i = 0; i < q->count; i++) {
		const struct rq_frame *f = &q->v[(q->head + i) % q->cap];
		vcfmt_put_be16(p, (uint16_t)f->from);
		vcfmt_put_be16(p + 2, f->len);
		memcpy(p + 4, f->data, f->len);
		p += 4 + f->len;
	}
	uint8_t *file = vcfmt_wrap(VC_MAGIC_RQ, RQ_VERSION, body, blen, &total);
	free(body);
	if (!file)
		return -ENOMEM;
	r = afile_publish(path, file, total, 0600);
	if (r == 0 && crc)
		*crc = vcfmt_crc32c(0, file, total);
	free(file);
	return r;
}

int rq_load(const char *path, uint64_t epoch, int rank, struct rq **out,
	    char *why, size_t whylen)
{
	char *text;
	size_t len;
	int r = afile_read_all(path, RQ_MAX_FILE, &text, &len);

	*out = NULL;
	if (r < 0) {
		snprintf(why, whylen, "%s", strerror(-r));
		return r;
	}
	r = rq_parse(text, len, epoch, rank, out, why, whylen);
	free(text);
	return r;
}

int rq_parse(const void *buf, size_t len, uint64_t epoch, int rank,
	     struct rq **out, char *why, size_t whylen)
{
	int r;

	*out = NULL;
	const uint8_t *p;
	uint64_t blen;
	r = vcfmt_unwrap(buf, len, VC_MAGIC_RQ, RQ_VERSION, RQ_MAX_FILE, &p, &blen,
			 why, whylen);
	if (r < 0)
		goto out;
	const uint8_t *end = p + blen;
	if (blen < 16) {
		snprintf(why, whylen, "body of %llu bytes, shorter than its 16-byte head",
			 (unsigned long long)blen);
		r = -EBADMSG;
		goto out;
	}
	if (vcfmt_get_be64(p) != epoch || vcfmt_get_be32(p + 8) != (uint32_t)rank) {
		snprintf(why, whylen, "belongs to epoch %llu rank %u, expected epoch %llu rank %d",
			 (unsigned long long)vcfmt_get_be64(p), vcfmt_get_be32(p + 8),
			 (unsigned long long)epoch, rank);
		r = -EBADMSG;
		goto out;
	}
	uint32_t n = vcfmt_get_be32(p + 12);
	struct rq *q = rq_create();
	if (!q) {
		r = -ENOMEM;
		goto out;
	}
	p += 16;
	for (uint32_t i = 0; i < n; i++) {
		if (end - p < 4 || end - p - 4 < vcfmt_get_be16(p + 2)) {
			snprintf(why, whylen, "frame %u overruns the body", i);
			rq_destroy(q);
			r = -EBADMSG;
			goto out;
		}
		uint16_t flen = vcfmt_get_be16(p + 2);
		r = rq_push(q, vcfmt_get_be16(p), p + 4, flen);
		if (r < 0) {
			rq_destroy(q);
			goto out;
		}
		p += 4 + flen;
	}
	if (p != end) {
		snprintf(why, whylen, "%td bytes after the last of %u frames", end - p, n);
		rq_destroy(q);
		r = -EBADMSG;
		goto out;
	}
	*out = q;
	r = 0;
out:
	return r;
}
