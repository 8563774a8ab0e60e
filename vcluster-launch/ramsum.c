#include "ramsum.h"
#include "qemuram.h"

#include "vcfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RAMSUM_CHUNK	(4u << 20)

int ramsum_qemu(pid_t pid, uint64_t length, uint32_t *crc, char *why, size_t whylen)
{
	int fd = qemuram_open(pid, length, O_RDONLY);

	if (fd < 0) {
		snprintf(why, whylen, "process %d has no shared RAM backend of %llu bytes%s%s",
			 (int)pid, (unsigned long long)length, fd == -ENOENT ? "" : ": ",
			 fd == -ENOENT ? "" : strerror(-fd));
		return fd;
	}
	uint8_t *buf = malloc(RAMSUM_CHUNK);
	uint32_t c = 0;
	int r = buf ? 0 : -ENOMEM;
	for (uint64_t off = 0; r == 0 && off < length;) {
		size_t want = length - off < RAMSUM_CHUNK ? (size_t)(length - off) : RAMSUM_CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		c = vcfmt_crc32c(c, buf, (size_t)n);
		off += (uint64_t)n;
	}
	if (r < 0)
		snprintf(why, whylen, "reading process %d's RAM: %s", (int)pid, strerror(-r));
	free(buf);
	close(fd);
	*crc = c;
	return r;
}
