/* log: leveled, rank-tagged logging shared by every vcluster program.
 *
 * Each .c file defines LOG_PREFIX (e.g. "fabric") before including this
 * header.  Every line carries a timestamp, the rank (when known) and the
 * prefix, so a multi-rank log stays readable.  Lines go to the rank's log
 * file (all levels up to the configured one) and to stderr (warnings and
 * errors always; info when the console level allows).
 */
#ifndef VC_LOG_H
#define VC_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_ERR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* Name the program and rank (rank < 0: none) that tag every line. */
void log_init(const char *prog, int rank);
/* Also write every line up to file_level into path (appended, mode 0600).
 * Returns 0 or -errno. */
int log_open_file(const char *path, enum log_level file_level);
void log_set_console_level(enum log_level level);
void log_close(void);

void log_msg(enum log_level level, const char *prefix, int errnum,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void log_vmsg(enum log_level level, const char *prefix, int errnum,
	      const char *fmt, va_list ap);

#ifndef LOG_PREFIX
#define LOG_PREFIX "vcluster"
#endif

#define pr_err(...)   log_msg(LOG_ERR, LOG_PREFIX, 0, __VA_ARGS__)
#define pr_warn(...)  log_msg(LOG_WARN, LOG_PREFIX, 0, __VA_ARGS__)
#define pr_info(...)  log_msg(LOG_INFO, LOG_PREFIX, 0, __VA_ARGS__)
#define pr_debug(...) log_msg(LOG_DEBUG, LOG_PREFIX, 0, __VA_ARGS__)
/* errno-style variants: err is a positive or negative errno value. */
#define pr_errno(err, ...)  log_msg(LOG_ERR, LOG_PREFIX, (err), __VA_ARGS__)
#define pr_wernno(err, ...) log_msg(LOG_WARN, LOG_PREFIX, (err), __VA_ARGS__)

#endif
