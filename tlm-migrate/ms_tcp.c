/* mstream TCP transport: non-blocking socket I/O, the sender's connect and
 * hello, the receiver's listen, accept and hello mapping. */
#define LOG_PREFIX "mstream"
#include "ms_core.h"
#include "ms_wire.h"
#include "ms_auth.h"
#include "vcfmt.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* "host:port", with brackets when host is an IPv6 address. */
static void ms_addr_name(char *buf, size_t len, const char *host, unsigned port)
{
	if (strchr(host, ':'))
		snprintf(buf, len, "[%s]:%u", host, port);
	else
		snprintf(buf, len, "%s:%u", host, port);
}

static void ms_sockaddr_name(char *buf, size_t len,
			     const struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 1], serv[8];

	if (getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host,
			sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, len, "?");
		return;
	}
	ms_addr_name(buf, len, host, (unsigned)atoi(serv));
}

/* ---- socket I/O --------------------------------------------------------
 *
 * Sockets are non-blocking; a wait is a poll() bounded either by a fixed
 * deadline (open step) or by io_timeout_ms since the last progress (stream
 * threads).  shutdown() from ms_stop() makes a pending poll() return.
 */

/* Deadline for the next wait: per-wait timeout tmo_ms when >= 0, else the
 * fixed deadline (< 0: none). */
static int64_t ms_wait_deadline(int64_t deadline, int tmo_ms)
{
	return tmo_ms >= 0 ? ms_now_ms() + tmo_ms : deadline;
}

