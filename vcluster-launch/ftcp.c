#define LOG_PREFIX "fabric-tcp"
#include "ftcp.h"

#include "log.h"
#include "vc_magic.h"
#include "vcfmt.h"
#include "vctime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SECRET_LEN	32
#define NONCE_LEN	16
#define MAC_LEN		32
#define PROOF_LABEL	"vcluster fabric proof 1"
#define T_HELLO		1
#define T_PROOF		2
/* Unauthenticated connections at once: one for every rank of the job
 * (during set-up rank 0 is dialed by all the others at the same time; with
 * a fixed 64, a 128-rank job closed the excess and could not start), and
 * this many more for strangers. */
#define HS_SPARE	64
#define HS_TIMEOUT_S	10.0	/* for one to prove itself */
#define ADDR_REC	20	/* u16 family, u16 port, 16 address bytes */

enum kind { K_PEER = 1, K_LISTEN = 2, K_HS = 3 };

enum hs_state { HS_CONNECTING, HS_HELLO, HS_PROOF, HS_PROVEN };

/* A connection that has not proved who it is yet. */
struct fconn {
	int fd;
	int peer;		/* the rank dialed (outgoing) or claimed; -1 */
	bool outgoing;
	enum hs_state st;
	uint8_t nonce[NONCE_LEN], peer_nonce[NONCE_LEN];
	uint8_t in[FTCP_HELLO_LEN];
	size_t in_len;
	uint8_t out[2 * FTCP_HELLO_LEN];
	size_t out_len, out_off;
	char addr[80];
	double deadline;
};

struct ftcp {
	int rank, size;
	int epfd, lfd;
	uint8_t secret[SECRET_LEN];
	int *peer_fd;		/* authenticated socket per rank, or -1 */
	unsigned *want;		/* EPOLLIN | EPOLLOUT asked per peer */
	int nup;
	struct fconn **hs;	/* hs_cap slots */
	int nhs, hs_cap;
	bool setting_up;	/* in ftcp_create: failures of dialed peers are fatal */
	double setup_deadline;	/* ... and every handshake may take until then */
	int fatal;		/* -errno of a fatal set-up failure */
};

/* ---- hello and proof ---------------------------------------------------- */

static void proof_mac(const uint8_t *m, const uint8_t secret[SECRET_LEN],
		      const uint8_t recv_nonce[NONCE_LEN],
		      const uint8_t send_nonce[NONCE_LEN], uint8_t out[MAC_LEN])
{
	uint8_t text[sizeof(PROOF_LABEL) - 1 + 16 + 2 * NONCE_LEN];
	size_t n = sizeof(PROOF_LABEL) - 1;

	memcpy(text, PROOF_LABEL, n);
	memcpy(text + n, m + 8, 16);
	memcpy(text + n + 16, recv_nonce, NONCE_LEN);
	memcpy(text + n + 16 + NONCE_LEN, send_nonce, NONCE_LEN);
	if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, SECRET_LEN, text, sizeof(text), out))
		memset(out, 0, MAC_LEN);	/* never matches a real proof */
}

void ftcp_fill_hello(uint8_t *m, int type, int from, int to, int size,
		     const uint8_t nonce[16], const uint8_t secret[32],
		     const uint8_t peer_nonce[16])
{
	memset(m, 0, FTCP_HELLO_LEN);
	vcfmt_put_be32(m, VC_MAGIC_FABRIC_HELLO);
	vcfmt_put_be16(m + 4, FTCP_HELLO_VERSION);
	vcfmt_put_be16(m + 6, FTCP_HELLO_LEN);
	m[8] = (uint8_t)type;
	vcfmt_put_be32(m + 12, (uint32_t)from);
	vcfmt_put_be32(m + 16, (uint32_t)to);
	vcfmt_put_be32(m + 20, (uint32_t)size);
	if (type == T_HELLO)
		memcpy(m + 24, nonce, NONCE_LEN);
	else
		proof_mac(m, secret, peer_nonce, nonce, m + 40);
	vcfmt_put_be32(m + 72, vcfmt_crc32c(0, m, 72));
}

#define BAD(...) do { snprintf(why, whylen, __VA_ARGS__); return -EBADMSG; } while (0)

