/* vc-guestcfg: read the vcluster settings from the kernel command line and
 * print them as shell assignments for the init script.
 *
 *   vc.rank=R vc.n=N vc.net=A.B.C.D/P vc.mac=MAC vc.head=0|1 vc.cmd=HEX
 *
 * vc.cmd is the guest command hex-encoded, so that any characters survive
 * the kernel's own command-line splitting.  With --ip-of R it prints only
 * the address of rank R.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char cmdline[8192];

static const char *param(const char *key)
{
	static char val[4096];
	size_t klen = strlen(key);
	char *p = cmdline;

	while ((p = strstr(p, key))) {
		if ((p == cmdline || p[-1] == ' ') && p[klen] == '=') {
			size_t n = strcspn(p + klen + 1, " \n");
			if (n >= sizeof(val))
				return NULL;
			memcpy(val, p + klen + 1, n);
			val[n] = '\0';
			return val;
		}
		p += klen;
	}
	return NULL;
}

static void put_quoted(const char *name, const char *v)
{
	printf("%s='", name);
	for (; *v; v++) {
		if (*v == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*v);
	}
	puts("'");
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The address of rank r: the network's base address + r + 1. */
static int ip_of(int r, char *out, int *prefix)
{
	const char *net = param("vc.net");
	char base[64];
	struct in_addr a;

	snprintf(base, sizeof(base), "%s", net ? net : "10.10.0.0/24");
	char *slash = strchr(base, '/');
	*prefix = slash ? atoi(slash + 1) : 24;
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, base, &a) != 1)
		return -1;
	a.s_addr = htonl(ntohl(a.s_addr) + (uint32_t)r + 1);
	inet_ntop(AF_INET, &a, out, 16);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = getenv("VC_CMDLINE") ? getenv("VC_CMDLINE") : "/proc/cmdline";
	FILE *f = fopen(path, "r");
	char ip[16];
	int prefix;

	if (!f || !fgets(cmdline, sizeof(cmdline), f)) {
		fprintf(stderr, "vc-guestcfg: cannot read %s\n", path);
		return 1;
	}
	fclose(f);
	if (argc == 3 && strcmp(argv[1], "--ip-of") == 0) {
		if (ip_of(atoi(argv[2]), ip, &prefix) < 0)
			return 1;
		puts(ip);
		return 0;
	}

	const char *v = param("vc.rank");
	int rank = v ? atoi(v) : 0;
	printf("VC_RANK=%d\n", rank);
	v = param("vc.n");
	printf("VC_N=%d\n", v ? atoi(v) : 1);
	if (ip_of(rank, ip, &prefix) < 0) {
		fprintf(stderr, "vc-guestcfg: bad vc.net\n");
		return 1;
	}
	printf("VC_IP=%s\nVC_PREFIX=%d\n", ip, prefix);
	v = param("vc.mac");
	put_quoted("VC_MAC", v ? v : "");
	v = param("vc.head");
	printf("VC_HEAD=%d\n", v ? atoi(v) : 0);

	char cmd[2048] = "";
	v = param("vc.cmd");
	if (v) {
		size_t n = strlen(v) / 2, i;
		if (n >= sizeof(cmd) || strlen(v) % 2)
			return 1;
		for (i = 0; i < n; i++) {
			int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return 1;
			cmd[i] = (char)(hi << 4 | lo);
		}
		cmd[n] = '\0';
	}
	put_quoted("VC_CMD", cmd[0] ? cmd : "true");
	return 0;
}
