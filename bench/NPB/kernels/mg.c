/* npb-mg: NPB MG, V-cycle multigrid for a 3-D periodic Poisson problem
 * (spec sheet section 5).
 *
 * The active processes (the largest power of two <= P) form a px x py x pz
 * grid, doubling z first, then y, then x.  Every level is stored with a
 * one-point halo.  A level whose local size would drop below 2 points in
 * some dimension is instead replicated on every process and computed
 * redundantly: these coarse levels are tiny, and this keeps restriction and
 * prolongation purely local apart from one Allreduce at the switch.
 */
#include "npb_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MG_SEED 314159265.0
#define MG_EPS 1e-8
#define MG_NCHARGE 10
#define MG_MAXLEV 16

static const struct mg_class {
	int lt, nit;
	double rnm2;
} mg_classes[NPB_NCLASSES] = {
	[NPB_CLASS_S] = { 5, 4, 0.5307707005734e-04 },
	[NPB_CLASS_W] = { 7, 4, 0.6467329375339e-05 },
	[NPB_CLASS_A] = { 8, 4, 0.2433365309069e-05 },
	[NPB_CLASS_B] = { 8, 20, 0.1800564401355e-05 },
	[NPB_CLASS_C] = { 9, 20, 0.5706732285740e-06 },
};

/* One level as this process stores it. */
struct mg_grid {
	int n;			/* global points per dimension */
	bool dist;		/* split over processes (else replicated) */
	int l[3];		/* local interior points in x, y, z */
	int s[3];		/* global index of the first local point */
	long d0, d01;		/* strides of y and z, halo included */
	size_t size;		/* elements, halo included */
};

struct mg_ctx {
	int rank, nactive;
	MPI_Comm comm;		/* the active processes */
	int pdim[3], pc[3];	/* process grid and my coordinates */
	int nbr[3][2];		/* neighbour ranks, lower and upper */
	int lt;
	struct mg_grid g[MG_MAXLEV + 1];
	double *u[MG_MAXLEV + 1], *r[MG_MAXLEV + 1], *v;
	double *sbuf, *rbuf;	/* halo planes */
	double *f1, *f2;	/* row sums for the stencils */
	double a[4], c[4];	/* residual and smoother coefficients */
};

/* Index of local point (i, j, k); -1 and l[] address the halo. */
static inline size_t at(const struct mg_grid *g, long i, long j, long k)
{
	return (size_t)((i + 1) + g->d0 * (j + 1) + g->d01 * (k + 1));
}

static int mg_grid_rank(const struct mg_ctx *x, const int *pc)
{
	return pc[0] + x->pdim[0] * (pc[1] + x->pdim[1] * pc[2]);
}

/* Process grid and level geometry.  Returns false if the finest level
 * cannot give every process at least 2 points per dimension. */
static bool mg_setup(struct mg_ctx *x)
{
	int k = npb_ilog2(x->nactive);

	x->pdim[0] = x->pdim[1] = x->pdim[2] = 1;
	for (int i = 0; i < k; i++)
		x->pdim[2 - i % 3] *= 2;
	x->pc[0] = x->rank % x->pdim[0];
	x->pc[1] = x->rank / x->pdim[0] % x->pdim[1];
	x->pc[2] = x->rank / (x->pdim[0] * x->pdim[1]);
	for (int d = 0; d < 3; d++) {
		for (int s = 0; s < 2; s++) {
			int q[3] = { x->pc[0], x->pc[1], x->pc[2] };

			q[d] = (q[d] + (s ? 1 : -1) + x->pdim[d]) % x->pdim[d];
			x->nbr[d][s] = mg_grid_rank(x, q);
		}
	}

	size_t plane = 0, row = 0;

	for (int lev = 1; lev <= x->lt; lev++) {
		struct mg_grid *g = &x->g[lev];

		g->n = 1 << lev;
		g->dist = true;
		for (int d = 0; d < 3; d++)
			if (g->n / x->pdim[d] < 2)
				g->dist = false;
		for (int d = 0; d < 3; d++) {
			g->l[d] = g->dist ? g->n / x->pdim[d] : g->n;
			g->s[d] = g->dist ? x->pc[d] * g->l[d] : 0;
		}
		g->d0 = g->l[0] + 2;
		g->d01 = g->d0 * (g->l[1] + 2);
		g->size = (size_t)g->d01 * (g->l[2] + 2);
		/* A replicated coarse level can be longer than the finest
		 * level's local rows. */
		if ((size_t)g->d0 > row)
			row = g->d0;
		for (int d = 0; d < 3; d++) {
			size_t p = g->size / (g->l[d] + 2);

			if (p > plane)
				plane = p;
		}
	}
	if (!x->g[x->lt].dist)
		return false;

	for (int lev = 1; lev <= x->lt; lev++) {
		x->u[lev] = npb_xcalloc(x->g[lev].size, sizeof(double));
		x->r[lev] = npb_xcalloc(x->g[lev].size, sizeof(double));
	}
	x->v = npb_xcalloc(x->g[x->lt].size, sizeof(double));
	x->sbuf = npb_xcalloc(plane, sizeof(double));
	x->rbuf = npb_xcalloc(plane, sizeof(double));
	x->f1 = npb_xcalloc(row, sizeof(double));
	x->f2 = npb_xcalloc(row, sizeof(double));
	return true;
}