int ftcp_check_hello(const uint8_t *m, int type, int want_to, int size,
		     const uint8_t secret[32], const uint8_t my_nonce[16],
		     uint8_t peer_nonce[16], int *from, char *why, size_t whylen)
{
	uint32_t v;

	if ((v = vcfmt_get_be32(m)) != VC_MAGIC_FABRIC_HELLO)
		BAD("magic 0x%x, expected 0x%x", v, VC_MAGIC_FABRIC_HELLO);
	if ((v = vcfmt_get_be16(m + 4)) != FTCP_HELLO_VERSION)
		BAD("version %u, expected %u", v, FTCP_HELLO_VERSION);
	if ((v = vcfmt_get_be16(m + 6)) != FTCP_HELLO_LEN)
		BAD("length %u, expected %u", v, FTCP_HELLO_LEN);
	if ((v = vcfmt_get_be32(m + 72)) != vcfmt_crc32c(0, m, 72))
		BAD("crc 0x%x, expected 0x%x", v, vcfmt_crc32c(0, m, 72));
	if (m[8] != type)
		BAD("type %u, expected %d", m[8], type);
	if ((v = vcfmt_get_be32(m + 20)) != (uint32_t)size)
		BAD("job size %u, expected %d", v, size);
	if ((v = vcfmt_get_be32(m + 16)) != (uint32_t)want_to)
		BAD("receiver rank %u, expected %d", v, want_to);
	v = vcfmt_get_be32(m + 12);
	if (v >= (uint32_t)size || v == (uint32_t)want_to)
		BAD("sender rank %u, expected one of 0..%d but %d", v, size - 1, want_to);
	*from = (int)v;
	if (type == T_HELLO) {
		memcpy(peer_nonce, m + 24, NONCE_LEN);
		return 0;
	}
	uint8_t mac[MAC_LEN];
	proof_mac(m, secret, my_nonce, peer_nonce, mac);
	if (gnutls_memcmp(mac, m + 40, MAC_LEN) != 0) {
		snprintf(why, whylen, "proof of rank %d does not check (not of this job)", *from);
		return -EACCES;
	}
	return 0;
}

/* ---- connections -------------------------------------------------------- */

static uint64_t tag(enum kind k, int v)
{
	return (uint64_t)k << 32 | (uint32_t)v;
}

static void addr_str(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;
		inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
		port = ntohs(s->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
		port = ntohs(s->sin6_port);
	}
	snprintf(out, len, "%s:%d", host, port);
}

static void hs_free(struct ftcp *t, int i, bool close_fd)
{
	struct fconn *c = t->hs[i];

	if (close_fd) {
		epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	free(c);
	t->hs[i] = t->hs[--t->nhs];
}

/* One line naming the connection's address, then it is closed.  During
 * set-up, a peer we dialed that fails is fatal: the mesh cannot complete. */
static void hs_reject(struct ftcp *t, int i, const char *why)
{
	struct fconn *c = t->hs[i];

	if (c->outgoing)
		pr_err("connection to rank %d at %s: %s; closed", c->peer, c->addr, why);
	else
		pr_warn("connection from %s%s: %s; closed", c->addr,
			c->peer >= 0 ? " (claiming a rank of this job)" : "", why);
	if (c->outgoing && t->setting_up && !t->fatal)
		t->fatal = -ECONNREFUSED;
	hs_free(t, i, true);
}

static int hs_events(struct ftcp *t, struct fconn *c)
{
	struct epoll_event ev = { .data.u64 = tag(K_HS, c->fd) };

	ev.events = c->st == HS_CONNECTING ? EPOLLOUT :
		    EPOLLIN | (c->out_off < c->out_len ? EPOLLOUT : 0);
	return epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno : 0;
}

static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void queue_msg(struct fconn *c, const uint8_t *m)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	memcpy(c->out + c->out_len, m, FTCP_HELLO_LEN);
	c->out_len += FTCP_HELLO_LEN;
}

static void queue_hello(struct ftcp *t, struct fconn *c)
{
	uint8_t m[FTCP_HELLO_LEN];

	ftcp_fill_hello(m, T_HELLO, t->rank, c->peer, t->size, c->nonce, t->secret, NULL);
	queue_msg(c, m);
	c->st = HS_HELLO;
}

/* The connection has proved it is rank c->peer: it becomes that peer's. */
static void hs_up(struct ftcp *t, int i)
{
	struct fconn *c = t->hs[i];
	struct epoll_event ev = { .events = t->want[c->peer], .data.u64 = tag(K_PEER, c->peer) };

	epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	t->peer_fd[c->peer] = c->fd;
	t->nup++;
	pr_debug("rank %d connected (%s)", c->peer, c->addr);
	hs_free(t, i, false);
}

