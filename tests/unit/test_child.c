/* child_spawn(): a missing program is an error naming it, the standard
 * descriptors go where asked, and the child dies with its parent. */

#include "child.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void missing_program_is_named(void)
{
	char why[256] = "";
	char *argv[] = { "vc-no-such-program", NULL };

	CHECK_EQ(child_spawn(argv, -1, -1, -1, 0, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, "vc-no-such-program") != NULL);
}

static void stdout_goes_to_the_given_fd(void)
{
	char why[256], buf[16] = "";
	char *argv[] = { "sh", "-c", "echo hi", NULL };
	int p[2], st = 0;

	CHECK(pipe(p) == 0);
	pid_t pid = child_spawn(argv, -1, p[1], -1, 1, why, sizeof(why));
	CHECK(pid > 0);
	close(p[1]);
	CHECK(read(p[0], buf, sizeof(buf) - 1) == 3);
	CHECK(strcmp(buf, "hi\n") == 0);
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(p[0]);
}

/* A middle process starts `sleep 60` and exits at once; we are the
 * subreaper, so the orphan comes back to us and shows how it ended. */
static void child_dies_with_its_parent(void)
{
	char why[256];
	char *argv[] = { "sleep", "60", NULL };
	int p[2], st = 0;
	pid_t grandchild = 0;

	CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	CHECK(pipe(p) == 0);
	pid_t middle = fork();
	CHECK(middle >= 0);
	if (middle == 0) {
		pid_t g = child_spawn(argv, -1, -1, -1, 0, why, sizeof(why));
		_exit(write(p[1], &g, sizeof(g)) == sizeof(g) && g > 0 ? 0 : 1);
	}
	CHECK(read(p[0], &grandchild, sizeof(grandchild)) == sizeof(grandchild));
	CHECK(grandchild > 0);
	CHECK(waitpid(middle, &st, 0) == middle && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(waitpid(grandchild, &st, 0) == grandchild);	/* not 60 s */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	CHECK(t1.tv_sec - t0.tv_sec < 5);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	missing_program_is_named();
	stdout_goes_to_the_given_fd();
	child_dies_with_its_parent();
	printf("test_child: ok\n");
	return 0;
}
