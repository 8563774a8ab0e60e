/* vcluster-traffic: prove that a virtual cluster's network loses, duplicates
 * and reorders nothing.
 *
 * Every node opens a TCP stream to every other node and sends sequence-
 * numbered, CRC32C-checked messages; it also sends UDP datagrams to every
 * other node, in bursts of 1 to --udp-burst datagrams of varied sizes (64
 * bytes of UDP payload up to --udp-max, an MTU's worth by default), each
 * sequence-numbered and CRC32C-checked too.  UDP has no retransmission, so any
 * frame the fabric loses, duplicates or reorders shows up in the UDP counts;
 * the TCP streams load the links and check content end to end, and the TCP
 * retransmissions the guest's kernel counted (/proc/net/snmp RetransSegs,
 * read before and after) show losses that TCP hid.  At the end every sender
 * tells its receiver (over TCP) how many messages and datagrams it sent,
 * waits for an acknowledgement, and every node prints one line per peer and
 * a summary:
 *
 *   VCTRAFFIC-PEER rank=R from=S tcp_msgs=.. tcp_bytes=.. udp_rx=..
 *     udp_bytes=.. digest=HEX
 *   VCTRAFFIC rank=R peers=P seconds=.. tcp_msgs=.. tcp_bytes=.. udp_rx=..
 *     udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 udp_bytes=.. tcp_retrans=..
 *     digest=HEX result=PASS
 *
 * and exits 0, or 1 when anything was wrong.  A peer's digest is computed
 * over every payload byte received from it (TCP in stream order, UDP as a
 * set); the summary digest combines the peers'.  Payloads are a function of
 * (sender, receiver, sequence number, --salt), so with --count (a fixed
 * number of TCP messages and UDP datagrams per pair) the digests are the
 * same on every run that received the same data.
 */
#include "vc_guest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG_MAGIC 0x56435446u	/* "VCTF" */
#define UDP_MAGIC 0x56435544u	/* "VCUD" */
#define MAX_NODES 64
#define MAX_PAYLOAD 16384
#define UDP_MIN 64		/* UDP payload bytes, header included */
#define UDP_MAX 8972		/* a 9000-byte jumbo frame's worth */

enum { M_HELLO = 1, M_DATA, M_FIN, M_FINACK };

struct msg_hdr {
	uint32_t magic, type, src, len;
	uint64_t seq, aux;
	uint32_t crc, pad;
};

/* A datagram: this header, then len - sizeof(header) bytes of fill; crc is
 * the CRC32C of the whole datagram with crc = 0. */
struct udp_hdr {
	uint32_t magic, src, dst, len;
	uint64_t seq;
	uint32_t crc, pad;
};

static struct {
	int rank, n, port, seconds, udp_max, udp_burst;
	long count, udp_count, udp_pps, salt;
	char net[32];
	double timeout;
} cfg = { .port = 5001, .seconds = 10, .udp_pps = 200, .udp_max = 1472, .udp_burst = 16,
	  .udp_count = -1, .timeout = 0 };

struct rx_peer {		/* what this node received from one peer */
	uint64_t msgs, bytes, next_seq, digest, fin_msgs, fin_udp;
	int got_fin, errors;
	/* UDP accounting */
	uint8_t *seen;
	uint64_t seen_cap, udp_rx, udp_dup, udp_reorder, udp_max, udp_bytes, udp_digest;
};

static struct rx_peer rx[MAX_NODES];
static pthread_mutex_t rx_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop_sending, udp_done, stop_udp_rx;
static atomic_int finacks, errors, connected, data_done;
static uint64_t udp_sent[MAX_NODES];
static uint64_t tx_msgs[MAX_NODES];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stdout, "vcluster-traffic[%d]: ", cfg.rank);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	va_end(ap);
	atomic_fetch_add(&errors, 1);
}

static void addr_of(int node, int port, struct sockaddr_in *sa)
{
	struct in_addr base;
	char net[32];

	snprintf(net, sizeof(net), "%s", cfg.net);
	char *slash = strchr(net, '/');
	if (slash)
		*slash = '\0';
	inet_pton(AF_INET, net, &base);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(ntohl(base.s_addr) + (uint32_t)node + 1);
}

