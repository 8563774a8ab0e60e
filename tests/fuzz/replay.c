/* replay: run a fuzz target over its corpus once, without libFuzzer.
 *
 *   build/tests/fuzz_TARGET [FILE|DIR]...
 *
 * With no argument it reads the target's corpus in the tree,
 * tests/fuzz/corpus/T for a program named fuzz_T (run from the top
 * directory, as the test runner does).  Every file goes once through
 * LLVMFuzzerTestOneInput(); a sanitizer report or a failed property aborts
 * with the file named on stderr.  An empty or missing corpus fails: a
 * regression run that runs nothing proves nothing.  This is the `make
 * check` part of the fuzzing (a second or two per target); `make fuzz` runs
 * the same target under libFuzzer.
 */
#include "fuzz.h"

#include <dirent.h>
#include <sys/stat.h>

#define FUZZ_CORPUS_ROOT "tests/fuzz/corpus"

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		n = fread(buf + len, 1, cap - len, f);
		if (n == 0)
			break;
		len += n;
	}
	if (ferror(f)) {
		fprintf(stderr, "replay: %s: read error\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* Named first, so a crash's report follows the file it came from. */
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
	/* An exact-size copy, so ASan sees reads past the end. */
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact)
		abort();
	memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of dir, in name order.  The count, or -1. */
static int run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0;
	int ran = 0;

	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				abort();
		}
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				ran = -1;
			else if (ran >= 0)
				ran++;
		}
		free(names[i]);
	}
	free(names);
	return ran;
}

int main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *const *args = (const char *const *)argv + 1;
	int nargs = argc - 1, total = 0;
	char corpus[512];
	const char *def[] = { corpus };

	if (strncmp(prog, "fuzz_", 5) != 0) {
		fprintf(stderr, "replay: program name %s is not fuzz_TARGET\n", prog);
		return 1;
	}
	snprintf(corpus, sizeof(corpus), "%s/%s", FUZZ_CORPUS_ROOT, prog + 5);

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	if (nargs == 0) {
		args = def;
		nargs = 1;
	}
	for (int i = 0; i < nargs; i++) {
		struct stat st;
		int r;
		if (stat(args[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", args[i], strerror(errno));
			return 1;
		}
		r = S_ISDIR(st.st_mode) ? run_dir(args[i]) :
		    run_file(args[i]) == 0 ? 1 : -1;
		if (r < 0)
			return 1;
		total += r;
	}
	if (total == 0) {
		fprintf(stderr, "replay: no input files in %s\n", args[0]);
		return 1;
	}
	printf("replay: %d inputs ran without a finding\n", total);
	return 0;
}
