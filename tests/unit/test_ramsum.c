/* ramsum: the CRC32C of a process's memory-backend-memfd, found by name
 * and length among its descriptors (this process's own memfds here, as
 * QEMU names them), and the refusal when there is none of that length. */
#include "test.h"
#include "ramsum.h"
#include "vcfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	const size_t len = (9u << 20) + 4096;	/* past two whole chunks */
	char why[256] = "";
	uint32_t crc = 0;

	int decoy = memfd_create("memory-backend-memfd", MFD_CLOEXEC);	/* another size */
	CHECK(decoy >= 0 && ftruncate(decoy, 1 << 20) == 0);
	int fd = memfd_create("memory-backend-memfd", MFD_CLOEXEC);
	CHECK(fd >= 0 && ftruncate(fd, (off_t)len) == 0);
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	for (size_t i = 0; i < len; i += 4093)
		p[i] = (uint8_t)(i * 7 + 1);
	uint32_t want = vcfmt_crc32c(0, p, len);

	CHECK_EQ(ramsum_qemu(getpid(), len, &crc, why, sizeof(why)), 0);
	CHECK_EQ(crc, want);
	p[len - 1] ^= 1;	/* the last byte counts */
	CHECK_EQ(ramsum_qemu(getpid(), len, &crc, why, sizeof(why)), 0);
	CHECK(crc != want);

	CHECK_EQ(ramsum_qemu(getpid(), 12345, &crc, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, "no shared RAM backend of 12345 bytes") != NULL);
	munmap(p, len);
	close(fd);
	close(decoy);
	printf("test_ramsum: ok\n");
	return 0;
}
