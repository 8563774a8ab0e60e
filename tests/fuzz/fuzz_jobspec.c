/* fuzz_jobspec: the job-file parser (common/jobspec.c).
 *
 * Input: a job file.  It goes through jobspec_parse_text() (up to its
 * first NUL) and jobspec_parse_file() (the bytes as they are, from a
 * scratch file).  Properties: every pair handed to the callback has a key
 * of [A-Za-z0-9_-] and no newline in key or value; every error reads
 * "NAME:..." for the file it came from; the callback's own refusal (for
 * the key "reject") comes back with its line number.
 */
#include "fuzz.h"
#include "jobspec.h"

#include <ctype.h>

static int cb(void *ctx, const char *key, const char *value, char *why,
	      size_t whylen)
{
	int *pairs = ctx;

	FUZZ_ASSERT(key[0]);
	for (const char *k = key; *k; k++)
		FUZZ_ASSERT(isalnum((unsigned char)*k) || *k == '-' || *k == '_');
	FUZZ_ASSERT(!strchr(value, '\n'));
	(*pairs)++;
	if (!strcmp(key, "reject")) {
		snprintf(why, whylen, "reject: refused by the callback");
		return -EINVAL;
	}
	return 0;
}

static void check_err(int r, const char *name, const char *err)
{
	if (r == 0)
		return;
	FUZZ_ASSERT(r < 0);
	FUZZ_ASSERT(!strncmp(err, name, strlen(name)) && err[strlen(name)] == ':');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], path[128];
	int pairs = 0, r;
	char *text = fuzz_str(data, size);

	err[0] = 0;
	r = jobspec_parse_text("fuzz.job", text, cb, &pairs, err, sizeof(err));
	check_err(r, "fuzz.job", err);
	fuzz_note("  jobspec: %d pairs, %s", pairs, r ? err : "accepted");
	if (r == -EINVAL && strstr(err, "refused by the callback"))
		FUZZ_ASSERT(!strncmp(err, "fuzz.job:", 9) && isdigit((unsigned char)err[9]));
	free(text);

	snprintf(path, sizeof(path), "%s/job", fuzz_dir());
	fuzz_write_file(path, data, size);
	err[0] = 0;
	pairs = 0;
	r = jobspec_parse_file(path, cb, &pairs, err, sizeof(err));
	check_err(r, path, err);
	if (memchr(data, 0, size))
		FUZZ_ASSERT(r == -EINVAL && pairs == 0);
	return 0;
}
