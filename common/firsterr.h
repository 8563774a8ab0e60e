/* firsterr: keep the first error of an operation (later ones are usually
 * its consequences) with its one-line reason.  Thread-safe: any thread may
 * set it; the first setter wins.  (One keeper for vccp, the launcher, and,
 * when their owners move to it, tlm and mstream.) */
#ifndef VC_FIRSTERR_H
#define VC_FIRSTERR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define FIRSTERR_MSG_MAX 256

struct firsterr {
	pthread_mutex_t lock;
	int err;			/* 0, or the first -errno (under lock) */
	int code;			/* the caller's classification (under lock) */
	char msg[FIRSTERR_MSG_MAX];	/* its reason (under lock) */
};

void firsterr_init(struct firsterr *fe);
void firsterr_destroy(struct firsterr *fe);
/* Forget the error (a new operation starts). */
void firsterr_clear(struct firsterr *fe);
/* Keep err (negative errno; 0 counts as -EIO), code and the reason if
 * nothing is kept yet.  Returns true when this call was the first. */
bool firsterr_set(struct firsterr *fe, int err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The kept error (0 when none); its reason into buf (may be NULL). */
int firsterr_get(struct firsterr *fe, int *code, char *buf, size_t len);

#endif