/* len bytes of deterministic data for (kind, src, dst, seq, --salt). */
static void fill_bytes(uint8_t *p, uint32_t len, int kind, int src, int dst, uint64_t seq)
{
	uint64_t x = ((uint64_t)src << 48) ^ ((uint64_t)dst << 40) ^ ((uint64_t)kind << 36) ^
		     (seq * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)cfg.salt * 0xc2b2ae3d27d4eb4full) ^ 1;

	for (uint32_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, len - i < 8 ? len - i : 8);
	}
}

/* Deterministic payload of TCP message seq from src to dst. */
static uint32_t fill_payload(uint8_t *p, int src, int dst, uint64_t seq)
{
	uint32_t len = 64 + (uint32_t)((seq * 2654435761u) % (MAX_PAYLOAD - 64));

	fill_bytes(p, len, 1, src, dst, seq);
	return len;
}

/* Size of UDP datagram seq from src to dst: UDP_MIN..--udp-max, both ends
 * often (every 8th datagram is the largest, the next one the smallest). */
static uint32_t udp_size(int src, int dst, uint64_t seq)
{
	uint32_t span = (uint32_t)cfg.udp_max - UDP_MIN + 1;

	if (seq % 8 == 0)
		return (uint32_t)cfg.udp_max;
	if (seq % 8 == 1)
		return UDP_MIN;
	return UDP_MIN + (uint32_t)(((seq ^ ((uint64_t)src << 20) ^ ((uint64_t)dst << 26)) *
				     2654435761u) % span);
}

/* Datagram seq from src to dst, whole, in p (UDP_MAX bytes); its length. */
static uint32_t fill_datagram(uint8_t *p, int src, int dst, uint64_t seq)
{
	uint32_t len = udp_size(src, dst, seq);
	struct udp_hdr h = { .magic = UDP_MAGIC, .src = (uint32_t)src, .dst = (uint32_t)dst,
			     .len = len, .seq = seq };

	memcpy(p, &h, sizeof(h));
	fill_bytes(p + sizeof(h), len - (uint32_t)sizeof(h), 2, src, dst, seq);
	h.crc = vcg_crc32c(0, p, len);
	memcpy(p, &h, sizeof(h));
	return len;
}

/* One step of a peer's TCP digest: over the CRC32C of the received payload
 * bytes and their count, in stream order. */
static uint64_t digest_step(uint64_t d, uint32_t crc, uint32_t len)
{
	return (d ^ crc ^ ((uint64_t)len << 32)) * 0x100000001b3ull;
}

/* A UDP datagram's contribution: summed, so arrival order does not count
 * (reordering is counted on its own) but every byte and duplicate does. */
static uint64_t udp_digest_of(uint32_t crc, uint32_t len, uint64_t seq)
{
	uint64_t x = ((uint64_t)crc << 32 | len) ^ (seq * 0x9e3779b97f4a7c15ull);
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return x;
}

/* TCP segments the guest's kernel retransmitted so far (/proc/net/snmp
 * RetransSegs), -1 when it cannot be read. */
static long long tcp_retrans_segs(void)
{
	char names[1024], vals[1024];
	long long v = -1;
	FILE *f = fopen("/proc/net/snmp", "r");

	if (!f)
		return -1;
	while (fgets(names, sizeof(names), f)) {
		if (strncmp(names, "Tcp:", 4) || !fgets(vals, sizeof(vals), f))
			continue;
		char *sn, *sv, *n = strtok_r(names, " \n", &sn), *x = strtok_r(vals, " \n", &sv);
		while (n && x) {
			if (!strcmp(n, "RetransSegs")) {
				v = atoll(x);
				break;
			}
			n = strtok_r(NULL, " \n", &sn);
			x = strtok_r(NULL, " \n", &sv);
		}
		break;
	}
	fclose(f);
	return v;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? 0 : -1;
		p += n;
		len -= (size_t)n;
	}
	return 1;
}

static int send_msg(int fd, uint32_t type, uint64_t seq, uint64_t aux,
		    const uint8_t *payload, uint32_t len)
{
	struct msg_hdr h = { .magic = MSG_MAGIC, .type = type, .src = (uint32_t)cfg.rank,
			     .len = len, .seq = seq, .aux = aux };
	/* the payload's CRC, then the header's on top of it */
	h.crc = vcg_crc32c(len ? vcg_crc32c(0, payload, len) : 0, &h, sizeof(h));
	if (write_all(fd, &h, sizeof(h)) < 0)
		return -1;
	return len ? write_all(fd, payload, len) : 0;
}

