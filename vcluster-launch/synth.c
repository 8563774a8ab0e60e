/* vcluster-synth: the synthetic VM of `vcluster-launch --vm none`.
 * See synth.h for why it exists, what it sends and checks, its QMP
 * commands and its state format.
 *
 * One thread, one poll() loop over the VM link, the QMP listening socket
 * and one QMP client; nothing in it blocks except the small writes of its
 * state and console lines to local files.
 */
#include "synth.h"

#include "vc_magic.h"
#include "vcfmt.h"
#include "vctime.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libvdeplug.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QBUF_MAX	(64 * 1024)
#define STATE_BODY_FIXED 96	/* bytes of the state body before the peers */
#define STATE_PEER	24	/* per peer: tx_seq, rx_next, fin_count */
#define SEND_BURST	256	/* frames per loop pass at most */
#define DRAIN_LIMIT_S	300	/* after our FINs, give up waiting for the peers'
				 * (running time: a checkpoint's pause does not count) */
#define NO_FIN		UINT64_MAX
#define LEARN_MAX_S	30	/* wait for the peers' hellos at most this long */

enum mig { MIG_NONE, MIG_COMPLETED, MIG_FAILED };

struct synth {
	/* set at start */
	int rank, n;
	const char *qmp_path, *console_path;
	uint32_t rate, frame_size, seconds;
	/* the link and QMP */
	VDECONN *vde;
	int link_fd;
	int lfd, qfd;			/* QMP listener, client (-1: none) */
	char qbuf[QBUF_MAX];
	size_t qlen;
	int passed_fd;			/* the last descriptor QMP brought, -1 */
	char fdname[64];		/* the name getfd gave it */
	int named_fd;
	int console_fd;
	/* the machine */
	bool running, incoming, quit, done;
	long long last_ns;		/* monotonic, when run_ns was last advanced */
	enum mig mig;
	uint64_t mig_bytes;
	char mig_err[160];
	/* the program state (what migrate saves) */
	uint64_t run_ns;		/* running time so far */
	uint64_t sent;			/* data frames sent */
	uint32_t next_dst;
	bool fins_sent;
	bool hello_sent;		/* this process's broadcast (not saved) */
	double learn_until;		/* monotonic s: wait for the peers' hellos */
	uint64_t received, lost, dup, bad, foreign, hellos;
	uint64_t *tx_seq;		/* per destination: next to send */
	uint64_t *rx_next;		/* per source: next expected */
	uint64_t *fin_count;		/* per source: its FIN's count, or NO_FIN */
	uint64_t fins_run_ns;		/* run_ns when our FINs went out (or were loaded) */
	/* one frame waiting for room on the link */
	uint8_t pending[SYNTH_FRAME_MAX];
	size_t pending_len;
	uint32_t fin_next;		/* next peer to send a FIN to */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "vcluster-synth: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void console(struct synth *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void console(struct synth *s, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(s->console_fd, line, (size_t)n) < 0)
		fprintf(stderr, "vcluster-synth: console %s: %s\n", s->console_path, strerror(errno));
}

static void mac_of_rank(int rank, uint8_t *mac)
{
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = 0x56;
	mac[4] = (uint8_t)(rank >> 8);
	mac[5] = (uint8_t)rank;
}

/* ---- frames ------------------------------------------------------------ */

static size_t build_frame(struct synth *s, uint8_t *f, int dst, uint8_t kind, uint64_t seq)
{
	size_t len = s->frame_size;

	if (dst < 0)
		memset(f, 0xff, 6);	/* broadcast */
	else
		mac_of_rank(dst, f);
	mac_of_rank(s->rank, f + 6);
	vcfmt_put_be16(f + 12, SYNTH_ETHERTYPE);
	uint8_t *p = f + 14;
	vcfmt_put_be32(p, VC_MAGIC_SYNTH_FRAME);
	p[4] = SYNTH_FRAME_VERSION;
	p[5] = kind;
	vcfmt_put_be16(p + 6, SYNTH_HDR_LEN);
	vcfmt_put_be32(p + 8, (uint32_t)s->rank);
	vcfmt_put_be32(p + 12, (uint32_t)dst);
	vcfmt_put_be64(p + 16, seq);
	/* p + 24 .. end - 4: a pattern of this frame, then the CRC */
	for (size_t i = 14 + 24; i < len - 4; i++)
		f[i] = (uint8_t)(i * 13 + seq * 7 + (uint64_t)dst * 3);
	vcfmt_put_be32(f + len - 4, vcfmt_crc32c(0, p, len - 4 - 14));
	return len;
}

/* Send f or keep it as the pending frame.  true when it went. */
static bool link_send(struct synth *s, const uint8_t *f, size_t len)
{
	ssize_t n = vde_send(s->vde, f, len, 0);

	if (n == (ssize_t)len)
		return true;
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
		die("rank %d: writing the VM link: %s", s->rank, strerror(errno));
	memcpy(s->pending, f, len);
	s->pending_len = len;
	return false;
}

static uint64_t frames_due(const struct synth *s)
{
	uint64_t total = (uint64_t)s->rate * s->seconds;
	uint64_t due = (uint64_t)((double)s->run_ns * s->rate / 1e9);

	return due < total ? due : total;
}

/* After our hello, data waits (and the clock of the run stands still)
 * until every peer's hello is in, at most LEARN_MAX_S: frames sent before
 * the fabrics know the MACs would be flooded to every rank. */
static bool learning(const struct synth *s)
{
	return s->hello_sent && s->hellos < (uint64_t)s->n - 1 && vc_mono_s() < s->learn_until;
}

static void send_some(struct synth *s)
{
	uint8_t f[SYNTH_FRAME_MAX];

	if (s->pending_len) {
		size_t len = s->pending_len;
		s->pending_len = 0;
		memcpy(f, s->pending, len);
		if (!link_send(s, f, len))
			return;
	}
	if (s->n < 2)
		return;
	if (!s->hello_sent) {
		/* One broadcast first, as a guest's ARP: every rank's fabric
		 * learns our MAC at once, instead of flooding every frame for
		 * us to all N-1 ranks until a frame from us has reached each. */
		s->hello_sent = true;
		s->learn_until = vc_mono_s() + LEARN_MAX_S;
		if (!link_send(s, f, build_frame(s, f, -1, SYNTH_KIND_HELLO, 0)))
			return;
	}
	if (learning(s))
		return;
	for (int k = 0; k < SEND_BURST && s->sent < frames_due(s); k++) {
		int dst = (int)s->next_dst;
		s->next_dst = (s->next_dst + 1) % (uint32_t)s->n;
		if (s->next_dst == (uint32_t)s->rank)
			s->next_dst = (s->next_dst + 1) % (uint32_t)s->n;
		size_t len = build_frame(s, f, dst, SYNTH_KIND_DATA, s->tx_seq[dst]++);
		s->sent++;
		if (!link_send(s, f, len))
			return;
	}
	if (s->sent < (uint64_t)s->rate * s->seconds)
		return;
	/* the program is done: one FIN to every peer, behind its frames */
	while (!s->fins_sent) {
		if (s->fin_next == (uint32_t)s->rank)
			s->fin_next++;
		if (s->fin_next >= (uint32_t)s->n) {
			s->fins_sent = true;
			s->fins_run_ns = s->run_ns;
			break;
		}
		int dst = (int)s->fin_next++;
		size_t len = build_frame(s, f, dst, SYNTH_KIND_FIN, s->tx_seq[dst]);
		if (!link_send(s, f, len))
			return;
	}
}

static void take_frame(struct synth *s, const uint8_t *f, size_t len)
{
	uint8_t me[6];

	mac_of_rank(s->rank, me);
	if (len >= 14 + SYNTH_HDR_LEN && (f[0] & 1) && f[14 + 5] == SYNTH_KIND_HELLO) {
		s->hellos++;
		return;
	}
	if (len < 14 || memcmp(f, me, 6)) {
		s->foreign++;	/* flooded: for another NIC */
		return;
	}
	const uint8_t *p = f + 14;
	if (len < 14 + SYNTH_HDR_LEN + 4 || vcfmt_get_be16(f + 12) != SYNTH_ETHERTYPE ||
	    vcfmt_get_be32(p) != VC_MAGIC_SYNTH_FRAME || p[4] != SYNTH_FRAME_VERSION ||
	    vcfmt_get_be16(p + 6) != SYNTH_HDR_LEN ||
	    vcfmt_get_be32(f + len - 4) != vcfmt_crc32c(0, p, len - 4 - 14)) {
		if (!s->bad)
			console(s, "VCSYNTH rank=%d: a frame of %zu bytes failed its checks", s->rank, len);
		s->bad++;
		return;
	}
	uint32_t src = vcfmt_get_be32(p + 8), dst = vcfmt_get_be32(p + 12);
	uint64_t seq = vcfmt_get_be64(p + 16);
	if (dst != (uint32_t)s->rank || src >= (uint32_t)s->n || src == (uint32_t)s->rank) {
		if (!s->bad)
			console(s, "VCSYNTH rank=%d: a frame from rank %u for rank %u", s->rank, src, dst);
		s->bad++;
		return;
	}
	if (p[5] == SYNTH_KIND_FIN) {
		if (s->fin_count[src] != NO_FIN) {
			s->dup++;
			return;
		}
		s->fin_count[src] = seq;
		if (s->rx_next[src] != seq) {
			console(s, "VCSYNTH rank=%d: rank %u sent %llu frames, %llu arrived in order",
				s->rank, src, (unsigned long long)seq,
				(unsigned long long)s->rx_next[src]);
			if (seq > s->rx_next[src])
				s->lost += seq - s->rx_next[src];
		}
		return;
	}
	s->received++;
	if (s->fin_count[src] != NO_FIN) {
		s->dup++;	/* after its FIN */
		return;
	}
	if (seq == s->rx_next[src]) {
		s->rx_next[src]++;
		return;
	}
	if (!s->lost && !s->dup)
		console(s, "VCSYNTH rank=%d: from rank %u got frame %llu, expected %llu", s->rank,
			src, (unsigned long long)seq, (unsigned long long)s->rx_next[src]);
	if (seq > s->rx_next[src]) {
		s->lost += seq - s->rx_next[src];
		s->rx_next[src] = seq + 1;
	} else {
		s->dup++;	/* a duplicate or one that overtook */
	}
}

static void read_link(struct synth *s)
{
	uint8_t f[SYNTH_FRAME_MAX + 64];

	for (int k = 0; k < SEND_BURST; k++) {
		ssize_t n = vde_recv(s->vde, f, sizeof(f), 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0)
			die("rank %d: reading the VM link: %s", s->rank, strerror(errno));
		if (n == 0) {
			/* the rank closed it: the rank is gone */
			s->quit = true;
			return;
		}
		take_frame(s, f, (size_t)n);
	}
}

static bool all_fins(const struct synth *s)
{
	for (int r = 0; r < s->n; r++)
		if (r != s->rank && s->fin_count[r] == NO_FIN)
			return false;
	return true;
}

static void finish(struct synth *s, bool gave_up)
{
	int missing = 0;

	for (int r = 0; r < s->n; r++)
		if (r != s->rank && s->fin_count[r] == NO_FIN)
			missing++;
	bool ok = !s->lost && !s->dup && !s->bad && !missing;
	if (gave_up)
		console(s, "VCSYNTH rank=%d: no FIN from %d peers within %d s", s->rank, missing,
			DRAIN_LIMIT_S);
	console(s, "VCSYNTH rank=%d peers=%d sent=%llu received=%llu lost=%llu dup=%llu bad=%llu "
		"foreign=%llu hellos=%llu run_s=%.3f status=%s", s->rank, s->n - 1,
		(unsigned long long)s->sent, (unsigned long long)s->received,
		(unsigned long long)s->lost, (unsigned long long)s->dup,
		(unsigned long long)s->bad, (unsigned long long)s->foreign,
		(unsigned long long)s->hellos, s->run_ns / 1e9,
		ok ? "ok" : "FAILED");
	console(s, "VCLUSTER-EXIT rank=%d status=%d", s->rank, ok ? 0 : 1);
	s->done = true;
}

/* ---- the state ----------------------------------------------------------- */

static size_t state_body_len(const struct synth *s)
{
	return STATE_BODY_FIXED + (size_t)s->n * STATE_PEER;
}

static uint8_t *state_save(const struct synth *s, size_t *outlen)
{
	size_t blen = state_body_len(s);
	uint8_t *b = calloc(1, blen);

	if (!b)
		return NULL;
	vcfmt_put_be32(b, (uint32_t)s->rank);
	vcfmt_put_be32(b + 4, (uint32_t)s->n);
	vcfmt_put_be32(b + 8, s->rate);
	vcfmt_put_be32(b + 12, s->frame_size);
	vcfmt_put_be32(b + 16, s->seconds);
	vcfmt_put_be32(b + 20, s->next_dst);
	vcfmt_put_be32(b + 24, s->fins_sent);
	vcfmt_put_be32(b + 28, s->fin_next);
	vcfmt_put_be64(b + 32, s->run_ns);
	vcfmt_put_be64(b + 40, s->sent);
	vcfmt_put_be64(b + 48, s->received);
	vcfmt_put_be64(b + 56, s->lost);
	vcfmt_put_be64(b + 64, s->dup);
	vcfmt_put_be64(b + 72, s->bad);
	vcfmt_put_be64(b + 80, s->foreign);
	vcfmt_put_be64(b + 88, 0);	/* reserved */
	for (int r = 0; r < s->n; r++) {
		uint8_t *p = b + STATE_BODY_FIXED + (size_t)r * STATE_PEER;
		vcfmt_put_be64(p, s->tx_seq[r]);
		vcfmt_put_be64(p + 8, s->rx_next[r]);
		vcfmt_put_be64(p + 16, s->fin_count[r]);
	}
	uint8_t *out = vcfmt_wrap(VC_MAGIC_SYNTH_STATE, SYNTH_STATE_VERSION, b, blen, outlen);
	free(b);
	return out;
}

/* Load a saved state; 0 or -EBADMSG with the reason in why. */
static int state_load(struct synth *s, const uint8_t *buf, size_t len, char *why, size_t wl)
{
	const uint8_t *b;
	uint64_t blen;
	int r = vcfmt_unwrap(buf, len, VC_MAGIC_SYNTH_STATE, SYNTH_STATE_VERSION,
			     state_body_len(s), &b, &blen, why, wl);

	if (r < 0)
		return r;
	if (blen != state_body_len(s) || vcfmt_get_be32(b) != (uint32_t)s->rank ||
	    vcfmt_get_be32(b + 4) != (uint32_t)s->n) {
		snprintf(why, wl, "the synthetic VM state is of rank %u of %u (%llu bytes), "
			 "expected rank %d of %d", vcfmt_get_be32(b), vcfmt_get_be32(b + 4),
			 (unsigned long long)blen, s->rank, s->n);
		return -EBADMSG;
	}
	uint32_t rate = vcfmt_get_be32(b + 8), fsz = vcfmt_get_be32(b + 12);
	if (fsz < SYNTH_FRAME_MIN || fsz > SYNTH_FRAME_MAX || rate == 0) {
		snprintf(why, wl, "the synthetic VM state has frame size %u and rate %u", fsz, rate);
		return -EBADMSG;
	}
	s->rate = rate;
	s->frame_size = fsz;
	s->seconds = vcfmt_get_be32(b + 16);
	s->next_dst = vcfmt_get_be32(b + 20) % (uint32_t)s->n;
	s->fins_sent = vcfmt_get_be32(b + 24) != 0;
	s->fin_next = vcfmt_get_be32(b + 28);
	s->run_ns = vcfmt_get_be64(b + 32);
	s->fins_run_ns = s->run_ns;
	s->sent = vcfmt_get_be64(b + 40);
	s->received = vcfmt_get_be64(b + 48);
	s->lost = vcfmt_get_be64(b + 56);
	s->dup = vcfmt_get_be64(b + 64);
	s->bad = vcfmt_get_be64(b + 72);
	s->foreign = vcfmt_get_be64(b + 80);
	for (int i = 0; i < s->n; i++) {
		const uint8_t *p = b + STATE_BODY_FIXED + (size_t)i * STATE_PEER;
		s->tx_seq[i] = vcfmt_get_be64(p);
		s->rx_next[i] = vcfmt_get_be64(p + 8);
		s->fin_count[i] = vcfmt_get_be64(p + 16);
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- QMP ------------------------------------------------------------------ */

static void qmp_send(struct synth *s, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);

	json_decref(msg);
	if (!text || s->qfd < 0) {
		free(text);
		return;
	}
	size_t len = strlen(text);
	/* replies are small; a client that does not read them loses its
	 * connection rather than stalling the machine */
	if (send(s->qfd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len ||
	    send(s->qfd, "\r\n", 2, MSG_NOSIGNAL | MSG_DONTWAIT) != 2) {
		close(s->qfd);
		s->qfd = -1;
	}
	free(text);
}

static void reply(struct synth *s, json_t *id, json_t *ret)
{
	json_t *m = json_pack("{s:o}", "return", ret ? ret : json_object());
	if (id)
		json_object_set(m, "id", id);
	qmp_send(s, m);
}

static void reply_err(struct synth *s, json_t *id, const char *cls, const char *desc)
{
	json_t *m = json_pack("{s:{s:s, s:s}}", "error", "class", cls, "desc", desc);
	if (id)
		json_object_set(m, "id", id);
	qmp_send(s, m);
}

static int take_named_fd(struct synth *s, const char *uri)
{
	if (strncmp(uri, "fd:", 3) || strcmp(uri + 3, s->fdname) || s->named_fd < 0)
		return -1;
	int fd = s->named_fd;
	s->named_fd = -1;
	s->fdname[0] = '\0';
	return fd;
}

static void cmd_migrate(struct synth *s, json_t *id, json_t *args)
{
	const char *uri = json_string_value(json_object_get(args, "uri"));
	int fd = uri ? take_named_fd(s, uri) : -1;

	if (fd < 0) {
		reply_err(s, id, "GenericError", "synth: migrate needs uri fd:NAME of a getfd");
		return;
	}
	size_t len;
	uint8_t *st = state_save(s, &len);
	int r = st ? write_all(fd, st, len) : -ENOMEM;
	close(fd);
	free(st);
	if (r < 0) {
		s->mig = MIG_FAILED;
		snprintf(s->mig_err, sizeof(s->mig_err), "writing the state: %s", strerror(-r));
	} else {
		s->mig = MIG_COMPLETED;
		s->mig_bytes = len;
	}
	reply(s, id, NULL);
}

static void cmd_incoming(struct synth *s, json_t *id, json_t *args)
{
	const char *uri = json_string_value(json_object_get(args, "uri"));
	int fd = uri ? take_named_fd(s, uri) : -1;
	size_t cap = VCFMT_HDR_SIZE + state_body_len(s) + 4 + 1, len = 0;

	if (!s->incoming) {
		reply_err(s, id, "GenericError", "synth: not started with --incoming");
		if (fd >= 0)
			close(fd);
		return;
	}
	if (fd < 0) {
		reply_err(s, id, "GenericError", "synth: migrate-incoming needs uri fd:NAME of a getfd");
		return;
	}
	uint8_t *buf = malloc(cap);
	int r = buf ? 0 : -ENOMEM;
	while (r == 0 && len < cap) {
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r < 0) {
		s->mig = MIG_FAILED;
		snprintf(s->mig_err, sizeof(s->mig_err), "reading the state: %s", strerror(-r));
	} else if (state_load(s, buf, len, s->mig_err, sizeof(s->mig_err)) < 0) {
		s->mig = MIG_FAILED;
	} else {
		s->mig = MIG_COMPLETED;
		s->mig_bytes = len;
		s->incoming = false;
		console(s, "VCSYNTH rank=%d: state loaded (run_s=%.3f sent=%llu)", s->rank,
			s->run_ns / 1e9, (unsigned long long)s->sent);
	}
	free(buf);
	reply(s, id, NULL);
}

static void cmd_query_migrate(struct synth *s, json_t *id)
{
	if (s->mig == MIG_NONE) {
		reply(s, id, json_object());
	} else if (s->mig == MIG_FAILED) {
		reply(s, id, json_pack("{s:s, s:s}", "status", "failed", "error-desc", s->mig_err));
	} else {
		reply(s, id, json_pack("{s:s, s:I, s:{s:I, s:I}}", "status", "completed",
				       "downtime", (json_int_t)0, "ram", "transferred",
				       (json_int_t)s->mig_bytes, "total", (json_int_t)s->mig_bytes));
	}
}

static void set_running(struct synth *s, bool run)
{
	if (run && !s->running)
		s->last_ns = mono_ns();
	s->running = run;
}

static void qmp_command(struct synth *s, json_t *req)
{
	const char *cmd = json_string_value(json_object_get(req, "execute"));
	json_t *id = json_object_get(req, "id"), *args = json_object_get(req, "arguments");

	if (!cmd) {
		reply_err(s, id, "GenericError", "synth: no 'execute'");
	} else if (!strcmp(cmd, "qmp_capabilities") || !strcmp(cmd, "migrate-set-parameters") ||
		   !strcmp(cmd, "migrate-set-capabilities") || !strcmp(cmd, "migrate_cancel")) {
		/* no capabilities: its state stream is always whole and one-way */
		reply(s, id, NULL);
	} else if (!strcmp(cmd, "stop")) {
		set_running(s, false);
		reply(s, id, NULL);
	} else if (!strcmp(cmd, "cont")) {
		if (s->incoming) {
			reply_err(s, id, "GenericError", "synth: no state loaded yet");
			return;
		}
		s->mig = s->mig == MIG_COMPLETED ? MIG_NONE : s->mig;
		set_running(s, true);
		reply(s, id, NULL);
	} else if (!strcmp(cmd, "getfd")) {
		const char *name = json_string_value(json_object_get(args, "fdname"));
		if (!name || s->passed_fd < 0 || strlen(name) >= sizeof(s->fdname)) {
			reply_err(s, id, "GenericError", "synth: getfd without a descriptor or name");
			return;
		}
		if (s->named_fd >= 0)
			close(s->named_fd);
		s->named_fd = s->passed_fd;
		s->passed_fd = -1;
		snprintf(s->fdname, sizeof(s->fdname), "%s", name);
		reply(s, id, NULL);
	} else if (!strcmp(cmd, "migrate")) {
		cmd_migrate(s, id, args);
	} else if (!strcmp(cmd, "migrate-incoming")) {
		cmd_incoming(s, id, args);
	} else if (!strcmp(cmd, "query-migrate")) {
		cmd_query_migrate(s, id);
	} else if (!strcmp(cmd, "query-cpus-fast")) {
		reply(s, id, json_pack("[{s:i, s:i}]", "cpu-index", 0, "thread-id", (int)getpid()));
	} else if (!strcmp(cmd, "query-status")) {
		reply(s, id, json_pack("{s:b, s:s}", "running", s->running, "status",
				       s->running ? "running" : "paused"));
	} else if (!strcmp(cmd, "system_powerdown")) {
		/* the guest powers off without finishing its command */
		reply(s, id, NULL);
		console(s, "VCSYNTH rank=%d: powered down after %.3f s, sent=%llu", s->rank,
			s->run_ns / 1e9, (unsigned long long)s->sent);
		s->quit = true;
	} else if (!strcmp(cmd, "quit")) {
		reply(s, id, NULL);
		s->quit = true;
	} else {
		char d[128];
		snprintf(d, sizeof(d), "The command %s has not been found", cmd);
		reply_err(s, id, "CommandNotFound", d);
	}
}

/* The end of the first JSON object in buf, or 0 when it is incomplete. */
static size_t json_object_end(const char *buf, size_t len)
{
	int depth = 0;
	bool str = false, esc = false;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				str = false;
			continue;
		}
		if (c == '"')
			str = true;
		else if (c == '{')
			depth++;
		else if (c == '}' && --depth == 0)
			return i + 1;
	}
	return 0;
}

static void qmp_read(struct synth *s)
{
	union {
		char b[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { s->qbuf + s->qlen, sizeof(s->qbuf) - s->qlen };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			     .msg_controllen = sizeof(ctl.b) };

	ssize_t n = recvmsg(s->qfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); n > 0 && c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)), fds[4];
		memcpy(fds, CMSG_DATA(c), (size_t)nfd * sizeof(int));
		for (int i = 0; i < nfd; i++) {
			if (s->passed_fd >= 0)
				close(s->passed_fd);
			s->passed_fd = fds[i];
		}
	}
	if (n <= 0 || s->qlen + (size_t)n >= sizeof(s->qbuf)) {
		close(s->qfd);		/* gone, or a message too long */
		s->qfd = -1;
		s->qlen = 0;
		return;
	}
	s->qlen += (size_t)n;
	size_t end;
	while ((end = json_object_end(s->qbuf, s->qlen))) {
		json_error_t jerr;
		json_t *req = json_loadb(s->qbuf, end, 0, &jerr);
		memmove(s->qbuf, s->qbuf + end, s->qlen - end);
		s->qlen -= end;
		if (json_is_object(req))
			qmp_command(s, req);
		else
			reply_err(s, NULL, "GenericError", "synth: not a JSON object");
		json_decref(req);
		if (s->qfd < 0)
			break;
	}
}