/* Copy the halo-inclusive plane of dimension d at local index i to or from
 * buf.  The other two dimensions run over their halos too, so filling the
 * halos dimension by dimension (x, y, z) also fills edges and corners. */
static void mg_plane(const struct mg_grid *g, double *a, int d, long i,
		     double *buf, bool pack)
{
	long ext[3] = { g->l[0] + 2, g->l[1] + 2, g->l[2] + 2 };
	long str[3] = { 1, g->d0, g->d01 };
	int e1 = d == 0 ? 1 : 0, e2 = d == 2 ? 1 : 2;
	double *base = a + (i + 1) * str[d];
	size_t m = 0;

	for (long b = 0; b < ext[e2]; b++) {
		for (long c = 0; c < ext[e1]; c++) {
			double *p = base + b * str[e2] + c * str[e1];

			if (pack)
				buf[m++] = *p;
			else
				*p = buf[m++];
		}
	}
}

/* Fill the halo of a (periodic in all three dimensions). */
static void mg_comm3(struct mg_ctx *x, int lev, double *a)
{
	const struct mg_grid *g = &x->g[lev];

	for (int d = 0; d < 3; d++) {
		long l = g->l[d];
		int cnt = (int)(g->size / (l + 2));

		if (!g->dist || x->pdim[d] == 1) {
			/* The wrap-around neighbour is myself. */
			mg_plane(g, a, d, l - 1, x->sbuf, true);
			mg_plane(g, a, d, -1, x->sbuf, false);
			mg_plane(g, a, d, 0, x->sbuf, true);
			mg_plane(g, a, d, l, x->sbuf, false);
			continue;
		}
		/* Distinct tags keep the two directions apart when both
		 * neighbours are the same process (2 along d). */
		mg_plane(g, a, d, l - 1, x->sbuf, true);
		MPI_Sendrecv(x->sbuf, cnt, MPI_DOUBLE, x->nbr[d][1], 10 + d,
			     x->rbuf, cnt, MPI_DOUBLE, x->nbr[d][0], 10 + d,
			     x->comm, MPI_STATUS_IGNORE);
		mg_plane(g, a, d, -1, x->rbuf, false);
		mg_plane(g, a, d, 0, x->sbuf, true);
		MPI_Sendrecv(x->sbuf, cnt, MPI_DOUBLE, x->nbr[d][0], 20 + d,
			     x->rbuf, cnt, MPI_DOUBLE, x->nbr[d][1], 20 + d,
			     x->comm, MPI_STATUS_IGNORE);
		mg_plane(g, a, d, l, x->rbuf, false);
	}
}

/* Sums over the 27-point neighbourhood, by class, for the points of row
 * (j, k):  along the row, with f1 = the 4 face neighbours and f2 = the 4
 * edge neighbours in the y-z plane,
 *   faces   = a(i-1) + a(i+1) + f1(i)
 *   edges   = f2(i) + f1(i-1) + f1(i+1)
 *   corners = f2(i-1) + f2(i+1)
 * which needs 2 + 3 + 1 additions per point instead of 26. */
