#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
	char prog[32];
	int rank;
	FILE *file;
	enum log_level file_level;
	enum log_level console_level;
	pthread_mutex_t lock;
} log_state = {
	.prog = "vcluster",
	.rank = -1,
	.console_level = LOG_INFO,
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

void log_init(const char *prog, int rank)
{
	snprintf(log_state.prog, sizeof(log_state.prog), "%s", prog);
	log_state.rank = rank;
	if (getenv("VC_LOG_DEBUG"))
		log_state.console_level = LOG_DEBUG;
}

int log_open_file(const char *path, enum log_level file_level)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "a");
	if (!f) {
		int err = -errno;
		close(fd);
		return err;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	pthread_mutex_lock(&log_state.lock);
	if (log_state.file)
		fclose(log_state.file);
	log_state.file = f;
	log_state.file_level = file_level;
	pthread_mutex_unlock(&log_state.lock);
	return 0;
}

void log_set_console_level(enum log_level level)
{
	log_state.console_level = level;
}

void log_close(void)
{
	pthread_mutex_lock(&log_state.lock);
	if (log_state.file)
		fclose(log_state.file);
	log_state.file = NULL;
	pthread_mutex_unlock(&log_state.lock);
}

static const char *level_name[] = { "error", "warning", "info", "debug" };

void log_vmsg(enum log_level level, const char *prefix, int errnum,
	      const char *fmt, va_list ap)
{
	char body[1024], who[64], stamp[48];
	struct timeval tv;
	struct tm tm;
	int n;

	n = vsnprintf(body, sizeof(body), fmt, ap);
	if (errnum && n >= 0 && (size_t)n < sizeof(body))
		snprintf(body + n, sizeof(body) - n, ": %s",
			 strerror(errnum < 0 ? -errnum : errnum));

	if (log_state.rank >= 0)
		snprintf(who, sizeof(who), "%s[rank %d]", log_state.prog,
			 log_state.rank);
	else
		snprintf(who, sizeof(who), "%s", log_state.prog);

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = (int)strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ld", (long)tv.tv_usec / 1000);

	pthread_mutex_lock(&log_state.lock);
	if (level <= log_state.console_level) {
		if (level <= LOG_WARN)
			fprintf(stderr, "%s: %s: %s: %s\n", who,
				level_name[level], prefix, body);
		else
			fprintf(stderr, "%s: %s: %s\n", who, prefix, body);
	}
	if (log_state.file && level <= log_state.file_level)
		fprintf(log_state.file, "%s %s %-7s %s: %s\n", stamp, who,
			level_name[level], prefix, body);
	pthread_mutex_unlock(&log_state.lock);
}

void log_msg(enum log_level level, const char *prefix, int errnum,
	     const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	log_vmsg(level, prefix, errnum, fmt, ap);
	va_end(ap);
	errno = saved;
}
