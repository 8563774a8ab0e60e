/* mstream address lists: "HOST:PORT[,...]" strings and files, good entries
 * kept in order, each bad entry refused with a reason that names it. */
#include "test.h"
#include "mstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];

/* Parse spec, expect failure mentioning each of the given words. */
static void bad(const char *spec, const char *w1, const char *w2)
{
	struct mstream_addr *a = (void *)1;
	int n = -1;

	CHECK_EQ(mstream_addrs_parse(spec, &a, &n, err, sizeof(err)), -EINVAL);
	CHECK(a == NULL);
	CHECK_EQ(n, 0);
	if (!strstr(err, w1) || (w2 && !strstr(err, w2))) {
		fprintf(stderr, "spec \"%s\": error \"%s\" lacks \"%s\"/\"%s\"\n",
			spec ? spec : "(null)", err, w1, w2 ? w2 : "");
		exit(1);
	}
}

static void test_string(void)
{
	struct mstream_addr *a;
	int n;

	CHECK_EQ(mstream_addrs_parse("127.0.0.1:7000", &a, &n, err, sizeof(err)), 0);
	CHECK_EQ(n, 1);
	CHECK(!strcmp(a[0].host, "127.0.0.1"));
	CHECK_EQ(a[0].port, 7000);
	free(a);

	CHECK_EQ(mstream_addrs_parse(" node1:1 ,node2.example:65535,[::1]:0, 10.0.0.3:42 ",
				     &a, &n, err, sizeof(err)), 0);
	CHECK_EQ(n, 4);
	CHECK(!strcmp(a[0].host, "node1"));
	CHECK_EQ(a[0].port, 1);
	CHECK(!strcmp(a[1].host, "node2.example"));
	CHECK_EQ(a[1].port, 65535);
	CHECK(!strcmp(a[2].host, "::1"));
	CHECK_EQ(a[2].port, 0);
	CHECK(!strcmp(a[3].host, "10.0.0.3"));
	CHECK_EQ(a[3].port, 42);
	free(a);

	bad("", "no addresses", NULL);
	bad("   ", "no addresses", NULL);
	bad(NULL, "no addresses", NULL);
	bad("host", "entry 1 \"host\"", "missing :PORT");
	bad("a:1,host:", "entry 2 \"host:\"", "bad port");
	bad("a:1,b:2,c:99999", "entry 3", "bad port \"99999\"");
	bad("db1:http", "entry 1", "bad port \"http\"");
	bad("h:12x", "bad port \"12x\"", NULL);
	bad("h:-1", "bad port \"-1\"", NULL);
	bad(":80", "entry 1 \":80\"", "missing host");
	bad("a:1,,b:2", "entry 2", "empty entry");
	bad("a:1,", "entry 2", "empty entry");
	bad("::1:80", "brackets", NULL);
	bad("[::1:80", "missing ']'", NULL);
	bad("[::1]80", "missing :PORT", NULL);
	bad("a b:80", "bad character", NULL);

	/* More entries than streams can ever use. */
	char big[MSTREAM_MAX_STREAMS * 8 + 16] = "";
	for (int i = 0; i <= MSTREAM_MAX_STREAMS; i++)
		strcat(big, i ? ",h:1" : "h:1");
	bad(big, "more than", NULL);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	CHECK(f);
	CHECK(fputs(text, f) >= 0);
	CHECK(fclose(f) == 0);
}

static void test_file(void)
{
	char path[64];
	struct mstream_addr *a;
	int n;

	snprintf(path, sizeof(path), "/tmp/vc-test-mstream-addr.%d", (int)getpid());

	write_file(path, "# migration targets\n\n127.0.0.1:7001\n  127.0.0.1:7002   # second NIC\n[::1]:7003\n");
	CHECK_EQ(mstream_addrs_load(path, &a, &n, err, sizeof(err)), 0);
	CHECK_EQ(n, 3);
	CHECK_EQ(a[0].port, 7001);
	CHECK(!strcmp(a[1].host, "127.0.0.1"));
	CHECK_EQ(a[1].port, 7002);
	CHECK(!strcmp(a[2].host, "::1"));
	free(a);

	write_file(path, "# header\nh:1\n\nh:2:3\n");
	a = (void *)1;
	CHECK_EQ(mstream_addrs_load(path, &a, &n, err, sizeof(err)), -EINVAL);
	CHECK(a == NULL);
	CHECK(strstr(err, path));
	CHECK(strstr(err, ":4: \"h:2:3\""));

	write_file(path, "h:1\nfoo:bar\n");
	CHECK_EQ(mstream_addrs_load(path, &a, &n, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, ":2: \"foo:bar\": bad port \"bar\""));

	write_file(path, "# nothing here\n\n");
	CHECK_EQ(mstream_addrs_load(path, &a, &n, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "no addresses"));

	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(mstream_addrs_load(path, &a, &n, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, path));
	CHECK(strstr(err, "No such file"));
}

int main(void)
{
	test_string();
	test_file();
	printf("ok\n");
	return 0;
}