static void mg_rowsums(const struct mg_grid *g, const double *a, long j,
		       long k, long i0, long i1, double *f1, double *f2)
{
	const double *ym = a + at(g, 0, j - 1, k), *yp = a + at(g, 0, j + 1, k);
	const double *zm = a + at(g, 0, j, k - 1), *zp = a + at(g, 0, j, k + 1);
	const double *mm = a + at(g, 0, j - 1, k - 1);
	const double *pm = a + at(g, 0, j + 1, k - 1);
	const double *mp = a + at(g, 0, j - 1, k + 1);
	const double *pp = a + at(g, 0, j + 1, k + 1);

	for (long i = i0; i <= i1; i++) {
		f1[i + 1] = ym[i] + yp[i] + zm[i] + zp[i];
		f2[i + 1] = mm[i] + pm[i] + mp[i] + pp[i];
	}
}

/* r = v - A u at level lev; v may be r itself.  u's halo must be valid. */
static void mg_resid(struct mg_ctx *x, int lev, const double *u,
		     const double *v, double *r)
{
	const struct mg_grid *g = &x->g[lev];
	double *f1 = x->f1, *f2 = x->f2;
	const double *a = x->a;

	for (long k = 0; k < g->l[2]; k++) {
		for (long j = 0; j < g->l[1]; j++) {
			const double *ur = u + at(g, 0, j, k);
			const double *vr = v + at(g, 0, j, k);
			double *rr = r + at(g, 0, j, k);

			mg_rowsums(g, u, j, k, -1, g->l[0], f1, f2);
			for (long i = 0; i < g->l[0]; i++) {
				double edges = f2[i + 1] + f1[i] + f1[i + 2];
				double corners = f2[i] + f2[i + 2];

				/* a[1] (faces) is zero: skipped. */
				rr[i] = vr[i] - a[0] * ur[i] - a[2] * edges -
					a[3] * corners;
			}
		}
	}
}

/* u += S r at level lev.  r's halo must be valid. */
static void mg_psinv(struct mg_ctx *x, int lev, const double *r, double *u)
{
	const struct mg_grid *g = &x->g[lev];
	double *f1 = x->f1, *f2 = x->f2;
	const double *c = x->c;

	for (long k = 0; k < g->l[2]; k++) {
		for (long j = 0; j < g->l[1]; j++) {
			const double *rr = r + at(g, 0, j, k);
			double *ur = u + at(g, 0, j, k);

			mg_rowsums(g, r, j, k, -1, g->l[0], f1, f2);
			for (long i = 0; i < g->l[0]; i++) {
				double faces = rr[i - 1] + rr[i + 1] + f1[i + 1];
				double edges = f2[i + 1] + f1[i] + f1[i + 2];

				/* c[3] (corners) is zero: skipped. */
				ur[i] += c[0] * rr[i] + c[1] * faces +
					 c[2] * edges;
			}
		}
	}
}

/* Where the coarse points that go with my part of level lev (the finer)
 * sit in the arrays of level lev-1: a distributed coarse level is aligned
 * with mine; a replicated one holds the whole grid. */
static size_t mg_coarse_origin(const struct mg_ctx *x, int lev)
{
	const struct mg_grid *fg = &x->g[lev], *cg = &x->g[lev - 1];

	if (cg->dist || !fg->dist)
		return at(cg, 0, 0, 0);
	return at(cg, fg->s[0] / 2, fg->s[1] / 2, fg->s[2] / 2);
}

/* r(lev-1) = P r(lev): coarse J sits on fine 2J+1 (0-based).  The fine
 * halo must be valid. */