/* Move the handshake of t->hs[i] on.  Returns with it freed or kept. */
static void hs_step(struct ftcp *t, int i)
{
	struct fconn *c = t->hs[i];
	char why[160];
	int from;

	if (c->st == HS_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err == EINPROGRESS || err == EALREADY)
			return;
		if (err) {
			hs_reject(t, i, strerror(err));
			return;
		}
		queue_hello(t, c);
	}
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			hs_reject(t, i, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	while (c->st != HS_PROVEN) {
		/* exactly one message at a time: nothing past the proof is read */
		ssize_t n = recv(c->fd, c->in + c->in_len, FTCP_HELLO_LEN - c->in_len,
				 MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			hs_reject(t, i, n == 0 ? "closed before proving who it is" :
				  strerror(errno));
			return;
		}
		c->in_len += (size_t)n;
		if (c->in_len < FTCP_HELLO_LEN)
			continue;
		c->in_len = 0;
		if (c->st == HS_HELLO) {
			if (ftcp_check_hello(c->in, T_HELLO, t->rank, t->size, t->secret,
					     c->nonce, c->peer_nonce, &from, why, sizeof(why)) < 0) {
				hs_reject(t, i, why);
				return;
			}
			if (c->outgoing ? from != c->peer : from < t->rank) {
				snprintf(why, sizeof(why), "hello names rank %d, expected %s %d",
					 from, c->outgoing ? "rank" : "a rank above", c->outgoing ? c->peer : t->rank);
				hs_reject(t, i, why);
				return;
			}
			c->peer = from;
			if (!c->outgoing)	/* the acceptor answers once it knows whom */
				queue_hello(t, c);
			uint8_t m[FTCP_HELLO_LEN];
			ftcp_fill_hello(m, T_PROOF, t->rank, from, t->size, c->nonce,
					t->secret, c->peer_nonce);
			queue_msg(c, m);
			c->st = HS_PROOF;
			hs_step(t, i);	/* send it now */
			return;
		}
		/* HS_PROOF */
		if (ftcp_check_hello(c->in, T_PROOF, t->rank, t->size, t->secret, c->nonce,
				     c->peer_nonce, &from, why, sizeof(why)) < 0 || from != c->peer) {
			if (from != c->peer)
				snprintf(why, sizeof(why), "proof names rank %d, hello %d", from, c->peer);
			hs_reject(t, i, why);
			return;
		}
		if (t->peer_fd[from] >= 0) {
			snprintf(why, sizeof(why), "rank %d is already connected", from);
			hs_reject(t, i, why);
			return;
		}
		c->st = HS_PROVEN;
	}
	if (c->st == HS_PROVEN && c->out_off == c->out_len) {
		hs_up(t, i);
		return;
	}
	if (hs_events(t, c) < 0)
		hs_reject(t, i, "epoll");
}

static int hs_add(struct ftcp *t, int fd, bool outgoing, int peer,
		  const struct sockaddr *sa, bool connecting)
{
	struct fconn *c;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag(K_HS, fd) };

	if (t->nhs >= t->hs_cap || !(c = calloc(1, sizeof(*c)))) {
		char a[80];
		addr_str(sa, a, sizeof(a));
		pr_warn("connection from %s: too many unauthenticated connections; closed", a);
		close(fd);
		return -EMFILE;
	}
	c->fd = fd;
	c->peer = peer;
	c->outgoing = outgoing;
	/* While the mesh forms, a peer may be slow to answer (256 ranks
	 * oversubscribed on 2 cores took more than 10 s): a handshake then has
	 * as long as the set-up.  Afterwards only strangers and latecomers
	 * connect, and they get HS_TIMEOUT_S. */
	c->deadline = t->setting_up ? t->setup_deadline : vc_mono_s() + HS_TIMEOUT_S;
	addr_str(sa, c->addr, sizeof(c->addr));
	if (gnutls_rnd(GNUTLS_RND_NONCE, c->nonce, NONCE_LEN) < 0) {
		free(c);
		close(fd);
		return -EIO;
	}
	set_nodelay(fd);
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		free(c);
		close(fd);
		return r;
	}
	t->hs[t->nhs++] = c;
	if (connecting) {
		c->st = HS_CONNECTING;
		hs_events(t, c);
	} else {
		c->st = HS_HELLO;	/* the dialer speaks first */
	}
	return 0;
}

static void on_listen(struct ftcp *t)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(t->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		hs_add(t, fd, false, -1, (struct sockaddr *)&ss, false);
	}
}

static void hs_expire(struct ftcp *t)
{
	double now = vc_mono_s();

	for (int i = t->nhs - 1; i >= 0; i--)
		if (now > t->hs[i]->deadline)
			hs_reject(t, i, "did not prove who it is within 10 s");
}

