/* vcluster-launch's settings: defaults, job file, command line over job
 * file, and the errors a user sees for bad values. */
#include "test.h"
#include "config.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static int load(struct vc_config *c, char *err, size_t len, int argc, char **argv)
{
	return cfg_load(c, argc, argv, err, len);
}

int main(void)
{
	struct vc_config c;
	char err[512], job[] = "/tmp/vc-test-config.XXXXXX";
	int fd = mkstemp(job);

	{
		char *argv[] = { "x", NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 1, argv), 0);
		CHECK_EQ(c.memory_mib, 256);
		CHECK_EQ(c.vcpus, 1);
		CHECK_EQ(c.accel, CFG_ACCEL_AUTO);
		char net[40];
		cfg_subnet_str(&c, net, sizeof(net));
		CHECK(!strcmp(net, "10.10.0.0/24"));
		CHECK_EQ(cfg_subnet_capacity(&c), 254);
	}

	const char *text = "# example\nmemory = 1G\nvcpus = 2\n"
			   "guest-cmd = \"vcluster-traffic --all --seconds 20\"\n"
			   "subnet = 192.168.7.0/28\n";
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	{
		/* The command line wins over the job file, whatever the order. */
		char *argv[] = { "x", "--vcpus", "4", "--job", job, "--accel", "tcg", NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 7, argv), 0);
		CHECK_EQ(c.memory_mib, 1024);
		CHECK_EQ(c.vcpus, 4);
		CHECK_EQ(c.accel, CFG_ACCEL_TCG);
		CHECK(!strcmp(c.guest_cmd, "vcluster-traffic --all --seconds 20"));
		CHECK_EQ(cfg_subnet_capacity(&c), 14);
	}

	/* --checkpoint-dir D1,D2: the first, then the others; the command
	 * line's list replaces the job file's whole. */
	{
		char *argv[] = { "x", "--checkpoint-dir", "/a/ck,/b/ck,/c", NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 3, argv), 0);
		CHECK(!strcmp(c.checkpoint_dir, "/a/ck"));
		CHECK_EQ(c.checkpoint_ndirs, 3);
		CHECK(!strcmp(c.checkpoint_more[0], "/b/ck") && !strcmp(c.checkpoint_more[1], "/c"));
		CHECK_EQ(cfg_set(&c, "checkpoint-dir", "/one", err, sizeof(err)), 0);
		CHECK(!strcmp(c.checkpoint_dir, "/one"));
		CHECK_EQ(c.checkpoint_ndirs, 1);
		CHECK_EQ(cfg_set(&c, "checkpoint-dir", "", err, sizeof(err)), 0);
		CHECK(!c.checkpoint_dir[0] && c.checkpoint_ndirs == 0);
		const char *bad[][2] = { { "/a,,/b", "empty" }, { "/a,", "empty" }, { ",/a", "empty" },
					 { "/a,/b,/a", "twice" }, { "1,2,3,4,5,6,7,8,9", "more than 8" } };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			err[0] = '\0';
			CHECK_EQ(cfg_set(&c, "checkpoint-dir", bad[i][0], err, sizeof(err)), -EINVAL);
			CHECK(strstr(err, "--checkpoint-dir") && strstr(err, bad[i][1]));
		}
		CHECK_EQ(cfg_set(&c, "checkpoint-dir", "1,2,3,4,5,6,7,8", err, sizeof(err)), 0);
		CHECK_EQ(c.checkpoint_ndirs, 8);
		CHECK(!strcmp(c.checkpoint_more[6], "8"));
	}

	/* A bad line in the job file: the error names file and line. */
	fd = open(job, O_WRONLY | O_TRUNC);
	const char *bad = "memory = 1G\n\nvcpus = lots\n";
	CHECK(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad));
	close(fd);
	{
		char *argv[] = { "x", "--job", job, NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 3, argv), -EINVAL);
		char want[300];
		snprintf(want, sizeof(want), "%s:3: vcpus: 'lots' is not a whole number", job);
		CHECK(!strncmp(err, want, strlen(want)));
	}
	fd = open(job, O_WRONLY | O_TRUNC);
	CHECK(write(fd, "memroy = 1G\n", 12) == 12);
	close(fd);
	{
		char *argv[] = { "x", "--job", job, NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 3, argv), -EINVAL);
		CHECK(strstr(err, ":1: unknown setting 'memroy'"));
	}
	unlink(job);
	{
		char *argv[] = { "x", "--job", job, NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 3, argv), -ENOENT);
		CHECK(strstr(err, job));
	}

	/* Command-line mistakes. */
	struct { const char *opt, *val, *msg; } cases[] = {
		{ "--memory", "12", "--memory: '12' is not a size" },
		{ "--memory", "2T", "--memory: '2T'" },
		/* 2^54 + 1 GiB: times 1024 wraps to 1024 MiB unless bounded. */
		{ "--memory", "18014398509481985G", "--memory: '18014398509481985G' is not a size" },
		{ "--memory", "1025G", "--memory: '1025G' is not a size" },
		/* strtoull takes "-N" as 2^64 - N: 256 MiB here unless refused. */
		{ "--memory", "-18446744073709551360", "is not a size" },
		{ "--memory", "99999999999999999999M", "is not a size" },
		{ "--accel", "xen", "--accel: 'xen' is not one of auto, kvm, tcg" },
		{ "--subnet", "10.10.0.1/24", "has host bits set" },
		{ "--subnet", "10.10.0.0", "is not an IPv4 network" },
		{ "--vcpus", "0", "--vcpus: '0'" },
		{ "--head-ssh-port", "70000", "--head-ssh-port" },
		{ "--console", "maybe", "is not yes or no" },
		{ "--vm", "xen", "--vm: 'xen' is not one of qemu, none" },
		{ "--synth-frame-size", "63", "--synth-frame-size: '63'" },
		{ "--synth-rate", "0", "--synth-rate: '0'" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[] = { "x", (char *)cases[i].opt, (char *)cases[i].val, NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 3, argv), -EINVAL);
		if (!strstr(err, cases[i].msg)) {
			fprintf(stderr, "for %s %s: got '%s'\n", cases[i].opt, cases[i].val, err);
			return 1;
		}
	}
	{
		char *argv[] = { "x", "--frobnicate", "1", NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 3, argv), -EINVAL);
		CHECK(strstr(err, "unknown option '--frobnicate'"));
	}
	{
		/* --vm none: the synthetic VM's settings; a guest to boot is refused */
		char *argv[] = { "x", "--vm", "none", "--synth-rate", "7", NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 5, argv), 0);
		CHECK_EQ(c.vm, CFG_VM_NONE);
		CHECK_EQ(c.synth_rate, 7);
		CHECK_EQ(c.synth_seconds, 10);
		char *bad_argv[] = { "x", "--vm", "none", "--disk", "a.qcow2", NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 5, bad_argv), -EINVAL);
		CHECK(strstr(err, "--vm none runs no guest: --disk"));
	}
	{
		char *argv[] = { "x", "--memory", NULL };
		CHECK_EQ(load(&c, err, sizeof(err), 2, argv), -EINVAL);
		CHECK(strstr(err, "needs a value"));
	}
	return 0;
}