static void mg_rprj3(struct mg_ctx *x, int lev)
{
	const struct mg_grid *fg = &x->g[lev], *cg = &x->g[lev - 1];
	const double *f = x->r[lev];
	double *c = x->r[lev - 1];
	double *f1 = x->f1, *f2 = x->f2;
	long m[3] = { fg->l[0] / 2, fg->l[1] / 2, fg->l[2] / 2 };
	bool gather = fg->dist && !cg->dist;

	if (gather)
		memset(c, 0, cg->size * sizeof(double));
	c += mg_coarse_origin(x, lev) - at(cg, 0, 0, 0);

	for (long k = 0; k < m[2]; k++) {
		for (long j = 0; j < m[1]; j++) {
			const double *fr = f + at(fg, 0, 2 * j + 1, 2 * k + 1);
			double *cr = c + at(cg, 0, j, k);

			mg_rowsums(fg, f, 2 * j + 1, 2 * k + 1, 0,
				   2 * m[0], f1, f2);
			for (long i = 0; i < m[0]; i++) {
				long fi = 2 * i + 1;
				double faces = fr[fi - 1] + fr[fi + 1] +
					       f1[fi + 1];
				double edges = f2[fi + 1] + f1[fi] + f1[fi + 2];
				double corners = f2[fi] + f2[fi + 2];

				cr[i] = 0.5 * fr[fi] + 0.25 * faces +
					0.125 * edges + 0.0625 * corners;
			}
		}
	}
	/* Each coarse point was written by exactly one process and is zero
	 * elsewhere, so the sum replicates it exactly. */
	if (gather)
		MPI_Allreduce(MPI_IN_PLACE, x->r[lev - 1], (int)cg->size,
			      MPI_DOUBLE, MPI_SUM, x->comm);
}

/* u(lev) += Q u(lev-1).  Each coarse cell (J, J+1 in every dimension)
 * feeds the fine points 2J+1 (weight 1) and 2J+2 (1/2 from each end); cells
 * from J = -1 cover every local fine point once.  The coarse halo must be
 * valid; the fine halo gets junk and is refilled before use. */
static void mg_interp(struct mg_ctx *x, int lev)
{
	const struct mg_grid *fg = &x->g[lev], *cg = &x->g[lev - 1];
	const double *c = x->u[lev - 1] + mg_coarse_origin(x, lev) -
			  at(cg, 0, 0, 0);
	double *f = x->u[lev];
	long m[3] = { fg->l[0] / 2, fg->l[1] / 2, fg->l[2] / 2 };
	long cy = cg->d0, cz = cg->d01, fy = fg->d0, fz = fg->d01;

	for (long k = -1; k < m[2]; k++) {
		for (long j = -1; j < m[1]; j++) {
			const double *z = c + at(cg, 0, j, k);
			double *o = f + at(fg, 0, 2 * j + 1, 2 * k + 1);

			for (long i = -1; i < m[0]; i++) {
				const double *p = z + i;
				double c000 = p[0], c100 = p[1];
				double c010 = p[cy], c110 = p[cy + 1];
				double c001 = p[cz], c101 = p[cz + 1];
				double c011 = p[cy + cz];
				double c111 = p[cy + cz + 1];
				double *q = o + 2 * i + 1;

				q[0] += c000;
				q[1] += 0.5 * (c000 + c100);
				q[fy] += 0.5 * (c000 + c010);
				q[fy + 1] += 0.25 * (c000 + c100 + c010 + c110);
				q[fz] += 0.5 * (c000 + c001);
				q[fz + 1] += 0.25 * (c000 + c100 + c001 + c101);
				q[fy + fz] += 0.25 * (c000 + c010 + c001 + c011);
				q[fy + fz + 1] += 0.125 *
					(c000 + c100 + c010 + c110 +
					 c001 + c101 + c011 + c111);
			}
		}
	}
}

static void mg_zero(struct mg_ctx *x, double *a, int lev)
{
	memset(a, 0, x->g[lev].size * sizeof(double));
}

/* r = v - A u on the finest level. */
static void mg_top_resid(struct mg_ctx *x)
{
	mg_comm3(x, x->lt, x->u[x->lt]);
	mg_resid(x, x->lt, x->u[x->lt], x->v, x->r[x->lt]);
}