static int dispatch(struct ftcp *t, int timeout_ms, int *ready, int max)
{
	struct epoll_event evs[64];
	int n, out = 0;

	if (max > 64)
		max = 64;
	n = epoll_wait(t->epfd, evs, max > 0 ? max : 64, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int k = 0; k < n; k++) {
		enum kind kd = (enum kind)(evs[k].data.u64 >> 32);
		int v = (int)(uint32_t)evs[k].data.u64;
		if (kd == K_PEER) {
			if (ready && out < max)
				ready[out++] = v;
		} else if (kd == K_LISTEN) {
			on_listen(t);
		} else {
			for (int i = 0; i < t->nhs; i++) {
				if (t->hs[i]->fd == v) {
					hs_step(t, i);
					break;
				}
			}
		}
	}
	if (t->nhs)
		hs_expire(t);
	return out;
}

/* ---- set-up ------------------------------------------------------------- */

static int resolve(const char *addr, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[256];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	int r;

	if (!addr || !*addr) {
		if (gethostname(host, sizeof(host)) < 0)
			return -errno;
		host[sizeof(host) - 1] = 0;
		addr = host;
	}
	r = getaddrinfo(addr, NULL, &hints, &res);
	if (r || !res) {
		pr_err("cannot resolve %s (%s); give the address to listen on with --fabric-addr",
		       addr, r ? gai_strerror(r) : "no address");
		return -EADDRNOTAVAIL;
	}
	/* prefer IPv4: what /etc/hosts lines of emulated hosts give */
	struct addrinfo *a = res;
	for (struct addrinfo *p = res; p; p = p->ai_next)
		if (p->ai_family == AF_INET) {
			a = p;
			break;
		}
	memcpy(ss, a->ai_addr, a->ai_addrlen);
	*sl = a->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void pack_addr(uint8_t *rec, const struct sockaddr_storage *ss)
{
	memset(rec, 0, ADDR_REC);
	vcfmt_put_be16(rec, ss->ss_family);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;
		memcpy(rec + 2, &s->sin_port, 2);
		memcpy(rec + 4, &s->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *s = (const void *)ss;
		memcpy(rec + 2, &s->sin6_port, 2);
		memcpy(rec + 4, &s->sin6_addr, 16);
	}
}

static socklen_t unpack_addr(const uint8_t *rec, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (vcfmt_get_be16(rec) == AF_INET) {
		struct sockaddr_in *s = (void *)ss;
		s->sin_family = AF_INET;
		memcpy(&s->sin_port, rec + 2, 2);
		memcpy(&s->sin_addr, rec + 4, 4);
		return sizeof(*s);
	}
	struct sockaddr_in6 *s = (void *)ss;
	s->sin6_family = AF_INET6;
	memcpy(&s->sin6_port, rec + 2, 2);
	memcpy(&s->sin6_addr, rec + 4, 16);
	return sizeof(*s);
}

static int dial(struct ftcp *t, int peer, const uint8_t *rec)
{
	struct sockaddr_storage ss;
	socklen_t sl = unpack_addr(rec, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		int r = -errno;
		char a[80];
		addr_str((struct sockaddr *)&ss, a, sizeof(a));
		pr_errno(r, "connecting to rank %d at %s", peer, a);
		close(fd);
		return r;
	}
	return hs_add(t, fd, true, peer, (struct sockaddr *)&ss, true);
}

struct ftcp *ftcp_create(MPI_Comm comm, const char *addr, int timeout_ms)
{
	struct ftcp *t = calloc(1, sizeof(*t));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	uint8_t *recs = NULL, mine[ADDR_REC];
	int r = -ENOMEM, ok, all_ok;

	if (!t)
		goto out_errno;
	t->lfd = t->epfd = -1;
	MPI_Comm_rank(comm, &t->rank);
	MPI_Comm_size(comm, &t->size);
	t->peer_fd = malloc((size_t)t->size * sizeof(*t->peer_fd));
	t->want = calloc((size_t)t->size, sizeof(*t->want));
	t->hs_cap = t->size + HS_SPARE;
	t->hs = calloc((size_t)t->hs_cap, sizeof(*t->hs));
	recs = malloc((size_t)t->size * ADDR_REC);
	if (!t->peer_fd || !t->want || !t->hs || !recs)
		goto fail_local;
	for (int i = 0; i < t->size; i++)
		t->peer_fd[i] = -1;

	r = 0;
	if (t->rank == 0 && gnutls_rnd(GNUTLS_RND_KEY, t->secret, SECRET_LEN) < 0)
		r = -EIO;
	if (!r)
		r = resolve(addr, &ss, &sl);
	if (!r) {
		int one = 1, fam = ss.ss_family;
		if (fam == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = 0;
		t->lfd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		t->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (t->lfd < 0 || t->epfd < 0 ||
		    setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(t->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(t->lfd, 1024) < 0 ||
		    getsockname(t->lfd, (struct sockaddr *)&ss, &sl) < 0) {
			char a[80];
			r = -errno;
			addr_str((struct sockaddr *)&ss, a, sizeof(a));
			pr_errno(r, "listening on %s", a);
		}
	}
	if (!r) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag(K_LISTEN, 0) };
		if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->lfd, &ev) < 0)
			r = -errno;
	}
	/* Every rank learns whether all could listen before anyone dials. */
	ok = r == 0;
	MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
	MPI_Bcast(t->secret, SECRET_LEN, MPI_BYTE, 0, comm);
	if (ok)
		pack_addr(mine, &ss);
	else
		memset(mine, 0, sizeof(mine));
	MPI_Allgather(mine, ADDR_REC, MPI_BYTE, recs, ADDR_REC, MPI_BYTE, comm);
	if (!all_ok) {
		r = r ? r : -ENETDOWN;
		goto fail_local;
	}

	double deadline = vc_mono_s() + timeout_ms / 1000.0;
	t->setup_deadline = deadline;
	t->setting_up = true;
	for (int j = 0; j < t->rank && !r; j++)
		r = dial(t, j, recs + (size_t)j * ADDR_REC);
	while (!r && t->nup < t->size - 1 && !t->fatal) {
		if (vc_mono_s() > deadline) {
			char missing[256] = "";
			size_t n = 0;
			for (int j = 0; j < t->size && n < sizeof(missing) - 12; j++)
				if (j != t->rank && t->peer_fd[j] < 0)
					n += (size_t)snprintf(missing + n, sizeof(missing) - n, " %d", j);
			pr_err("no authenticated connection with rank(s)%s within %d s",
			       missing, timeout_ms / 1000);
			r = -ETIMEDOUT;
			break;
		}
		r = dispatch(t, 100, NULL, 0);
		r = r < 0 ? r : 0;
	}
	if (!r && t->fatal)
		r = t->fatal;
	t->setting_up = false;
	if (r)
		goto fail_local;
	free(recs);
	return t;