/* One message; *pcrc (may be NULL) is the CRC32C of the payload bytes as
 * received. */
static int recv_msg(int fd, struct msg_hdr *h, uint8_t *payload, uint32_t *pcrc)
{
	int r = read_all(fd, h, sizeof(*h));
	if (r <= 0)
		return r;
	if (h->magic != MSG_MAGIC || h->len > MAX_PAYLOAD)
		return -2;
	if (h->len && read_all(fd, payload, h->len) <= 0)
		return -1;
	uint32_t crc = h->crc, pc = h->len ? vcg_crc32c(0, payload, h->len) : 0;
	h->crc = 0;
	if (vcg_crc32c(pc, h, sizeof(*h)) != crc)
		return -3;
	h->crc = crc;
	if (pcrc)
		*pcrc = pc;
	return 1;
}

static int connect_to(int node, int port)
{
	struct sockaddr_in sa;
	double deadline = vcg_now() + cfg.timeout;

	addr_of(node, port, &sa);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		if (vcg_now() > deadline)
			return -1;
		usleep(200 * 1000);
	}
}

static void *tcp_sender(void *arg)
{
	int dst = (int)(intptr_t)arg;
	uint8_t *buf = malloc(MAX_PAYLOAD);
	struct msg_hdr h;
	uint64_t seq = 0;
	int fd = connect_to(dst, cfg.port);

	if (fd < 0) {
		fail("cannot connect to node%d", dst);
		free(buf);
		return NULL;
	}
	send_msg(fd, M_HELLO, 0, 0, NULL, 0);
	atomic_fetch_add(&connected, 1);
	while (!atomic_load(&stop_sending) && (cfg.count == 0 || (long)seq < cfg.count)) {
		uint32_t len = fill_payload(buf, cfg.rank, dst, seq);
		if (send_msg(fd, M_DATA, seq, 0, buf, len) < 0) {
			fail("send to node%d failed at message %llu: %s", dst,
			     (unsigned long long)seq, strerror(errno));
			goto out;
		}
		seq++;
	}
	tx_msgs[dst] = seq;
	atomic_fetch_add(&data_done, 1);
	while (!atomic_load(&udp_done))
		usleep(10 * 1000);
	if (send_msg(fd, M_FIN, seq, udp_sent[dst], NULL, 0) < 0) {
		fail("sending FIN to node%d failed", dst);
		goto out;
	}
	if (recv_msg(fd, &h, buf, NULL) <= 0 || h.type != M_FINACK)
		fail("no FIN acknowledgement from node%d", dst);
	else
		atomic_fetch_add(&finacks, 1);
out:
	close(fd);
	free(buf);
	return NULL;
}

static void *tcp_receiver(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *buf = malloc(MAX_PAYLOAD), *want = malloc(MAX_PAYLOAD);
	struct msg_hdr h;
	int src = -1, r;

	r = recv_msg(fd, &h, buf, NULL);
	if (r <= 0 || h.type != M_HELLO || h.src >= (uint32_t)cfg.n) {
		fail("bad hello on incoming connection (%d)", r);
		goto out;
	}
	src = (int)h.src;
	struct rx_peer *p = &rx[src];
	for (;;) {
		uint32_t pcrc = 0;
		r = recv_msg(fd, &h, buf, &pcrc);
		if (r <= 0) {
			fail("stream from node%d: %s after %llu messages", src,
			     r == 0 ? "closed early" : r == -3 ? "CRC mismatch" :
			     r == -2 ? "bad header" : "read error",
			     (unsigned long long)p->msgs);
			p->errors++;
			goto out;
		}
		if (h.type == M_FIN) {
			pthread_mutex_lock(&rx_lock);
			p->fin_msgs = h.seq;
			p->fin_udp = h.aux;
			p->got_fin = 1;
			pthread_mutex_unlock(&rx_lock);
			send_msg(fd, M_FINACK, 0, 0, NULL, 0);
			break;
		}
		if (h.type != M_DATA || h.seq != p->next_seq) {
			fail("stream from node%d: message seq %llu, expected %llu",
			     src, (unsigned long long)h.seq,
			     (unsigned long long)p->next_seq);
			p->errors++;
			goto out;
		}
		uint32_t len = fill_payload(want, src, cfg.rank, h.seq);
		if (len != h.len || memcmp(want, buf, len) != 0) {
			fail("stream from node%d: message %llu has wrong content",
			     src, (unsigned long long)h.seq);
			p->errors++;
			goto out;
		}
		p->next_seq++;
		p->msgs++;
		p->bytes += len;
		p->digest = digest_step(p->digest, pcrc, h.len);
	}
	/* wait for the sender to close after reading our acknowledgement */
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	poll(&pfd, 1, 5000);
out:
	close(fd);
	free(buf);
	free(want);
	return NULL;
}