static void mg_vcycle(struct mg_ctx *x)
{
	int lt = x->lt;

	for (int k = lt; k >= 2; k--) {
		mg_comm3(x, k, x->r[k]);
		mg_rprj3(x, k);
	}

	mg_zero(x, x->u[1], 1);
	mg_comm3(x, 1, x->r[1]);
	mg_psinv(x, 1, x->r[1], x->u[1]);

	for (int k = 2; k <= lt; k++) {
		if (k < lt)
			mg_zero(x, x->u[k], k);
		mg_comm3(x, k - 1, x->u[k - 1]);
		mg_interp(x, k);
		mg_comm3(x, k, x->u[k]);
		/* Below the top, the residual equation is updated in place;
		 * on top the residual comes from v. */
		mg_resid(x, k, x->u[k], k < lt ? x->r[k] : x->v, x->r[k]);
		mg_comm3(x, k, x->r[k]);
		mg_psinv(x, k, x->r[k], x->u[k]);
	}
}

/* sqrt(sum r^2 / n^3) and max |r| over the finest level. */
static void mg_norm2u3(struct mg_ctx *x, double *rnm2, double *rnmu)
{
	const struct mg_grid *g = &x->g[x->lt];
	const double *r = x->r[x->lt];
	double s[1] = { 0.0 }, mx = 0.0;

	for (long k = 0; k < g->l[2]; k++) {
		for (long j = 0; j < g->l[1]; j++) {
			const double *rr = r + at(g, 0, j, k);

			for (long i = 0; i < g->l[0]; i++) {
				s[0] += rr[i] * rr[i];
				if (fabs(rr[i]) > mx)
					mx = fabs(rr[i]);
			}
		}
	}
	MPI_Allreduce(MPI_IN_PLACE, s, 1, MPI_DOUBLE, MPI_SUM, x->comm);
	MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_DOUBLE, MPI_MAX, x->comm);
	*rnm2 = sqrt(s[0] / ((double)g->n * g->n * g->n));
	*rnmu = mx;
}

struct mg_charge {
	double val, idx;	/* global point index, exact in a double */
};

/* Keep best[0..n) ordered best first (largest if hi, else smallest). */
static void mg_keep(struct mg_charge *best, double val, double idx, bool hi)
{
	int i = MG_NCHARGE - 1;

	if (hi ? !(val > best[i].val) : !(val < best[i].val))
		return;
	for (; i > 0 && (hi ? val > best[i - 1].val : val < best[i - 1].val);
	     i--)
		best[i] = best[i - 1];
	best[i].val = val;
	best[i].idx = idx;
}

/* The right-hand side: +1 at the 10 largest, -1 at the 10 smallest of n^3
 * uniforms laid out x fastest; 0 elsewhere. */
