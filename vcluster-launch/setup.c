/* The set-up phases of a rank, in the order main() calls them. */
#define LOG_PREFIX "launch"
#include "vctime.h"
#include "launch.h"

#include "accel.h"
#include "afile.h"
#include "fabric.h"
#include "instpath.h"
#include "facct.h"
#include "log.h"
#include "loop.h"
#include "manifest.h"
#include "pin.h"
#include "qmp.h"
#include "restore.h"
#include "rundir.h"
#include "rq.h"
#include "livesrc.h"
#include "vccp.h"
#include "vc_magic.h"
#include "vcfmt.h"
#include "vm.h"
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The stock package's firmware (qemu-system-data, seabios, ipxe-qemu), which
 * the patched build, installed elsewhere, is told with -L. */
static char qemu_fw_dir[] = "/usr/share/qemu";

/* ---- setup ------------------------------------------------------------- */

/* Every rank checks; the lowest failing rank says why in one line; all
 * ranks learn whether to go on.  Returns true when all ranks are fine. */
bool all_ok(struct launch *L, bool ok, const char *why)
{
	int mine = ok ? L->size : L->rank, first;

	MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	if (first == L->size)
		return true;
	if (first == L->rank)
		log_msg(LOG_ERR, LOG_PREFIX, 0, "%s", why);
	return false;
}

