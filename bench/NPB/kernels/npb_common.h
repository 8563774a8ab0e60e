/* npb_common: pieces shared by the NPB kernels EP, IS, CG and MG.
 *
 * Written from the specification sheet (shared/npb-spec.md), not from the
 * NPB sources: the NPB pseudo-random generator, MPI timers, command-line
 * parsing, relative-error checks and the standard NPB report block.
 *
 * Every program links this module with its own kernel file; nothing here
 * keeps mutable global state.
 */
#ifndef NPB_COMMON_H
#define NPB_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

/* Exit statuses shared by all kernels (and relied on by the test suite). */
enum {
	NPB_EXIT_OK = 0,	/* verification SUCCESSFUL, or --help */
	NPB_EXIT_FAIL = 1,	/* verification UNSUCCESSFUL */
	NPB_EXIT_USAGE = 2,	/* bad arguments or process count */
	NPB_EXIT_FATAL = 3,	/* out of memory, failed self-test */
};

/* The multiplier a = 5^13 all four kernels use. */
#define NPB_RAND_A 1220703125.0

/* One step of x <- a*x mod 2^46; returns the new x scaled by 2^-46.
 * x and a must be odd integers in (1, 2^46), held exactly in doubles. */
double npb_randlc(double *x, double a);
/* Fill y[0..n-1] with the next n values of randlc(x, a). */
void npb_vranlc(size_t n, double *x, double a, double *y);
/* x * a^n mod 2^46: the state n steps after x (jump-ahead). */
double npb_rand_jump(double x, double a, uint64_t n);
/* Check the generator against the sanity values of the spec sheet. */
bool npb_rand_selftest(void);

/* Benchmark classes, in increasing size. */
enum npb_class { NPB_CLASS_S, NPB_CLASS_W, NPB_CLASS_A, NPB_CLASS_B,
		 NPB_CLASS_C, NPB_NCLASSES };

struct npb_opts {
	enum npb_class cls;
	char cls_name;		/* 'S', 'W', ... */
	bool perturb;		/* deliberately perturb the input */
};

/* What a kernel tells npb_parse_args for its --help text. */
struct npb_prog {
	const char *prog;	/* "npb-ep" */
	const char *title;	/* one line: what the kernel does */
	const char *procs;	/* process-count rule, for --help */
	const char *perturb;	/* what --perturb changes */
};

/* Parse argv.  Returns 0 to run, 1 when --help was printed (exit 0), -1 on
 * bad usage (message already printed on rank 0; exit NPB_EXIT_USAGE). */
int npb_parse_args(int argc, char **argv, const struct npb_prog *p,
		   struct npb_opts *o);

/* Print "prog: error: ..." on rank 0 only; returns NPB_EXIT_USAGE. */
int npb_usage_error(const char *prog, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Print a fatal error from any rank and abort the whole job. */
_Noreturn void npb_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* calloc that aborts the job on failure: a kernel cannot run without its
 * arrays, and half the ranks carrying on alone would hang the others. */
void *npb_xcalloc(size_t n, size_t size);

static inline bool npb_is_pow2(long v)
{
	return v > 0 && (v & (v - 1)) == 0;
}

/* log2 of a power of two. */
int npb_ilog2(unsigned long v);

/* Wall-clock seconds. */
double npb_wtime(void);
/* Largest of every rank's t over comm (all ranks get it). */
double npb_max_over(double t, MPI_Comm comm);

/* |val - ref| / |ref| <= eps, printing one line on rank 0.  NaN fails. */
bool npb_check_rel(int rank, const char *what, double val, double ref,
		   double eps);

struct npb_report {
	const char *name;	/* "EP" */
	char cls;
	char size[32];		/* already formatted */
	long iterations;
	double time;		/* seconds, maximum over ranks */
	int total_procs;
	int active_procs;
	double mops;		/* Mop/s total */
	const char *optype;
	bool verified;
};

/* The standard NPB report block (rank 0 calls it). */
void npb_print_report(const struct npb_report *r);

/* Verification outcome as an exit status. */
static inline int npb_status(bool verified)
{
	return verified ? NPB_EXIT_OK : NPB_EXIT_FAIL;
}

#endif