static int sock_wait(int fd, short ev, int64_t deadline,
		     const atomic_bool *cancel)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r;

	for (;;) {
		if (cancel && atomic_load(cancel))
			return -ECANCELED;
		r = poll(&p, 1, ms_left(deadline));
		if (r > 0)
			return 0;	/* the next call says what happened */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Write all of iov.  MSG_NOSIGNAL: a dead peer is an -EPIPE, not SIGPIPE. */
static int sock_sendv(int fd, struct iovec *iov, int iovcnt, int64_t deadline,
		      int tmo_ms, const atomic_bool *cancel)
{
	struct msghdr mh = { 0 };
	ssize_t n;
	int r;

	while (iovcnt > 0) {
		if (iov->iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)iovcnt;
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			r = sock_wait(fd, POLLOUT,
				      ms_wait_deadline(deadline, tmo_ms), cancel);
			if (r)
				return r;
			continue;
		}
		while (n > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int sock_send(int fd, const void *buf, size_t len, int64_t deadline,
		     int tmo_ms, const atomic_bool *cancel)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return sock_sendv(fd, &iov, 1, deadline, tmo_ms, cancel);
}

/* Read len bytes; see ms_ops.recv for the result. */
static int sock_recv(int fd, void *buf, size_t len, size_t *got,
		     int64_t deadline, int tmo_ms, const atomic_bool *cancel)
{
	ssize_t n;
	int r;

	*got = 0;
	while (*got < len) {
		n = recv(fd, (char *)buf + *got, len - *got, MSG_DONTWAIT);
		if (n > 0) {
			*got += (size_t)n;
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		r = sock_wait(fd, POLLIN, ms_wait_deadline(deadline, tmo_ms),
			      cancel);
		if (r)
			return r;
	}
	return 0;
}

/* Socket options the caller asked for; failures only cost performance. */
static void sock_tune(struct mstream *ms, int fd, bool before_connect)
{
	int one = 1, sz = ms->o.sockbuf;

	if (sz > 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	if (ms->o.nodelay && !before_connect)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- TCP transport, both roles -------------------------------------------- */

static int tcp_send(struct ms_chan *ch, struct iovec *iov, int iovcnt)
{
	return sock_sendv(ch->fd, iov, iovcnt, -1, ch->ms->o.io_timeout_ms,
			  &ch->ms->exiting);
}

static int tcp_recv(struct ms_chan *ch, void *buf, size_t len, size_t *got)
{
	return sock_recv(ch->fd, buf, len, got, -1, ch->ms->o.io_timeout_ms,
			 &ch->ms->exiting);
}

static void tcp_abort(struct ms_chan *ch)
{
	if (ch->fd >= 0)
		shutdown(ch->fd, SHUT_RDWR);
}

/* Sender, after its end-of-stream chunk: wait for the receiver to say it has
 * seen everything, so a 0 from mstream_finish() means delivered. */
static int tcp_send_finish(struct ms_chan *ch)
{
	struct mstream *ms = ch->ms;
	uint8_t ack[MS_REPLY_MAX];
	size_t size = ms_reply_size(ms), got;
	char why[256];
	int r;

	r = tcp_recv(ch, ack, size, &got);
	if (r == -ECANCELED)
		return r;
	if (r == -ETIMEDOUT)
		return ms_fail_ch(ch, r, "no end acknowledgement from the receiver within %d ms",
				  ms->o.io_timeout_ms);
	if (r)
		return ms_fail_ch(ch, r, "waiting for the end acknowledgement: %s",
				  strerror(-r));
	if (got < size)
		return ms_fail_ch(ch, -EPIPE, "peer closed before acknowledging the end of stream (%zu of %zu bytes)",
				  got, size);
	r = ms_check_reply(ms, ch, ack, MS_KIND_ENDACK, ch->idx, NULL, NULL,
			   why, sizeof(why));
	if (r)
		return ms_fail_ch(ch, r, "%s", why);
	shutdown(ch->fd, SHUT_RDWR);
	return 0;
}

/* Receiver, after the end-of-stream chunk and every callback before it. */
static int tcp_recv_finish(struct ms_chan *ch)
{
	struct mstream *ms = ch->ms;
	uint8_t ack[MS_REPLY_MAX];
	int r;

	r = ms_encode_reply(ms, ch, ack, MS_KIND_ENDACK, ch->idx, 0,
			    "end of stream received", NULL, NULL);
	if (r)
		return ms_fail_ch(ch, r, "end acknowledgement: %s",
				  strerror(-r));
	r = sock_send(ch->fd, ack, ms_reply_size(ms), -1, ms->o.io_timeout_ms,
		      &ms->exiting);
	if (r == -ECANCELED)
		return r;
	if (r)
		return ms_fail_ch(ch, r, "sending the end acknowledgement: %s",
				  strerror(-r));
	shutdown(ch->fd, SHUT_WR);
	return 0;
}

/* ---- TCP sender: connect and hello --------------------------------------- */

static bool connect_retryable(int err)
{
	return err == ECONNREFUSED || err == ETIMEDOUT || err == ECONNRESET ||
	       err == EHOSTUNREACH || err == ENETUNREACH || err == EAGAIN;
}

/* Connect ch to a, retrying refused attempts until deadline.  Returns 0 with
 * ch->fd set, or the recorded error, which says what the attempts met:
 * every one refused (nobody listening there: the receiver is not up, or
 * has exited), or one left unanswered (SYNs lost, or a listener that
 * takes no connection) after how many refusals. */
static int tcp_connect_one(struct ms_chan *ch, const struct mstream_addr *a,
			   int64_t deadline)
{
	struct mstream *ms = ch->ms;
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV,
	};
	struct addrinfo *res, *ai;
	char port[8];
	int fd, r, last = 0, soerr;
	unsigned attempts = 0, refused = 0;
	int64_t t_start = ms_now_ms(), t_unanswered = 0;
	socklen_t sl;

	if (a->port == 0)
		return ms_fail_ch(ch, -EINVAL, "port 0 is not a destination");
	snprintf(port, sizeof(port), "%u", a->port);
	r = getaddrinfo(a->host, port, &hints, &res);
	if (r)
		return ms_fail_ch(ch, -EHOSTUNREACH, "resolve: %s",
				  r == EAI_SYSTEM ? strerror(errno) :
				  gai_strerror(r));
	for (;;) {
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype |
				    SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd < 0) {
				last = errno;
				continue;
			}
			sock_tune(ms, fd, true);
			attempts++;
			int64_t t_try = ms_now_ms();
			r = connect(fd, ai->ai_addr, ai->ai_addrlen);
			if (r < 0 && errno == EINPROGRESS) {
				r = sock_wait(fd, POLLOUT, deadline, NULL);
				if (r == 0) {
					sl = sizeof(soerr);
					if (getsockopt(fd, SOL_SOCKET, SO_ERROR,
						       &soerr, &sl))
						soerr = errno;
					errno = soerr;
					r = soerr ? -1 : 0;
				} else {
					errno = -r;
					r = -1;
				}
			}
			if (r == 0) {
				freeaddrinfo(res);
				sock_tune(ms, fd, false);
				ch->fd = fd;
				return 0;
			}
			if (errno == ECONNREFUSED)
				refused++;
			if (errno == ETIMEDOUT)
				t_unanswered = ms_now_ms() - t_try;
			/* Our own deadline says less than the last refusal. */
			if (errno != ETIMEDOUT || !last)
				last = errno;
			close(fd);
			if (!connect_retryable(last)) {
				freeaddrinfo(res);
				return ms_fail_ch(ch, -last, "connect: %s",
						  strerror(last));
			}
		}
		if (ms_left(deadline) == 0)
			break;
		/* Nobody listens yet: the receiver may still be starting. */
		usleep(1000 * (useconds_t)(ms_left(deadline) < MS_CONNECT_RETRY_MS ?
					   ms_left(deadline) : MS_CONNECT_RETRY_MS));
	}
	freeaddrinfo(res);
	if (t_unanswered)
		return ms_fail_ch(ch, -ETIMEDOUT, "connect: no answer within %d ms: the last of %u attempts got none for %lld ms, after %u refused (SYNs lost, or a listener that takes no connection)",
				  ms->o.timeout_ms, attempts, (long long)t_unanswered,
				  refused);
	if (refused && refused == attempts)
		return ms_fail_ch(ch, -ETIMEDOUT, "connect: nobody listening: all %u attempts in %lld ms refused (%s): is the receiver up, or has it exited?",
				  attempts, (long long)(ms_now_ms() - t_start),
				  strerror(ECONNREFUSED));
	return ms_fail_ch(ch, -ETIMEDOUT, "connect: no listener accepted within %d ms (%u attempts, %u refused; last error: %s)",
			  ms->o.timeout_ms, attempts, refused,
			  strerror(last ? last : ETIMEDOUT));
}

static int tcp_connect_open(struct mstream *ms, const void *where, int naddrs)
{
	const struct mstream_addr *addrs = where;
	int64_t deadline = ms_deadline(ms->o.timeout_ms);
	uint8_t chal[MS_CHAL_SIZE] = { 0 }, hello[MS_HELLO_MAX];
	uint8_t reply[MS_REPLY_MAX];
	size_t hsize = ms_hello_size(ms), rsize = ms_reply_size(ms), got;
	char name[MSTREAM_HOST_MAX + 16], why[256];
	struct ms_chan *ch;
	int i, r;

	for (i = 0; i < ms->o.nstreams; i++) {
		const struct mstream_addr *a = &addrs[i % naddrs];

		ch = &ms->ch[i];
		ms_addr_name(name, sizeof(name), a->host, a->port);
		ch->name = strdup(name);
		if (!ch->name)
			return ms_fail(ms, -ENOMEM, "out of memory");
		r = tcp_connect_one(ch, a, deadline);
		if (r)
			return r;
		if (ms->auth) {
			/* v2: the receiver speaks first, with a fresh nonce
			 * that our hello's MAC covers. */
			r = sock_recv(ch->fd, chal, sizeof(chal), &got,
				      deadline, -1, NULL);
			if (r == -ETIMEDOUT)
				return ms_fail_ch(ch, r, "no challenge within %d ms (an unauthenticated receiver? it needs the secret too)",
						  ms->o.timeout_ms);
			if (r)
				return ms_fail_ch(ch, r, "waiting for the challenge: %s",
						  strerror(-r));
			if (got < sizeof(chal))
				return ms_fail_ch(ch, -EPIPE, "peer closed before its challenge (%zu of %zu bytes)",
						  got, sizeof(chal));
			r = ms_check_challenge(ms, chal, why, sizeof(why));
			if (r)
				return ms_fail_ch(ch, r, "challenge: %s", why);
		}
		r = ms_encode_hello(ms, hello, i, chal);
		if (r)
			return ms_fail_ch(ch, r, "hello: %s", strerror(-r));
		r = sock_send(ch->fd, hello, hsize, deadline, -1, NULL);
		if (r)
			return ms_fail_ch(ch, r, "sending hello: %s",
					  strerror(-r));
		r = sock_recv(ch->fd, reply, rsize, &got, deadline, -1, NULL);
		if (r == -ETIMEDOUT)
			return ms_fail_ch(ch, r, "no hello reply within %d ms",
					  ms->o.timeout_ms);
		if (r)
			return ms_fail_ch(ch, r, "waiting for the hello reply: %s",
					  strerror(-r));
		if (got < rsize)
			return ms_fail_ch(ch, -EPIPE, "peer closed before replying to the hello (%zu of %zu bytes)",
					  got, rsize);
		r = ms_check_reply(ms, ch, reply, MS_KIND_REPLY, i, chal, hello,
				   why, sizeof(why));
		if (r)
			return ms_fail_ch(ch, r, "%s", why);
		if (ms->auth) {
			r = ms_auth_stream(ch, chal, hello);
			if (r)
				return ms_fail_ch(ch, r, "stream key: %s",
						  strerror(-r));
		}
	}
	return 0;
}

/* ---- TCP receiver: listen, accept and hello ------------------------------- */

int mstream_listen(struct mstream *ms, const struct mstream_addr *addrs,
		   int naddrs)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *res;
	char name[MSTREAM_HOST_MAX + 16], port[8];
	int i, j, fd, r, one = 1;

	if (ms->role != MS_ROLE_NONE || naddrs < 1 || naddrs > ms->o.nstreams)
		return -EINVAL;
	ms->role = MS_ROLE_RECV;
	for (i = 0; i < naddrs; i++) {
		const struct mstream_addr *a = &addrs[i];

		ms->lfd[i] = -1;
		ms->nlisten = i + 1;
		ms_addr_name(name, sizeof(name), a->host, a->port);
		/* The same endpoint twice is listened on once. */
		for (j = 0; j < i && a->port; j++)
			if (a->port == addrs[j].port &&
			    !strcmp(a->host, addrs[j].host))
				break;
		if (j < i && a->port) {
			ms->lport[i] = ms->lport[j];
			continue;
		}
		snprintf(port, sizeof(port), "%u", a->port);
		r = getaddrinfo(a->host, port, &hints, &res);
		if (r)
			return ms_fail(ms, -EADDRNOTAVAIL, "listen on %s: resolve: %s",
				       name, r == EAI_SYSTEM ? strerror(errno) :
				       gai_strerror(r));
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
			    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			freeaddrinfo(res);
			return ms_fail(ms, r, "listen on %s: socket: %s", name,
				       strerror(-r));
		}
		ms->lfd[i] = fd;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Accepted sockets inherit the buffer sizes; the receive
		 * window scale is fixed at the handshake, so set them now. */
		sock_tune(ms, fd, true);
		if (bind(fd, res->ai_addr, res->ai_addrlen) ||
		    listen(fd, SOMAXCONN)) {
			r = -errno;
			freeaddrinfo(res);
			return ms_fail(ms, r, "listen on %s: %s", name,
				       strerror(-r));
		}
		freeaddrinfo(res);
		sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl))
			return ms_fail(ms, -errno, "listen on %s: getsockname: %s",
				       name, strerror(errno));
		ms->lport[i] = ntohs(ss.ss_family == AF_INET6 ?
				     ((struct sockaddr_in6 *)&ss)->sin6_port :
				     ((struct sockaddr_in *)&ss)->sin_port);
	}
	ms->state = MS_LISTENING;
	return 0;
}

