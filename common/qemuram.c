/* qemuram: QEMU's guest RAM through /proc/PID/fd (qemuram.h). */
#include "qemuram.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the kernel shows as the link of QEMU's memory-backend-memfd. */
#define QEMURAM_LINK "/memfd:memory-backend-memfd"

int qemuram_open(pid_t pid, uint64_t length, int flags)
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
		if (strncmp(target, QEMURAM_LINK, strlen(QEMURAM_LINK)))
			continue;
		int fd = open(link, flags | O_CLOEXEC);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == length)
			found = fd;
		else if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return found;
}
