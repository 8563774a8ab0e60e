/* npb_common: generator, timers, options and report shared by the kernels. */
#include "npb_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NPB_CFLAGS
#define NPB_CFLAGS "(not recorded)"
#endif

#define NPB_MASK46 ((UINT64_C(1) << 46) - 1)
#define NPB_R46 (1.0 / 70368744177664.0)	/* 2^-46 */

/* The spec's double-only form: a and x are split into 23-bit halves so that
 * every product stays below 2^46 and is exact in a 53-bit mantissa. */
double npb_randlc(double *x, double a)
{
	const double r23 = 1.0 / 8388608.0, t23 = 8388608.0;
	const double r46 = NPB_R46, t46 = 70368744177664.0;
	double a1 = trunc(r23 * a), a2 = a - t23 * a1;
	double x1 = trunc(r23 * *x), x2 = *x - t23 * x1;
	double t1 = a1 * x2 + a2 * x1;
	double z = t1 - t23 * trunc(r23 * t1);
	double t3 = t23 * z + a2 * x2;

	*x = t3 - t46 * trunc(r46 * t3);
	return r46 * *x;
}

/* The bulk generator uses 64-bit integers: 2^46 divides 2^64, so a
 * wrapping multiply followed by a mask is x*a mod 2^46 exactly, the same
 * values as npb_randlc (npb_rand_selftest checks this) at a fraction of
 * the cost, which matters for EP's 2^(m+1) numbers. */
void npb_vranlc(size_t n, double *x, double a, double *y)
{
	uint64_t s = (uint64_t)*x, m = (uint64_t)a;

	for (size_t i = 0; i < n; i++) {
		s = (s * m) & NPB_MASK46;
		y[i] = (double)s * NPB_R46;
	}
	*x = (double)s;
}

double npb_rand_jump(double x, double a, uint64_t n)
{
	uint64_t r = (uint64_t)x, b = (uint64_t)a;

	/* Binary powering: squaring b is a generator step with the state as
	 * the multiplier, so b stays a valid multiplier mod 2^46. */
	while (n) {
		if (n & 1)
			r = (r * b) & NPB_MASK46;
		b = (b * b) & NPB_MASK46;
		n >>= 1;
	}
	return (double)r;
}

bool npb_rand_selftest(void)
{
	static const struct {
		double seed, x1, u1, x2;
	} tv[] = {
		{ 271828183.0, 32883653486115.0, 0.46730482219622616,
		  55063727434591.0 },
		{ 314159265.0, 55909509111989.0, 0.7945219111887383,
		  61155031930969.0 },
	};
	double y[1000];

	for (size_t i = 0; i < sizeof(tv) / sizeof(tv[0]); i++) {
		double x = tv[i].seed;
		double u = npb_randlc(&x, NPB_RAND_A);

		if (x != tv[i].x1 || fabs(u - tv[i].u1) > 1e-16)
			return false;
		npb_randlc(&x, NPB_RAND_A);
		if (x != tv[i].x2)
			return false;

		/* Both generator forms and the jump-ahead must agree. */
		double xs = tv[i].seed, xv = tv[i].seed;

		npb_vranlc(1000, &xv, NPB_RAND_A, y);
		for (int k = 0; k < 1000; k++)
			if (npb_randlc(&xs, NPB_RAND_A) != y[k])
				return false;
		if (xs != xv || npb_rand_jump(tv[i].seed, NPB_RAND_A, 1000) != xv)
			return false;
	}

	double b = NPB_RAND_A;

	for (int i = 0; i < 17; i++)
		npb_randlc(&b, b);
	return b == 62362532446209.0 &&
	       npb_rand_jump(1.0, NPB_RAND_A, UINT64_C(1) << 17) == b;
}

static void usage(const struct npb_prog *p, FILE *f)
{
	fprintf(f,
		"Usage: mpirun -np N %s --class S|W|A|B|C [--perturb]\n"
		"%s\n"
		"\n"
		"Options:\n"
		"  --class X, --class=X  problem class: S, W, A, B or C\n"
		"  --perturb             perturb the input on purpose so that\n"
		"                        verification must fail: %s\n"
		"  -h, --help            this text\n"
		"\n"
		"Processes: %s\n"
		"Exit status: 0 verification SUCCESSFUL, 1 UNSUCCESSFUL,\n"
		"2 bad usage or process count, 3 fatal error.\n",
		p->prog, p->title, p->perturb, p->procs);
}

static int my_rank(void)
{
	int r = 0;

	MPI_Comm_rank(MPI_COMM_WORLD, &r);
	return r;
}

