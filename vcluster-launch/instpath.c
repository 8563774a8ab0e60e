/* instpath: the launcher's own files, found from where it is (instpath.h). */
#include "instpath.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Cut the last path component off p in place ("/a/b" -> "/a", "/a" -> "/").
 * -EINVAL when p has no slash. */
static int parent(char *p)
{
	char *s = strrchr(p, '/');

	if (!s)
		return -EINVAL;
	if (s == p)
		s[1] = '\0';
	else
		*s = '\0';
	return 0;
}

static int join(char *out, const char *dir, const char *rest)
{
	/* "/" + "x" must not become "//x" */
	const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
	int n = snprintf(out, PATH_MAX, "%s%s%s", dir, sep, rest);

	return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int instpath_resolve(const char *exe, struct instpath *p)
{
	char top[PATH_MAX], lib[PATH_MAX];
	int r;

	memset(p, 0, sizeof(*p));
	if (strlen(exe) >= sizeof(top))
		return -ENAMETOOLONG;
	strcpy(top, exe);
	/* PREFIX/bin/PROGRAM -> PREFIX; build/bin/PROGRAM -> build */
	if (parent(top) < 0 || parent(top) < 0)
		return -EINVAL;
	r = join(lib, top, "libexec/vcluster");
	if (r < 0)
		return r;
	p->installed = is_dir(lib);
	if (p->installed) {
		strcpy(p->dir, lib);
		r = join(p->kernel, lib, "guest/vmlinuz");
		if (r == 0)
			r = join(p->initrd, lib, "guest/initrd.img");
		if (r == 0)
			r = join(p->qemu, lib, "qemu-system-x86_64");
	} else {
		strcpy(p->dir, top);
		r = join(p->kernel, top, "guest/vmlinuz");
		if (r == 0)
			r = join(p->initrd, top, "guest/initrd.img");
		if (r == 0)
			r = join(p->qemu, top, "qemu/bin/qemu-system-x86_64");
	}
	return r;
}

int instpath_self(struct instpath *p)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	if ((size_t)n >= sizeof(exe) - 1)
		return -ENAMETOOLONG;
	exe[n] = '\0';
	return instpath_resolve(exe, p);
}