static int check_readable(const char *what, const char *path, char *why,
			  size_t whylen)
{
	struct stat st;
	if (stat(path, &st) < 0 || access(path, R_OK) < 0) {
		snprintf(why, whylen, "%s %s: %s", what, path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s %s: not a regular file", what, path);
		return -EINVAL;
	}
	return 0;
}

static void choose_run_dir(struct launch *L)
{
	char name[PATH_MAX] = "";

	if (L->rank == 0) {
		if (L->cfg.run_dir[0]) {
			snprintf(name, sizeof(name), "%s", L->cfg.run_dir);
		} else if (rundir_new(name, sizeof(name)) < 0) {
			name[0] = '\0';	/* refused below, naming the problem */
		}
	}
	MPI_Bcast(name, sizeof(name), MPI_CHAR, 0, MPI_COMM_WORLD);
	snprintf(L->run_dir, sizeof(L->run_dir), "%s", name);
	snprintf(L->rank_dir, sizeof(L->rank_dir), "%s/rank%d", name, L->rank);
}

static int local_rank(int *lsize)
{
	MPI_Comm node;
	int lr;
	MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
	MPI_Comm_rank(node, &lr);
	MPI_Comm_size(node, lsize);
	MPI_Comm_free(&node);
	return lr;
}

/* Run directory, the rank's log, RUN/../latest. */
bool setup_run_dir(struct launch *L)
{
	struct vc_config *c = &L->cfg;
	char why[512] = "";

	choose_run_dir(L);
	char inner[400] = "";
	int r = L->run_dir[0] ? afile_mkdir_p_why(L->run_dir, 0700, inner, sizeof(inner))
			      : -ENAMETOOLONG;
	if (r == 0)
		r = afile_mkdir_p_why(L->rank_dir, 0700, inner, sizeof(inner));
	if (r < 0)
		snprintf(why, sizeof(why), "run directory %s: %s", L->rank_dir,
			 inner[0] ? inner : strerror(-r));
	if (!all_ok(L, r == 0, why))
		return false;
	char logpath[PATH_MAX + 16];
	snprintf(logpath, sizeof(logpath), "%s/rank.log", L->rank_dir);
	log_open_file(logpath, c->verbose ? LOG_DEBUG : LOG_INFO);
	if (L->rank == 0) {
		if (!c->run_dir[0] && rundir_set_latest(L->run_dir, why, sizeof(why)) < 0)
			pr_warn("%s", why);
		pr_info("virtual cluster of %d VMs%s; run directory %s", L->nvms,
			L->nvms < L->size ? " and spare ranks (--vms)" : "", L->run_dir);
	}
	return true;
}

/* The checkpoint directories, before anything starts: one is created when
 * missing (as always); several must each exist and take a file (they are
 * meant to be disks: a missing mount point would put its share on another
 * one).  Their absolute paths go to vccp and into the manifests
 * (manifest.h).  Every rank checks; the first failing one says why. */
bool setup_ckpt_dirs(struct launch *L)
{
	struct vc_config *c = &L->cfg;
	char why[512] = "", inner[400] = "";
	int r = 0;

	if (!c->checkpoint_dir[0])
		return true;
	if (c->checkpoint_ndirs <= 1) {
		r = afile_mkdir_p_why(c->checkpoint_dir, 0700, inner, sizeof(inner));
		if (r < 0)
			snprintf(why, sizeof(why), "checkpoint directory %s: %s", c->checkpoint_dir,
				 inner[0] ? inner : strerror(-r));
		return all_ok(L, r == 0, why);
	}
	const char *all[CFG_CKPT_DIRS_MAX] = { c->checkpoint_dir };
	for (int i = 1; i < c->checkpoint_ndirs; i++)
		all[i] = c->checkpoint_more[i - 1];
	r = ckpt_dirs_check(all, c->checkpoint_ndirs, why, sizeof(why));
	/* they hold guest memory: private, as one directory is made */
	for (int i = 0; r == 0 && i < c->checkpoint_ndirs; i++)
		r = afile_private_dir(all[i], 0700, why, sizeof(why));
	for (int i = 0; r == 0 && i < c->checkpoint_ndirs; i++)
		if (!realpath(all[i], L->ckpt_dirs[i])) {
			r = -errno;
			snprintf(why, sizeof(why), "checkpoint directory %s: %s", all[i],
				 strerror(errno));
		}
	return all_ok(L, r == 0, why);
}

/* Restart from a checkpoint: rank 0 finds and checks the manifest, every
 * rank checks its own files, and the VM settings come from the checkpoint
 * (QEMU must rebuild the same machine; only the keys a checkpoint writes). */
bool setup_restore(struct launch *L)
{
	struct vc_config *c = &L->cfg;
	char why[512] = "";
	bool report;

	if (!c->restore[0])
		return true;
	L->restore = restore_prepare(MPI_COMM_WORLD, c->checkpoint_dir, c->restore, &report,
				     why, sizeof(why));
	if (!L->restore) {
		if (report)
			fprintf(stderr, "vcluster-launch: cannot restore: %s\n", why);
		if (L->rank == 0)
			pr_err("restore refused; nothing was changed");
		return false;
	}
	json_t *conf = restore_config(L->restore);
	const char *key;
	json_t *val;
	int r = 0;
	json_object_foreach(conf, key, val) {
		if (cfg_set(c, key, json_string_value(val), why, sizeof(why)) < 0)
			r = -EINVAL;
	}
	/* checkpoints before "maxcpus" was recorded ran -smp VCPUS */
	if (!json_object_get(conf, "maxcpus"))
		c->maxcpus = c->vcpus;
	if (!all_ok(L, r == 0, why))
		return false;
	if (L->rank == 0)
		pr_info("restoring epoch %llu from %s",
			(unsigned long long)restore_epoch(L->restore), restore_dir(L->restore));
	return true;
}

/* What to boot, with which QEMU, on KVM or TCG. */
bool setup_boot(struct launch *L)
{
	struct vc_config *c = &L->cfg;
	char why[512] = "";
	struct instpath ip;
	int r = 0, ipr = instpath_self(&ip);	/* the files beside the program */

	if (c->vm == CFG_VM_NONE) {
		/* no guest: vcluster-synth beside us (bin/) takes QEMU's place */
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		L->kernel[0] = L->initrd[0] = '\0';
		L->patched = L->kvm = false;
		snprintf(L->qemu, sizeof(L->qemu), "%s/vcluster-synth", slash ? exe : ".");
		if (access(L->qemu, X_OK) < 0) {
			r = -errno;
			snprintf(why, sizeof(why), "--vm none: %s: %s (run 'make')", L->qemu,
				 strerror(errno));
		}
		return all_ok(L, r == 0, why);
	}
	if (c->kernel[0]) {
		snprintf(L->kernel, sizeof(L->kernel), "%s", c->kernel);
		snprintf(L->initrd, sizeof(L->initrd), "%s", c->initrd);
	} else if (c->disk[0]) {
		L->kernel[0] = L->initrd[0] = '\0';
	} else if (ipr == 0) {
		snprintf(L->kernel, sizeof(L->kernel), "%s", ip.kernel);
		snprintf(L->initrd, sizeof(L->initrd), "%s", ip.initrd);
	} else {
		r = ipr;
		snprintf(why, sizeof(why), "the test guest: cannot find this program's directory "
			 "(/proc/self/exe): %s; give --kernel/--initrd or --disk", strerror(-r));
	}
	if (c->qemu[0])
		snprintf(L->qemu, sizeof(L->qemu), "%s", c->qemu);
	else if (ipr == 0 && access(ip.qemu, X_OK) == 0)
		snprintf(L->qemu, sizeof(L->qemu), "%s", ip.qemu);
	else
		snprintf(L->qemu, sizeof(L->qemu), "qemu-system-x86_64");
	if (r == 0 && L->kernel[0])
		r = check_readable(c->kernel[0] ? "kernel" : ipr == 0 && ip.installed ?
				   "test guest kernel (not installed: make guest, then make install)" :
				   "test guest kernel (run 'make guest')",
				   L->kernel, why, sizeof(why));
	if (r == 0 && L->initrd[0])
		r = check_readable("initrd", L->initrd, why, sizeof(why));
	if (r == 0 && c->disk[0])
		r = check_readable("disk image", c->disk, why, sizeof(why));
	if (r == 0 && strchr(L->qemu, '/') && access(L->qemu, X_OK) < 0) {
		r = -errno;
		snprintf(why, sizeof(why), "QEMU binary %s: %s", L->qemu, strerror(errno));
	}
	/* What QEMU can do decides the frame path (0003/0004) and TLM: ask
	 * the binary, whoever chose it (--qemu may name the patched one).  One
	 * that does not answer is taken as stock; starting it will say why. */
	char qwhy[256] = "";
	L->patched = r == 0 && accel_qemu_patched(L->qemu, 10000, qwhy, sizeof(qwhy));
	if (r == 0 && c->checkpoint_live && (c->vm != CFG_VM_QEMU || !L->patched)) {
		r = -EINVAL;
		snprintf(why, sizeof(why), "--checkpoint-mode live needs the patched QEMU "
			 "('make qemu'); %s", c->vm != CFG_VM_QEMU ? "--vm none has no RAM to save" :
			 "this QEMU is a stock build");
	}
	if (!all_ok(L, r == 0, why))
		return false;

	L->kvm = false;
	if (c->accel != CFG_ACCEL_TCG) {
		L->kvm = accel_kvm_works(c->kvm_probe_ms, why, sizeof(why)) &&
			 accel_qemu_runs(L->qemu, L->patched ? qemu_fw_dir : NULL, "kvm",
					 c->kvm_probe_ms, why, sizeof(why));
		if (!L->kvm && c->accel == CFG_ACCEL_KVM) {
			char msg[600];
			snprintf(msg, sizeof(msg), "--accel kvm: KVM does not work here: %s", why);
			if (!all_ok(L, false, msg))
				return false;
		}
		if (!L->kvm)
			pr_info("KVM not usable (%s); using TCG", why);
	}
	all_ok(L, true, "");
	pr_info("accelerator: %s", L->kvm ? "KVM" : "TCG");
	return true;
}

/* Cores for the rank thread and the vCPUs (hwloc). */
void setup_pin(struct launch *L)
{
	int lsize, lrank = local_rank(&lsize);

	if (L->cfg.pin != CFG_PIN_AUTO)
		return;
	L->pin = pin_plan_create(lrank, lsize, L->cfg.vcpus);
	if (!L->pin) {
		pr_warn("hwloc could not read the topology; not binding threads");
		return;
	}
	if (pin_plan_shared(L->pin) && lrank == 0)
		pr_warn("fewer cores than VM threads on this host; sharing them: %s",
			pin_plan_describe(L->pin));
	pr_info("binding: %s", pin_plan_describe(L->pin));
	if (pin_bind_self(L->pin) < 0)
		pr_warn("could not bind the rank thread");
}

/* How long QEMU has to answer on QMP at start (VC_TEST_QMP_DEADLINE_MS
 * for tests of a QEMU that never does). */
static int qmp_deadline_ms(void)
{
	const char *t = getenv("VC_TEST_QMP_DEADLINE_MS");

	return t && atoi(t) > 0 ? atoi(t) : 30000;
}

/* Connect to QEMU's QMP (and bind its vCPUs) on the rank's loop: the wait
 * is the loop's, with a deadline (the progress step is not set yet: there
 * is no fabric to move). */
static bool wait_qmp(struct launch *L, char *why, size_t whylen)
{
	return vm_connect_wait(L->vm, L->loop, qmp_deadline_ms(), why, whylen) == 0;
}

/* How long QEMU has to load a checkpoint's VM state (a large guest on a
 * slow disk under TCG: minutes). */
#define LOAD_VM_MS	600000
#define LOAD_POLL_MS	20

struct load_wait {
	struct launch *L;
	struct restore_load *ld;
	int rc;			/* 0 loading, 1 loaded, -errno */
	char *why;
	size_t whylen;
};

/* QMP's replies during the load (the progress step, which watches QMP
 * later, is not set yet). */
static void on_load_qmp(struct loop *l, int fd, unsigned ev, void *ctx)
{
	struct load_wait *w = ctx;

	if (qmp_pump(vm_qmp(w->L->vm)) < 0)
		loop_mod_fd(l, fd, 0);	/* closed: the next poll says so */
}

static void on_load_tick(struct loop *l, void *ctx)
{
	struct load_wait *w = ctx;
	struct qmp *q = vm_qmp(w->L->vm);

	if (w->rc)
		return;
	if (q && qmp_pending(q))
		qmp_pump(q);	/* the commands' timeouts */
	w->rc = restore_load_vm_poll(w->ld, w->why, w->whylen);
}

/* Load the VM state on the rank's loop: the QMP commands are asynchronous,
 * a timer polls query-migrate and keeps the deadline; the loop runs
 * meanwhile (nothing blocks in it).  0 or -errno with why. */
static int load_vm(struct launch *L, char *why, size_t whylen)
{
	struct load_wait w = { .L = L, .why = why, .whylen = whylen };
	struct qmp *q = vm_qmp(L->vm);
	int r = 0;

	w.ld = restore_load_vm_start(L->restore, q, L->rank, LOAD_VM_MS, why, whylen);
	if (!w.ld)
		return -errno;
	int fd = qmp_fd(q);
	struct loop_timer *t = loop_add_timer(L->loop, LOAD_POLL_MS, LOAD_POLL_MS, on_load_tick, &w);
	if (!t || (r = loop_add_fd(L->loop, fd, LOOP_IN, on_load_qmp, &w)) < 0) {
		r = t ? r : -errno;
		snprintf(why, whylen, "the event loop: %s", strerror(-r));
		loop_del_timer(L->loop, t);
		restore_load_vm_free(w.ld);
		return r;
	}
	while (r == 0 && w.rc == 0)
		r = loop_run_once(L->loop, LOAD_POLL_MS);
	if (r < 0)
		snprintf(why, whylen, "the event loop: %s", strerror(-r));
	loop_del_timer(L->loop, t);
	loop_del_fd(L->loop, fd);
	restore_load_vm_free(w.ld);
	if (r == 0 && w.rc < 0 && vm_check_exit(L->vm)) {
		/* QEMU died (a bad stream can make it abort): its log says why */
		char inner[600];
		snprintf(inner, sizeof(inner), "%s", why);
		snprintf(why, whylen, "QEMU exited while loading the VM state: %s (see %s/qemu.log)",
			 inner, L->rank_dir);
	}
	return r < 0 ? r : (w.rc < 0 ? w.rc : 0);
}

/* A live checkpoint's RAM files into QEMU's RAM (restore_load_ram), on
 * the worker: the whole RAM is read and written, seconds for a large guest. */
struct ram_job {
	const struct restore *r;	/* read only, while the job runs */
	int rank, pid;
	int rc;
	bool done;
	size_t files;
	uint64_t pages;
	char why[700];
};

static void ram_job_run(void *arg)
{
	struct ram_job *j = arg;

	j->rc = restore_load_ram(j->r, j->rank, j->pid, &j->files, &j->pages, j->why,
				 sizeof(j->why));
}

static void ram_job_done(void *arg)
{
	((struct ram_job *)arg)->done = true;
}

/* The loop runs while the worker loads (a worker job cannot be cut short:
 * local files, no deadline).  0 or -errno with why. */
static int load_ram(struct launch *L, char *why, size_t whylen)
{
	struct ram_job j = { .r = L->restore, .rank = L->rank, .pid = (int)vm_pid(L->vm) };
	int r;

	if (!restore_is_live(L->restore, L->rank))
		return 0;
	if ((r = worker_submit(L->worker, ram_job_run, ram_job_done, &j)) < 0) {
		snprintf(why, whylen, "loading RAM: the worker: %s", strerror(-r));
		return r;
	}
	while (!j.done) {
		r = loop_run_once(L->loop, 100);
		if (r < 0) {
			/* j belongs to the job until its done(): wait for it */
			while (!j.done)
				if (!worker_dispatch(L->worker))
					usleep(1000);
			snprintf(why, whylen, "the event loop: %s", strerror(-r));
			return r;
		}
	}
	if (j.rc < 0) {
		snprintf(why, whylen, "%s", j.why);
		return j.rc;
	}
	pr_info("RAM of epoch %llu loaded from %zu files: %llu pages",
		(unsigned long long)restore_epoch(L->restore), j.files, (unsigned long long)j.pages);
	return 0;
}

struct vm *setup_spawn_node(struct launch *L, int node, bool incoming, int *link_fd,
			    char *why, size_t whylen)
{
	struct vc_config *c = &L->cfg;
	/* the guests see the nodes, not the spare ranks */
	struct vm_spec spec = {
		.cfg = c, .rank = L->rank, .node = node, .nranks = L->nvms, .rank_dir = L->rank_dir,
		.qemu_bin = L->qemu, .qemu_patched = L->patched,
		.firmware_dir = L->patched ? qemu_fw_dir : NULL, .kvm = L->kvm, .kernel = L->kernel,
		.initrd = L->initrd, .pin = L->pin, .incoming = incoming,
	};
	char restore_disk_buf[PATH_MAX + 32], live_qmp[PATH_MAX + 16];
	if (c->checkpoint_live && c->checkpoint_dir[0]) {
		snprintf(live_qmp, sizeof(live_qmp), "%s/live.qmp", L->rank_dir);
		spec.live_qmp = live_qmp;
	}
	if (L->restore)
		spec.restore_disk = restore_disk(L->restore, L->rank, restore_disk_buf,
						 sizeof(restore_disk_buf));
	return vm_spawn(&spec, link_fd, why, whylen);
}

/* QEMU, the fabric, and on a restore the VM state and receive queue. */
bool setup_vm(struct launch *L)
{
	struct vc_config *c = &L->cfg;
	char why[1024] = "";
	int r;

	int link_fd = -1;
	bool spare = launch_spare(L, L->rank);
	L->vm = spare ? NULL : setup_spawn_node(L, L->rank, L->restore != NULL, &link_fd, why,
						sizeof(why));
	if (!L->vm && !spare) {
		char msg[1100];
		snprintf(msg, sizeof(msg), "rank %d: %s (see %s/qemu.log)", L->rank, why, L->rank_dir);
		snprintf(why, sizeof(why), "%s", msg);
	} else if (!spare && !wait_qmp(L, why, sizeof(why))) {
		vm_destroy(L->vm);
		L->vm = NULL;
		close(link_fd);
	}
	if (!all_ok(L, L->vm != NULL || spare, why))
		return false;
	if (spare)
		pr_info("spare rank: no VM here until a node is migrated to it");
	if (L->rank == 0 && c->vm == CFG_VM_NONE)
		pr_info("--vm none: synthetic VMs (%s), %d frames/s of %d bytes each for %d s",
			L->qemu, c->synth_rate, c->synth_frame, c->synth_seconds);
	else if (L->rank == 0)
		pr_info("QEMU: %s%s", L->qemu, L->patched ? " (patched build)" :
			" (stock; 'make qemu' builds the patched one)");

	struct fabric_opts fo = { .transport = FABRIC_DEFAULT,
				  .addr = c->fabric_addr[0] ? c->fabric_addr : NULL };
	if (c->fabric[0])
		fabric_parse_transport(c->fabric, &fo.transport);
	L->fab = fabric_create_with(MPI_COMM_WORLD, link_fd, &fo);
	if (!L->fab)
		snprintf(why, sizeof(why), "rank %d: fabric: %s", L->rank, strerror(errno));
	if (!all_ok(L, L->fab != NULL, why))
		return false;
	if (L->rank == 0)
		pr_info("fabric: frames between ranks over %s", fabric_transport_name(L->fab));
	if (!L->restore)
		return true;

	struct rq *rq = NULL;
	char inner[700];
	r = load_ram(L, inner, sizeof(inner));
	if (r == 0)
		r = load_vm(L, inner, sizeof(inner));
	if (r == 0)
		r = restore_load_rq(L->restore, L->rank, &rq, inner, sizeof(inner));
	snprintf(why, sizeof(why), "rank %d: %s", L->rank, inner);
	if (!all_ok(L, r == 0, why)) {
		if (L->rank == 0)
			pr_err("restore failed; the checkpoint is unchanged");
		fabric_destroy(L->fab);
		L->fab = NULL;
		return false;
	}
	pr_info("VM state of epoch %llu loaded; %zu frames in the receive queue",
		(unsigned long long)restore_epoch(L->restore), rq_count(rq));
	fabric_set_rq(L->fab, rq);
	fabric_set_restored_epoch(L->fab, restore_epoch(L->restore));
	return true;
}

/* --clock-sync: hand the VM the host's time (see tests/guest/vc-clockd.c). */
void send_clock(void *ctx)
{
	struct launch *L = ctx;
	uint8_t f[14 + 16];
	struct timespec ts;

	if (!L->cfg.clock_sync || !L->fab)
		return;
	uint8_t dst[6] = { 0x52, 0x54, 0x00, 0x56, (uint8_t)(L->rank >> 8), (uint8_t)L->rank };
	uint8_t src[6] = { 0x52, 0x54, 0x00, 0x56, 0xff, 0xfe };
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	clock_gettime(CLOCK_REALTIME, &ts);
	vcfmt_put_be32(f + 14, VC_MAGIC_CLOCK);
	vcfmt_put_be32(f + 18, VC_CLOCK_VERSION);
	vcfmt_put_be64(f + 22, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	if (fabric_inject(L->fab, f, sizeof(f)) == 0)
		pr_debug("clock frame sent to the VM");
}

/* The rank's VC-ACCT lines (vcluster-launch/facct.h): at a cut of epoch,
 * or at exit once the channels are shut. */
void acct_print(struct launch *L, bool cut, uint64_t epoch)
{
	const struct facct *a = L->fab ? fabric_acct(L->fab) : NULL;
	char line[768];

	for (int k = 0; a && k < facct_size(a); k++)
		if (facct_format(a, cut, epoch, k, line, sizeof(line)) > 0)
			pr_info("%s", line);
}

/* ---- what vccp sees of the fabric (vccp.h) -------------------------- */

static void ops_hold(void *ctx, bool hold)
{
	fabric_hold(((struct launch *)ctx)->fab, hold);
}

static void ops_drain(void *ctx, bool drain)
{
	fabric_drain_vm(((struct launch *)ctx)->fab, drain);
}

static bool ops_link_empty(void *ctx)
{
	return fabric_vm_link_empty(((struct launch *)ctx)->fab);
}

static int ops_unread(void *ctx)
{
	return fabric_vm_unread(((struct launch *)ctx)->fab);
}

static int ops_send_marker(void *ctx, uint64_t epoch)
{
	return fabric_send_marker(((struct launch *)ctx)->fab, epoch);
}

static struct rq *ops_take_rq(void *ctx)
{
	return fabric_take_rq(((struct launch *)ctx)->fab);
}

static void ops_put_rq(void *ctx, struct rq *q)
{
	fabric_put_rq(((struct launch *)ctx)->fab, q);
}

static size_t ops_rq_count(void *ctx)
{
	return rq_count(fabric_rq(((struct launch *)ctx)->fab));
}

static void ops_set_marker_cb(void *ctx, vccp_marker_cb cb, void *vctx)
{
	fabric_set_marker_cb(((struct launch *)ctx)->fab, cb, vctx);
}

/* One pass of the loop without vccp (vccp_finish drives it itself). */
static void ops_progress(void *ctx)
{
	struct launch *L = ctx;
	loop_run_once(L->loop, 1);
}

static void ops_cut(void *ctx, uint64_t epoch)
{
	acct_print(ctx, true, epoch);
}

static const struct vccp_fabric_ops vccp_fab_ops = {
	.hold = ops_hold,
	.drain = ops_drain,
	.link_empty = ops_link_empty,
	.unread = ops_unread,
	.send_marker = ops_send_marker,
	.take_rq = ops_take_rq,
	.put_rq = ops_put_rq,
	.rq_count = ops_rq_count,
	.set_marker_cb = ops_set_marker_cb,
	.progress = ops_progress,
	.cut = ops_cut,
};

/* The checkpoint protocol, when --checkpoint-dir is given. */
bool setup_checkpointing(struct launch *L)
{
	struct vc_config *c = &L->cfg;
	char why[512] = "";

	if (!c->checkpoint_dir[0])
		return true;
	char kabs[PATH_MAX] = "", iabs[PATH_MAX] = "", net[40], mem[32], vcpus[16];
	if (L->kernel[0] && !realpath(L->kernel, kabs))
		snprintf(kabs, sizeof(kabs), "%s", L->kernel);
	if (L->initrd[0] && !realpath(L->initrd, iabs))
		snprintf(iabs, sizeof(iabs), "%s", L->initrd);
	cfg_subnet_str(c, net, sizeof(net));
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)c->memory_mib);
	snprintf(vcpus, sizeof(vcpus), "%d", c->vcpus);
	char maxcpus[16];
	snprintf(maxcpus, sizeof(maxcpus), "%d", cfg_maxcpus(c));
	char dabs[PATH_MAX] = "", active[PATH_MAX + 32];
	if (c->disk[0]) {
		if (!realpath(c->disk, dabs))
			snprintf(dabs, sizeof(dabs), "%s", c->disk);
		snprintf(active, sizeof(active), "%s/disk.qcow2", L->rank_dir);
	}
	bool synth = c->vm == CFG_VM_NONE;
	char rate[16], secs[16];
	snprintf(rate, sizeof(rate), "%d", c->synth_rate);
	snprintf(secs, sizeof(secs), "%d", c->synth_seconds);
	struct restore_settings rs = {
		.memory = mem, .vcpus = vcpus, .maxcpus = maxcpus, .subnet = net, .guest_cmd = c->guest_cmd,
		.append = c->append, .kernel = kabs, .initrd = iabs, .disk = dabs,
		.vm = synth ? "none" : "qemu", .synth_rate = synth ? rate : NULL,
		.synth_seconds = synth ? secs : NULL,
	};
	json_t *conf = restore_config_build(&rs);
	const char *more[CFG_CKPT_DIRS_MAX - 1];
	for (int i = 0; i + 1 < c->checkpoint_ndirs; i++)
		more[i] = L->ckpt_dirs[i + 1];
	if (L->rank == 0 && c->checkpoint_ndirs > 1)
		pr_info("checkpoints in %s; live RAM files spread over it and %d more "
			"director%s; stop checkpoints all in it", c->checkpoint_dir,
			c->checkpoint_ndirs - 1, c->checkpoint_ndirs > 2 ? "ies" : "y");
	struct vccp_opts vo = { .dir = c->checkpoint_ndirs > 1 ? L->ckpt_dirs[0] : c->checkpoint_dir,
				.keep = c->keep, .more_dirs = more,
				.nmore = c->checkpoint_ndirs > 1 ? c->checkpoint_ndirs - 1 : 0,
				.interval_s = c->checkpoint_interval_s, .config = conf,
				.bandwidth_mibs = c->checkpoint_bandwidth,
				.disk_device = c->disk[0] ? VM_DISK_ID : NULL,
				.disk_active = c->disk[0] ? active : NULL,
				.on_resume = send_clock, .ctx = L,
				.fab = &vccp_fab_ops, .fab_ctx = L, .worker = L->worker };
	if (c->checkpoint_live) {
		char lq[PATH_MAX + 16];
		snprintf(lq, sizeof(lq), "%s/live.qmp", L->rank_dir);
		L->live = livesrc_create(L->worker, lq, L->rank,
					 c->checkpoint_writers ? c->checkpoint_writers : 1);
		if (!L->live) {
			snprintf(why, sizeof(why), "rank %d: live checkpoints: %s", L->rank,
				 strerror(errno));
			json_decref(conf);
			return all_ok(L, false, why);
		}
		livesrc_set_pid(L->live, (int)vm_pid(L->vm));
		vo.live = &livesrc_ops;
		vo.live_ctx = L->live;
		if (L->rank == 0)
			pr_info("checkpoints: live, %d RAM file%s per rank", c->checkpoint_writers ?
				c->checkpoint_writers : 1, c->checkpoint_writers > 1 ? "s" : "");
	}
	L->vccp = vccp_create(MPI_COMM_WORLD, &vo);
	json_decref(conf);
	if (!L->vccp)
		snprintf(why, sizeof(why), "rank %d: checkpointing: %s", L->rank, strerror(errno));
	return all_ok(L, L->vccp != NULL, why);
}