static void mg_zran3(struct mg_ctx *x, double seed, bool verbose)
{
	const struct mg_grid *g = &x->g[x->lt];
	long n = g->n;
	double an = npb_rand_jump(1.0, NPB_RAND_A, n);		/* a^n */
	double an2 = npb_rand_jump(1.0, NPB_RAND_A, n * n);	/* a^(n^2) */
	uint64_t off = g->s[0] + n * g->s[1] + n * n * g->s[2];
	double xk = npb_rand_jump(seed, NPB_RAND_A, off);
	struct mg_charge hi[MG_NCHARGE], lo[MG_NCHARGE];

	for (int t = 0; t < MG_NCHARGE; t++) {
		hi[t] = (struct mg_charge){ -1.0, -1.0 };
		lo[t] = (struct mg_charge){ 2.0, -1.0 };
	}
	mg_zero(x, x->v, x->lt);
	for (long k = 0; k < g->l[2]; k++) {
		double xj = xk;

		for (long j = 0; j < g->l[1]; j++) {
			double *vr = x->v + at(g, 0, j, k);
			double xi = xj;
			double gidx = g->s[0] + n * (g->s[1] + j) +
				      (double)n * n * (g->s[2] + k);

			npb_vranlc(g->l[0], &xi, NPB_RAND_A, vr);
			for (long i = 0; i < g->l[0]; i++) {
				mg_keep(hi, vr[i], gidx + i, true);
				mg_keep(lo, vr[i], gidx + i, false);
			}
			xj = npb_rand_jump(xj, an, 1);
		}
		xk = npb_rand_jump(xk, an2, 1);
	}

	/* Everyone gets every process's candidates and picks the same 10. */
	struct mg_charge mine[2 * MG_NCHARGE], *all;

	memcpy(mine, hi, sizeof(hi));
	memcpy(mine + MG_NCHARGE, lo, sizeof(lo));
	all = npb_xcalloc(2 * MG_NCHARGE * (size_t)x->nactive, sizeof(*all));
	MPI_Allgather(mine, 4 * MG_NCHARGE, MPI_DOUBLE, all, 4 * MG_NCHARGE,
		      MPI_DOUBLE, x->comm);
	for (int t = 0; t < MG_NCHARGE; t++) {
		hi[t] = (struct mg_charge){ -1.0, -1.0 };
		lo[t] = (struct mg_charge){ 2.0, -1.0 };
	}
	for (int q = 0; q < x->nactive; q++) {
		for (int t = 0; t < MG_NCHARGE; t++) {
			struct mg_charge *h = &all[2 * MG_NCHARGE * q + t];
			struct mg_charge *l = h + MG_NCHARGE;

			mg_keep(hi, h->val, h->idx, true);
			mg_keep(lo, l->val, l->idx, false);
		}
	}
	free(all);

	mg_zero(x, x->v, x->lt);
	for (int t = 0; t < 2 * MG_NCHARGE; t++) {
		struct mg_charge *ch = t < MG_NCHARGE ? &hi[t]
						       : &lo[t - MG_NCHARGE];
		long gi = (long)ch->idx;
		long p[3] = { gi % n, gi / n % n, gi / (n * n) };
		bool own = true;

		for (int d = 0; d < 3; d++)
			if (p[d] < g->s[d] || p[d] >= g->s[d] + g->l[d])
				own = false;
		if (own)
			x->v[at(g, p[0] - g->s[0], p[1] - g->s[1],
				p[2] - g->s[2])] = t < MG_NCHARGE ? 1.0 : -1.0;
		if (verbose && x->rank == 0)
			printf(" charge %+d at (%ld,%ld,%ld)\n",
			       t < MG_NCHARGE ? 1 : -1, p[0], p[1], p[2]);
	}
}

