/* npb-cg: NPB CG, smallest eigenvalue estimate of a random sparse symmetric
 * matrix by inverse power iteration, each step solved by 25 unpreconditioned
 * conjugate-gradient iterations (spec sheet section 4).
 *
 * Layout: P = 2^k processes form an nprows x npcols grid (npcols = nprows or
 * 2*nprows), rank = prow*npcols + pcol.  The columns are cut into npcols
 * blocks and a row block is the union of npcols/nprows consecutive column
 * blocks, so the two partitions nest.  Process (r, c) holds A[row block r]
 * [column block c]; every vector is stored by column block c, replicated
 * down the process column.  A matrix-vector product sums the partial
 * products along the process row (Allreduce) and then swaps one column
 * block with a "transpose" partner; dot products are an Allreduce along the
 * process row.
 */
#include "npb_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CG_SEED 314159265.0
#define CG_RCOND 0.1
#define CG_CGITMAX 25
#define CG_EPS 1e-10

static const struct cg_class {
	int na, nonzer, niter;
	double shift, zeta;
} cg_classes[NPB_NCLASSES] = {
	[NPB_CLASS_S] = { 1400, 7, 15, 10.0, 8.5971775078648 },
	[NPB_CLASS_W] = { 7000, 8, 15, 12.0, 10.362595087124 },
	[NPB_CLASS_A] = { 14000, 11, 15, 20.0, 17.130235054029 },
	[NPB_CLASS_B] = { 75000, 13, 75, 60.0, 22.712745482631 },
	[NPB_CLASS_C] = { 150000, 15, 75, 110.0, 28.973605592845 },
};

struct cg_ctx {
	const struct cg_class *c;
	int rank, nprocs;
	int nprows, npcols, prow, pcol;
	MPI_Comm row_comm;	/* my process row */
	int partner;		/* transpose exchange partner */

	int row0, nrow;		/* my row block [row0, row0 + nrow) */
	int col0, ncol;		/* my column block */
	int send_off, send_len;	/* slice of my row block the partner needs */

	/* My block of A in CSR form, local row and column indices. */
	long *rowptr;
	int *colidx;
	double *val;

	double *w;		/* partial products, by row block */
};

/* First global index of column block b. */
static int cg_col_start(const struct cg_ctx *x, int b)
{
	return (int)((long)b * x->c->na / x->npcols);
}

static void cg_layout(struct cg_ctx *x)
{
	int k = npb_ilog2(x->nprocs);
	int g;

	x->nprows = 1 << (k / 2);
	x->npcols = x->nprocs / x->nprows;
	g = x->npcols / x->nprows;
	x->prow = x->rank / x->npcols;
	x->pcol = x->rank % x->npcols;
	x->col0 = cg_col_start(x, x->pcol);
	x->ncol = cg_col_start(x, x->pcol + 1) - x->col0;
	x->row0 = cg_col_start(x, g * x->prow);
	x->nrow = cg_col_start(x, g * (x->prow + 1)) - x->row0;

	/* Column block c = g*m + h lies in row block m: the partner of (r, c)
	 * is (m, g*r + h), and the pairing is its own inverse.  I send the
	 * partner its column block g*r + h, a slice of my row block r. */
	int m = x->pcol / g, h = x->pcol % g;
	int pc = g * x->prow + h;

	x->partner = m * x->npcols + pc;
	x->send_off = cg_col_start(x, pc) - x->row0;
	x->send_len = cg_col_start(x, pc + 1) - cg_col_start(x, pc);

	MPI_Comm_split(MPI_COMM_WORLD, x->prow, x->pcol, &x->row_comm);
}

/* Growable list of (row, col, value) entries of my block, in generation
 * order. */
struct cg_coo {
	int *r, *c;
	double *v;
	long n, cap;
};

static void coo_add(struct cg_coo *e, int r, int c, double v)
{
	if (e->n == e->cap) {
		long cap = e->cap ? 2 * e->cap : 1 << 16;

		e->r = realloc(e->r, cap * sizeof(int));
		e->c = realloc(e->c, cap * sizeof(int));
		e->v = realloc(e->v, cap * sizeof(double));
		if (!e->r || !e->c || !e->v)
			npb_fatal("out of memory building the matrix");
		e->cap = cap;
	}
	e->r[e->n] = r;
	e->c[e->n] = c;
	e->v[e->n] = v;
	e->n++;
}

