/* vm_spawn()'s command line: the VM is the node it is given, not the rank
 * that runs it (a spare starting node K's QEMU for a migration must start
 * node K: its MAC, name, kernel arguments and the head's NIC), and a
 * migration target waits with -incoming defer -S.  QEMU is a shell script
 * that prints its arguments into qemu.log, one a line: no QEMU runs. */
#include "test.h"
#include "config.h"
#include "vm.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[PATH_MAX], fake[PATH_MAX];

/* The fake QEMU's arguments, one a line, after it has exited. */
static char *args_of(struct vm *vm)
{
	static char buf[16384];
	char path[PATH_MAX + 16];

	for (int i = 0; i < 500 && !vm_check_exit(vm); i++)
		usleep(10000);
	CHECK(vm_check_exit(vm));
	snprintf(path, sizeof(path), "%s/qemu.log", dir);
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* line is one whole argument */
static bool has_arg(const char *args, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = args; (p = strstr(p, line)); p++)
		if ((p == args || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static struct vm *spawn(const struct vc_config *c, int rank, int node, bool incoming)
{
	struct vm_spec s = {
		.cfg = c, .rank = rank, .node = node, .nranks = 3, .rank_dir = dir,
		.qemu_bin = fake, .kernel = "/nonexistent/vmlinuz", .initrd = "/nonexistent/initrd",
		.incoming = incoming,
	};
	char why[512] = "";
	int link = -1;
	struct vm *vm = vm_spawn(&s, &link, why, sizeof(why));

	if (!vm)
		fprintf(stderr, "vm_spawn: %s\n", why);
	CHECK(vm != NULL);
	CHECK(link >= 0);
	close(link);
	return vm;
}

/* A spare (rank 3) starting node 1's QEMU to receive it. */
static void spare_runs_the_node(const struct vc_config *c)
{
	struct vm *vm = spawn(c, 3, 1, true);
	const char *a = args_of(vm);

	CHECK(has_arg(a, "vcluster-node1"));
	CHECK(strstr(a, "mac=52:54:00:56:00:01,") != NULL);
	CHECK(strstr(a, " vc.rank=1 ") != NULL);
	CHECK(strstr(a, " vc.n=3 ") != NULL);
	CHECK(strstr(a, " vc.head=0") != NULL);
	CHECK(strstr(a, "52:54:00:56:00:03") == NULL);	/* nothing of rank 3 */
	CHECK(strstr(a, "vcluster-node3") == NULL);
	CHECK(strstr(a, "vc.rank=3") == NULL);
	CHECK(strstr(a, "user,id=head") == NULL);	/* not the head node */
	CHECK(has_arg(a, "-incoming"));
	CHECK(has_arg(a, "defer"));
	CHECK(has_arg(a, "-S"));
	vm_destroy(vm);
}

/* The head node keeps its user-mode NIC on whichever rank runs it. */
static void head_node_elsewhere(const struct vc_config *c)
{
	struct vm *vm = spawn(c, 2, 0, true);
	const char *a = args_of(vm);

	CHECK(has_arg(a, "vcluster-node0"));
	CHECK(strstr(a, " vc.head=1") != NULL);
	CHECK(strstr(a, "user,id=head") != NULL);
	vm_destroy(vm);
}

/* A node started on its own rank, as every run does: no -incoming. */
static void own_rank_boots(const struct vc_config *c)
{
	struct vm *vm = spawn(c, 2, 2, false);
	const char *a = args_of(vm);

	CHECK(has_arg(a, "vcluster-node2"));
	CHECK(strstr(a, "mac=52:54:00:56:00:02,") != NULL);
	CHECK(strstr(a, " vc.rank=2 ") != NULL);
	CHECK(!has_arg(a, "-incoming"));
	CHECK(!has_arg(a, "-S"));
	vm_destroy(vm);
}

int main(void)
{
	struct vc_config c;
	char err[512] = "", *argv[] = { "test_vm", NULL };

	CHECK(cfg_load(&c, 1, argv, err, sizeof(err)) == 0);
	snprintf(dir, sizeof(dir), "/tmp/vc-test-vm.XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(fake, sizeof(fake), "%s/fake-qemu", dir);
	FILE *f = fopen(fake, "w");
	CHECK(f != NULL);
	fputs("#!/bin/sh\nfor a; do printf '%s\\n' \"$a\"; done\n", f);
	fclose(f);
	CHECK(chmod(fake, 0700) == 0);

	spare_runs_the_node(&c);
	head_node_elsewhere(&c);
	own_rank_boots(&c);

	char path[PATH_MAX + 16];
	const char *files[] = { "fake-qemu", "qemu.log", "console.log", "qmp.sock" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	CHECK(rmdir(dir) == 0);
	printf("test_vm: ok\n");
	return 0;
}
