/* worker: slow work (fsync, whole-file CRC32C, qemu-img) off the event loop.
 *
 * A few threads take jobs from one FIFO queue.  A job is two functions and
 * an argument: run(arg) on a worker thread, then done(arg) back on the
 * thread that owns the event loop, from worker_dispatch(), which the loop
 * calls when worker_fd() (an eventfd) is readable.
 *
 * Ownership: from worker_submit() until its done() is called, the job's
 * argument and everything it points to belong to run() (the submitter must
 * not read or write it); after done() they are the submitter's again.  run()
 * never calls MPI, never logs, and reports through the argument.
 *
 * Threading: worker_submit(), worker_dispatch() and worker_destroy() are
 * called from one thread (the loop's).
 */
#ifndef VC_WORKER_H
#define VC_WORKER_H

struct worker;

typedef void (*worker_fn)(void *arg);

/* Start nthreads threads (1..8); every signal is blocked in them.  NULL
 * with errno. */
struct worker *worker_create(int nthreads);

/* Finish every queued job (their done() runs here), then stop the threads.
 * NULL is fine. */
void worker_destroy(struct worker *w);

/* The eventfd that becomes readable when a job has finished. */
int worker_fd(const struct worker *w);

/* Queue a job.  run must not be NULL; done may be.  0 or -ENOMEM. */
int worker_submit(struct worker *w, worker_fn run, worker_fn done, void *arg);

/* Call done() of every finished job, in the order they finished.  Returns
 * how many were dispatched. */
int worker_dispatch(struct worker *w);

/* Jobs submitted whose done() has not run yet. */
int worker_pending(const struct worker *w);

#endif
