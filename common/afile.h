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

/* Write len bytes to path atomically with the given mode: a new temporary
 * file beside it (O_EXCL|O_NOFOLLOW: never one someone else made), fsync,
 * rename, fsync of the directory.  0 or -errno. */
int afile_publish(const char *path, const void *data, size_t len, mode_t mode);

/* fsync the directory that holds path.  0 or -errno. */
int afile_sync_dir_of(const char *path);

/* A private directory: created with mode (at most 0700); an existing one
 * is accepted only when lstat shows a directory (not a symlink) owned by
 * the effective uid with no group or other write, and is then chmod-ed to
 * mode.  0 or -errno with one line in why naming the path and what is
 * wrong ("... is owned by uid 1001, not by you (uid 1000)"). */
int afile_private_dir(const char *dir, mode_t mode, char *why, size_t whylen);
/* The same checks on an existing directory, creating nothing. */
int afile_check_private(const char *dir, char *why, size_t whylen);

/* Create dir and its parents.  Parents it creates get mode; existing ones
 * are checked: a directory (a symlink is followed), not writable by others
 * unless sticky, and inside a world-writable directory such as /tmp owned
 * by us or root (so another user cannot have made /tmp/vcluster-UID
 * first).  With mode 0700 (or when the parent is world-writable) the last
 * component must pass afile_private_dir().  0 or -errno; the _why form
 * says in one line which path is wrong and why. */
int afile_mkdir_p(const char *dir, mode_t mode);
int afile_mkdir_p_why(const char *dir, mode_t mode, char *why, size_t whylen);

/* Write all of buf to fd, retrying short writes and EINTR.  0 or -errno. */
int afile_write_all(int fd, const void *buf, size_t len);

/* Read the whole file into a NUL-terminated malloc'd buffer (at most
 * max bytes).  0 or -errno (-EFBIG when larger). */
int afile_read_all(const char *path, size_t max, char **out, size_t *len);

#endif
