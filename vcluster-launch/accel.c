#include "accel.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
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