fail_local:
	free(recs);
	ftcp_destroy(t);
	errno = -r;
	return NULL;
out_errno:
	errno = ENOMEM;
	return NULL;
}

void ftcp_destroy(struct ftcp *t)
{
	if (!t)
		return;
	while (t->nhs)
		hs_free(t, t->nhs - 1, true);
	if (t->peer_fd)
		for (int i = 0; i < t->size; i++)
			if (t->peer_fd[i] >= 0)
				close(t->peer_fd[i]);
	if (t->lfd >= 0)
		close(t->lfd);
	if (t->epfd >= 0)
		close(t->epfd);
	free(t->peer_fd);
	free(t->want);
	free(t->hs);
	free(t);
}

/* ---- I/O ---------------------------------------------------------------- */

int ftcp_fd(const struct ftcp *t)
{
	return t->epfd;
}

void ftcp_want(struct ftcp *t, int peer, bool in, bool out)
{
	unsigned ev = (in ? EPOLLIN : 0) | (out ? EPOLLOUT : 0);

	if (t->want[peer] == ev)
		return;
	t->want[peer] = ev;
	if (t->peer_fd[peer] < 0)
		return;
	struct epoll_event e = { .events = ev, .data.u64 = tag(K_PEER, peer) };
	epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->peer_fd[peer], &e);
}

int ftcp_ready(struct ftcp *t, int *ready, int max)
{
	return dispatch(t, 0, ready, max);
}

ssize_t ftcp_send(struct ftcp *t, int peer, const void *buf, size_t len)
{
	for (;;) {
		ssize_t n = send(t->peer_fd[peer], buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return errno == ECONNRESET ? -EPIPE : -errno;
	}
}

int ftcp_shutdown_wr(struct ftcp *t, int peer)
{
	if (t->peer_fd[peer] < 0)
		return -EBADF;
	return shutdown(t->peer_fd[peer], SHUT_WR) < 0 ? -errno : 0;
}

ssize_t ftcp_recv(struct ftcp *t, int peer, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(t->peer_fd[peer], buf, len, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return errno == ECONNRESET ? -EPIPE : -errno;
	}
}
