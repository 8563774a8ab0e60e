/* vde-endpoint: a libvdeplug endpoint that sends, receives and checks
 * sequence-numbered Ethernet frames, to measure and test a virtual
 * Ethernet without VMs.  The same program runs against vcluster's fabric
 * (URL seqpacket://FD, given by fabric-bench) and against Debian's
 * vde_switch (URL vde:///PATH), so both are measured the same way.
 *
 *   --mode stream    rank 0 sends --count frames of --size bytes to rank 1
 *                    flat out; rank 1 counts them and reports frames/s
 *   --mode pingpong  rank 0 sends one frame, rank 1 echoes it; --count
 *                    round trips; reports one-way latency (RTT/2)
 *   --mode mesh      every rank sends --count frames to every other rank
 *                    (plus a broadcast every 64th frame) and checks that
 *                    all arrive exactly once and in order; --slow-us makes
 *                    this rank (or only --slow-rank R) read slowly, to
 *                    force backpressure
 *   --mode idle      send nothing for --count seconds (to measure what an
 *                    idle rank costs)
 *
 * Each prints one line starting with VDEEP and exits 0 on success.
 */
#include <errno.h>
#include <getopt.h>
#include <libvdeplug.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETH_TYPE 0x88b5		/* IEEE local experimental */
#define HDR 14
#define MAX_NODES 64
#define END_SEQ UINT64_MAX

struct frame_body {
	uint64_t seq;
	uint16_t src;
	uint16_t bcast;
};

static struct {
	char url[256];
	int rank, nodes, size, slow_us, slow_rank;
	long count;
	double idle_s;
	enum { M_STREAM, M_PINGPONG, M_MESH, M_IDLE } mode;
} o = { .nodes = 2, .size = 64, .count = 100000, .idle_s = 2.0, .slow_rank = -1 };

static VDECONN *conn;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void mac(uint8_t *p, int rank)
{
	uint8_t m[6] = { 0x52, 0x54, 0x00, 0x56, (uint8_t)(rank >> 8), (uint8_t)rank };
	memcpy(p, m, 6);
}

static size_t build(uint8_t *f, int dst, uint64_t seq, int bcast)
{
	if (dst < 0)
		memset(f, 0xff, 6);
	else
		mac(f, dst);
	mac(f + 6, o.rank);
	f[12] = ETH_TYPE >> 8;
	f[13] = ETH_TYPE & 0xff;
	struct frame_body b = { .seq = seq, .src = (uint16_t)o.rank, .bcast = (uint16_t)bcast };
	memcpy(f + HDR, &b, sizeof(b));
	return (size_t)o.size;
}

/* Send one frame, waiting (never dropping) while the link is full. */
static int send_frame(const uint8_t *f, size_t len)
{
	for (;;) {
		ssize_t n = vde_send(conn, f, len, 0);
		if (n == (ssize_t)len)
			return 0;
		if (n < 0 && (errno == EAGAIN || errno == ENOBUFS || errno == EINTR)) {
			struct pollfd p = { .fd = vde_datafd(conn), .events = POLLOUT };
			poll(&p, 1, 10);
			continue;
		}
		fprintf(stderr, "vde-endpoint %d: send: %s\n", o.rank, strerror(errno));
		return -1;
	}
}

/* Like a NIC: take frames to our MAC and broadcasts, nothing else (the
 * fabric floods unicast frames until it has learned where a MAC is). */
static int for_me(const uint8_t *f)
{
	uint8_t m[6];

	mac(m, o.rank);
	return (f[0] & 1) || memcmp(f, m, 6) == 0;
}

/* Wait up to timeout_s for a frame of ours; returns its length or 0. */
static ssize_t recv_frame(uint8_t *f, size_t cap, double timeout_s)
{
	struct pollfd p = { .fd = vde_datafd(conn), .events = POLLIN };
	for (;;) {
		int r = poll(&p, 1, (int)(timeout_s * 1000));
		if (r <= 0)
			return 0;
		ssize_t n = vde_recv(conn, f, cap, 0);
		if (n < HDR + (ssize_t)sizeof(struct frame_body))
			continue;
		if (f[12] != (ETH_TYPE >> 8) || f[13] != (ETH_TYPE & 0xff) || !for_me(f))
			continue;
		return n;
	}
}

