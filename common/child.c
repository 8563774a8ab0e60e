/* child: children that die with their rank (see child.h). */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child of a multithreaded process: only async-signal-safe calls
 * until exec. */
static void child_fd(int fd, int target, int flags)
{
	if (fd < 0)
		fd = open("/dev/null", flags | O_CLOEXEC);
	if (fd == target)
		fcntl(fd, F_SETFD, 0);
	else if (fd >= 0)
		dup2(fd, target);
}

static void child_exec(char *const argv[], pid_t parent, const struct child_opts *o,
		       int errfd)
{
	sigset_t none;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);	/* the parent died before we asked */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);	/* the rank ignores it; an exec keeps that */
	if (o->own_group)
		setpgid(0, 0);
	child_fd(o->fd0, 0, O_RDONLY);
	child_fd(o->fd1, 1, O_WRONLY);
	child_fd(o->fd2, 2, O_WRONLY);
	if (o->before_exec)
		o->before_exec(o->ctx);
	execvp(argv[0], argv);
	int e = errno;
	if (write(errfd, &e, sizeof(e)) < 0)
		_exit(126);
	_exit(127);
}

/* The exec's outcome: the pipe is closed by a successful exec (CLOEXEC),
 * or carries the child's errno. */
static int exec_result(int rfd)
{
	int e = 0;
	ssize_t n;

	do
		n = read(rfd, &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(e) ? e : 0;
}

pid_t child_spawn(char *const argv[], int fd0, int fd1, int fd2, int own_group,
		 char *why, size_t whylen)
{
	struct child_opts o = { .fd0 = fd0, .fd1 = fd1, .fd2 = fd2, .own_group = own_group };

	return child_spawn_opts(argv, &o, why, whylen);
}

pid_t child_spawn_opts(char *const argv[], const struct child_opts *o, char *why,
		       size_t whylen)
{
	pid_t parent = getpid();
	int p[2], e;

	if (pipe2(p, O_CLOEXEC) < 0) {
		e = errno;
		snprintf(why, whylen, "pipe for %s: %s", argv[0], strerror(e));
		return -e;
	}
	pid_t pid = fork();
	if (pid == 0)
		child_exec(argv, parent, o, p[1]);
	e = pid < 0 ? errno : 0;
	close(p[1]);
	if (pid > 0)
		e = exec_result(p[0]);
	close(p[0]);
	if (e && pid > 0)
		waitpid(pid, NULL, 0);
	if (e) {
		snprintf(why, whylen, "%s %s: %s", pid < 0 ? "fork for" : "starting",
			 argv[0], strerror(e));
		return -e;
	}
	return pid;
}
