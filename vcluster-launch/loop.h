/* loop: the rank's one event loop (in the style of Redis' ae).
 *
 * One thread, one epoll set: descriptors with callbacks (the VM link, QMP,
 * control clients, the worker's eventfd), signals through a signalfd and
 * timers through timerfds.  Every pass runs the before-sleep hook first
 * (the MPI progress step: MPI has no descriptor, so the hook returns how
 * long the loop may sleep), then waits at most that long and calls the
 * callbacks of what became ready.  Callbacks must not block.
 *
 * Descriptors are level-triggered; a callback may add or remove any
 * watch, its own included.
 */
#ifndef VC_LOOP_H
#define VC_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_timer;

#define LOOP_IN		0x1u
#define LOOP_OUT	0x2u
#define LOOP_ERR	0x4u	/* error or hang-up (reported, never asked for) */

typedef void (*loop_fd_cb)(struct loop *l, int fd, unsigned events, void *ctx);
typedef void (*loop_timer_cb)(struct loop *l, void *ctx);
/* Returns the longest sleep allowed in ms (-1: until an event). */
typedef int (*loop_hook)(struct loop *l, void *ctx);
typedef void (*loop_signal_cb)(struct loop *l, int signo, void *ctx);

struct loop *loop_create(void);		/* NULL with errno */
void loop_destroy(struct loop *l);	/* NULL is fine; closes timers and the signalfd */

/* Watch fd for events (LOOP_IN | LOOP_OUT; 0 keeps it registered but
 * silent).  Adding an fd already watched replaces its watch (the old one
 * was for a descriptor since closed).  0 or -errno. */
int loop_add_fd(struct loop *l, int fd, unsigned events, loop_fd_cb cb, void *ctx);
/* Change the events of a watched fd (no system call when unchanged). */
int loop_mod_fd(struct loop *l, int fd, unsigned events);
/* Stop watching fd (call before closing it). */
void loop_del_fd(struct loop *l, int fd);
bool loop_watching(const struct loop *l, int fd);

/* Block the signals in set and deliver them to cb through a signalfd.  One
 * set per loop.  0 or -errno. */
int loop_add_signals(struct loop *l, const sigset_t *set, loop_signal_cb cb, void *ctx);

/* A timer firing after first_ms, then every period_ms (0: once).  NULL
 * with errno. */
struct loop_timer *loop_add_timer(struct loop *l, int first_ms, int period_ms,
				  loop_timer_cb cb, void *ctx);
void loop_del_timer(struct loop *l, struct loop_timer *t);	/* NULL is fine */

void loop_set_before_sleep(struct loop *l, loop_hook hook, void *ctx);

/* One pass: the hook, a wait of at most its timeout (and at most
 * max_wait_ms when >= 0), the callbacks.  0 or -errno from epoll. */
int loop_run_once(struct loop *l, int max_wait_ms);

/* Pass after pass until loop_stop(). */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