/* Generate A (spec sheet "Matrix generation") and keep my block.  Every
 * process walks the whole sequential random stream, which is cheap next to
 * the iterations and makes the matrix independent of P. */
static void cg_makea(struct cg_ctx *x, double seed)
{
	const struct cg_class *c = x->c;
	int n = c->na, nonzer = c->nonzer, nn1 = 1;
	double tran = seed, size = 1.0;
	double ratio = pow(CG_RCOND, 1.0 / n);
	int *iv = npb_xcalloc(nonzer + 1, sizeof(int));
	double *v = npb_xcalloc(nonzer + 1, sizeof(double));
	char *mark = npb_xcalloc(n + 1, 1);
	struct cg_coo e = { 0 };

	do
		nn1 *= 2;
	while (nn1 < n);

	/* NPB draws and discards one value before building the matrix. */
	npb_randlc(&tran, NPB_RAND_A);

	for (int i = 1; i <= n; i++) {
		int nzv = 0;

		/* nonzer distinct random positions with random values. */
		while (nzv < nonzer) {
			double vecelt = npb_randlc(&tran, NPB_RAND_A);
			double vecloc = npb_randlc(&tran, NPB_RAND_A);
			int j = (int)(nn1 * vecloc) + 1;

			if (j > n || mark[j])
				continue;
			mark[j] = 1;
			iv[nzv] = j;
			v[nzv] = vecelt;
			nzv++;
		}
		for (int k = 0; k < nzv; k++)
			mark[iv[k]] = 0;

		/* Position i gets 0.5, replacing a drawn value there. */
		int k;

		for (k = 0; k < nzv && iv[k] != i; k++)
			;
		if (k == nzv) {
			iv[nzv] = i;
			nzv++;
		}
		v[k] = 0.5;

		/* size * v v^T, restricted to my block (0-based). */
		for (int a = 0; a < nzv; a++) {
			int col = iv[a] - 1;
			double scale = size * v[a];

			if (col < x->col0 || col >= x->col0 + x->ncol)
				continue;
			for (int b = 0; b < nzv; b++) {
				int row = iv[b] - 1;

				if (row >= x->row0 && row < x->row0 + x->nrow)
					coo_add(&e, row - x->row0,
						col - x->col0, v[b] * scale);
			}
		}
		size *= ratio;
	}
	/* The shift goes on last, after all outer products are summed. */
	for (int i = 0; i < n; i++)
		if (i >= x->row0 && i < x->row0 + x->nrow &&
		    i >= x->col0 && i < x->col0 + x->ncol)
			coo_add(&e, i - x->row0, i - x->col0,
				CG_RCOND - c->shift);
	free(iv);
	free(v);
	free(mark);

	/* Two stable counting sorts, by column and then by row, leave the
	 * entries ordered by (row, column) with duplicates still in
	 * generation order, so they are summed in that order. */
	long m = e.n;
	long *cur = npb_xcalloc((x->ncol > x->nrow ? x->ncol : x->nrow) + 1,
				sizeof(long));
	int *tr = npb_xcalloc(m, sizeof(int));
	int *tc = npb_xcalloc(m, sizeof(int));
	double *tv = npb_xcalloc(m, sizeof(double));

	for (long q = 0; q < m; q++)
		cur[e.c[q] + 1]++;
	for (int q = 0; q < x->ncol; q++)
		cur[q + 1] += cur[q];
	for (long q = 0; q < m; q++) {
		long d = cur[e.c[q]]++;

		tr[d] = e.r[q];
		tc[d] = e.c[q];
		tv[d] = e.v[q];
	}
	free(e.r);
	free(e.c);
	free(e.v);

	long *start = npb_xcalloc(x->nrow + 1, sizeof(long));

	x->colidx = npb_xcalloc(m, sizeof(int));
	x->val = npb_xcalloc(m, sizeof(double));
	for (long q = 0; q < m; q++)
		start[tr[q] + 1]++;
	for (int q = 0; q < x->nrow; q++)
		start[q + 1] += start[q];
	memcpy(cur, start, (x->nrow + 1) * sizeof(long));
	for (long q = 0; q < m; q++) {
		long d = cur[tr[q]]++;

		x->colidx[d] = tc[q];
		x->val[d] = tv[q];
	}
	free(tr);
	free(tc);
	free(tv);
	free(cur);

	/* Sum duplicates in place; drop entries that cancel exactly. */
	long out = 0;

	x->rowptr = start;	/* rewritten in place: out <= start[row] */
	for (int row = 0; row < x->nrow; row++) {
		long in = start[row], end = start[row + 1];

		x->rowptr[row] = out;
		while (in < end) {
			int col = x->colidx[in];
			double s = x->val[in++];

			while (in < end && x->colidx[in] == col)
				s += x->val[in++];
			if (s != 0.0) {
				x->colidx[out] = col;
				x->val[out] = s;
				out++;
			}
		}
	}
	x->rowptr[x->nrow] = out;
}

