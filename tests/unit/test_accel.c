/* accel: the QEMU-level probe.  Its firmware must make a real QEMU exit with
 * the debug-exit status, shown under TCG (which works everywhere); a QEMU
 * that is not there, and one whose guest never reaches the port in time,
 * must say no with a reason.  What KVM itself answers depends on the
 * machine and is printed, not asserted. */
#include "test.h"
#include "accel.h"

#include <string.h>
#include <unistd.h>

#define QEMU "/usr/bin/qemu-system-x86_64"

int main(void)
{
	char why[512] = "";

	if (access(QEMU, X_OK) != 0) {
		printf("%s not installed: skipped\n", QEMU);
		return 77;
	}
	CHECK(accel_qemu_runs(QEMU, NULL, "tcg", 20000, why, sizeof(why)));

	why[0] = '\0';
	CHECK(!accel_qemu_runs("/nonexistent/qemu", NULL, "tcg", 5000, why, sizeof(why)));
	CHECK(why[0] != '\0');

	/* 1 ms is too short for any QEMU to start: the time limit's answer */
	why[0] = '\0';
	CHECK(!accel_qemu_runs(QEMU, NULL, "tcg", 1, why, sizeof(why)));
	CHECK(strstr(why, "did not run its first instruction within 1 ms") != NULL);

	why[0] = '\0';
	bool kvm = accel_kvm_works(3000, why, sizeof(why)) &&
		   accel_qemu_runs(QEMU, NULL, "kvm", 10000, why, sizeof(why));
	printf("KVM on this machine: %s%s%s\n", kvm ? "works" : "not usable", kvm ? "" : ": ", why);
	printf("test_accel: ok\n");
	return 0;
}
