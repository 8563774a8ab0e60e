#include "test.h"
#include "jobspec.h"

#include <errno.h>
#include <string.h>

struct seen {
	char keys[8][32];
	char vals[8][128];
	int n;
};

static int collect(void *ctx, const char *key, const char *value, char *why,
		   size_t whylen)
{
	struct seen *s = ctx;

	if (strcmp(key, "memory") && strcmp(key, "guest-cmd") && strcmp(key, "vcpus")) {
		snprintf(why, whylen, "unknown key '%s'", key);
		return -EINVAL;
	}
	snprintf(s->keys[s->n], 32, "%s", key);
	snprintf(s->vals[s->n], 128, "%s", value);
	s->n++;
	return 0;
}

int main(void)
{
	struct seen s = { 0 };
	char err[256];

	CHECK_EQ(jobspec_parse_text("a.job",
		"# a job\n\n  memory = 256M  \n"
		"guest-cmd = \"echo \\\"hi\\\" # not a comment\"\nvcpus=2", collect, &s,
		err, sizeof(err)), 0);
	CHECK_EQ(s.n, 3);
	CHECK(!strcmp(s.vals[0], "256M"));
	CHECK(!strcmp(s.vals[1], "echo \"hi\" # not a comment"));
	CHECK(!strcmp(s.vals[2], "2"));

	/* Errors name the file and the line. */
	memset(&s, 0, sizeof(s));
	CHECK_EQ(jobspec_parse_text("b.job", "memory = 1G\n\nno equals here\n",
		collect, &s, err, sizeof(err)), -EINVAL);
	CHECK(!strncmp(err, "b.job:3: expected 'key = value'", 31));
	CHECK_EQ(jobspec_parse_text("c.job", "# x\nmemroy = 1G\n", collect, &s,
		err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "c.job:2: unknown key 'memroy'"));
	CHECK_EQ(jobspec_parse_text("d.job", "guest-cmd = \"open\n", collect, &s,
		err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "d.job:1:") && strstr(err, "missing closing quote"));
	CHECK_EQ(jobspec_parse_file("/nonexistent/e.job", collect, &s, err,
		sizeof(err)), -ENOENT);
	CHECK(strstr(err, "/nonexistent/e.job"));
	return 0;
}