static void *tcp_acceptor(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	pthread_t th;

	for (int i = 0; i < cfg.n - 1; i++) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			fail("accept: %s", strerror(errno));
			return NULL;
		}
		pthread_create(&th, NULL, tcp_receiver, (void *)(intptr_t)fd);
		pthread_detach(th);
	}
	return NULL;
}

static void udp_account(int src, uint64_t seq, uint32_t len, uint32_t crc)
{
	struct rx_peer *p = &rx[src];

	pthread_mutex_lock(&rx_lock);
	if (seq >= p->seen_cap) {
		uint64_t ncap = (seq + 1) * 2;
		p->seen = realloc(p->seen, ncap);
		memset(p->seen + p->seen_cap, 0, ncap - p->seen_cap);
		p->seen_cap = ncap;
	}
	p->udp_digest += udp_digest_of(crc, len, seq);
	if (p->seen[seq]) {
		p->udp_dup++;
	} else {
		p->seen[seq] = 1;
		p->udp_rx++;
		p->udp_bytes += len;
		if (p->udp_rx > 1 && seq < p->udp_max)
			p->udp_reorder++;
		if (seq > p->udp_max || p->udp_rx == 1)
			p->udp_max = seq;
	}
	pthread_mutex_unlock(&rx_lock);
}

static void *udp_receiver(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *buf = malloc(UDP_MAX + 1), *want = malloc(UDP_MAX);
	struct udp_hdr h;

	while (!atomic_load(&stop_udp_rx)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t n = recv(fd, buf, UDP_MAX + 1, 0);
		if (n < (ssize_t)sizeof(h)) {
			fail("malformed UDP datagram (%zd bytes)", n);
			continue;
		}
		memcpy(&h, buf, sizeof(h));
		if (h.magic != UDP_MAGIC || h.src >= (uint32_t)cfg.n || h.src == (uint32_t)cfg.rank ||
		    h.dst != (uint32_t)cfg.rank || h.len != (uint32_t)n || h.seq >= (1ull << 24)) {
			fail("malformed UDP datagram (%zd bytes, from node%u to node%u, length %u, seq %llu)",
			     n, h.src, h.dst, h.len, (unsigned long long)h.seq);
			continue;
		}
		uint32_t crc = h.crc;
		memset(buf + offsetof(struct udp_hdr, crc), 0, sizeof(h.crc));
		if (vcg_crc32c(0, buf, (size_t)n) != crc) {
			fail("UDP datagram %llu from node%u fails its CRC",
			     (unsigned long long)h.seq, h.src);
			continue;
		}
		uint32_t wlen = fill_datagram(want, (int)h.src, cfg.rank, h.seq);
		memcpy(buf + offsetof(struct udp_hdr, crc), &crc, sizeof(crc));
		if (wlen != (uint32_t)n || memcmp(want, buf, wlen) != 0) {
			fail("UDP datagram %llu from node%u has wrong content (%zd bytes, expected %u)",
			     (unsigned long long)h.seq, h.src, n, wlen);
			continue;
		}
		udp_account((int)h.src, h.seq, (uint32_t)n, crc);
	}
	free(buf);
	free(want);
	return NULL;
}

/* UDP to every peer in bursts (1 to --udp-burst datagrams each, varied),
 * paced so that each peer gets --udp-pps datagrams a second on average;
 * with --count, exactly --udp-count datagrams per peer. */