int mstream_listen_port(const struct mstream *ms, int i)
{
	if (ms->state < MS_LISTENING || i < 0 || i >= ms->nlisten)
		return -EINVAL;
	return ms->lport[i];
}

void ms_tcp_close_listeners(struct mstream *ms)
{
	int i;

	for (i = 0; i < ms->nlisten; i++) {
		if (ms->lfd[i] >= 0)
			close(ms->lfd[i]);
		ms->lfd[i] = -1;
	}
}

/* A connection accepted but not yet mapped: its hello is still arriving. */
struct ms_pending {
	int fd;
	size_t got;			/* hello bytes so far */
	int64_t since;			/* accepted at, ms */
	uint64_t order;			/* accept order: the oldest goes first */
	struct sockaddr_storage ss;	/* the peer, for the per-address bound */
	uint8_t chal[MS_CHAL_SIZE];	/* v2: the challenge it was sent */
	uint8_t hello[MS_HELLO_MAX];
	char name[INET6_ADDRSTRLEN + 16];
};

/* The accept step's state; only the controlling thread. */
struct ms_accept {
	struct mstream *ms;
	struct ms_pending *pend;	/* MS_MAX_PENDING slots */
	int npend;
	int nmapped;
	uint64_t next_order;
	unsigned dropped;		/* connections dropped so far */
	char last_drop[320];		/* the last one and why */
};

