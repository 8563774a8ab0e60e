#include "accel.h"
#include "child.h"
#include "vctime.h"


#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
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