int main(int argc, char **argv)
{
	static const struct npb_prog prog = {
		.prog = "npb-mg",
		.title = "NPB MG: multigrid V-cycles on a periodic 3-D grid.",
		.procs = "any; the largest power of two <= P take part and\n"
			 "the rest idle.  Each must get at least 2 points of\n"
			 "the finest grid per dimension.",
		.perturb = "seed 314159265 becomes 314159267 (other charges).",
	};
	struct npb_opts o;
	struct mg_ctx x;
	int rank, nprocs, rc;

	MPI_Init(&argc, &argv);
	memset(&x, 0, sizeof(x));
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nprocs);

	rc = npb_parse_args(argc, argv, &prog, &o);
	if (rc) {
		MPI_Finalize();
		return rc > 0 ? NPB_EXIT_OK : NPB_EXIT_USAGE;
	}
	const struct mg_class *c = &mg_classes[o.cls];
	int nactive = 1;

	while (2 * nactive <= nprocs)
		nactive *= 2;
	/* 2 points per process per dimension on the finest grid. */
	if (nactive > 1 << (3 * (c->lt - 1))) {
		rc = npb_usage_error(prog.prog, "class %c runs on at most %d "
				     "processes, not %d", o.cls_name,
				     1 << (3 * (c->lt - 1)), nprocs);
		MPI_Finalize();
		return rc;
	}
	if (!npb_rand_selftest())
		npb_fatal("random number generator self-test failed");

	double seed = o.perturb ? MG_SEED + 2.0 : MG_SEED;
	double rnm2 = 0.0, rnmu = 0.0, t = 0.0;
	bool ok = false;

	if (rank == 0) {
		printf("\n\n NAS Parallel Benchmarks (vcluster rewrite) -- "
		       "MG Benchmark\n\n");
		printf(" Size: %4dx%4dx%4d  (class %c)\n", 1 << c->lt,
		       1 << c->lt, 1 << c->lt, o.cls_name);
		printf(" Iterations: %d\n", c->nit);
		printf(" Number of processes: %d (%d active)\n", nprocs,
		       nactive);
		if (nactive < nprocs)
			printf(" WARNING: %d processes idle (not a power of "
			       "two)\n", nprocs - nactive);
		if (o.perturb)
			printf(" PERTURBED input: seed %.0f\n", seed);
		fflush(stdout);
	}

	MPI_Comm_split(MPI_COMM_WORLD, rank < nactive ? 0 : MPI_UNDEFINED,
		       rank, &x.comm);
	if (rank < nactive) {
		x.rank = rank;
		x.nactive = nactive;
		x.lt = c->lt;
		if (!mg_setup(&x))
			npb_fatal("grid too small for %d processes", nactive);

		/* Residual A: (-8/3, 0, 1/6, 1/12).  Smoother S: the
		 * coefficients change from class B on. */
		x.a[0] = -8.0 / 3.0;
		x.a[1] = 0.0;
		x.a[2] = 1.0 / 6.0;
		x.a[3] = 1.0 / 12.0;
		if (o.cls >= NPB_CLASS_B) {
			x.c[0] = -3.0 / 17.0;
			x.c[1] = 1.0 / 33.0;
			x.c[2] = -1.0 / 61.0;
		} else {
			x.c[0] = -3.0 / 8.0;
			x.c[1] = 1.0 / 32.0;
			x.c[2] = -1.0 / 64.0;
		}
		x.c[3] = 0.0;

		if (rank == 0)
			printf(" Process grid: %d x %d x %d\n\n", x.pdim[0],
			       x.pdim[1], x.pdim[2]);
		mg_zran3(&x, seed, getenv("NPB_MG_SHOW_CHARGES") != NULL);
		mg_zero(&x, x.u[x.lt], x.lt);
		mg_top_resid(&x);

		/* One untimed V-cycle touches everything; then start over
		 * from u = 0 (v is unchanged, so it is not regenerated). */
		mg_vcycle(&x);
		mg_top_resid(&x);
		mg_zero(&x, x.u[x.lt], x.lt);

		MPI_Barrier(x.comm);
		double t0 = npb_wtime();

		mg_top_resid(&x);
		for (int it = 1; it <= c->nit; it++) {
			if (rank == 0)
				printf("  iter %3d\n", it);
			mg_vcycle(&x);
			mg_top_resid(&x);
		}
		mg_norm2u3(&x, &rnm2, &rnmu);
		t = npb_max_over(npb_wtime() - t0, x.comm);

		if (rank == 0) {
			printf("\n L2 Norm is %20.13e, max |r| %20.13e\n",
			       rnm2, rnmu);
			printf(" Verification against class %c reference:\n",
			       o.cls_name);
		}
		ok = npb_check_rel(rank, "rnm2", rnm2, c->rnm2, MG_EPS);
	}

	/* Idle ranks learn the verdict so that every process exits alike. */
	int okint = ok;

	MPI_Bcast(&okint, 1, MPI_INT, 0, MPI_COMM_WORLD);
	ok = okint;
	if (rank == 0) {
		struct npb_report r = {
			.name = "MG",
			.cls = o.cls_name,
			.iterations = c->nit,
			.time = t,
			.total_procs = nprocs,
			.active_procs = nactive,
			.mops = 58.0 * c->nit * pow(2.0, 3 * c->lt) / t / 1e6,
			.optype = "floating point",
			.verified = ok,
		};

		snprintf(r.size, sizeof(r.size), "%4dx%4dx%4d", 1 << c->lt,
			 1 << c->lt, 1 << c->lt);
		npb_print_report(&r);
	}
	if (rank < nactive) {
		for (int lev = 1; lev <= x.lt; lev++) {
			free(x.u[lev]);
			free(x.r[lev]);
		}
		free(x.v);
		free(x.sbuf);
		free(x.rbuf);
		free(x.f1);
		free(x.f2);
		MPI_Comm_free(&x.comm);
	}
	MPI_Finalize();
	return npb_status(ok);
}
