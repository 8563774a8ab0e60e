/* fuzz_config: vcluster-launch's settings from a job file
 * (vcluster-launch/config.c, cfg_load with --job).
 *
 * Input: a job file.  cfg_load() reads it as `vcluster-launch --job FILE`
 * would.  Accepted settings must be within the ranges --help states and
 * every string field NUL-terminated inside its array, and --memory must be
 * the size its text says (no sign, no overflow); a refusal must give a
 * reason.
 */
#include "fuzz.h"
#include "config.h"
#include "jobspec.h"

#include <ctype.h>
#include <strings.h>

static void check_str(const char *s, size_t cap)
{
	FUZZ_ASSERT(strnlen(s, cap) < cap);
}

/* The last "memory" value of the job file, as the parser hands it over. */
static int memory_cb(void *ctx, const char *key, const char *value,
		     char *why, size_t whylen)
{
	(void)why; (void)whylen;
	if (!strcmp(key, "memory"))
		snprintf(ctx, 64, "%s", value);
	return 0;
}

/* What an accepted --memory value must mean: digits (after blanks) and a
 * unit, the product without overflow.  Returns MiB, or 0 when the text is
 * not such a size. */
static uint64_t memory_mib_of(const char *v)
{
	uint64_t x = 0, mul = 1;
	const char *p = v;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '+')
		p++;
	if (*p < '0' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++)
		if (__builtin_mul_overflow(x, 10, &x) ||
		    __builtin_add_overflow(x, (uint64_t)(*p - '0'), &x))
			return 0;
	if (!strcasecmp(p, "G") || !strcasecmp(p, "GiB"))
		mul = 1024;
	else if (*p && strcasecmp(p, "M") && strcasecmp(p, "MiB"))
		return 0;
	return __builtin_mul_overflow(x, mul, &x) ? 0 : x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vc_config c;
	char path[128], err[512];

	snprintf(path, sizeof(path), "%s/fuzz.job", fuzz_dir());
	fuzz_write_file(path, data, size);
	char *argv[] = { "vcluster-launch", "--job", path, NULL };
	err[0] = 0;
	int r = cfg_load(&c, 3, argv, err, sizeof(err));
	fuzz_note("  config: %s", r ? err : "accepted");
	if (r != 0) {
		FUZZ_ASSERT(r == -EINVAL || r < 0);
		FUZZ_ASSERT(err[0]);
		return 0;
	}
	check_str(c.job, sizeof(c.job));
	check_str(c.kernel, sizeof(c.kernel));
	check_str(c.initrd, sizeof(c.initrd));
	check_str(c.append, sizeof(c.append));
	check_str(c.disk, sizeof(c.disk));
	check_str(c.run_dir, sizeof(c.run_dir));
	check_str(c.guest_cmd, sizeof(c.guest_cmd));
	check_str(c.qemu, sizeof(c.qemu));
	check_str(c.checkpoint_dir, sizeof(c.checkpoint_dir));
	FUZZ_ASSERT(c.checkpoint_ndirs >= 0 && c.checkpoint_ndirs <= CFG_CKPT_DIRS_MAX);
	FUZZ_ASSERT(!c.checkpoint_dir[0] == !c.checkpoint_ndirs);
	for (int i = 0; i + 1 < c.checkpoint_ndirs; i++) {
		check_str(c.checkpoint_more[i], sizeof(c.checkpoint_more[i]));
		FUZZ_ASSERT(c.checkpoint_more[i][0] && !strchr(c.checkpoint_more[i], ','));
	}
	check_str(c.restore, sizeof(c.restore));
	FUZZ_ASSERT(strlen(c.guest_cmd) <= 600);
	FUZZ_ASSERT(c.memory_mib >= 64 && c.memory_mib <= 1024 * 1024);
	char mem[64] = "", jerr[256];
	char *text = fuzz_str(data, size);
	if (jobspec_parse_text("job", text, memory_cb, mem, jerr, sizeof(jerr)) == 0 && mem[0])
		FUZZ_ASSERT(memory_mib_of(mem) == c.memory_mib);
	free(text);
	FUZZ_ASSERT(c.vcpus >= 1 && c.vcpus <= 64);
	FUZZ_ASSERT(c.subnet_prefix >= 8 && c.subnet_prefix <= 30);
	FUZZ_ASSERT(c.keep >= 0 && c.grace_s >= 0 && c.timeout_s >= 0);
	FUZZ_ASSERT(!c.restore[0] || c.checkpoint_dir[0]);
	FUZZ_ASSERT(!c.initrd[0] || c.kernel[0]);
	FUZZ_ASSERT(cfg_subnet_capacity(&c) >= 2);
	char net[40];
	cfg_subnet_str(&c, net, sizeof(net));
	FUZZ_ASSERT(net[0]);
	return 0;
}
