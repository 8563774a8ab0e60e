#include "accel.h"
#include "child.h"
#include "vctime.h"


#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum probe_result {
	PROBE_OK = 0,
	PROBE_NO_DEV,
	PROBE_API,
	PROBE_VM,
	PROBE_VCPU,
	PROBE_RUN,
	PROBE_NOT_HLT,
};

static const char *probe_text[] = {
	[PROBE_OK] = "ok",
	[PROBE_NO_DEV] = "cannot open /dev/kvm",
	[PROBE_API] = "KVM API version is not 12",
	[PROBE_VM] = "KVM_CREATE_VM failed",
	[PROBE_VCPU] = "creating or setting up a vCPU failed",
	[PROBE_RUN] = "KVM_RUN failed",
	[PROBE_NOT_HLT] = "the probe guest did not halt",
};

/* In the child: a real-mode guest whose first instruction is HLT. */
static int probe_child(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return PROBE_NO_DEV;
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != 12)
		return PROBE_API;
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return PROBE_VM;
	uint8_t *mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return PROBE_VM;
	mem[0] = 0xf4;	/* hlt */
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000,
		.userspace_addr = (uint64_t)(uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return PROBE_VM;
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vcpu < 0 || runsz <= 0)
		return PROBE_VCPU;
	struct kvm_run *run = mmap(NULL, (size_t)runsz, PROT_READ | PROT_WRITE,
				   MAP_SHARED, vcpu, 0);
	struct kvm_sregs sregs;
	if (run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return PROBE_VCPU;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return PROBE_VCPU;
	if (ioctl(vcpu, KVM_RUN, 0) < 0)
		return PROBE_RUN;
	return run->exit_reason == KVM_EXIT_HLT ? PROBE_OK : PROBE_NOT_HLT;
}

bool accel_kvm_works(int timeout_ms, char *why, size_t whylen)
{
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		return false;
	}
	if (pid == 0)
		_exit(probe_child());

	struct timespec step = { 0, 10 * 1000 * 1000 };
	for (int waited = 0; waited < timeout_ms; waited += 10) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == PROBE_OK)
				return true;
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
			snprintf(why, whylen, "%s", code > 0 && code <= PROBE_NOT_HLT ?
				 probe_text[code] : "the probe process crashed");
			return false;
		}
		nanosleep(&step, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	snprintf(why, whylen, "the KVM probe guest did not halt within %d ms (nested KVM?)",
		 timeout_ms);
	return false;
}

/* Read what the child writes to fd until EOF, buf full or the deadline. */
static size_t read_until_eof(int fd, char *buf, size_t len, int timeout_ms)
{
	double deadline = vc_mono_s() + timeout_ms / 1000.0;
	size_t got = 0;

	while (got < len - 1) {
		int left = (int)((deadline - vc_mono_s()) * 1000);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) <= 0)
			break;
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return got;
}

bool accel_qemu_patched(const char *qemu, int timeout_ms, char *why, size_t whylen)
{
	char *argv[] = { (char *)qemu, "-version", NULL };
	char out[512];
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return false;
	}
	pid_t pid = child_spawn(argv, -1, p[1], -1, 0, why, whylen);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return false;
	}
	size_t n = read_until_eof(p[0], out, sizeof(out), timeout_ms);
	close(p[0]);
	kill(pid, SIGKILL);	/* a no-op once it has exited */
	waitpid(pid, NULL, 0);
	if (n == 0) {
		snprintf(why, whylen, "%s -version printed nothing within %d ms", qemu, timeout_ms);
		return false;
	}
	return strstr(out, "(vcluster") != NULL;
}

/* A 64 KiB firmware whose reset vector (its last 16 bytes, at 0xfffffff0)
 * writes 1 to port 0xf4 (isa-debug-exit: QEMU exits with (1 << 1) | 1 = 3)
 * and halts.  In a file QEMU can open: mkstemp under TMPDIR, unlinked by
 * the caller. */
static int write_probe_firmware(char *path, size_t len)
{
	static const uint8_t reset[] = { 0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd };
	static uint8_t fw[64 * 1024];
	const char *tmp = getenv("TMPDIR");

	snprintf(path, len, "%s/vc-kvmprobe.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	memset(fw, 0xf4, sizeof(fw));
	memcpy(fw + sizeof(fw) - 16, reset, sizeof(reset));
	ssize_t n = write(fd, fw, sizeof(fw));
	int e = n == (ssize_t)sizeof(fw) ? 0 : (n < 0 ? -errno : -EIO);
	close(fd);
	if (e < 0)
		unlink(path);
	return e;
}

/* Wait for pid until timeout_ms; its wait status, or -ETIMEDOUT after
 * killing it. */
static int wait_bounded(pid_t pid, int timeout_ms)
{
	struct timespec step = { 0, 10 * 1000 * 1000 };
	int status;

	for (int waited = 0; waited < timeout_ms; waited += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		nanosleep(&step, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -ETIMEDOUT;
}

bool accel_qemu_runs(const char *qemu, const char *firmware_dir, const char *accel, int timeout_ms,
			  char *why, size_t whylen)
{
	char fw[PATH_MAX], err[512];
	int p[2], r = write_probe_firmware(fw, sizeof(fw));

	if (r < 0) {
		snprintf(why, whylen, "writing the KVM probe firmware %s: %s", fw, strerror(-r));
		return false;
	}
	char *argv[32];
	int argc = 0;
	argv[argc++] = (char *)qemu;
	if (firmware_dir) {
		argv[argc++] = "-L";
		argv[argc++] = (char *)firmware_dir;
	}
	char machine[64];
	snprintf(machine, sizeof(machine), "q35,accel=%s", accel);
	char *rest[] = { "-machine", machine, "-cpu", strcmp(accel, "kvm") ? "max" : "host", "-m", "16M", "-nodefaults",
			 "-no-user-config", "-display", "none", "-monitor", "none", "-serial", "none",
			 "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-bios", fw, NULL };
	for (int i = 0; rest[i]; i++)
		argv[argc++] = rest[i];
	argv[argc] = NULL;
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		unlink(fw);
		return false;
	}
	pid_t pid = child_spawn(argv, -1, -1, p[1], 0, why, whylen);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		unlink(fw);
		return false;
	}
	int status = wait_bounded(pid, timeout_ms);
	unlink(fw);
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 3) {
		close(p[0]);
		return true;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ssize_t n = read(p[0], err, sizeof(err) - 1);
	close(p[0]);
	err[n > 0 ? n : 0] = '\0';
	err[strcspn(err, "\n")] = '\0';
	if (status == -ETIMEDOUT)
		snprintf(why, whylen, "QEMU with %s did not run its first instruction within %d ms",
			 accel, timeout_ms);
	else
		snprintf(why, whylen, "QEMU with %s %s %d%s%s", accel,
			 WIFSIGNALED(status) ? "died of signal" : "exited",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
			 err[0] ? ": " : "", err);
	return false;
}