static void qmp_accept(struct synth *s)
{
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (s->qfd >= 0)
		close(s->qfd);	/* one client, the newest, as QEMU's -qmp */
	s->qfd = fd;
	s->qlen = 0;
	const char *greet = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, "
			    "\"major\": 0}, \"package\": \"vcluster-synth\"}, \"capabilities\": []}}\r\n";
	if (send(fd, greet, strlen(greet), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		close(fd);
		s->qfd = -1;
	}
}

static int qmp_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path))
		die("QMP socket path %s is too long", path);
	strcpy(sa.sun_path, path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
		die("QMP socket %s: %s", path, strerror(errno));
	return fd;
}

/* ---- the loop ------------------------------------------------------------ */

static int poll_timeout(struct synth *s)
{
	if (!s->running || s->pending_len)
		return 1000;
	if (learning(s))
		return 10;
	if (s->fins_sent)
		return 1000;
	uint64_t total = (uint64_t)s->rate * s->seconds;
	if (s->sent >= total)
		return 0;	/* FINs to send */
	/* when the next frame is due */
	double next_ns = (double)(s->sent + 1) * 1e9 / s->rate;
	double wait = next_ns - (double)s->run_ns;
	int ms = wait <= 0 ? 0 : (int)(wait / 1e6) + 1;
	return ms > 1000 ? 1000 : ms;
}