/* q = A p, both by column block. */
static void cg_matvec(struct cg_ctx *x, const double *p, double *q)
{
	for (int i = 0; i < x->nrow; i++) {
		double s = 0.0;

		for (long k = x->rowptr[i]; k < x->rowptr[i + 1]; k++)
			s += x->val[k] * p[x->colidx[k]];
		x->w[i] = s;
	}
	if (x->npcols > 1)
		MPI_Allreduce(MPI_IN_PLACE, x->w, x->nrow, MPI_DOUBLE,
			      MPI_SUM, x->row_comm);
	if (x->partner == x->rank)
		memcpy(q, x->w + x->send_off, x->ncol * sizeof(double));
	else
		MPI_Sendrecv(x->w + x->send_off, x->send_len, MPI_DOUBLE,
			     x->partner, 1, q, x->ncol, MPI_DOUBLE, x->partner,
			     1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

/* Sums of n local values over the process row, in place. */
static void cg_rowsum(struct cg_ctx *x, double *v, int n)
{
	if (x->npcols > 1)
		MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM,
			      x->row_comm);
}

static double cg_dot(struct cg_ctx *x, const double *a, const double *b)
{
	double s = 0.0;

	for (int i = 0; i < x->ncol; i++)
		s += a[i] * b[i];
	cg_rowsum(x, &s, 1);
	return s;
}

struct cg_vecs {
	double *x, *z, *r, *p, *q;
};

/* 25 CG iterations for A z = x from z = 0; returns ||x - A z||. */
static double cg_solve(struct cg_ctx *x, struct cg_vecs *v)
{
	int n = x->ncol;
	double rho = 0.0;

	for (int i = 0; i < n; i++) {
		v->z[i] = 0.0;
		v->r[i] = v->x[i];
		v->p[i] = v->r[i];
	}
	rho = cg_dot(x, v->r, v->r);

	for (int it = 0; it < CG_CGITMAX; it++) {
		cg_matvec(x, v->p, v->q);
		double alpha = rho / cg_dot(x, v->p, v->q);

		for (int i = 0; i < n; i++) {
			v->z[i] += alpha * v->p[i];
			v->r[i] -= alpha * v->q[i];
		}
		double rho0 = rho;

		rho = cg_dot(x, v->r, v->r);
		double beta = rho / rho0;

		for (int i = 0; i < n; i++)
			v->p[i] = v->r[i] + beta * v->p[i];
	}

	/* The true residual, computed explicitly; printed, not verified. */
	cg_matvec(x, v->z, v->q);
	double s = 0.0;

	for (int i = 0; i < n; i++) {
		double d = v->x[i] - v->q[i];

		s += d * d;
	}
	cg_rowsum(x, &s, 1);
	return sqrt(s);
}

/* One outer step: solve, then zeta = shift + 1/(x.z) and x = z/||z||. */
static double cg_step(struct cg_ctx *x, struct cg_vecs *v, double *rnorm)
{
	double d[2] = { 0.0, 0.0 };

	*rnorm = cg_solve(x, v);
	for (int i = 0; i < x->ncol; i++) {
		d[0] += v->x[i] * v->z[i];
		d[1] += v->z[i] * v->z[i];
	}
	cg_rowsum(x, d, 2);
	double inv = 1.0 / sqrt(d[1]);

	for (int i = 0; i < x->ncol; i++)
		v->x[i] = inv * v->z[i];
	return x->c->shift + 1.0 / d[0];
}

int main(int argc, char **argv)
{
	static const struct npb_prog prog = {
		.prog = "npb-cg",
		.title = "NPB CG: conjugate gradient, smallest eigenvalue of a "
			 "sparse matrix.",
		.procs = "a power of two (laid out as a 2-D grid).",
		.perturb = "seed 314159265 becomes 314159267 (another matrix).",
	};
	struct npb_opts o;
	struct cg_ctx x;
	struct cg_vecs v;
	int rc;

	MPI_Init(&argc, &argv);
	memset(&x, 0, sizeof(x));
	MPI_Comm_rank(MPI_COMM_WORLD, &x.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &x.nprocs);

	rc = npb_parse_args(argc, argv, &prog, &o);
	if (rc) {
		MPI_Finalize();
		return rc > 0 ? NPB_EXIT_OK : NPB_EXIT_USAGE;
	}
	x.c = &cg_classes[o.cls];
	if (!npb_is_pow2(x.nprocs) || x.nprocs > x.c->na / 2) {
		rc = npb_usage_error(prog.prog, "class %c needs a power-of-two "
				     "number of processes (at most %d), not %d",
				     o.cls_name, x.c->na / 2, x.nprocs);
		MPI_Finalize();
		return rc;
	}
	if (!npb_rand_selftest())
		npb_fatal("random number generator self-test failed");

	const struct cg_class *c = x.c;
	double seed = o.perturb ? CG_SEED + 2.0 : CG_SEED;

	cg_layout(&x);
	if (x.rank == 0) {
		printf("\n\n NAS Parallel Benchmarks (vcluster rewrite) -- "
		       "CG Benchmark\n\n");
		printf(" Size: %11d\n", c->na);
		printf(" Iterations: %5d\n", c->niter);
		printf(" Number of active processes: %5d\n", x.nprocs);
		printf(" Number of nonzeroes per row: %8d\n", c->nonzer);
		printf(" Eigenvalue shift: %8.3e\n", c->shift);
		printf(" Process grid: %d x %d\n", x.nprows, x.npcols);
		if (o.perturb)
			printf(" PERTURBED input: seed %.0f\n", seed);
		fflush(stdout);
	}

	cg_makea(&x, seed);
	long nnz = x.rowptr[x.nrow], gnnz = 0;

	MPI_Reduce(&nnz, &gnnz, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
	if (x.rank == 0)
		printf(" Nonzeroes in A: %ld\n\n", gnnz);

	x.w = npb_xcalloc(x.nrow, sizeof(double));
	v.x = npb_xcalloc(x.ncol, sizeof(double));
	v.z = npb_xcalloc(x.ncol, sizeof(double));
	v.r = npb_xcalloc(x.ncol, sizeof(double));
	v.p = npb_xcalloc(x.ncol, sizeof(double));
	v.q = npb_xcalloc(x.ncol, sizeof(double));

	/* One untimed step touches all code and data, then x starts over. */
	double rnorm, zeta = 0.0;

	for (int i = 0; i < x.ncol; i++)
		v.x[i] = 1.0;
	cg_step(&x, &v, &rnorm);
	for (int i = 0; i < x.ncol; i++)
		v.x[i] = 1.0;

	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = npb_wtime();

	if (x.rank == 0)
		printf("   iteration           ||r||                 zeta\n");
	for (int it = 1; it <= c->niter; it++) {
		zeta = cg_step(&x, &v, &rnorm);
		if (x.rank == 0)
			printf("    %5d       %20.14e%20.13e\n", it, rnorm,
			       zeta);
	}
	double t = npb_max_over(npb_wtime() - t0, MPI_COMM_WORLD);

	/* Every rank computed the same zeta; check it everywhere so that all
	 * ranks agree on the exit status. */
	if (x.rank == 0)
		printf("\n Verification against class %c reference:\n",
		       o.cls_name);
	bool ok = npb_check_rel(x.rank, "zeta", zeta, c->zeta, CG_EPS);

	/* All ranks must exit alike even if roundoff differed somewhere. */
	int okall = ok, okmin = 0;

	MPI_Allreduce(&okall, &okmin, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	ok = okmin;
	if (x.rank == 0) {
		double nz = c->nonzer;
		double flops = 2.0 * c->niter * c->na *
			       (3.0 + nz * (nz + 1) +
				25.0 * (5.0 + nz * (nz + 1)) + 3.0);
		struct npb_report r = {
			.name = "CG",
			.cls = o.cls_name,
			.iterations = c->niter,
			.time = t,
			.total_procs = x.nprocs,
			.active_procs = x.nprocs,
			.mops = flops / t / 1e6,
			.optype = "floating point",
			.verified = ok,
		};

		snprintf(r.size, sizeof(r.size), "%d", c->na);
		npb_print_report(&r);
	}
	free(x.rowptr);
	free(x.colidx);
	free(x.val);
	free(x.w);
	free(v.x);
	free(v.z);
	free(v.r);
	free(v.p);
	free(v.q);
	MPI_Comm_free(&x.row_comm);
	MPI_Finalize();
	return npb_status(ok);
}