static bool same_host(const struct sockaddr_storage *a,
		      const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

/* Read and discard what fd has received so far (up to 64 KiB). */
static void tcp_drain(int fd)
{
	char scratch[4096];

	for (int i = 0; i < 16; i++)
		if (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
			break;
}

/*
 * Drop pending connection i: not one of our sender's streams (or the
 * oldest of too many).  With answer, it learns why first (best effort, a
 * refusal carries no MAC).  Logged one line each, up to MS_LOG_DROPS, then
 * summed up at the end of the accept.  Never fails the accept.
 */
__attribute__((format(printf, 4, 5)))
static void tcp_drop(struct ms_accept *a, int i, bool answer,
		     const char *fmt, ...)
{
	struct ms_pending *p = &a->pend[i];
	uint8_t reply[MS_REPLY_MAX];
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (answer && !ms_encode_reply(a->ms, NULL, reply, MS_KIND_REPLY, 0,
				       EPROTO, why, NULL, NULL))
		send(p->fd, reply, ms_reply_size(a->ms),
		     MSG_NOSIGNAL | MSG_DONTWAIT);
	/* Whatever else it sent goes unread: take what is there, so that the
	 * close is a FIN that lets the reply arrive, not a reset. */
	tcp_drain(p->fd);
	close(p->fd);
	a->dropped++;
	snprintf(a->last_drop, sizeof(a->last_drop), "%s: %s", p->name, why);
	if (a->dropped <= MS_LOG_DROPS)
		pr_warn("connection from %s dropped: %s", p->name, why);
	else if (a->dropped == MS_LOG_DROPS + 1)
		pr_warn("more connections dropped; counted at the end");
	a->pend[i] = a->pend[--a->npend];
}

/* Index of the oldest pending connection (from the same host as ss when
 * ss is not NULL), or -1. */
static int tcp_oldest(struct ms_accept *a, const struct sockaddr_storage *ss,
		      int *count)
{
	int i, best = -1;

	*count = 0;
	for (i = 0; i < a->npend; i++) {
		if (ss && !same_host(&a->pend[i].ss, ss))
			continue;
		(*count)++;
		if (best < 0 || a->pend[i].order < a->pend[best].order)
			best = i;
	}
	return best;
}

/*
 * A new connection: make room (a bound per peer address, so one host's
 * flood cannot push out another's streams, and one in all; the oldest
 * waiting goes, since our sender says hello at once), challenge it (v2)
 * and wait for its hello.
 */
static void tcp_new_conn(struct ms_accept *a, int fd,
			 const struct sockaddr_storage *ss)
{
	struct mstream *ms = a->ms;
	int limit = ms->o.nstreams - a->nmapped + MS_PENDING_PER_SOURCE;
	struct ms_pending *p;
	int old, n;

	old = tcp_oldest(a, ss, &n);
	if (n >= limit)
		tcp_drop(a, old, false, "more than %d connections waiting from this address: the oldest goes",
			 limit);
	else if (a->npend == MS_MAX_PENDING)
		tcp_drop(a, tcp_oldest(a, NULL, &n), false, "more than %d connections waiting: the oldest goes",
			 MS_MAX_PENDING);
	p = &a->pend[a->npend++];
	memset(p, 0, sizeof(*p));
	p->fd = fd;
	p->since = ms_now_ms();
	p->order = a->next_order++;
	p->ss = *ss;
	ms_sockaddr_name(p->name, sizeof(p->name), ss);
	if (!ms->auth)
		return;
	if (ms_encode_challenge(p->chal) ||
	    send(fd, p->chal, sizeof(p->chal), MSG_NOSIGNAL | MSG_DONTWAIT) !=
	    (ssize_t)sizeof(p->chal))
		tcp_drop(a, a->npend - 1, false, "cannot send the challenge: %s",
			 strerror(errno));
}

/* An authentic hello arrived on pending connection i: map it and answer
 * it or, when it does not fit (our own sender, misconfigured), refuse it
 * and fail the accept.  Either way it leaves the pending set.  0 or the
 * recorded error. */
static int tcp_take_hello(struct ms_accept *a, int i)
{
	struct mstream *ms = a->ms;
	struct ms_pending p = a->pend[i];	/* a copy: the slot is reused */
	uint8_t reply[MS_REPLY_MAX];
	char why[256];
	struct ms_chan *ch;
	int idx, r;

	a->pend[i] = a->pend[--a->npend];
	idx = ms_check_hello_fields(ms, p.hello, why, sizeof(why));
	if (idx >= 0 && ms->ch[idx].fd >= 0) {
		snprintf(why, sizeof(why), "stream %d already connected from %s",
			 idx, ms->ch[idx].name);
		idx = -EPROTO;
	}
	if (idx < 0) {
		/* Best effort: the peer learns why before we hang up. */
		if (!ms_encode_reply(ms, NULL, reply, MS_KIND_REPLY, 0, EPROTO,
				     why, NULL, NULL))
			send(p.fd, reply, ms_reply_size(ms),
			     MSG_NOSIGNAL | MSG_DONTWAIT);
		close(p.fd);
		return ms_fail(ms, -EPROTO, "hello from %s refused: %s", p.name,
			       why);
	}
	ch = &ms->ch[idx];
	ch->fd = p.fd;
	ch->name = strdup(p.name);
	if (!ch->name)
		return ms_fail(ms, -ENOMEM, "out of memory");
	sock_tune(ms, ch->fd, false);
	r = ms->auth ? ms_auth_stream(ch, p.chal, p.hello) : 0;
	if (!r)
		r = ms_encode_reply(ms, ch, reply, MS_KIND_REPLY, idx, 0,
				    "welcome", p.chal, p.hello);
	if (r)
		return ms_fail_ch(ch, r, "hello reply: %s", strerror(-r));
	r = sock_send(ch->fd, reply, ms_reply_size(ms),
		      ms_deadline(ms->o.timeout_ms), -1, NULL);
	if (r)
		return ms_fail_ch(ch, r, "sending the hello reply: %s",
				  strerror(-r));
	a->nmapped++;
	return 0;
}

/* Read what pending connection i has sent; drop it if that cannot be our
 * sender's hello.  1 when the hello is complete and authentic (the caller
 * maps it), 0 to wait, -1 when dropped. */
static int tcp_read_hello(struct ms_accept *a, int i)
{
	struct mstream *ms = a->ms;
	struct ms_pending *p = &a->pend[i];
	size_t size = ms_hello_size(ms);
	size_t want = p->got < MS_PREFIX_SIZE ? MS_PREFIX_SIZE : size;
	char why[256];
	ssize_t got;

	got = recv(p->fd, p->hello + p->got, want - p->got, MSG_DONTWAIT);
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (got <= 0) {
		/* Gone before its hello: a probe, not a stream. */
		tcp_drop(a, i, false, "closed after %zu bytes, before its hello",
			 p->got);
		return -1;
	}
	p->got += (size_t)got;
	if (p->got == MS_PREFIX_SIZE &&
	    ms_check_head(ms, p->hello, size, MS_KIND_HELLO, why, sizeof(why))) {
		/* Not what we expect at all: no point waiting for more. */
		tcp_drop(a, i, true, "%s", why);
		return -1;
	}
	if (p->got < size)
		return 0;
	if (ms_check_hello_auth(ms, p->hello, p->chal, why, sizeof(why))) {
		tcp_drop(a, i, true, "%s", why);
		return -1;
	}
	return 1;
}

static int tcp_accept_open(struct mstream *ms, const void *where, int n)
{
	int64_t deadline = ms_deadline(ms->o.timeout_ms), now, first;
	struct pollfd pfd[MSTREAM_MAX_STREAMS + MS_MAX_PENDING];
	struct ms_accept a = { .ms = ms };
	struct sockaddr_storage ss;
	int nfds, nl, i, r = 0, fd, tmo;
	socklen_t sl;

	a.pend = calloc(MS_MAX_PENDING, sizeof(*a.pend));
	if (!a.pend)
		return ms_fail(ms, -ENOMEM, "out of memory");
	while (a.nmapped < ms->o.nstreams) {
		if (ms_left(deadline) == 0) {
			r = ms_fail(ms, -ETIMEDOUT, "accept: %d of %d streams connected within %d ms%s%s",
				    a.nmapped, ms->o.nstreams, ms->o.timeout_ms,
				    a.dropped ? "; last connection dropped: " : "",
				    a.dropped ? a.last_drop : "");
			goto out_close_pending;
		}
		/* Silent connections go once their hello is overdue. */
		now = ms_now_ms();
		for (i = a.npend - 1; i >= 0; i--)
			if (now - a.pend[i].since >= ms->o.hello_timeout_ms)
				tcp_drop(&a, i, true, "no hello within %d ms",
					 ms->o.hello_timeout_ms);
		first = -1;
		for (i = 0; i < a.npend; i++)
			if (first < 0 || a.pend[i].since < first)
				first = a.pend[i].since;
		tmo = ms_left(deadline);
		if (first >= 0 && (tmo < 0 ||
				   first + ms->o.hello_timeout_ms - now < tmo))
			tmo = (int)(first + ms->o.hello_timeout_ms - now);
		nfds = 0;
		for (i = 0; i < ms->nlisten; i++)
			if (ms->lfd[i] >= 0)
				pfd[nfds++] = (struct pollfd){ ms->lfd[i], POLLIN, 0 };
		nl = nfds;
		for (i = 0; i < a.npend; i++)
			pfd[nfds++] = (struct pollfd){ a.pend[i].fd, POLLIN, 0 };
		if (poll(pfd, (nfds_t)nfds, tmo) < 0) {
			if (errno == EINTR)
				continue;
			r = ms_fail(ms, -errno, "accept: poll: %s",
				    strerror(errno));
			goto out_close_pending;
		}
		/* Hello bytes, from the last: removing entry i moves the last
		 * one (already seen) into its slot, the pfd of the others
		 * stay where they were. */
		for (i = a.npend - 1; i >= 0; i--) {
			if (!pfd[nl + i].revents)
				continue;
			if (tcp_read_hello(&a, i) != 1)
				continue;
			r = tcp_take_hello(&a, i);
			if (r)
				goto out_close_pending;
		}
		/* New connections: the first nl entries are listeners. */
		for (i = 0; i < nl; i++) {
			if (!pfd[i].revents)
				continue;
			sl = sizeof(ss);
			fd = accept4(pfd[i].fd, (struct sockaddr *)&ss, &sl,
				     SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno == EAGAIN || errno == EINTR ||
				    errno == ECONNABORTED)
					continue;
				r = ms_fail(ms, -errno, "accept: %s",
					    strerror(errno));
				goto out_close_pending;
			}
			tcp_new_conn(&a, fd, &ss);
		}
	}
out_close_pending:
	if (a.dropped > MS_LOG_DROPS)
		pr_warn("%u connections dropped in all while accepting (last: %s)",
			a.dropped, a.last_drop);
	for (i = 0; i < a.npend; i++)
		close(a.pend[i].fd);
	free(a.pend);
	ms_tcp_close_listeners(ms);
	return r;
}

const struct ms_ops ms_tcp_send_ops = {
	.name = "tcp-send",
	.open = tcp_connect_open,
	.send = tcp_send,
	.recv = tcp_recv,
	.finish = tcp_send_finish,
	.abort = tcp_abort,
	.close = ms_fd_close,
	.eof_mid = "peer closed mid-chunk",
	.eof_between = "peer closed before the end-of-stream marker",
	.eof_err = -EPIPE,
};

const struct ms_ops ms_tcp_recv_ops = {
	.name = "tcp-recv",
	.open = tcp_accept_open,
	.send = tcp_send,
	.recv = tcp_recv,
	.finish = tcp_recv_finish,
	.abort = tcp_abort,
	.close = ms_fd_close,
	.eof_mid = "peer closed mid-chunk",
	.eof_between = "peer closed before the end-of-stream marker",
	.eof_err = -EPIPE,
};

