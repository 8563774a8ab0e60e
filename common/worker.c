#define LOG_PREFIX "worker"
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define WORKER_MAX_THREADS 8

struct job {
	worker_fn run;		/* set at submit, read-only after */
	worker_fn done;		/* set at submit, read-only after */
	void *arg;		/* owned by run() until done() is called */
	struct job *next;	/* under worker.mutex */
};

struct worker {
	/* set at creation, read-only after */
	int efd;		/* eventfd: a job finished */
	int nthreads;
	pthread_t threads[WORKER_MAX_THREADS];

	/* under mutex */
	pthread_mutex_t mutex;
	pthread_cond_t cond;	/* signalled when todo gains a job or quit */
	struct job *todo, *todo_tail;	/* queued, oldest first */
	struct job *fin, *fin_tail;	/* finished, done() not yet called */
	bool quit;

	/* loop thread only */
	int pending;		/* submitted, done() not yet called */
};

static void push(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

static struct job *pop(struct job **head, struct job **tail)
{
	struct job *j = *head;

	if (j) {
		*head = j->next;
		if (!*head)
			*tail = NULL;
	}
	return j;
}

static void *worker_main(void *p)
{
	struct worker *w = p;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&w->mutex);
	for (;;) {
		struct job *j = pop(&w->todo, &w->todo_tail);
		if (!j) {
			if (w->quit)
				break;
			pthread_cond_wait(&w->cond, &w->mutex);
			continue;
		}
		pthread_mutex_unlock(&w->mutex);
		j->run(j->arg);		/* j->arg is run()'s now */
		pthread_mutex_lock(&w->mutex);
		push(&w->fin, &w->fin_tail, j);
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* cannot fail short of a counter overflow */
		}
	}
	pthread_mutex_unlock(&w->mutex);
	return NULL;
}

struct worker *worker_create(int nthreads)
{
	struct worker *w;
	sigset_t all, old;

	if (nthreads < 1 || nthreads > WORKER_MAX_THREADS) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0)
		goto out_free;
	pthread_mutex_init(&w->mutex, NULL);
	pthread_cond_init(&w->cond, NULL);
	/* threads start with every signal blocked (signalfd gets them) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < nthreads; i++) {
		int r = pthread_create(&w->threads[i], NULL, worker_main, w);
		if (r) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			errno = r;
			worker_destroy(w);
			return NULL;
		}
		w->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return w;
out_free:
	free(w);
	return NULL;
}

int worker_fd(const struct worker *w)
{
	return w->efd;
}

int worker_submit(struct worker *w, worker_fn run, worker_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->run = run;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->mutex);
	push(&w->todo, &w->todo_tail, j);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mutex);
	w->pending++;
	return 0;
}

int worker_dispatch(struct worker *w)
{
	uint64_t cnt;
	int n = 0;

	if (read(w->efd, &cnt, sizeof(cnt)) < 0) {
		/* EAGAIN: nothing signalled; the list decides anyway */
	}
	for (;;) {
		pthread_mutex_lock(&w->mutex);
		struct job *j = pop(&w->fin, &w->fin_tail);
		pthread_mutex_unlock(&w->mutex);
		if (!j)
			break;
		w->pending--;
		if (j->done)
			j->done(j->arg);	/* j->arg is the submitter's again */
		free(j);
		n++;
	}
	return n;
}

int worker_pending(const struct worker *w)
{
	return w->pending;
}

void worker_destroy(struct worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mutex);
	w->quit = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mutex);
	for (int i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	worker_dispatch(w);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mutex);
	close(w->efd);
	free(w);
}
