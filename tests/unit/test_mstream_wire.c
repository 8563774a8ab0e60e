/* mstream's wire format against a raw-socket peer written from the layout in
 * tlm-migrate/README.md: streams connecting and saying hello in shuffled
 * order, refused hellos (answered with the reason; a stranger's dropped
 * while the real streams get through), corrupted, out-of-order,
 * oversized and truncated chunks, silent and dying peers, and the sender's
 * own bytes decoded field by field.  127.0.0.1 and ephemeral ports only. */
#include "test.h"
#include "mstream.h"
#include "vcfmt.h"
#include "vc_magic.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The layout, restated from the README rather than taken from mstream.c. */
#define HELLO_SIZE	40
#define REPLY_SIZE	104
#define CHDR_SIZE	40
#define K_HELLO		1
#define K_REPLY		2
#define K_CHUNK		3
#define K_ENDACK	4
#define F_ALL		1
#define F_END		2

static char why[1024];

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_prefix(uint8_t *b, uint16_t version, uint16_t size,
		       uint16_t kind)
{
	memset(b, 0, size);
	vcfmt_put_be32(b, VC_MAGIC_MSTREAM);
	vcfmt_put_be16(b + 4, version);
	vcfmt_put_be16(b + 6, size);
	vcfmt_put_be16(b + 8, kind);
}

static void put_hello(uint8_t *b, uint16_t version, uint16_t idx,
		      uint16_t count, uint64_t session)
{
	put_prefix(b, version, HELLO_SIZE, K_HELLO);
	vcfmt_put_be16(b + 10, idx);
	vcfmt_put_be16(b + 12, count);
	vcfmt_put_be64(b + 16, session);
	vcfmt_put_be32(b + 36, vcfmt_crc32c(0, b, 36));
}

/* Header, payload and trailer into b; returns the size. */
static size_t put_chunk(uint8_t *b, uint16_t flags, uint32_t type,
			uint64_t tag, uint64_t seq, const void *p, uint32_t len)
{
	put_prefix(b, MSTREAM_WIRE_VERSION, CHDR_SIZE, K_CHUNK);
	vcfmt_put_be16(b + 10, flags);
	vcfmt_put_be32(b + 12, type);
	vcfmt_put_be64(b + 16, tag);
	vcfmt_put_be64(b + 24, seq);
	vcfmt_put_be32(b + 32, len);
	vcfmt_put_be32(b + 36, vcfmt_crc32c(0, b, 36));
	memcpy(b + CHDR_SIZE, p, len);
	vcfmt_put_be32(b + CHDR_SIZE + len,
		       vcfmt_crc32c(0, b, CHDR_SIZE + len));
	return CHDR_SIZE + len + 4;
}

