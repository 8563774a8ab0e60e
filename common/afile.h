/* afile: files that appear whole or not at all, and private directories.
 *
 * afile_publish() writes to a temporary file beside the target, fsyncs it,
 * renames it over the target and fsyncs the directory, so a crash leaves
 * either the old content or the new one.
 */
#ifndef VC_AFILE_H
#define VC_AFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Write len bytes to path atomically with the given mode.  0 or -errno. */
int afile_publish(const char *path, const void *data, size_t len, mode_t mode);

/* fsync the directory that holds path.  0 or -errno. */
int afile_sync_dir_of(const char *path);

/* Create dir and its parents; the last component gets mode (e.g. 0700) and
 * is chmod-ed to it if it existed.  0 or -errno. */
int afile_mkdir_p(const char *dir, mode_t mode);

/* Write all of buf to fd, retrying short writes and EINTR.  0 or -errno. */
int afile_write_all(int fd, const void *buf, size_t len);

/* Read the whole file into a NUL-terminated malloc'd buffer (at most
 * max bytes).  0 or -errno (-EFBIG when larger). */
int afile_read_all(const char *path, size_t max, char **out, size_t *len);

#endif
