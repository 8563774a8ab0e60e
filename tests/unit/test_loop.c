/* The event loop and the worker: descriptor callbacks, one-shot and
 * periodic timers, the before-sleep hook's timeout, signals through the
 * signalfd, and worker jobs whose completion comes back through the
 * eventfd in the loop, in order, with nothing blocking the loop. */
#include "test.h"
#include "loop.h"
#include "vctime.h"
#include "worker.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int reads, once_fired, periodic_fired, hook_calls, signals_seen;
static int done_order[8], ndone;

static void on_pipe(struct loop *l, int fd, unsigned ev, void *ctx)
{
	char buf[16];
	CHECK(ev & LOOP_IN);
	CHECK(read(fd, buf, sizeof(buf)) > 0);
	reads++;
}

static void on_once(struct loop *l, void *ctx)
{
	once_fired++;
}

static void on_periodic(struct loop *l, void *ctx)
{
	periodic_fired++;
}

static int hook(struct loop *l, void *ctx)
{
	hook_calls++;
	return *(int *)ctx;
}

static void on_sig(struct loop *l, int signo, void *ctx)
{
	CHECK_EQ(signo, SIGUSR2);
	signals_seen++;
}

struct job {
	int id;
	int nap_ms;
	pthread_t ran_on;
};

static void job_run(void *p)
{
	struct job *j = p;
	struct timespec ts = { 0, j->nap_ms * 1000000L };
	nanosleep(&ts, NULL);
	j->ran_on = pthread_self();
}

static void job_done(void *p)
{
	struct job *j = p;
	done_order[ndone++] = j->id;
}

static void on_worker(struct loop *l, int fd, unsigned ev, void *ctx)
{
	worker_dispatch(ctx);
}

int main(void)
{
	struct loop *l = loop_create();
	int pfd[2], timeout = 50;

	CHECK(l);
	CHECK(pipe(pfd) == 0);
	CHECK_EQ(loop_add_fd(l, pfd[0], LOOP_IN, on_pipe, NULL), 0);
	loop_set_before_sleep(l, hook, &timeout);

	/* the hook's timeout bounds the sleep; nothing ready: no callback */
	double t0 = vc_mono_s();
	CHECK_EQ(loop_run_once(l, -1), 0);
	double dt = vc_mono_s() - t0;
	CHECK(dt >= 0.045 && dt < 1.0);
	CHECK_EQ(hook_calls, 1);
	CHECK_EQ(reads, 0);

	/* a readable descriptor wakes the loop at once */
	timeout = -1;
	CHECK(write(pfd[1], "x", 1) == 1);
	t0 = vc_mono_s();
	CHECK_EQ(loop_run_once(l, 5000), 0);
	CHECK(vc_mono_s() - t0 < 1.0);
	CHECK_EQ(reads, 1);

	/* silenced, then removed: no more callbacks */
	CHECK_EQ(loop_mod_fd(l, pfd[0], 0), 0);
	CHECK(write(pfd[1], "y", 1) == 1);
	CHECK_EQ(loop_run_once(l, 20), 0);
	CHECK_EQ(reads, 1);
	CHECK_EQ(loop_mod_fd(l, pfd[0], LOOP_IN), 0);
	CHECK_EQ(loop_run_once(l, 20), 0);
	CHECK_EQ(reads, 2);
	loop_del_fd(l, pfd[0]);
	CHECK(!loop_watching(l, pfd[0]));
	CHECK(write(pfd[1], "z", 1) == 1);
	CHECK_EQ(loop_run_once(l, 20), 0);
	CHECK_EQ(reads, 2);

	/* timers */
	timeout = 10;
	CHECK(loop_add_timer(l, 30, 0, on_once, NULL));
	struct loop_timer *per = loop_add_timer(l, 10, 10, on_periodic, NULL);
	CHECK(per);
	t0 = vc_mono_s();
	while (vc_mono_s() - t0 < 0.2)
		CHECK_EQ(loop_run_once(l, -1), 0);
	CHECK_EQ(once_fired, 1);
	CHECK(periodic_fired >= 5);
	loop_del_timer(l, per);
	int before = periodic_fired;
	for (int i = 0; i < 5; i++)
		loop_run_once(l, 10);
	CHECK_EQ(periodic_fired, before);

	/* signals */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	CHECK_EQ(loop_add_signals(l, &set, on_sig, NULL), 0);
	kill(getpid(), SIGUSR2);
	for (int i = 0; i < 10 && !signals_seen; i++)
		loop_run_once(l, 50);
	CHECK_EQ(signals_seen, 1);

	/* worker: slow jobs run off the loop thread; the loop keeps passing
	 * while they run; completions come back in order of finishing */
	struct worker *w = worker_create(2);
	CHECK(w);
	CHECK_EQ(loop_add_fd(l, worker_fd(w), LOOP_IN, on_worker, w), 0);
	struct job a = { .id = 1, .nap_ms = 300 }, b = { .id = 2, .nap_ms = 20 };
	CHECK_EQ(worker_submit(w, job_run, job_done, &a), 0);
	CHECK_EQ(worker_submit(w, job_run, job_done, &b), 0);
	CHECK_EQ(worker_pending(w), 2);
	int passes = 0;
	t0 = vc_mono_s();
	while (worker_pending(w) && vc_mono_s() - t0 < 5) {
		loop_run_once(l, 10);
		passes++;
	}
	CHECK_EQ(worker_pending(w), 0);
	CHECK(passes >= 10);	/* the loop went on while job 1 slept */
	CHECK_EQ(ndone, 2);
	CHECK_EQ(done_order[0], 2);
	CHECK_EQ(done_order[1], 1);
	CHECK(!pthread_equal(a.ran_on, pthread_self()));

	/* destroy finishes what is queued, done() included */
	struct job c = { .id = 3, .nap_ms = 50 };
	CHECK_EQ(worker_submit(w, job_run, job_done, &c), 0);
	loop_del_fd(l, worker_fd(w));
	worker_destroy(w);
	CHECK_EQ(ndone, 3);
	CHECK_EQ(done_order[2], 3);

	loop_destroy(l);
	close(pfd[0]);
	close(pfd[1]);
	return 0;
}