/* Bytes we wrote to the link that the rank has not read yet. */
static int link_unread(const struct synth *s)
{
	int n = 0;

	if (ioctl(s->link_fd, SIOCOUTQ, &n) < 0)
		return 0;
	return n;
}

static void run(struct synth *s)
{
	double done_at = 0;

	/* Once done, linger until the rank has read every frame we sent (it
	 * stops reading the link when it reaps us), at most DRAIN_LIMIT_S. */
	while (!s->quit && (!s->done || (link_unread(s) > 0 &&
					 vc_mono_s() - done_at < DRAIN_LIMIT_S))) {
		struct pollfd p[3] = {
			{ .fd = s->link_fd, .events = 0 },
			{ .fd = s->lfd, .events = POLLIN },
			{ .fd = s->qfd, .events = POLLIN },
		};
		if (s->running)
			p[0].events = POLLIN | (s->pending_len ? POLLOUT : 0);
		int r = poll(p, s->qfd >= 0 ? 3 : 2, s->done ? 5 : poll_timeout(s));
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (s->running) {
			long long now = mono_ns();
			if (!learning(s))
				s->run_ns += (uint64_t)(now - s->last_ns);
			s->last_ns = now;
		}
		if (p[1].revents & POLLIN)
			qmp_accept(s);
		if (s->qfd >= 0 && p[2].revents & (POLLIN | POLLHUP | POLLERR))
			qmp_read(s);
		/* a paused VM reads nothing from its link and sends nothing */
		if (!s->running)
			continue;
		if (p[0].revents & (POLLHUP | POLLERR) && !(p[0].revents & POLLIN)) {
			s->quit = true;	/* the rank is gone */
			break;
		}
		read_link(s);
		if (s->done)
			continue;
		send_some(s);
		if (s->fins_sent && all_fins(s))
			finish(s, false);
		else if (s->fins_sent && s->run_ns - s->fins_run_ns > DRAIN_LIMIT_S * 1000000000ull)
			finish(s, true);
		if (s->done && !done_at)
			done_at = vc_mono_s();
	}
}