static int do_stream(void)
{
	uint8_t f[9216];

	if (o.rank == 0) {
		/* let the receiver get ready */
		usleep(300 * 1000);
		for (long i = 0; i < o.count; i++)
			if (send_frame(f, build(f, 1, (uint64_t)i, 0)) < 0)
				return 1;
		for (int i = 0; i < 50; i++) {
			send_frame(f, build(f, 1, END_SEQ, 0));
			usleep(2000);
		}
		printf("VDEEP stream sender frames=%ld size=%d\n", o.count, o.size);
		return 0;
	}
	long got = 0, reorder = 0;
	uint64_t last = 0;
	double first = 0, lastt = 0;
	for (;;) {
		ssize_t n = recv_frame(f, sizeof(f), got ? o.idle_s : 30);
		if (n == 0)
			break;
		struct frame_body b;
		memcpy(&b, f + HDR, sizeof(b));
		if (b.seq == END_SEQ)
			break;
		if (!got)
			first = now();
		else if (b.seq <= last)
			reorder++;
		last = b.seq;
		lastt = now();
		got++;
	}
	double secs = lastt - first;
	printf("VDEEP stream receiver frames=%ld lost=%ld reorder=%ld size=%d seconds=%.3f fps=%.0f mbps=%.1f\n",
	       got, o.count - got, reorder, o.size, secs, secs > 0 ? (got - 1) / secs : 0,
	       secs > 0 ? (double)(got - 1) * o.size * 8 / secs / 1e6 : 0);
	return got ? 0 : 1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int do_pingpong(void)
{
	uint8_t f[9216];

	if (o.rank == 1) {
		for (;;) {
			ssize_t n = recv_frame(f, sizeof(f), 30);
			if (n == 0)
				return 1;
			struct frame_body b;
			memcpy(&b, f + HDR, sizeof(b));
			if (b.seq == END_SEQ)
				break;
			if (send_frame(f, build(f, 0, b.seq, 0)) < 0)
				return 1;
		}
		printf("VDEEP pingpong echo done\n");
		return 0;
	}
	double *rtt = calloc((size_t)o.count, sizeof(double));
	usleep(300 * 1000);
	long lost = 0;
	for (long i = 0; i < o.count; i++) {
		double t0 = now();
		send_frame(f, build(f, 1, (uint64_t)i, 0));
		for (;;) {
			ssize_t n = recv_frame(f, sizeof(f), 1.0);
			if (n == 0) {
				lost++;
				break;
			}
			struct frame_body b;
			memcpy(&b, f + HDR, sizeof(b));
			if (b.seq == (uint64_t)i)
				break;
		}
		rtt[i] = now() - t0;
	}
	for (int i = 0; i < 5; i++)
		send_frame(f, build(f, 1, END_SEQ, 0));
	qsort(rtt, (size_t)o.count, sizeof(double), cmp_double);
	printf("VDEEP pingpong rounds=%ld lost=%ld size=%d oneway_median_us=%.1f oneway_p99_us=%.1f\n",
	       o.count, lost, o.size, rtt[o.count / 2] / 2 * 1e6,
	       rtt[o.count * 99 / 100] / 2 * 1e6);
	free(rtt);
	return lost ? 1 : 0;
}

static int do_mesh(void)
{
	uint8_t out[9216], in[9216];
	uint64_t next_tx[MAX_NODES] = { 0 }, next_rx[MAX_NODES] = { 0 }, bnext[MAX_NODES] = { 0 };
	long errors = 0, got = 0, bgot = 0;
	int peers = o.nodes - 1;
	long want = o.count * peers + (o.count / 64) * peers;	/* unicast + broadcast */
	long sent = 0, bsent = 0;
	int dst = 0;
	/* The watchdog is on progress, sent or received: a rank that has
	 * all its frames may still be sending slowly, held back by the
	 * slow reader, for longer than 20 s on a loaded machine. */
	double last_rx = now(), next_slow = 0;

	usleep(300 * 1000);
	while (got < want || sent < o.count * peers) {
		struct pollfd p = { .fd = vde_datafd(conn), .events = POLLIN };
		if (sent < o.count * peers)
			p.events |= POLLOUT;
		poll(&p, 1, 100);
		if ((p.revents & POLLOUT) && sent < o.count * peers) {
			do
				dst = (dst + 1) % o.nodes;
			while (dst == o.rank);
			build(out, dst, next_tx[dst]++, 0);
			ssize_t n = vde_send(conn, out, (size_t)o.size, MSG_DONTWAIT);
			if (n < 0) {
				next_tx[dst]--;		/* not sent: try again */
			} else {
				sent++;
				last_rx = now();
				if (sent % (64 * peers) == 0 && bsent < o.count / 64) {
					build(out, -1, (uint64_t)bsent, 1);
					while (vde_send(conn, out, (size_t)o.size, MSG_DONTWAIT) < 0)
						usleep(100);
					bsent++;
				}
			}
		}
		if (p.revents & POLLIN) {
			if (o.slow_us && now() < next_slow)
				continue;
			ssize_t n = vde_recv(conn, in, sizeof(in), MSG_DONTWAIT);
			if (n >= HDR + (ssize_t)sizeof(struct frame_body) &&
			    in[12] == (ETH_TYPE >> 8) && for_me(in)) {
				struct frame_body b;
				memcpy(&b, in + HDR, sizeof(b));
				uint64_t *exp = b.bcast ? &bnext[b.src] : &next_rx[b.src];
				if (b.src >= o.nodes || b.src == o.rank || b.seq != *exp) {
					if (errors++ < 5)
						fprintf(stderr, "vde-endpoint %d: from %u %s seq %llu, expected %llu\n",
							o.rank, b.src, b.bcast ? "broadcast" : "unicast",
							(unsigned long long)b.seq, (unsigned long long)*exp);
				}
				*exp = b.seq + 1;
				got++;
				bgot += b.bcast;
				last_rx = now();
				if (o.slow_us)
					next_slow = now() + o.slow_us / 1e6;
			}
		}
		if (now() - last_rx > 20) {
			fprintf(stderr, "vde-endpoint %d: nothing sent or received for 20 s\n", o.rank);
			break;
		}
	}
	printf("VDEEP mesh rank=%d sent=%ld broadcasts=%ld received=%ld expected=%ld errors=%ld result=%s\n",
	       o.rank, sent, bsent, got, want, errors,
	       !errors && got == want ? "PASS" : "FAIL");
	return !errors && got == want ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, 0, 'u' }, { "rank", required_argument, 0, 'r' },
		{ "nodes", required_argument, 0, 'n' }, { "mode", required_argument, 0, 'm' },
		{ "count", required_argument, 0, 'c' }, { "size", required_argument, 0, 's' },
		{ "slow-us", required_argument, 0, 'w' }, { "slow-rank", required_argument, 0, 'W' }, { "help", no_argument, 0, 'h' }, { 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'u': snprintf(o.url, sizeof(o.url), "%s", optarg); break;
		case 'r': o.rank = atoi(optarg); break;
		case 'n': o.nodes = atoi(optarg); break;
		case 'c': o.count = atol(optarg); break;
		case 's': o.size = atoi(optarg); break;
		case 'w': o.slow_us = atoi(optarg); break;
		case 'W': o.slow_rank = atoi(optarg); break;
		case 'm':
			if (!strcmp(optarg, "stream")) o.mode = M_STREAM;
			else if (!strcmp(optarg, "pingpong")) o.mode = M_PINGPONG;
			else if (!strcmp(optarg, "mesh")) o.mode = M_MESH;
			else if (!strcmp(optarg, "idle")) o.mode = M_IDLE;
			else { fprintf(stderr, "vde-endpoint: unknown mode %s\n", optarg); return 2; }
			break;
		default:
			fprintf(stderr, "usage: vde-endpoint --url URL --rank R [--nodes N] --mode "
				"stream|pingpong|mesh|idle [--count N] [--size BYTES] [--slow-us US [--slow-rank R]]\n");
			return 2;
		}
	}
	if (!o.url[0] || o.size < HDR + (int)sizeof(struct frame_body) || o.size > 9000 ||
	    o.nodes < 2 || o.nodes > MAX_NODES || o.count < 1) {
		fprintf(stderr, "vde-endpoint: bad arguments (size %d..9000, nodes 2..64)\n",
			HDR + (int)sizeof(struct frame_body));
		return 2;
	}
	if (o.slow_rank >= 0 && o.slow_rank != o.rank)
		o.slow_us = 0;	/* only the named rank reads slowly */
	conn = vde_open(o.url, "vde-endpoint", NULL);
	if (!conn) {
		fprintf(stderr, "vde-endpoint: vde_open(%s): %s\n", o.url, strerror(errno));
		return 2;
	}
	int r = 0;
	if (o.mode == M_IDLE) {
		sleep((unsigned)o.count);
		printf("VDEEP idle rank=%d seconds=%ld\n", o.rank, o.count);
	} else {
		r = o.mode == M_STREAM ? do_stream() : o.mode == M_PINGPONG ? do_pingpong() : do_mesh();
	}
	fflush(stdout);
	vde_close(conn);
	return r;
}