#define CONT_MS		10000	/* QEMU's answer to cont */

/* The reply to cont, from the loop's QMP pump.  A VM that stays paused
 * would hold the job until its --timeout: a refusal or no answer in time
 * aborts the job, in one line naming the rank and what QEMU said.  QEMU
 * gone (-EPIPE) is left to vm_check_exit(), which says how it died. */
static void on_cont(void *ctx, int err, json_t *ret, const char *why)
{
	struct launch *L = ctx;
	char msg[700];

	if (err == 0) {
		if (L->restore && L->rank == 0)
			pr_info("all %d VMs resumed from epoch %llu", L->size,
				(unsigned long long)restore_epoch(L->restore));
		return;
	}
	if (err == -EPIPE)
		return;
	snprintf(msg, sizeof(msg), "rank %d: %s: QEMU said: %s", L->rank,
		 L->restore ? "resuming the restored VM" : "starting the synthetic VM", why);
	launch_fault(L, msg);
}

/* Resume together, right after the barrier: cont goes out now (the guests'
 * clocks stay close); its reply is an event of the loop (on_cont). */
static void send_cont(struct launch *L)
{
	struct qmp *q = L->vm ? vm_qmp(L->vm) : NULL;
	int r = q ? qmp_exec_async(q, "cont", NULL, -1, CONT_MS, on_cont, L) : -EPIPE;

	if (r < 0)	/* QEMU has gone: vm_check_exit() says how */
		pr_err("rank %d: %s: cont not sent: %s", L->rank,
		       L->restore ? "resuming the restored VM" : "starting the synthetic VM",
		       strerror(-r));
}

void setup_resume(struct launch *L)
{
	if (!L->restore && L->cfg.vm == CFG_VM_NONE && L->vm)
		send_cont(L);	/* it waits paused (synth.h) */
	if (!L->restore) {
		if (L->rank == 0)
			pr_info("all %d VMs started; guests run: %s", L->nvms, L->cfg.guest_cmd);
		return;
	}
	send_cont(L);
	send_clock(L);
}
