/* jobspec: the job-file format shared by vcluster programs.
 *
 * A job file holds one setting per line:
 *
 *     # comment
 *     memory    = 256M
 *     guest-cmd = "vcluster-traffic --all --seconds 20"
 *
 * Keys are the long option names of the program reading the file; a value
 * may be wrapped in double quotes (then \" and \\ escape).  Blank lines and
 * lines starting with '#' are skipped.  The parser hands each pair to a
 * callback that validates it; any error comes back as "FILE:LINE: reason".
 */
#ifndef VC_JOBSPEC_H
#define VC_JOBSPEC_H

#include <stddef.h>

/* Return 0 to accept key=value, or -errno and a reason in why. */
typedef int (*jobspec_cb)(void *ctx, const char *key, const char *value,
			  char *why, size_t whylen);

/* Parse path.  Returns 0, or -errno with "path:line: reason" in err. */
int jobspec_parse_file(const char *path, jobspec_cb cb, void *ctx,
		       char *err, size_t errlen);

/* The same for text already in memory; name is used in messages. */
int jobspec_parse_text(const char *name, const char *text, jobspec_cb cb,
		       void *ctx, char *err, size_t errlen);

#endif
