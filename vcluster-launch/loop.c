#define LOG_PREFIX "loop"
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define LOOP_BATCH 64

struct watch {
	loop_fd_cb cb;		/* NULL: not watched */
	void *ctx;
	unsigned events;	/* LOOP_IN | LOOP_OUT as registered */
	unsigned gen;		/* bumped on every add: stale events are skipped */
};

struct loop_timer {
	struct loop *l;
	int fd;			/* timerfd */
	loop_timer_cb cb;
	void *ctx;
	bool once;
};

struct loop {
	int epfd;
	struct watch *w;	/* indexed by fd */
	int nw;
	int sigfd;
	loop_signal_cb sig_cb;
	void *sig_ctx;
	loop_hook hook;
	void *hook_ctx;
	bool stop;
};

static uint32_t to_epoll(unsigned ev)
{
	return (ev & LOOP_IN ? EPOLLIN : 0) | (ev & LOOP_OUT ? EPOLLOUT : 0);
}

struct loop *loop_create(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->sigfd = -1;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void loop_destroy(struct loop *l)
{
	if (!l)
		return;
	if (l->sigfd >= 0)
		close(l->sigfd);
	close(l->epfd);
	free(l->w);
	free(l);
}

static int grow(struct loop *l, int fd)
{
	if (fd < l->nw)
		return 0;
	int n = l->nw ? l->nw : 64;
	while (n <= fd)
		n *= 2;
	struct watch *nw = realloc(l->w, (size_t)n * sizeof(*nw));
	if (!nw)
		return -ENOMEM;
	memset(nw + l->nw, 0, (size_t)(n - l->nw) * sizeof(*nw));
	l->w = nw;
	l->nw = n;
	return 0;
}

int loop_add_fd(struct loop *l, int fd, unsigned events, loop_fd_cb cb, void *ctx)
{
	struct epoll_event ev = { .events = to_epoll(events) };
	int r;

	if (fd < 0 || !cb)
		return -EINVAL;
	r = grow(l, fd);
	if (r < 0)
		return r;
	struct watch *w = &l->w[fd];
	w->gen++;
	ev.data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		if (errno != EEXIST || epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			return -errno;
	}
	w->cb = cb;
	w->ctx = ctx;
	w->events = events;
	return 0;
}

int loop_mod_fd(struct loop *l, int fd, unsigned events)
{
	if (fd < 0 || fd >= l->nw || !l->w[fd].cb)
		return -ENOENT;
	struct watch *w = &l->w[fd];
	if (w->events == events)
		return 0;
	struct epoll_event ev = { .events = to_epoll(events),
				  .data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd };
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	w->events = events;
	return 0;
}

void loop_del_fd(struct loop *l, int fd)
{
	if (fd < 0 || fd >= l->nw || !l->w[fd].cb)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);	/* EBADF once closed: fine */
	l->w[fd].cb = NULL;
	l->w[fd].gen++;
}

bool loop_watching(const struct loop *l, int fd)
{
	return fd >= 0 && fd < l->nw && l->w[fd].cb;
}

static void on_signalfd(struct loop *l, int fd, unsigned events, void *ctx)
{
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si))
		l->sig_cb(l, (int)si.ssi_signo, l->sig_ctx);
}

int loop_add_signals(struct loop *l, const sigset_t *set, loop_signal_cb cb, void *ctx)
{
	if (l->sigfd >= 0)
		return -EBUSY;
	if (sigprocmask(SIG_BLOCK, set, NULL) < 0)
		return -errno;
	l->sigfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (l->sigfd < 0)
		return -errno;
	l->sig_cb = cb;
	l->sig_ctx = ctx;
	return loop_add_fd(l, l->sigfd, LOOP_IN, on_signalfd, NULL);
}

static void on_timerfd(struct loop *l, int fd, unsigned events, void *ctx)
{
	struct loop_timer *t = ctx;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	if (t->once) {
		/* the callback may free it; take what it needs first */
		loop_timer_cb cb = t->cb;
		void *tctx = t->ctx;
		loop_del_timer(l, t);
		cb(l, tctx);
		return;
	}
	t->cb(l, t->ctx);
}

static void ms_to_ts(int ms, struct timespec *ts)
{
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

struct loop_timer *loop_add_timer(struct loop *l, int first_ms, int period_ms,
				  loop_timer_cb cb, void *ctx)
{
	struct loop_timer *t = calloc(1, sizeof(*t));
	struct itimerspec its = { 0 };
	int r;

	if (!t)
		return NULL;
	t->l = l;
	t->cb = cb;
	t->ctx = ctx;
	t->once = period_ms <= 0;
	t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->fd < 0)
		goto out_free;
	ms_to_ts(first_ms > 0 ? first_ms : 1, &its.it_value);
	if (period_ms > 0)
		ms_to_ts(period_ms, &its.it_interval);
	if (timerfd_settime(t->fd, 0, &its, NULL) < 0)
		goto out_close;
	r = loop_add_fd(l, t->fd, LOOP_IN, on_timerfd, t);
	if (r < 0) {
		errno = -r;
		goto out_close;
	}
	return t;
out_close:
	close(t->fd);
out_free:
	free(t);
	return NULL;
}

void loop_del_timer(struct loop *l, struct loop_timer *t)
{
	if (!t)
		return;
	loop_del_fd(l, t->fd);
	close(t->fd);
	free(t);
}

void loop_set_before_sleep(struct loop *l, loop_hook hook, void *ctx)
{
	l->hook = hook;
	l->hook_ctx = ctx;
}

int loop_run_once(struct loop *l, int max_wait_ms)
{
	struct epoll_event evs[LOOP_BATCH];
	int timeout = l->hook ? l->hook(l, l->hook_ctx) : -1;

	if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms))
		timeout = max_wait_ms;
	int n = epoll_wait(l->epfd, evs, LOOP_BATCH, timeout);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		int fd = (int)(uint32_t)evs[i].data.u64;
		unsigned gen = (unsigned)(evs[i].data.u64 >> 32);
		/* removed or replaced by an earlier callback of this pass */
		if (fd >= l->nw || !l->w[fd].cb || l->w[fd].gen != gen)
			continue;
		struct watch *w = &l->w[fd];
		unsigned ev = (evs[i].events & EPOLLIN ? LOOP_IN : 0) |
			      (evs[i].events & EPOLLOUT ? LOOP_OUT : 0) |
			      (evs[i].events & (EPOLLERR | EPOLLHUP) ? LOOP_ERR : 0);
		w->cb(l, fd, ev, w->ctx);
	}
	return 0;
}

int loop_run(struct loop *l)
{
	l->stop = false;
	while (!l->stop) {
		int r = loop_run_once(l, -1);
		if (r < 0)
			return r;
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}