static void *udp_sender(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *buf = malloc(UDP_MAX);
	uint64_t round = 0;
	double next;

	/* A datagram to a peer that is not up yet dies in ARP resolution:
	 * start only when every peer has accepted our TCP stream. */
	while (atomic_load(&connected) < cfg.n - 1 && !atomic_load(&stop_sending))
		usleep(10 * 1000);
	next = vcg_now();

	while (!atomic_load(&stop_sending)) {
		int burst = 1 + (int)((round * 7) % (uint64_t)cfg.udp_burst), more = 0;
		for (int d = 0; d < cfg.n; d++) {
			if (d == cfg.rank)
				continue;
			struct sockaddr_in sa;
			addr_of(d, cfg.port + 1, &sa);
			for (int b = 0; b < burst; b++) {
				if (cfg.count && udp_sent[d] >= (uint64_t)cfg.udp_count)
					break;
				uint32_t len = fill_datagram(buf, cfg.rank, d, udp_sent[d]);
				ssize_t n = sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa));
				if (n == (ssize_t)len)
					udp_sent[d]++;
				else if (errno != EINTR)
					fail("UDP send of %u bytes to node%d: %s", len, d, strerror(errno));
			}
			if (!cfg.count || udp_sent[d] < (uint64_t)cfg.udp_count)
				more = 1;
		}
		round++;
		if (!more)
			break;
		next += (double)burst / (double)cfg.udp_pps;
		double now = vcg_now();
		if (next > now)
			usleep((useconds_t)((next - now) * 1e6));
		else if (now - next > 1.0)
			next = now;	/* after a long stall: do not burst */
	}
	atomic_store(&udp_done, 1);
	free(buf);
	return NULL;
}