int npb_usage_error(const char *prog, const char *fmt, ...)
{
	if (my_rank() == 0) {
		va_list ap;

		fprintf(stderr, "%s: error: ", prog);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	return NPB_EXIT_USAGE;
}

void npb_fatal(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "npb (rank %d): fatal: ", my_rank());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	MPI_Abort(MPI_COMM_WORLD, NPB_EXIT_FATAL);
	exit(NPB_EXIT_FATAL);	/* MPI_Abort does not return; be sure */
}

void *npb_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		npb_fatal("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

int npb_parse_args(int argc, char **argv, const struct npb_prog *p,
		   struct npb_opts *o)
{
	static const char names[NPB_NCLASSES] = { 'S', 'W', 'A', 'B', 'C' };
	const char *cls = NULL;

	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			if (my_rank() == 0)
				usage(p, stdout);
			return 1;
		} else if (!strcmp(a, "--perturb")) {
			o->perturb = true;
		} else if (!strcmp(a, "--class")) {
			if (i + 1 >= argc) {
				npb_usage_error(p->prog, "--class needs a value");
				return -1;
			}
			cls = argv[++i];
		} else if (!strncmp(a, "--class=", 8)) {
			cls = a + 8;
		} else {
			npb_usage_error(p->prog,
					"unknown argument '%s' (try --help)", a);
			return -1;
		}
	}
	if (!cls) {
		npb_usage_error(p->prog, "missing --class S|W|A|B|C");
		return -1;
	}
	for (int c = 0; c < NPB_NCLASSES; c++) {
		if (cls[0] && !cls[1] && (cls[0] == names[c] ||
					  cls[0] == names[c] + ('a' - 'A'))) {
			o->cls = c;
			o->cls_name = names[c];
			return 0;
		}
	}
	npb_usage_error(p->prog, "unknown class '%s' (want S, W, A, B or C)",
			cls);
	return -1;
}

int npb_ilog2(unsigned long v)
{
	int l = 0;

	while (v > 1) {
		v >>= 1;
		l++;
	}
	return l;
}

double npb_wtime(void)
{
	return MPI_Wtime();
}

double npb_max_over(double t, MPI_Comm comm)
{
	double m = t;

	MPI_Allreduce(&t, &m, 1, MPI_DOUBLE, MPI_MAX, comm);
	return m;
}

bool npb_check_rel(int rank, const char *what, double val, double ref,
		   double eps)
{
	double err = fabs((val - ref) / ref);
	/* Written so that a NaN anywhere makes the comparison false. */
	bool ok = err <= eps;

	if (rank == 0)
		printf(" %-6s computed %22.15e  reference %22.15e  "
		       "rel.err %9.3e  %s\n", what, val, ref, err,
		       ok ? "ok" : "FAILED");
	return ok;
}

/* Each line: a space, the label in 16 columns, '=', the value right-aligned
 * so that it ends in column 43, as in the NPB printouts that existing
 * scripts parse. */
static void line_s(const char *label, const char *val)
{
	printf(" %-16s=%25s\n", label, val);
}

static void line_l(const char *label, long v)
{
	char b[32];

	snprintf(b, sizeof(b), "%ld", v);
	line_s(label, b);
}

static void line_f(const char *label, double v)
{
	char b[64];

	snprintf(b, sizeof(b), "%.2f", v);
	line_s(label, b);
}

void npb_print_report(const struct npb_report *r)
{
	char cls[2] = { r->cls, 0 };

	/* The block rounds to 10 ms, too coarse for class S; the exact
	 * figure goes just above it for scripts that want it. */
	printf("\n Timed region: %.6f seconds\n", r->time);
	printf("\n\n %s Benchmark Completed.\n", r->name);
	line_s("Class", cls);
	line_s("Size", r->size);
	line_l("Iterations", r->iterations);
	line_f("Time in seconds", r->time);
	line_l("Total processes", r->total_procs);
	line_l("Active procs", r->active_procs);
	line_f("Mop/s total", r->mops);
	line_f("Mop/s/process", r->mops / r->total_procs);
	line_s("Operation type", r->optype);
	line_s("Verification", r->verified ? "SUCCESSFUL" : "UNSUCCESSFUL");
	line_s("Version", "3.4-compatible");
	line_s("Compile date", __DATE__);
	printf("\n Compile options:\n");
	printf("    MPICC        = mpicc (gcc %s)\n", __VERSION__);
	printf("    CFLAGS       = %s\n", NPB_CFLAGS);
	printf("    Source       = vcluster bench/NPB/kernels "
	       "(clean-room rewrite from the spec sheet)\n\n");
	fflush(stdout);
}
