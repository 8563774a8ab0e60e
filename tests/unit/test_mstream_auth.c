/* mstream's authenticated streams (wire version 2), over loopback TCP and
 * files: a round trip; strangers connecting first (a plain hello, a forged
 * MAC, each followed by a chunk) dropped and logged while the real streams
 * get through; a wrong secret refused with one line naming the peer; 200
 * idle connections; a silent connection closed after the hello timeout; a
 * man in the middle who fixes up the CRCs after flipping a payload byte or
 * replaying a chunk under the next sequence number; files with the right,
 * a wrong and no secret; the secret-file checks; and the cost of the HMAC
 * (MB/s with and without).  127.0.0.1 and ephemeral ports only. */
#include "test.h"
#include "mstream.h"
#include "vcfmt.h"
#include "vc_magic.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define T_DATA		1
#define T_ROGUE		0x666
#define SESSION		0x5e55000000000001ull
/* The v2 layout, restated from the README. */
#define CHAL_SIZE	40
#define HELLO2_SIZE	88
#define REPLY2_SIZE	136
#define CHDR_SIZE	40
#define TRAILER2_SIZE	36

static const uint8_t secret[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t wrong[32] = "0123456789abcdef0123456789abcdeX";
static char why[1024];

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint8_t data_byte(uint64_t tag, size_t j)
{
	return (uint8_t)(tag * 13 + j * 5 + 3);
}

/* ---- stderr capture: the library logs dropped connections there -------- */

static int saved_stderr = -1;
static char log_path[] = "/tmp/test_mstream_auth.XXXXXX";

static void log_capture(void)
{
	int fd = mkstemp(log_path);

	CHECK(fd >= 0);
	fflush(stderr);
	saved_stderr = dup(2);
	CHECK(dup2(fd, 2) == 2);
	close(fd);
}

/* Restore stderr, return what was logged (static buffer), echo it. */
static const char *log_release(void)
{
	static char text[16384];
	int fd;
	ssize_t n;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	fd = open(log_path, O_RDONLY);
	CHECK(fd >= 0);
	n = read(fd, text, sizeof(text) - 1);
	CHECK(n >= 0);
	text[n] = '\0';
	close(fd);
	unlink(log_path);
	memcpy(log_path + strlen(log_path) - 6, "XXXXXX", 6);
	fputs(text, stderr);
	return text;
}

static int count_lines(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* ---- a receiver and its callback ----------------------------------------- */

struct rx {
	pthread_mutex_t lock;
	int data, bad, rogue;
};

static struct rx rx;
static int rx_timeout_ms = 8000;

static int rx_cb(void *arg, const struct mstream_chunk *c)
{
	struct rx *r = arg;
	const uint8_t *p = c->data;
	bool ok = c->type == T_DATA;

	/* The throughput runs (1 MiB chunks) measure the streams, not this. */
	for (size_t j = 0; ok && c->len <= 65536 && j < c->len; j++)
		ok = p[j] == data_byte(c->tag, j);
	pthread_mutex_lock(&r->lock);
	if (c->type == T_ROGUE)
		r->rogue++;
	else if (!ok)
		r->bad++;
	else
		r->data++;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static struct mstream *rx_open(int n, const uint8_t *key, int hello_tmo,
			       uint16_t *port)
{
	struct mstream_opts o = {
		.nstreams = n, .session_id = SESSION, .timeout_ms = rx_timeout_ms,
		.io_timeout_ms = 5000, .hello_timeout_ms = hello_tmo,
		.max_chunk = 1 << 20, .recv_cb = rx_cb, .recv_arg = &rx,
		.secret = key, .secret_len = key ? 32 : 0,
	};
	struct mstream_addr a = { "127.0.0.1", 0 };
	struct mstream *ms = mstream_create(&o);

	CHECK(ms);
	rx.data = rx.bad = rx.rogue = 0;
	CHECK_EQ(mstream_listen(ms, &a, 1), 0);
	*port = (uint16_t)mstream_listen_port(ms, 0);
	return ms;
}

/* ---- a sender on its own thread --------------------------------------------- */

struct tx {
	uint16_t port;
	const uint8_t *key;
	int n, nchunks;
	size_t len;
	void (*before)(struct tx *t);	/* strangers, run first */
	int connect_err;		/* what mstream_connect returned */
	int err;			/* what mstream_finish returned */
	char why[512];
	double mbps;
	pthread_t th;
	int arg;
};

static void *tx_main(void *arg)
{
	struct tx *t = arg;
	struct mstream_opts o = {
		.nstreams = t->n, .session_id = SESSION, .timeout_ms = 8000,
		.io_timeout_ms = 5000, .max_chunk = 1 << 20,
		.secret = t->key, .secret_len = t->key ? 32 : 0,
	};
	struct mstream_addr a = { "127.0.0.1", t->port };
	struct mstream *ms;
	uint8_t *buf = malloc(t->len ? t->len : 1);
	long t0;

	CHECK(buf);
	if (t->before)
		t->before(t);
	ms = mstream_create(&o);
	CHECK(ms);
	t->connect_err = mstream_connect(ms, &a, 1);
	if (t->connect_err) {
		mstream_error(ms, t->why, sizeof(t->why));
		goto out;
	}
	t0 = now_ms();
	for (int i = 0; i < t->nchunks; i++) {
		for (size_t j = 0; (t->len <= 65536 || !i) && j < t->len; j++)
			buf[j] = data_byte((uint64_t)i, j);
		CHECK_EQ(mstream_send(ms, T_DATA, (uint64_t)i, buf, t->len), 0);
	}
	t->err = mstream_finish(ms);
	t->mbps = (double)t->nchunks * (double)t->len / 1e6 /
		  ((double)(now_ms() - t0 + 1) / 1e3);
	mstream_error(ms, t->why, sizeof(t->why));
out:
	mstream_destroy(ms);
	free(buf);
	return NULL;
}

static void tx_start(struct tx *t)
{
	CHECK_EQ(pthread_create(&t->th, NULL, tx_main, t), 0);
}

static void tx_join(struct tx *t)
{
	CHECK_EQ(pthread_join(t->th, NULL), 0);
}

/* ---- raw peers --------------------------------------------------------------- */

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

static void put_prefix(uint8_t *b, uint16_t version, uint16_t size,
		       uint16_t kind)
{
	memset(b, 0, size);
	vcfmt_put_be32(b, VC_MAGIC_MSTREAM);
	vcfmt_put_be16(b + 4, version);
	vcfmt_put_be16(b + 6, size);
	vcfmt_put_be16(b + 8, kind);
}

/* A refusal as a stranger sees it: status and reason. */
static uint32_t raw_refusal(int fd, char *reason)
{
	uint8_t r[REPLY2_SIZE];

	CHECK_EQ(raw_recv(fd, r, sizeof(r)), REPLY2_SIZE);
	CHECK_EQ(vcfmt_get_be32(r), VC_MAGIC_MSTREAM);
	CHECK_EQ(vcfmt_get_be16(r + 4), 2);
	CHECK_EQ(vcfmt_get_be16(r + 8), 2);
	CHECK_EQ(vcfmt_get_be32(r + 132), vcfmt_crc32c(0, r, 132));
	memcpy(reason, r + 24, 76);
	reason[75] = '\0';
	return vcfmt_get_be32(r + 12);
}

/* A chunk of type T_ROGUE with CRCs right, v1 or v2 framing (the v2 MAC
 * is garbage: the stranger does not know the key). */
static size_t put_rogue_chunk(uint8_t *b, uint16_t version)
{
	size_t tl = version == 2 ? TRAILER2_SIZE : 4;

	put_prefix(b, version, CHDR_SIZE, 3);
	vcfmt_put_be32(b + 12, T_ROGUE);
	vcfmt_put_be32(b + 32, 8);
	vcfmt_put_be32(b + 36, vcfmt_crc32c(0, b, 36));
	memcpy(b + CHDR_SIZE, "rogue!!!", 8);
	memset(b + CHDR_SIZE + 8, 0x5a, tl);
	vcfmt_put_be32(b + CHDR_SIZE + 8, vcfmt_crc32c(0, b, CHDR_SIZE + 8));
	return CHDR_SIZE + 8 + tl;
}

/*
 * Strangers who connect before the sender: one says a plain (v1) hello
 * with the right session and index 0, one a v2 hello whose MAC it had to
 * make up; each then sends a chunk.  Both are refused with the reason and
 * nothing they send reaches the callback.
 */
static void strangers_first(struct tx *t)
{
	uint8_t chal[CHAL_SIZE], h[HELLO2_SIZE], b[256];
	char reason[80];
	int fd;

	/* v1 hello, the right session */
	fd = raw_connect(t->port);
	CHECK_EQ(raw_recv(fd, chal, sizeof(chal)), CHAL_SIZE);
	CHECK_EQ(vcfmt_get_be16(chal + 8), 5);		/* a challenge */
	put_prefix(h, 1, 40, 1);
	vcfmt_put_be16(h + 12, (uint16_t)t->n);
	vcfmt_put_be64(h + 16, SESSION);
	vcfmt_put_be32(h + 36, vcfmt_crc32c(0, h, 36));
	/* Hello and chunk in one segment (both there when it is refused). */
	memcpy(b, h, 40);
	send(fd, b, 40 + put_rogue_chunk(b + 40, 1), MSG_NOSIGNAL);
	CHECK_EQ(raw_refusal(fd, reason), EPROTO);
	fprintf(stderr, "plain stranger told: %s\n", reason);
	CHECK(strstr(reason, "version 1, expected 2"));
	close(fd);

	/* v2 hello with a made-up MAC */
	fd = raw_connect(t->port);
	CHECK_EQ(raw_recv(fd, chal, sizeof(chal)), CHAL_SIZE);
	put_prefix(h, 2, HELLO2_SIZE, 1);
	vcfmt_put_be16(h + 12, (uint16_t)t->n);
	vcfmt_put_be64(h + 16, SESSION);
	memset(h + 24, 0x11, 16);			/* nonce */
	memset(h + 40, 0x22, 32);			/* "MAC" */
	vcfmt_put_be32(h + 84, vcfmt_crc32c(0, h, 84));
	memcpy(b, h, sizeof(h));
	send(fd, b, sizeof(h) + put_rogue_chunk(b + sizeof(h), 2), MSG_NOSIGNAL);
	CHECK_EQ(raw_refusal(fd, reason), EPROTO);
	fprintf(stderr, "forging stranger told: %s\n", reason);
	CHECK(strstr(reason, "hello HMAC does not match"));
	close(fd);
}

static void test_roundtrip_and_strangers(bool strangers)
{
	struct tx t = { .key = secret, .n = 4, .nchunks = 400, .len = 3000 };
	struct mstream *ms;
	const char *log;

	ms = rx_open(4, secret, 0, &t.port);
	if (strangers) {
		t.before = strangers_first;
		log_capture();
	}
	tx_start(&t);
	CHECK_EQ(mstream_accept(ms), 0);
	CHECK_EQ(mstream_wait(ms, 10000), 0);
	tx_join(&t);
	if (strangers) {
		log = log_release();
		CHECK_EQ(count_lines(log, "connection from 127.0.0.1:"), 2);
		CHECK(strstr(log, "dropped: version 1, expected 2"));
		CHECK(strstr(log, "dropped: hello HMAC does not match"));
	}
	CHECK_EQ(t.connect_err, 0);
	CHECK_EQ(t.err, 0);
	CHECK_EQ(rx.data, 400);
	CHECK_EQ(rx.bad, 0);
	CHECK_EQ(rx.rogue, 0);
	CHECK(mstream_session(ms) == SESSION);
	mstream_destroy(ms);
	fprintf(stderr, "authenticated round trip%s: 400 chunks over 4 streams\n",
		strangers ? " after two strangers" : "");
}

/* ---- a wrong secret ----------------------------------------------------------- */

static void wrong_sender_first(struct tx *t)
{
	struct tx w = { .port = t->port, .key = wrong, .n = t->n,
			.nchunks = 1, .len = 10 };

	tx_main(&w);
	fprintf(stderr, "sender with the wrong secret: %d: %s\n",
		w.connect_err, w.why);
	CHECK_EQ(w.connect_err, -EPROTO);
	CHECK(strstr(w.why, "stream 0 (127.0.0.1:"));
	CHECK(strstr(w.why, "receiver refused: hello HMAC does not match"));
}

static void test_wrong_secret(void)
{
	struct tx t = { .key = secret, .n = 2, .nchunks = 50, .len = 100,
			.before = wrong_sender_first };
	struct mstream *ms = rx_open(2, secret, 0, &t.port);
	const char *log;

	log_capture();
	tx_start(&t);
	CHECK_EQ(mstream_accept(ms), 0);
	CHECK_EQ(mstream_wait(ms, 10000), 0);
	tx_join(&t);
	log = log_release();
	/* One line, naming the peer. */
	CHECK_EQ(count_lines(log, "mstream: "), 1);
	CHECK(strstr(log, "connection from 127.0.0.1:"));
	CHECK(strstr(log, "dropped: hello HMAC does not match: the peer does not hold the shared secret"));
	CHECK_EQ(t.err, 0);
	CHECK_EQ(rx.data, 50);
	mstream_destroy(ms);

	/* A receiver with the wrong secret: the sender finds out too. */
	struct tx s = { .key = secret, .n = 1, .nchunks = 1, .len = 10 };

	rx_timeout_ms = 1500;
	ms = rx_open(1, wrong, 0, &s.port);
	rx_timeout_ms = 8000;
	log_capture();
	tx_start(&s);
	CHECK_EQ(mstream_accept(ms), -ETIMEDOUT);
	tx_join(&s);
	log_release();
	mstream_error(ms, why, sizeof(why));
	fprintf(stderr, "receiver: %s\nsender: %s\n", why, s.why);
	CHECK(strstr(why, "last connection dropped: 127.0.0.1:"));
	CHECK_EQ(s.connect_err, -EPROTO);
	mstream_destroy(ms);
}

/* ---- idle connections ---------------------------------------------------------- */

#define NIDLE 200
static int idle_fd[NIDLE];

static void idle_first(struct tx *t)
{
	for (int i = 0; i < NIDLE; i++)
		idle_fd[i] = raw_connect(t->port);
}

static void test_idle_flood(void)
{
	struct tx t = { .key = secret, .n = 4, .nchunks = 100, .len = 1000,
			.before = idle_first };
	struct mstream *ms = rx_open(4, secret, 0, &t.port);
	const char *log;
	int closed = 0;
	uint8_t b[64];

	log_capture();
	tx_start(&t);
	CHECK_EQ(mstream_accept(ms), 0);
	CHECK_EQ(mstream_wait(ms, 10000), 0);
	tx_join(&t);
	log = log_release();
	CHECK_EQ(t.err, 0);
	CHECK_EQ(rx.data, 100);
	CHECK(strstr(log, "connections dropped in all while accepting"));
	/* Every idle one got its challenge; all are closed by now. */
	for (int i = 0; i < NIDLE; i++) {
		CHECK_EQ(raw_recv(idle_fd[i], b, CHAL_SIZE), CHAL_SIZE);
		if (raw_recv(idle_fd[i], b, sizeof(b)) < sizeof(b))
			closed++;
		close(idle_fd[i]);
	}
	CHECK_EQ(closed, NIDLE);
	mstream_destroy(ms);
	fprintf(stderr, "%d idle connections first: the 4 real streams got through\n",
		NIDLE);
}

/* ---- a silent connection ------------------------------------------------------- */

static long silent_ms;
static char silent_reason[80];

static void silent_first(struct tx *t)
{
	uint8_t chal[CHAL_SIZE];
	long t0 = now_ms();
	int fd = raw_connect(t->port);

	CHECK_EQ(raw_recv(fd, chal, sizeof(chal)), CHAL_SIZE);
	CHECK_EQ(raw_refusal(fd, silent_reason), EPROTO);
	CHECK_EQ(raw_recv(fd, chal, 1), 0);	/* then closed */
	silent_ms = now_ms() - t0;
	close(fd);
}

static void test_silent(void)
{
	struct tx t = { .key = secret, .n = 1, .nchunks = 10, .len = 100,
			.before = silent_first };
	struct mstream *ms = rx_open(1, secret, 300, &t.port);

	log_capture();
	tx_start(&t);
	CHECK_EQ(mstream_accept(ms), 0);
	CHECK_EQ(mstream_wait(ms, 10000), 0);
	tx_join(&t);
	CHECK(strstr(log_release(), "dropped: no hello within 300 ms"));
	fprintf(stderr, "silent connection closed after %ld ms: %s\n",
		silent_ms, silent_reason);
	CHECK(strstr(silent_reason, "no hello within 300 ms"));
	CHECK(silent_ms >= 280 && silent_ms < 3000);
	CHECK_EQ(t.err, 0);
	CHECK_EQ(rx.data, 10);
	mstream_destroy(ms);
}

/* ---- a man in the middle --------------------------------------------------------- */

enum mitm { M_FLIP, M_RESEQ };

struct proxy {
	int lfd;
	uint16_t port, to;
	enum mitm mode;
	pthread_t th;
};

static void relay_all(int from, int to, size_t len)
{
	uint8_t b[4096];

	while (len) {
		size_t n = len < sizeof(b) ? len : sizeof(b);

		CHECK_EQ(raw_recv(from, b, n), n);
		CHECK_EQ(send(to, b, n, MSG_NOSIGNAL), (long long)n);
		len -= n;
	}
}

/* Relays one v2 connection; chunk 2 is tampered with, all CRCs made
 * right again, so only the HMAC can tell. */
static void *proxy_main(void *arg)
{
	struct proxy *p = arg;
	int s = accept(p->lfd, NULL, NULL), r = raw_connect(p->to);
	uint8_t hdr[CHDR_SIZE], buf[1 << 16], keep[1 << 16], reply[REPLY2_SIZE];
	size_t keep_len = 0;

	CHECK(s >= 0);
	relay_all(r, s, CHAL_SIZE);
	relay_all(s, r, HELLO2_SIZE);
	CHECK_EQ(raw_recv(r, reply, sizeof(reply)), sizeof(reply));
	CHECK_EQ(send(s, reply, sizeof(reply), MSG_NOSIGNAL), sizeof(reply));
	for (uint64_t seq = 0;; seq++) {
		uint32_t len;
		size_t all;

		if (raw_recv(s, hdr, sizeof(hdr)) < sizeof(hdr))
			break;
		len = vcfmt_get_be32(hdr + 32);
		all = CHDR_SIZE + len + TRAILER2_SIZE;
		CHECK(all <= sizeof(buf));
		memcpy(buf, hdr, sizeof(hdr));
		CHECK_EQ(raw_recv(s, buf + CHDR_SIZE, len + TRAILER2_SIZE),
			 len + TRAILER2_SIZE);
		if (seq == 1) {
			memcpy(keep, buf, all);
			keep_len = all;
		}
		if (seq == 2 && p->mode == M_FLIP) {
			buf[CHDR_SIZE + 3] ^= 0x01;
		} else if (seq == 2 && p->mode == M_RESEQ) {
			/* Chunk 1 again, renumbered as 2. */
			memcpy(buf, keep, keep_len);
			all = keep_len;
			len = (uint32_t)(all - CHDR_SIZE - TRAILER2_SIZE);
			vcfmt_put_be64(buf + 24, 2);
			vcfmt_put_be32(buf + 36, vcfmt_crc32c(0, buf, 36));
		}
		if (seq == 2)
			vcfmt_put_be32(buf + CHDR_SIZE + len,
				       vcfmt_crc32c(0, buf, CHDR_SIZE + len));
		if (send(r, buf, all, MSG_NOSIGNAL) != (ssize_t)all)
			break;
	}
	close(s);
	close(r);
	return NULL;
}

static void test_mitm(enum mitm mode)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct proxy p = { .mode = mode };
	struct tx t = { .key = secret, .n = 1, .nchunks = 5, .len = 200 };
	struct mstream *ms = rx_open(1, secret, 0, &p.to);
	int r;

	p.lfd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(p.lfd >= 0);
	CHECK_EQ(bind(p.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(p.lfd, 1), 0);
	CHECK_EQ(getsockname(p.lfd, (struct sockaddr *)&sa, &sl), 0);
	t.port = ntohs(sa.sin_port);
	CHECK_EQ(pthread_create(&p.th, NULL, proxy_main, &p), 0);
	tx_start(&t);
	CHECK_EQ(mstream_accept(ms), 0);
	r = mstream_wait(ms, 10000);
	mstream_error(ms, why, sizeof(why));
	fprintf(stderr, "man in the middle (%s): %d: %s\n",
		mode == M_FLIP ? "payload flipped, CRC fixed" :
		"chunk 1 replayed as 2, CRCs fixed", r, why);
	CHECK_EQ(r, -EBADMSG);
	CHECK(strstr(why, "chunk seq 2: HMAC does not match"));
	CHECK_EQ(rx.data, 2);		/* chunks 0 and 1 only */
	mstream_destroy(ms);
	tx_join(&t);
	CHECK(t.err != 0);
	CHECK_EQ(pthread_join(p.th, NULL), 0);
	close(p.lfd);
}

/* ---- files ------------------------------------------------------------------------ */

static void test_files(void)
{
	char dir[] = "/tmp/test_mstream_auth_f.XXXXXX", p0[64], p1[64];
	const char *paths[2] = { p0, p1 };
	struct mstream_opts o = { .nstreams = 2, .secret = secret,
				  .secret_len = 32, .recv_cb = rx_cb,
				  .recv_arg = &rx };
	struct mstream *ms;
	uint8_t buf[500];
	int r;

	CHECK(mkdtemp(dir));
	snprintf(p0, sizeof(p0), "%s/s0", dir);
	snprintf(p1, sizeof(p1), "%s/s1", dir);
	ms = mstream_create(&o);
	CHECK(ms);
	CHECK_EQ(mstream_open_files(ms, paths, 2), 0);
	for (int i = 0; i < 20; i++) {
		for (size_t j = 0; j < sizeof(buf); j++)
			buf[j] = data_byte((uint64_t)i, j);
		CHECK_EQ(mstream_send(ms, T_DATA, (uint64_t)i, buf, sizeof(buf)), 0);
	}
	CHECK_EQ(mstream_finish(ms), 0);
	mstream_destroy(ms);

	rx.data = rx.bad = 0;
	ms = mstream_create(&o);
	CHECK_EQ(mstream_read_files(ms, paths, 2), 0);
	CHECK_EQ(mstream_wait(ms, 5000), 0);
	CHECK_EQ(rx.data, 20);
	CHECK_EQ(rx.bad, 0);
	mstream_destroy(ms);

	o.secret = wrong;
	ms = mstream_create(&o);
	r = mstream_read_files(ms, paths, 2);
	mstream_error(ms, why, sizeof(why));
	fprintf(stderr, "files, wrong secret: %d: %s\n", r, why);
	CHECK_EQ(r, -EBADMSG);
	CHECK(strstr(why, "hello HMAC does not match"));
	mstream_destroy(ms);

	o.secret = NULL;
	o.secret_len = 0;
	ms = mstream_create(&o);
	r = mstream_read_files(ms, paths, 2);
	mstream_error(ms, why, sizeof(why));
	fprintf(stderr, "files, no secret: %d: %s\n", r, why);
	CHECK_EQ(r, -EBADMSG);
	CHECK(strstr(why, "version 2, expected 1"));
	mstream_destroy(ms);
	unlink(p0);
	unlink(p1);
	rmdir(dir);
}

/* ---- secret files --------------------------------------------------------------------- */

static void test_secret_files(void)
{
	char dir[] = "/tmp/test_mstream_auth_s.XXXXXX", path[80], link[80];
	uint8_t key[MSTREAM_SECRET_MAX];
	struct stat st;
	size_t len;
	int r;

	CHECK(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/secret", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	CHECK_EQ(mstream_secret_generate(path, why, sizeof(why)), 0);
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK_EQ(mstream_secret_generate(path, why, sizeof(why)), -EEXIST);
	CHECK_EQ(mstream_secret_load(path, key, sizeof(key), &len, why,
				     sizeof(why)), 0);
	CHECK_EQ(len, 32);
	CHECK_EQ(chmod(path, 0640), 0);
	r = mstream_secret_load(path, key, sizeof(key), &len, why, sizeof(why));
	fprintf(stderr, "secret 0640: %d: %s\n", r, why);
	CHECK_EQ(r, -EPERM);
	CHECK(strstr(why, "mode 0640: readable by others"));
	CHECK_EQ(chmod(path, 0600), 0);
	CHECK_EQ(symlink(path, link), 0);
	r = mstream_secret_load(link, key, sizeof(key), &len, why, sizeof(why));
	fprintf(stderr, "secret via a symlink: %d: %s\n", r, why);
	CHECK_EQ(r, -ELOOP);
	CHECK_EQ(mstream_secret_parse("abcd", key, sizeof(key), &len, why,
				      sizeof(why)), -EINVAL);
	CHECK(strstr(why, "2 bytes, expected 16 to 256"));
	CHECK_EQ(mstream_secret_parse("0123456789abcdef0123456789abcdeg", key,
				      sizeof(key), &len, why, sizeof(why)),
		 -EINVAL);
	CHECK(strstr(why, "not a hex digit at position 32"));
	CHECK_EQ(mstream_secret_parse(" 00112233445566778899aabbccddeeff\n", key,
				      sizeof(key), &len, why, sizeof(why)), 0);
	CHECK_EQ(len, 16);
	CHECK_EQ(key[15], 0xff);
	unlink(link);
	unlink(path);
	rmdir(dir);
}

/* ---- cost -------------------------------------------------------------------------------- */

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* MB/s of a transfer, and in *cpu the CPU seconds both ends (this one
 * process) spent per GiB: on a loaded machine the better measure. */
static double rate(const uint8_t *key, int n, int nchunks, double *cpu)
{
	struct tx t = { .key = key, .n = n, .nchunks = nchunks,
			.len = 1 << 20 };
	struct mstream *ms = rx_open(n, key, 0, &t.port);
	double c0 = cpu_s();

	tx_start(&t);
	CHECK_EQ(mstream_accept(ms), 0);
	CHECK_EQ(mstream_wait(ms, 60000), 0);
	tx_join(&t);
	CHECK_EQ(t.err, 0);
	CHECK_EQ(rx.bad, 0);
	mstream_destroy(ms);
	*cpu = (cpu_s() - c0) * 1024.0 / nchunks;
	return t.mbps;
}

int main(int argc, char **argv)
{
	long t0 = now_ms();
	int mib = argc > 1 ? atoi(argv[1]) : 16;	/* more: a benchmark */

	pthread_mutex_init(&rx.lock, NULL);
	test_roundtrip_and_strangers(false);
	test_roundtrip_and_strangers(true);
	test_wrong_secret();
	test_idle_flood();
	test_silent();
	test_mitm(M_FLIP);
	test_mitm(M_RESEQ);
	test_files();
	test_secret_files();
	for (int n = 1; n <= 2; n++) {
		double cp, ca, rp = rate(NULL, n, mib, &cp), ra = rate(secret, n, mib, &ca);

		fprintf(stderr, "%d MiB in 1 MiB chunks over %d stream%s: plain %.0f MB/s (%.2f CPU s/GiB, both ends), authenticated %.0f MB/s (%.2f CPU s/GiB)\n",
			mib, n, n > 1 ? "s" : "", rp, cp, ra, ca);
	}
	pthread_mutex_destroy(&rx.lock);
	printf("ok (%ld ms)\n", now_ms() - t0);
	return 0;
}
