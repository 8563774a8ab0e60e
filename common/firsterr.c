#include "firsterr.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

void firsterr_init(struct firsterr *fe)
{
	pthread_mutex_init(&fe->lock, NULL);
	fe->err = 0;
	fe->code = 0;
	fe->msg[0] = '\0';
}

void firsterr_destroy(struct firsterr *fe)
{
	pthread_mutex_destroy(&fe->lock);
}

void firsterr_clear(struct firsterr *fe)
{
	pthread_mutex_lock(&fe->lock);
	fe->err = 0;
	fe->code = 0;
	fe->msg[0] = '\0';
	pthread_mutex_unlock(&fe->lock);
}

bool firsterr_set(struct firsterr *fe, int err, int code, const char *fmt, ...)
{
	va_list ap;
	bool first;

	pthread_mutex_lock(&fe->lock);
	first = fe->err == 0;
	if (first) {
		fe->err = err ? err : -EIO;
		fe->code = code;
		va_start(ap, fmt);
		vsnprintf(fe->msg, sizeof(fe->msg), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&fe->lock);
	return first;
}

int firsterr_get(struct firsterr *fe, int *code, char *buf, size_t len)
{
	int err;

	pthread_mutex_lock(&fe->lock);
	err = fe->err;
	if (code)
		*code = fe->code;
	if (buf && len)
		snprintf(buf, len, "%s", fe->msg);
	pthread_mutex_unlock(&fe->lock);
	return err;
}
