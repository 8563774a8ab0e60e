#include "ramsum.h"

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
#define RAMSUM_NAME	"/memfd:memory-backend-memfd"

/* pid's RAM backend of that length, opened read-only; -errno. */
static int open_backend(pid_t pid, uint64_t length)
{
	char dir[64], link[PATH_MAX + 80], target[PATH_MAX];
	int found = -ENOENT;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if (!(d = opendir(dir)))
		return -errno;
	for (struct dirent *e; found < 0 && (e = readdir(d));) {
		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, RAMSUM_NAME, strlen(RAMSUM_NAME)))
			continue;
		int fd = open(link, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == length)
			found = fd;
		else if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return found;
}

int ramsum_qemu(pid_t pid, uint64_t length, uint32_t *crc, char *why, size_t whylen)
{
	int fd = open_backend(pid, length);

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