static void usage(int code)
{
	printf("usage: vcluster-traffic --all [--seconds S | --count M [--udp-count U]]\n"
	       "                        [--udp-pps R] [--udp-burst B] [--udp-max BYTES]\n"
	       "                        [--port P] [--rank R --nodes N --net A.B.C.D/P]\n"
	       "TCP streams between all pairs of nodes plus UDP datagrams of varied sizes\n"
	       "in bursts to every peer; checks sequence, content and CRC32C of\n"
	       "everything; prints one VCTRAFFIC-PEER line per peer and one VCTRAFFIC\n"
	       "line, and exits 1 on any loss, duplication, reordering or corruption.\n"
	       "Rank, node count and network default to the vc.* kernel parameters.\n"
	       "  --seconds S     send for S seconds (default 10)\n"
	       "  --count M       send exactly M TCP messages per pair (fixed digests)\n"
	       "  --udp-count U   with --count: exactly U datagrams per pair (default M/4)\n"
	       "  --udp-pps R     UDP datagrams per second per peer, on average (default 200)\n"
	       "  --udp-burst B   bursts of 1..B datagrams back to back (default 16)\n"
	       "  --udp-max BYTES largest UDP payload (default 1472: a 1500-byte MTU)\n"
	       "  --salt N        change every payload (both ends must agree; default 0)\n"
	       "  --timeout T     give up waiting for peers after T s (default seconds+180)\n");
	exit(code);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, 0, 'a' }, { "seconds", required_argument, 0, 's' },
		{ "count", required_argument, 0, 'c' }, { "udp-pps", required_argument, 0, 'u' },
		{ "udp-count", required_argument, 0, 'U' }, { "udp-burst", required_argument, 0, 'B' },
		{ "udp-max", required_argument, 0, 'M' }, { "salt", required_argument, 0, 'S' },
		{ "port", required_argument, 0, 'p' }, { "rank", required_argument, 0, 'r' },
		{ "nodes", required_argument, 0, 'n' }, { "net", required_argument, 0, 'N' },
		{ "timeout", required_argument, 0, 't' }, { "help", no_argument, 0, 'h' },
		{ 0 }
	};
	int c;

	vcg_crc_init();
	signal(SIGPIPE, SIG_IGN);
	cfg.rank = (int)vcg_cmdline_long("vc.rank", 0);
	cfg.n = (int)vcg_cmdline_long("vc.n", 1);
	snprintf(cfg.net, sizeof(cfg.net), "10.10.0.0/24");
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a': break;
		case 's': cfg.seconds = atoi(optarg); break;
		case 'c': cfg.count = atol(optarg); break;
		case 'u': cfg.udp_pps = atol(optarg); break;
		case 'U': cfg.udp_count = atol(optarg); break;
		case 'B': cfg.udp_burst = atoi(optarg); break;
		case 'M': cfg.udp_max = atoi(optarg); break;
		case 'S': cfg.salt = atol(optarg); break;
		case 'p': cfg.port = atoi(optarg); break;
		case 'r': cfg.rank = atoi(optarg); break;
		case 'n': cfg.n = atoi(optarg); break;
		case 'N': snprintf(cfg.net, sizeof(cfg.net), "%s", optarg); break;
		case 't': cfg.timeout = atof(optarg); break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (cfg.udp_count < 0)
		cfg.udp_count = cfg.count / 4;
	if (cfg.n < 1 || cfg.n > MAX_NODES || cfg.rank < 0 || cfg.rank >= cfg.n ||
	    cfg.udp_pps < 1 || cfg.seconds < 0 || cfg.count < 0 || cfg.udp_burst < 1 ||
	    cfg.udp_max < UDP_MIN || cfg.udp_max > UDP_MAX || cfg.udp_count >= (1l << 24)) {
		fprintf(stderr, "vcluster-traffic: bad rank/nodes/rate/size (--udp-max %d..%d)\n",
			UDP_MIN, UDP_MAX);
		return 2;
	}
	if (cfg.timeout <= 0)
		cfg.timeout = cfg.seconds + 180;
	if (cfg.n == 1) {
		printf("VCTRAFFIC rank=0 peers=0 result=PASS (single node, nothing to test)\n");
		return 0;
	}

	struct sockaddr_in sa;
	int one = 1, big = 4 << 20;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	addr_of(cfg.rank, cfg.port, &sa);
	int ufd = socket(AF_INET, SOCK_DGRAM, 0);
	setsockopt(ufd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	/* UDP is bound before TCP listens, so a peer that got in over TCP
	 * never sends a datagram to a port that is not open yet. */
	sa.sin_port = htons((uint16_t)(cfg.port + 1));
	if (bind(ufd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "vcluster-traffic: bind UDP: %s\n", strerror(errno));
		return 2;
	}
	sa.sin_port = htons((uint16_t)cfg.port);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, MAX_NODES) < 0) {
		fprintf(stderr, "vcluster-traffic: listen on port %d: %s\n", cfg.port, strerror(errno));
		return 2;
	}
	int usfd = socket(AF_INET, SOCK_DGRAM, 0);
	long long retrans0 = tcp_retrans_segs();

	pthread_t acc, urx, utx, tx[MAX_NODES];
	pthread_create(&acc, NULL, tcp_acceptor, (void *)(intptr_t)lfd);
	pthread_create(&urx, NULL, udp_receiver, (void *)(intptr_t)ufd);
	for (int d = 0; d < cfg.n; d++)
		if (d != cfg.rank)
			pthread_create(&tx[d], NULL, tcp_sender, (void *)(intptr_t)d);
	pthread_create(&utx, NULL, udp_sender, (void *)(intptr_t)usfd);
	printf("vcluster-traffic[%d]: %d peers, %s %ld, UDP %ld/s per peer in bursts of 1-%d, "
	       "%d-%d bytes\n", cfg.rank, cfg.n - 1, cfg.count ? "messages per pair" : "seconds",
	       cfg.count ? cfg.count : (long)cfg.seconds, cfg.udp_pps, cfg.udp_burst, UDP_MIN,
	       cfg.udp_max);
	fflush(stdout);

	double start = vcg_now(), deadline = start + cfg.timeout;
	/* Send for the given time, or until every sender has sent its count
	 * of messages and datagrams (a sender that failed counts as done: it
	 * has reported why). */
	while (cfg.count ? atomic_load(&data_done) + atomic_load(&errors) < cfg.n - 1 ||
			   !atomic_load(&udp_done) :
	       vcg_now() - start < cfg.seconds) {
		if (vcg_now() > deadline)
			break;
		usleep(50 * 1000);
	}
	atomic_store(&stop_sending, 1);
	pthread_join(utx, NULL);

	/* Wait for every peer's FIN and every acknowledgement of ours. */
	for (;;) {
		int fins = 0;
		pthread_mutex_lock(&rx_lock);
		for (int s = 0; s < cfg.n; s++)
			fins += rx[s].got_fin;
		pthread_mutex_unlock(&rx_lock);
		if (fins == cfg.n - 1 && atomic_load(&finacks) == cfg.n - 1)
			break;
		if (vcg_now() > deadline) {
			fail("timed out: %d of %d FINs received, %d of %d acknowledged",
			     fins, cfg.n - 1, atomic_load(&finacks), cfg.n - 1);
			break;
		}
		usleep(50 * 1000);
	}
	for (int d = 0; d < cfg.n; d++)
		if (d != cfg.rank)
			pthread_join(tx[d], NULL);
	/* Datagrams sent before the FIN may trail it by a little. */
	double settle = vcg_now() + 2.0;
	for (;;) {
		int missing = 0;
		pthread_mutex_lock(&rx_lock);
		for (int s = 0; s < cfg.n; s++)
			if (s != cfg.rank && rx[s].udp_rx < rx[s].fin_udp)
				missing = 1;
		pthread_mutex_unlock(&rx_lock);
		if (!missing || vcg_now() > settle)
			break;
		usleep(50 * 1000);
	}
	atomic_store(&stop_udp_rx, 1);
	pthread_join(urx, NULL);

	uint64_t msgs = 0, bytes = 0, urxn = 0, ubytes = 0, lost = 0, dup = 0, reord = 0, digest = 0;
	for (int s = 0; s < cfg.n; s++) {
		if (s == cfg.rank)
			continue;
		struct rx_peer *p = &rx[s];
		if (p->got_fin && p->fin_msgs != p->msgs)
			fail("node%d sent %llu messages, %llu arrived", s,
			     (unsigned long long)p->fin_msgs, (unsigned long long)p->msgs);
		uint64_t l = p->fin_udp > p->udp_rx ? p->fin_udp - p->udp_rx : 0;
		if (l || p->udp_dup || p->udp_reorder)
			fail("UDP from node%d: sent %llu, received %llu, lost %llu, dup %llu, reordered %llu",
			     s, (unsigned long long)p->fin_udp, (unsigned long long)p->udp_rx,
			     (unsigned long long)l, (unsigned long long)p->udp_dup,
			     (unsigned long long)p->udp_reorder);
		uint64_t pd = p->digest ^ (p->udp_digest * 0x9e3779b97f4a7c15ull);
		printf("VCTRAFFIC-PEER rank=%d from=%d tcp_msgs=%llu tcp_bytes=%llu udp_rx=%llu "
		       "udp_bytes=%llu digest=%016llx\n", cfg.rank, s, (unsigned long long)p->msgs,
		       (unsigned long long)p->bytes, (unsigned long long)p->udp_rx,
		       (unsigned long long)p->udp_bytes, (unsigned long long)pd);
		msgs += p->msgs;
		bytes += p->bytes;
		urxn += p->udp_rx;
		ubytes += p->udp_bytes;
		lost += l;
		dup += p->udp_dup;
		reord += p->udp_reorder;
		digest ^= pd * (uint64_t)(s + 1);
	}
	long long retrans1 = tcp_retrans_segs();
	int errs = atomic_load(&errors);
	printf("VCTRAFFIC rank=%d peers=%d seconds=%.1f tcp_msgs=%llu tcp_bytes=%llu udp_rx=%llu "
	       "udp_lost=%llu udp_dup=%llu udp_reorder=%llu errors=%d udp_bytes=%llu "
	       "tcp_retrans=%lld tcp_retrans_before=%lld tcp_retrans_after=%lld "
	       "digest=%016llx result=%s\n",
	       cfg.rank, cfg.n - 1, vcg_now() - start, (unsigned long long)msgs,
	       (unsigned long long)bytes, (unsigned long long)urxn, (unsigned long long)lost,
	       (unsigned long long)dup, (unsigned long long)reord, errs, (unsigned long long)ubytes,
	       retrans0 >= 0 && retrans1 >= 0 ? retrans1 - retrans0 : -1, retrans0, retrans1,
	       (unsigned long long)digest, errs ? "FAIL" : "PASS");
	fflush(stdout);
	return errs ? 1 : 0;
}
