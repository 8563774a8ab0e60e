/* rundir: where a user's run directories live, and the `latest` link.
 *
 *   ROOT = $XDG_RUNTIME_DIR/vcluster  when XDG_RUNTIME_DIR is an absolute,
 *                                     private directory of ours
 *          /tmp/vcluster-UID          otherwise
 *   ROOT/job-YYYYmmdd-HHMMSS-PID      a run's sockets and logs (0700)
 *   ROOT/latest -> job-...            the newest run
 *
 * Everything in ROOT is checked before it is trusted: ROOT itself, latest
 * and its target must be owned by the user and writable by no one else
 * (another user could have made /tmp/vcluster-UID first, or pointed
 * latest at a fake control socket).
 */
#ifndef VC_RUNDIR_H
#define VC_RUNDIR_H

#include <stddef.h>

/* ROOT (not created).  0 or -ENAMETOOLONG. */
int rundir_root(char *out, size_t len);

/* A new run directory's name, ROOT/job-STAMP-PID (not created: the
 * launcher creates it with afile_mkdir_p_why(.., 0700, ..)).  0 or
 * -ENAMETOOLONG. */
int rundir_new(char *out, size_t len);

/* Point latest in run_dir's parent at run_dir (a fresh symlink renamed
 * over the old one), after checking that the parent is private.  0 or
 * -errno with one line in why. */
int rundir_set_latest(const char *run_dir, char *why, size_t whylen);

/* The run directory latest names, for vcluster-ctl: the first ROOT (the
 * XDG one, then /tmp/vcluster-UID) that has a latest, with ROOT, the link
 * and its target (a plain name in ROOT) owned by us and private.  0 or
 * -errno with one line in why. */
int rundir_find_latest(char *out, size_t len, char *why, size_t whylen);

/* An existing run directory given by name (symlinks followed): ours and
 * writable by no one else.  0 or -errno with one line in why. */
int rundir_check(const char *dir, char *why, size_t whylen);

#endif