static uint32_t arg_u32(const char *name, const char *v, uint32_t lo, uint32_t hi)
{
	char *end;
	errno = 0;
	unsigned long x = strtoul(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || x < lo || x > hi)
		die("--%s: '%s' is not a whole number from %u to %u", name, v, lo, hi);
	return (uint32_t)x;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "rank", required_argument, NULL, 'r' },
		{ "nranks", required_argument, NULL, 'n' },
		{ "link-fd", required_argument, NULL, 'l' },
		{ "qmp", required_argument, NULL, 'q' },
		{ "console", required_argument, NULL, 'c' },
		{ "rate", required_argument, NULL, 'R' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "frame-size", required_argument, NULL, 'F' },
		{ "incoming", no_argument, NULL, 'i' },
		{ "paused", no_argument, NULL, 'p' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct synth s = {
		.rank = -1, .n = 0, .link_fd = -1, .qfd = -1, .passed_fd = -1, .named_fd = -1,
		.rate = SYNTH_DEFAULT_RATE, .seconds = SYNTH_DEFAULT_SECONDS,
		.frame_size = SYNTH_DEFAULT_FRAME,
	};
	bool paused = false;
	int ch;

	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'r': s.rank = (int)arg_u32("rank", optarg, 0, 32767); break;
		case 'n': s.n = (int)arg_u32("nranks", optarg, 1, 32768); break;
		case 'l': s.link_fd = (int)arg_u32("link-fd", optarg, 0, INT_MAX); break;
		case 'q': s.qmp_path = optarg; break;
		case 'c': s.console_path = optarg; break;
		case 'R': s.rate = arg_u32("rate", optarg, 1, 1000000); break;
		case 'S': s.seconds = arg_u32("seconds", optarg, 0, 86400); break;
		case 'F': s.frame_size = arg_u32("frame-size", optarg, SYNTH_FRAME_MIN,
						 SYNTH_FRAME_MAX); break;
		case 'i': s.incoming = true; break;
		case 'p': paused = true; break;
		case 'V': {
			static const struct version_item v[] = {
				{ "wire", "synth-frame", SYNTH_FRAME_VERSION },
				{ "format", "synth-state", SYNTH_STATE_VERSION },
				{ NULL, NULL, 0 }
			};
			return version_print(stdout, "vcluster-synth", v) ? 1 : 0;
		}
		default: die("usage: see vcluster-launch/synth.h");
		}
	}
	if (s.rank < 0 || s.n < 1 || s.rank >= s.n || s.link_fd < 0 || !s.qmp_path ||
	    !s.console_path)
		die("--rank, --nranks, --link-fd, --qmp and --console are needed (rank < nranks)");
	s.console_fd = open(s.console_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (s.console_fd < 0)
		die("console %s: %s", s.console_path, strerror(errno));
	s.tx_seq = calloc((size_t)s.n, sizeof(*s.tx_seq));
	s.rx_next = calloc((size_t)s.n, sizeof(*s.rx_next));
	s.fin_count = malloc((size_t)s.n * sizeof(*s.fin_count));
	if (!s.tx_seq || !s.rx_next || !s.fin_count)
		die("out of memory for %d peers", s.n);
	for (int r = 0; r < s.n; r++)
		s.fin_count[r] = NO_FIN;
	s.next_dst = (uint32_t)(s.rank + 1) % (uint32_t)s.n;

	char url[32];
	snprintf(url, sizeof(url), "seqpacket://%d", s.link_fd);
	s.vde = vde_open(url, "vcluster-synth", NULL);
	if (!s.vde)
		die("vde_open(%s): %s", url, strerror(errno));
	s.link_fd = vde_datafd(s.vde);
	fcntl(s.link_fd, F_SETFL, fcntl(s.link_fd, F_GETFL) | O_NONBLOCK);
	s.lfd = qmp_listen(s.qmp_path);
	fprintf(stderr, "vcluster-synth: rank %d of %d, %u frames/s of %u bytes for %u s%s\n",
		s.rank, s.n, s.rate, s.frame_size, s.seconds,
		s.incoming ? ", waiting for its state" : "");
	if (!s.incoming) {
		console(&s, "VCSYNTH rank=%d: start rate=%u frame_size=%u seconds=%u", s.rank,
			s.rate, s.frame_size, s.seconds);
		if (!paused)
			set_running(&s, true);
	}
	run(&s);
	vde_close(s.vde);
	close(s.lfd);
	unlink(s.qmp_path);
	return 0;
}
