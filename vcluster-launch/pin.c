#include "pin.h"

#include <errno.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pin_plan {
	hwloc_topology_t topo;
	int ncores;
	int shared;
	hwloc_bitmap_t self;		/* the rank's own core */
	hwloc_bitmap_t *vcpu;		/* one core per vCPU */
	int nvcpu;
	hwloc_bitmap_t all;		/* union: what QEMU as a whole may use */
	char text[256];
};

static hwloc_bitmap_t core_set(struct pin_plan *p, int index)
{
	hwloc_obj_type_t type = hwloc_get_nbobjs_by_type(p->topo, HWLOC_OBJ_CORE) > 0 ?
				HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
	hwloc_obj_t o = hwloc_get_obj_by_type(p->topo, type, (unsigned)(index % p->ncores));
	hwloc_bitmap_t s = hwloc_bitmap_dup(o->cpuset);
	/* one hardware thread of the core: the scheduler keeps it there */
	hwloc_bitmap_singlify(s);
	return s;
}

struct pin_plan *pin_plan_create(int local_rank, int local_size, int vcpus)
{
	struct pin_plan *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (hwloc_topology_init(&p->topo) < 0 || hwloc_topology_load(p->topo) < 0) {
		free(p);
		errno = EIO;
		return NULL;
	}
	p->ncores = hwloc_get_nbobjs_by_type(p->topo, HWLOC_OBJ_CORE);
	if (p->ncores <= 0)
		p->ncores = hwloc_get_nbobjs_by_type(p->topo, HWLOC_OBJ_PU);
	if (p->ncores <= 0)
		p->ncores = 1;
	int per_rank = vcpus + 1;
	int first = local_rank * per_rank;
	p->shared = local_size * per_rank > p->ncores;
	p->nvcpu = vcpus;
	p->self = core_set(p, first);
	p->all = hwloc_bitmap_dup(p->self);
	p->vcpu = calloc((size_t)vcpus, sizeof(*p->vcpu));
	int off = snprintf(p->text, sizeof(p->text), "%d cores; rank thread on core %d, vCPUs on",
			   p->ncores, first % p->ncores);
	for (int i = 0; i < vcpus; i++) {
		p->vcpu[i] = core_set(p, first + 1 + i);
		hwloc_bitmap_or(p->all, p->all, p->vcpu[i]);
		if (off < (int)sizeof(p->text))
			off += snprintf(p->text + off, sizeof(p->text) - (size_t)off,
					" %d", (first + 1 + i) % p->ncores);
	}
	if (p->shared && off < (int)sizeof(p->text))
		snprintf(p->text + off, sizeof(p->text) - (size_t)off,
			 " (shared: %d ranks x %d threads on %d cores)", local_size,
			 per_rank, p->ncores);
	return p;
}

void pin_plan_destroy(struct pin_plan *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->nvcpu; i++)
		hwloc_bitmap_free(p->vcpu[i]);
	free(p->vcpu);
	hwloc_bitmap_free(p->self);
	hwloc_bitmap_free(p->all);
	hwloc_topology_destroy(p->topo);
	free(p);
}

const char *pin_plan_describe(const struct pin_plan *p)
{
	return p->text;
}

int pin_plan_shared(const struct pin_plan *p)
{
	return p->shared;
}

int pin_bind_self(const struct pin_plan *p)
{
	return hwloc_set_cpubind(p->topo, p->self, HWLOC_CPUBIND_THREAD) < 0 ? -errno : 0;
}

int pin_bind_process(const struct pin_plan *p, pid_t pid)
{
	return hwloc_set_proc_cpubind(p->topo, pid, p->all, HWLOC_CPUBIND_PROCESS) < 0 ?
	       -errno : 0;
}

int pin_bind_vcpu(const struct pin_plan *p, int index, pid_t tid)
{
	if (index < 0 || index >= p->nvcpu)
		return -EINVAL;
	return hwloc_set_proc_cpubind(p->topo, tid, p->vcpu[index], HWLOC_CPUBIND_THREAD) < 0 ?
	       -errno : 0;
}