static int raw_connect(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CHECK(fd >= 0);
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void raw_send(int fd, const void *b, size_t len)
{
	CHECK_EQ(send(fd, b, len, MSG_NOSIGNAL), (long long)len);
}

/* Read up to len bytes; returns how many came before EOF/error. */
static size_t raw_recv(int fd, void *b, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = recv(fd, (char *)b + got, len - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Read a reply (or end ack) of the given kind; returns its status. */
static uint32_t raw_reply(int fd, uint16_t kind, uint16_t idx, char *reason)
{
	uint8_t r[REPLY_SIZE];

	CHECK_EQ(raw_recv(fd, r, sizeof(r)), REPLY_SIZE);
	CHECK_EQ(vcfmt_get_be32(r), VC_MAGIC_MSTREAM);
	CHECK_EQ(vcfmt_get_be16(r + 4), MSTREAM_WIRE_VERSION);
	CHECK_EQ(vcfmt_get_be16(r + 6), REPLY_SIZE);
	CHECK_EQ(vcfmt_get_be16(r + 8), kind);
	CHECK_EQ(vcfmt_get_be32(r + 100), vcfmt_crc32c(0, r, 100));
	CHECK_EQ(r[99], 0);	/* reason NUL-terminated */
	if (reason)
		memcpy(reason, r + 24, 76);
	if (!vcfmt_get_be32(r + 12))
		CHECK_EQ(vcfmt_get_be16(r + 10), idx);
	return vcfmt_get_be32(r + 12);
}

/* Connect, hello, expect an accepting reply. */
static int raw_open(uint16_t port, uint16_t idx, uint16_t count,
		    uint64_t session)
{
	uint8_t h[HELLO_SIZE];
	int fd = raw_connect(port);

	put_hello(h, MSTREAM_WIRE_VERSION, idx, count, session);
	raw_send(fd, h, sizeof(h));
	CHECK_EQ(raw_reply(fd, K_REPLY, idx, NULL), 0);
	return fd;
}

/* ---- a receiver plus a peer thread running a script ---------------------- */

struct peer {
	uint16_t port;
	void (*script)(struct peer *p);
	pthread_t th;
	int arg;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	p->script(p);
	return NULL;
}

struct rx {
	pthread_mutex_t lock;
	int per_stream[8];
	int total;
	int fail_at;		/* callback fails on this tag when > 0 */
	int bad;
};

static int rx_cb(void *arg, const struct mstream_chunk *c)
{
	struct rx *rx = arg;
	char want[32];
	int r = 0;

	pthread_mutex_lock(&rx->lock);
	/* Scripts put "s<stream> c<seq>" in each payload, tag = s*100+seq. */
	snprintf(want, sizeof(want), "s%d c%llu", c->stream,
		 (unsigned long long)c->seq);
	if (c->tag != (uint64_t)c->stream * 100 + c->seq ||
	    c->len != strlen(want) || memcmp(c->data, want, c->len)) {
		fprintf(stderr, "bad chunk on stream %d seq %llu tag %llu\n",
			c->stream, (unsigned long long)c->seq,
			(unsigned long long)c->tag);
		rx->bad++;
	}
	rx->per_stream[c->stream]++;
	rx->total++;
	if (rx->fail_at && c->tag == (uint64_t)rx->fail_at)
		r = -ENOSPC;
	pthread_mutex_unlock(&rx->lock);
	return r;
}

static size_t put_data(uint8_t *b, int stream, uint64_t seq)
{
	char text[32];

	snprintf(text, sizeof(text), "s%d c%llu", stream,
		 (unsigned long long)seq);
	return put_chunk(b, 0, 1, (uint64_t)stream * 100 + seq, seq, text,
			 (uint32_t)strlen(text));
}

static struct rx rx;

static struct mstream *rx_start(int n, uint64_t session, int io_timeout_ms,
				struct peer *p, void (*script)(struct peer *))
{
	struct mstream_opts o = { .nstreams = n, .session_id = session,
				  .timeout_ms = 3000,
				  .io_timeout_ms = io_timeout_ms,
				  .max_chunk = 4096, .recv_cb = rx_cb,
				  .recv_arg = &rx };
	struct mstream_addr a = { "127.0.0.1", 0 };
	struct mstream *ms = mstream_create(&o);

	CHECK(ms);
	memset(rx.per_stream, 0, sizeof(rx.per_stream));
	rx.total = rx.bad = rx.fail_at = 0;
	CHECK_EQ(mstream_listen(ms, &a, 1), 0);
	p->port = (uint16_t)mstream_listen_port(ms, 0);
	p->script = script;
	CHECK_EQ(pthread_create(&p->th, NULL, peer_main, p), 0);
	return ms;
}

static void peer_join(struct peer *p)
{
	CHECK_EQ(pthread_join(p->th, NULL), 0);
}

/* ---- shuffled streams ------------------------------------------------------ */

#define SHUF_N		4
#define SHUF_CHUNKS	5
#define SHUF_SESSION	0x5eed0000cafe0001ull

static void script_shuffled(struct peer *p)
{
	static const int connect_order[SHUF_N] = { 2, 0, 3, 1 };
	static const int hello_order[SHUF_N] = { 1, 3, 0, 2 };
	static const int data_order[SHUF_N] = { 3, 1, 0, 2 };
	uint8_t b[256];
	int fd[SHUF_N], i, j, s;

	for (i = 0; i < SHUF_N; i++)
		fd[connect_order[i]] = raw_connect(p->port);
	for (i = 0; i < SHUF_N; i++) {
		s = hello_order[i];
		put_hello(b, MSTREAM_WIRE_VERSION, (uint16_t)s, SHUF_N,
			  SHUF_SESSION);
		raw_send(fd[s], b, HELLO_SIZE);
	}
	for (i = 0; i < SHUF_N; i++)
		CHECK_EQ(raw_reply(fd[i], K_REPLY, (uint16_t)i, NULL), 0);
	for (i = 0; i < SHUF_N; i++) {
		s = data_order[i];
		for (j = 0; j < SHUF_CHUNKS; j++)
			raw_send(fd[s], b, put_data(b, s, (uint64_t)j));
		raw_send(fd[s], b, put_chunk(b, F_END, 0, 0, SHUF_CHUNKS, "", 0));
	}
	for (i = 0; i < SHUF_N; i++) {
		CHECK_EQ(raw_reply(fd[i], K_ENDACK, (uint16_t)i, NULL), 0);
		CHECK_EQ(raw_recv(fd[i], b, 1), 0);	/* then EOF */
		close(fd[i]);
	}
}

static void test_shuffled(void)
{
	struct peer p;
	struct mstream *ms = rx_start(SHUF_N, 0, 3000, &p, script_shuffled);

	CHECK_EQ(mstream_accept(ms), 0);
	CHECK_EQ(mstream_session(ms), SHUF_SESSION);
	CHECK_EQ(mstream_wait(ms, 3000), 0);
	peer_join(&p);
	CHECK_EQ(rx.bad, 0);
	for (int i = 0; i < SHUF_N; i++)
		CHECK_EQ(rx.per_stream[i], SHUF_CHUNKS);
	mstream_destroy(ms);
}

/* ---- refused hellos ------------------------------------------------------- */

enum bad_hello { BH_VERSION, BH_SESSION, BH_MAGIC, BH_INDEX, BH_CRC,
		 BH_DUP, BH_SESSION2 };
static const char *bad_hello_reason[] = {
	[BH_VERSION] = "version 2, expected 1",
	[BH_SESSION] = "session 0x00000000000000bb, expected 0x00000000000000aa",
	[BH_MAGIC] = "magic 0x47455420, expected 0x56434d53",
	[BH_INDEX] = "stream index 2, expected below 2",
	[BH_CRC] = "hello header CRC32C",
	[BH_DUP] = "stream 0 already connected from 127.0.0.1:",
	[BH_SESSION2] = "session 0x00000000000000cc, expected 0x00000000000000aa",
};

/* Not an mstream hello of this version: a stranger, dropped while the
 * accept goes on; the others come from a sender that fails the accept. */
static bool bad_hello_dropped(enum bad_hello kind)
{
	return kind == BH_VERSION || kind == BH_MAGIC || kind == BH_CRC;
}

static void script_bad_hello(struct peer *p)
{
	uint8_t h[HELLO_SIZE], b[256];
	char reason[80];
	int fd, first = -1, real[2];

	switch (p->arg) {
	case BH_VERSION:
		put_hello(h, 2, 0, 2, 0xaa);
		break;
	case BH_SESSION:
		put_hello(h, 1, 0, 2, 0xbb);
		break;
	case BH_MAGIC:
		memset(h, 'x', sizeof(h));
		memcpy(h, "GET / HTTP/1.0\r\n", 16);
		break;
	case BH_INDEX:
		put_hello(h, 1, 2, 2, 0xaa);
		break;
	case BH_CRC:
		put_hello(h, 1, 0, 2, 0xaa);
		h[30] ^= 0x04;	/* a reserved byte: only the CRC notices */
		break;
	case BH_DUP:
		first = raw_open(p->port, 0, 2, 0xaa);
		put_hello(h, 1, 0, 2, 0xaa);
		break;
	case BH_SESSION2:
		/* The receiver adopts the first hello's session. */
		first = raw_open(p->port, 0, 2, 0xaa);
		put_hello(h, 1, 1, 2, 0xcc);
		break;
	}
	fd = raw_connect(p->port);
	raw_send(fd, h, sizeof(h));
	CHECK_EQ(raw_reply(fd, K_REPLY, 0, reason), EPROTO);
	if (!strstr(reason, bad_hello_reason[p->arg])) {
		fprintf(stderr, "reply reason \"%s\" lacks \"%s\"\n", reason,
			bad_hello_reason[p->arg]);
		exit(1);
	}
	close(fd);
	if (first >= 0)
		close(first);
	if (!bad_hello_dropped(p->arg))
		return;
	/* The stranger is gone; the real streams still get through. */
	for (int i = 0; i < 2; i++) {
		real[i] = raw_open(p->port, (uint16_t)i, 2, 0xaa);
		raw_send(real[i], b, put_chunk(b, F_END, 0, 0, 0, "", 0));
	}
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(raw_reply(real[i], K_ENDACK, (uint16_t)i, NULL), 0);
		close(real[i]);
	}
}

static void test_bad_hello(enum bad_hello kind)
{
	uint64_t session = kind == BH_SESSION ? 0xaa : 0;
	struct peer p = { .arg = kind };
	struct mstream *ms = rx_start(2, session, 3000, &p, script_bad_hello);

	if (bad_hello_dropped(kind)) {
		CHECK_EQ(mstream_accept(ms), 0);
		CHECK_EQ(mstream_wait(ms, 3000), 0);
		CHECK_EQ(mstream_session(ms), 0xaa);
		fprintf(stderr, "dropped (%s), then accepted the real streams\n",
			bad_hello_reason[kind]);
		peer_join(&p);
		mstream_destroy(ms);
		return;
	}
	CHECK_EQ(mstream_accept(ms), -EPROTO);
	CHECK_EQ(mstream_error(ms, why, sizeof(why)), -EPROTO);
	fprintf(stderr, "refused: %s\n", why);
	CHECK(strstr(why, "hello from 127.0.0.1:"));
	CHECK(strstr(why, bad_hello_reason[kind]));
	CHECK_EQ(mstream_wait(ms, 100), -EPROTO);	/* the kept error */
	peer_join(&p);
	mstream_destroy(ms);
}

/* ---- faults on an open stream ---------------------------------------------- */

enum fault { F_PAYLOAD_FLIP, F_HEADER_FLIP, F_TRAILER_FLIP, F_SEQ_SKIP,
	     F_TOO_LONG, F_FLAGS, F_CHUNK_MAGIC, F_MID_CHUNK, F_BETWEEN,
	     F_SILENT, F_CALLBACK, F_ONE_OF_TWO, F_END_PAYLOAD };

struct fault_case {
	const char *name;
	int nstreams;
	int io_timeout_ms;
	int err;
	const char *text;
	int delivered;		/* chunks the callback saw before */
};

static const struct fault_case faults[] = {
	[F_PAYLOAD_FLIP] = { "payload bit flip", 1, 3000, -EBADMSG,
			     "stream 0 (127.0.0.1:", 2 },
	[F_HEADER_FLIP] = { "header bit flip", 1, 3000, -EBADMSG,
			    "chunk seq 2: chunk header CRC32C", 2 },
	[F_TRAILER_FLIP] = { "trailer bit flip", 1, 3000, -EBADMSG,
			     "chunk seq 2: CRC32C", 2 },
	[F_SEQ_SKIP] = { "sequence gap", 1, 3000, -EBADMSG,
			 "chunk sequence 3, expected 2", 2 },
	[F_TOO_LONG] = { "oversized length", 1, 3000, -EMSGSIZE,
			 "chunk seq 2: length 1048576 exceeds the limit 4096", 2 },
	[F_FLAGS] = { "unknown flags", 1, 3000, -EBADMSG,
		      "flags 0x0080, expected a subset of 0x0003", 2 },
	[F_CHUNK_MAGIC] = { "chunk magic", 1, 3000, -EBADMSG,
			    "chunk seq 2: magic 0x0badf00d, expected 0x56434d53", 2 },
	[F_MID_CHUNK] = { "peer closed mid-chunk", 1, 10000, -EPIPE,
			  "peer closed mid-chunk (seq 2: 3 of 5 payload bytes)", 2 },
	[F_BETWEEN] = { "peer closed between chunks", 1, 10000, -EPIPE,
			"peer closed before the end-of-stream marker (after 2 chunks)", 2 },
	[F_SILENT] = { "silent peer", 1, 300, -ETIMEDOUT,
		       "peer silent for 300 ms mid-chunk (seq 2)", 2 },
	[F_CALLBACK] = { "callback error", 1, 3000, -ENOSPC,
			 "receive callback failed on chunk seq 1: No space left on device", 2 },
	[F_ONE_OF_TWO] = { "one stream of two dies", 2, 10000, -EPIPE,
			   "stream 1 (127.0.0.1:", 2 },
	[F_END_PAYLOAD] = { "end marker with payload", 1, 3000, -EBADMSG,
			    "end-of-stream marker with length 3, expected 0", 2 },
};

static void script_fault(struct peer *p)
{
	const struct fault_case *fc = &faults[p->arg];
	uint8_t b[256];
	int fd, idle = -1;
	size_t n;

	if (p->arg == F_ONE_OF_TWO)
		idle = raw_open(p->port, 0, 2, 0x77);	/* stays silent */
	fd = raw_open(p->port, (uint16_t)(fc->nstreams - 1),
		      (uint16_t)fc->nstreams, 0x77);
	for (int i = 0; i < 2; i++)
		raw_send(fd, b, put_data(b, fc->nstreams - 1, (uint64_t)i));
	n = put_data(b, fc->nstreams - 1, 2);	/* payload "sX c2", 5 bytes */
	switch (p->arg) {
	case F_PAYLOAD_FLIP:
		b[CHDR_SIZE + 1] ^= 0x10;
		break;
	case F_HEADER_FLIP:
		b[17] ^= 0x01;		/* in the tag */
		break;
	case F_TRAILER_FLIP:
		b[n - 1] ^= 0x80;
		break;
	case F_SEQ_SKIP:
		n = put_data(b, 0, 3);
		break;
	case F_TOO_LONG:
		/* A sane header (CRC fine) announcing 1 MiB: refused before
		 * anything is allocated or read. */
		put_chunk(b, 0, 1, 0, 2, "", 0);
		vcfmt_put_be32(b + 32, 1 << 20);
		vcfmt_put_be32(b + 36, vcfmt_crc32c(0, b, 36));
		n = CHDR_SIZE;
		break;
	case F_FLAGS:
		n = put_chunk(b, 0x80, 1, 2, 2, "xx", 2);
		break;
	case F_CHUNK_MAGIC:
		vcfmt_put_be32(b, 0x0badf00d);
		break;
	case F_MID_CHUNK:
	case F_ONE_OF_TWO:
		n = CHDR_SIZE + 3;	/* header and 3 of 5 payload bytes */
		break;
	case F_BETWEEN:
		n = 0;
		break;
	case F_SILENT:
		n = 20;			/* half a header, then nothing */
		break;
	case F_CALLBACK:
		break;			/* the callback fails on tag 1 */
	case F_END_PAYLOAD:
		n = put_chunk(b, F_END, 0, 0, 2, "abc", 3);
		break;
	}
	if (n)
		raw_send(fd, b, n);
	if (p->arg == F_SILENT || p->arg == F_CALLBACK) {
		/* Wait for the receiver to hang up on us: it must not wait
		 * for us to go first. */
		CHECK(raw_recv(fd, b, sizeof(b)) < sizeof(b));
	}
	close(fd);
	if (idle >= 0) {
		/* The idle stream is cut too, without its peer's help. */
		CHECK(raw_recv(idle, b, sizeof(b)) < sizeof(b));
		close(idle);
	}
}

static void test_fault(enum fault f)
{
	const struct fault_case *fc = &faults[f];
	struct peer p = { .arg = f };
	struct mstream *ms = rx_start(fc->nstreams, 0, fc->io_timeout_ms, &p,
				      script_fault);
	long t0, took;
	int r;

	if (f == F_CALLBACK)
		rx.fail_at = 1;
	CHECK_EQ(mstream_accept(ms), 0);
	t0 = now_ms();
	r = mstream_wait(ms, 5000);
	took = now_ms() - t0;
	mstream_error(ms, why, sizeof(why));
	fprintf(stderr, "%s: %d after %ld ms: %s\n", fc->name, r, took, why);
	CHECK_EQ(r, fc->err);
	CHECK_EQ(mstream_error(ms, NULL, 0), fc->err);
	CHECK(strstr(why, fc->text));
	CHECK(strstr(why, "(127.0.0.1:"));
	/* Prompt: well before the 10 s I/O timeout for dead peers. */
	CHECK(took < 2500);
	CHECK_EQ(rx.total, fc->delivered);
	CHECK_EQ(rx.bad, 0);
	CHECK_EQ(mstream_wait_barrier(ms, 0, 100), fc->err);
	peer_join(&p);
	mstream_destroy(ms);
}

/* ---- the sender's bytes, decoded by hand ------------------------------------- */

struct raw_rx {
	int lfd;
	pthread_t th;
	uint64_t session;
	bool no_ack;		/* read everything, then hang up unacknowledged */
};

static void *raw_receiver(void *arg)
{
	struct raw_rx *r = arg;
	uint8_t b[512], ack[REPLY_SIZE];
	int fd = accept(r->lfd, NULL, NULL);
	uint32_t crc;

	CHECK(fd >= 0);
	/* hello */
	CHECK_EQ(raw_recv(fd, b, HELLO_SIZE), HELLO_SIZE);
	CHECK_EQ(vcfmt_get_be32(b), 0x56434d53);	/* "VCMS" */
	CHECK_EQ(vcfmt_get_be16(b + 4), 1);
	CHECK_EQ(vcfmt_get_be16(b + 6), HELLO_SIZE);
	CHECK_EQ(vcfmt_get_be16(b + 8), K_HELLO);
	CHECK_EQ(vcfmt_get_be16(b + 10), 0);
	CHECK_EQ(vcfmt_get_be16(b + 12), 1);
	CHECK_EQ(vcfmt_get_be16(b + 14), 0);
	r->session = vcfmt_get_be64(b + 16);
	for (int i = 24; i < 36; i++)
		CHECK_EQ(b[i], 0);
	CHECK_EQ(vcfmt_get_be32(b + 36), vcfmt_crc32c(0, b, 36));
	/* reply */
	put_prefix(ack, 1, REPLY_SIZE, K_REPLY);
	vcfmt_put_be64(ack + 16, r->session);
	vcfmt_put_be32(ack + 100, vcfmt_crc32c(0, ack, 100));
	raw_send(fd, ack, sizeof(ack));
	/* one chunk: type 0x01020304, tag 0x1122334455667788, "hello" */
	CHECK_EQ(raw_recv(fd, b, CHDR_SIZE + 5 + 4), CHDR_SIZE + 5 + 4);
	CHECK_EQ(vcfmt_get_be32(b), 0x56434d53);
	CHECK_EQ(vcfmt_get_be16(b + 4), 1);
	CHECK_EQ(vcfmt_get_be16(b + 6), CHDR_SIZE);
	CHECK_EQ(vcfmt_get_be16(b + 8), K_CHUNK);
	CHECK_EQ(vcfmt_get_be16(b + 10), 0);
	CHECK_EQ(vcfmt_get_be32(b + 12), 0x01020304);
	CHECK(vcfmt_get_be64(b + 16) == 0x1122334455667788ull);
	CHECK_EQ(vcfmt_get_be64(b + 24), 0);
	CHECK_EQ(vcfmt_get_be32(b + 32), 5);
	CHECK_EQ(vcfmt_get_be32(b + 36), vcfmt_crc32c(0, b, 36));
	CHECK(!memcmp(b + CHDR_SIZE, "hello", 5));
	crc = vcfmt_crc32c(0, b, CHDR_SIZE + 5);
	CHECK_EQ(vcfmt_get_be32(b + CHDR_SIZE + 5), crc);
	/* a marker, then the end-of-stream chunk */
	CHECK_EQ(raw_recv(fd, b, CHDR_SIZE + 4), CHDR_SIZE + 4);
	CHECK_EQ(vcfmt_get_be16(b + 10), F_ALL);
	CHECK_EQ(vcfmt_get_be64(b + 24), 1);
	CHECK_EQ(vcfmt_get_be32(b + 32), 0);
	CHECK_EQ(raw_recv(fd, b, CHDR_SIZE + 4), CHDR_SIZE + 4);
	CHECK_EQ(vcfmt_get_be16(b + 10), F_END);
	CHECK_EQ(vcfmt_get_be64(b + 24), 2);
	CHECK_EQ(vcfmt_get_be32(b + CHDR_SIZE), vcfmt_crc32c(0, b, CHDR_SIZE));
	if (r->no_ack) {
		close(fd);
		return NULL;
	}
	/* end acknowledgement */
	ack[9] = K_ENDACK;
	vcfmt_put_be32(ack + 100, vcfmt_crc32c(0, ack, 100));
	raw_send(fd, ack, sizeof(ack));
	CHECK_EQ(raw_recv(fd, b, 1), 0);
	close(fd);
	return NULL;
}

static void test_sender_layout(bool no_ack)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct mstream_opts o = { .nstreams = 1, .timeout_ms = 3000,
				  .io_timeout_ms = 3000 };
	socklen_t sl = sizeof(sa);
	struct raw_rx r;
	struct mstream *ms;

	r.lfd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(r.lfd >= 0);
	CHECK_EQ(bind(r.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(r.lfd, 1), 0);
	CHECK_EQ(getsockname(r.lfd, (struct sockaddr *)&sa, &sl), 0);
	r.no_ack = no_ack;
	CHECK_EQ(pthread_create(&r.th, NULL, raw_receiver, &r), 0);
	ms = mstream_create(&o);
	CHECK(ms);
	struct mstream_addr a = { "127.0.0.1", ntohs(sa.sin_port) };
	CHECK_EQ(mstream_connect(ms, &a, 1), 0);
	CHECK_EQ(mstream_send(ms, 0x01020304, 0x1122334455667788ull, "hello", 5), 0);
	CHECK_EQ(mstream_send_all(ms, 9, 1, NULL, 0), 0);
	if (no_ack) {
		/* Written is not delivered: without the receiver's word the
		 * sender must not report success. */
		CHECK_EQ(mstream_finish(ms), -EPIPE);
		mstream_error(ms, why, sizeof(why));
		fprintf(stderr, "no end acknowledgement: %s\n", why);
		CHECK(strstr(why, "peer closed before acknowledging the end of stream"));
	} else {
		CHECK_EQ(mstream_finish(ms), 0);
	}
	CHECK_EQ(pthread_join(r.th, NULL), 0);
	CHECK(r.session == mstream_session(ms));
	mstream_destroy(ms);
	close(r.lfd);
}

int main(void)
{
	long t0 = now_ms();

	pthread_mutex_init(&rx.lock, NULL);
	test_shuffled();
	for (int k = BH_VERSION; k <= BH_SESSION2; k++)
		test_bad_hello(k);
	for (int f = F_PAYLOAD_FLIP; f <= F_END_PAYLOAD; f++)
		test_fault(f);
	test_sender_layout(false);
	test_sender_layout(true);
	pthread_mutex_destroy(&rx.lock);
	printf("ok (%ld ms)\n", now_ms() - t0);
	return 0;
}
