/* instpath: the launcher finds the test guest and the patched QEMU beside
 * itself -- PREFIX/libexec/vcluster when installed, build/ in the build
 * tree -- and never the other tree's files. */
#include "test.h"
#include "instpath.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[] = "/tmp/vc-test-instpath.XXXXXX";

static void mkdirs(const char *rel)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	for (char *s = p + strlen(tmp) + 1; *s; s++) {
		if (*s == '/') {
			*s = '\0';
			CHECK(mkdir(p, 0700) == 0 || errno == EEXIST);
			*s = '/';
		}
	}
	CHECK(mkdir(p, 0700) == 0 || errno == EEXIST);
}

/* p's field equals tmp + "/" + rel */
static int is(const char *field, const char *rel)
{
	char want[PATH_MAX];

	snprintf(want, sizeof(want), "%s/%s", tmp, rel);
	if (strcmp(field, want)) {
		fprintf(stderr, "got %s, expected %s\n", field, want);
		return 0;
	}
	return 1;
}

int main(void)
{
	struct instpath p;
	char exe[PATH_MAX];

	CHECK(mkdtemp(tmp));

	/* An install tree: PREFIX/libexec/vcluster exists. */
	mkdirs("usr/bin");
	mkdirs("usr/libexec/vcluster/guest");
	snprintf(exe, sizeof(exe), "%s/usr/bin/vcluster-launch", tmp);
	CHECK_EQ(instpath_resolve(exe, &p), 0);
	CHECK(p.installed);
	CHECK(is(p.dir, "usr/libexec/vcluster"));
	CHECK(is(p.kernel, "usr/libexec/vcluster/guest/vmlinuz"));
	CHECK(is(p.initrd, "usr/libexec/vcluster/guest/initrd.img"));
	CHECK(is(p.qemu, "usr/libexec/vcluster/qemu-system-x86_64"));

	/* A build tree beside it: build/bin, no build/libexec. */
	mkdirs("src/build/bin");
	mkdirs("src/build/guest");
	snprintf(exe, sizeof(exe), "%s/src/build/bin/vcluster-launch", tmp);
	CHECK_EQ(instpath_resolve(exe, &p), 0);
	CHECK(!p.installed);
	CHECK(is(p.dir, "src/build"));
	CHECK(is(p.kernel, "src/build/guest/vmlinuz"));
	CHECK(is(p.initrd, "src/build/guest/initrd.img"));
	CHECK(is(p.qemu, "src/build/qemu/bin/qemu-system-x86_64"));

	/* libexec/vcluster a file, not a directory: not an install tree. */
	mkdirs("opt/bin");
	mkdirs("opt/libexec");
	char f[PATH_MAX];
	snprintf(f, sizeof(f), "%s/opt/libexec/vcluster", tmp);
	FILE *fp = fopen(f, "w");
	CHECK(fp);
	fclose(fp);
	snprintf(exe, sizeof(exe), "%s/opt/bin/vcluster-launch", tmp);
	CHECK_EQ(instpath_resolve(exe, &p), 0);
	CHECK(!p.installed);
	CHECK(is(p.kernel, "opt/guest/vmlinuz"));
	CHECK_EQ(unlink(f), 0);

	/* Near the root: no "//" in the paths. */
	CHECK_EQ(instpath_resolve("/bin/vcluster-launch", &p), 0);
	if (!p.installed)
		CHECK(!strcmp(p.kernel, "/guest/vmlinuz"));
	else
		CHECK(!strcmp(p.kernel, "/libexec/vcluster/guest/vmlinuz"));

	/* Bad input: no directory, or too long for PATH_MAX. */
	CHECK_EQ(instpath_resolve("vcluster-launch", &p), -EINVAL);
	CHECK_EQ(instpath_resolve("bin/vcluster-launch", &p), -EINVAL);
	char lng[PATH_MAX + 8];
	memset(lng, 'a', sizeof(lng) - 1);
	lng[0] = '/';
	lng[sizeof(lng) - 1] = '\0';
	CHECK_EQ(instpath_resolve(lng, &p), -ENAMETOOLONG);
	/* fits, but PREFIX/libexec/vcluster/guest/initrd.img does not */
	char deep[PATH_MAX];
	memset(deep, 'b', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	memcpy(deep, "/x/bin/", 7);
	deep[PATH_MAX - 15] = '/';
	deep[PATH_MAX - 10] = '/';
	CHECK_EQ(instpath_resolve(deep, &p), -ENAMETOOLONG);

	/* The running program: this test, in build/tests (no libexec beside). */
	CHECK_EQ(instpath_self(&p), 0);
	CHECK(strstr(p.qemu, "/qemu-system-x86_64"));

	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	CHECK_EQ(system(cmd), 0);
	printf("ok: instpath\n");
	return 0;
}
