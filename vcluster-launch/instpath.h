/* instpath: where vcluster-launch finds its own files -- the test guest and
 * the patched QEMU -- relative to where the program itself is, so that an
 * installed launcher never reaches into a build tree and a build tree's
 * never into an installed one.
 *
 *   PREFIX/bin/vcluster-launch   installed (`make install`): the files are
 *                                PREFIX/libexec/vcluster/guest/{vmlinuz,
 *                                initrd.img} and PREFIX/libexec/vcluster/
 *                                qemu-system-x86_64
 *   build/bin/vcluster-launch    the build tree: build/guest/{vmlinuz,
 *                                initrd.img}, build/qemu/bin/qemu-system-x86_64
 *
 * The installed layout is recognised by its directory PREFIX/libexec/vcluster
 * (`make install` always creates it); anything else is the build tree's.
 * The program's path is /proc/self/exe: symlinks to the program (e.g.
 * /usr/local/bin/vcluster-launch -> /opt/vcluster/bin/vcluster-launch) lead
 * to the tree it really lives in.
 */
#ifndef VC_INSTPATH_H
#define VC_INSTPATH_H

#include <limits.h>
#include <stdbool.h>

struct instpath {
	bool installed;			/* the PREFIX/libexec/vcluster layout */
	char dir[PATH_MAX];		/* PREFIX/libexec/vcluster or build */
	char kernel[PATH_MAX];		/* the test guest's kernel */
	char initrd[PATH_MAX];		/* and initramfs */
	char qemu[PATH_MAX];		/* the patched QEMU (may be absent) */
};

/* Fill p for the program at exe (an absolute path to the program file).
 * 0, or -EINVAL (exe has no directory part), -ENAMETOOLONG. */
int instpath_resolve(const char *exe, struct instpath *p);

/* The same for the running program (/proc/self/exe); -errno of readlink. */
int instpath_self(struct instpath *p);

#endif
