#include "config.h"

#include "ctl.h"
#include "ctrlmsg.h"
#include "fbatch.h"
#include "ftcp.h"
#include "jobspec.h"
#include "manifest.h"
#include "rq.h"
#include "synth.h"
#include "vc_magic.h"
#include "version.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*cfg_set_fn)(struct vc_config *c, const char *v, char *why,
			  size_t whylen);

struct cfg_opt {
	const char *name;
	const char *arg;	/* NULL: a flag */
	cfg_set_fn set;
	const char *help;
};

static int set_str(char *dst, size_t cap, const char *v, const char *name,
		   char *why, size_t whylen)
{
	if (strlen(v) >= cap) {
		snprintf(why, whylen, "%s: value longer than %zu characters", name,
			 cap - 1);
		return -EINVAL;
	}
	strcpy(dst, v);
	return 0;
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		return -EINVAL;
	*out = x;
	return 0;
}

#define INT_SETTER(fn, field, lo, hi, name)					\
static int fn(struct vc_config *c, const char *v, char *why, size_t whylen)	\
{										\
	long x;									\
	if (parse_int(v, lo, hi, &x) < 0) {					\
		snprintf(why, whylen, "%s: '%s' is not a whole number from %ld to %ld", \
			 name, v, (long)(lo), (long)(hi));			\
		return -EINVAL;							\
	}									\
	c->field = (int)x;							\
	return 0;								\
}

INT_SETTER(set_vcpus, vcpus, 1, 64, "--vcpus")
INT_SETTER(set_maxcpus, maxcpus, 1, 64, "--maxcpus")
INT_SETTER(set_timeout, timeout_s, 0, 365L * 24 * 3600, "--timeout")
INT_SETTER(set_grace, grace_s, 0, 3600, "--grace")
INT_SETTER(set_ssh, head_ssh_port, 1, 65535, "--head-ssh-port")
INT_SETTER(set_probe, kvm_probe_ms, 100, 600000, "--kvm-probe-ms")
INT_SETTER(set_spin, fabric_spin_us, 0, 1000000, "--fabric-spin-us")
INT_SETTER(set_interval, checkpoint_interval_s, 1, 365L * 24 * 3600, "--checkpoint-interval")
INT_SETTER(set_keep, keep, 0, 1000000, "--keep")
INT_SETTER(set_ckbw, checkpoint_bandwidth, 1, 1000000, "--checkpoint-bandwidth")
INT_SETTER(set_synth_rate, synth_rate, 1, 1000000, "--synth-rate")
INT_SETTER(set_synth_seconds, synth_seconds, 0, 86400, "--synth-seconds")
INT_SETTER(set_vms, vms, 1, 65535, "--vms")
INT_SETTER(set_synth_frame, synth_frame, SYNTH_FRAME_MIN, SYNTH_FRAME_MAX, "--synth-frame-size")

static int set_vm(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	if (!strcmp(v, "qemu"))
		c->vm = CFG_VM_QEMU;
	else if (!strcmp(v, "none"))
		c->vm = CFG_VM_NONE;
	else {
		snprintf(why, whylen, "--vm: '%s' is not one of qemu, none", v);
		return -EINVAL;
	}
	return 0;
}

_Static_assert(CFG_CKPT_DIRS_MAX == CKPT_MAX_DIRS, "one limit on checkpoint directories");

/* D1[,D2,...]: the first holds the checkpoints, the others take their
 * share of the live RAM files (manifest.h).  A later setting replaces an
 * earlier one whole (the command line over the job file). */
static int set_ckpt_dir(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	char part[PATH_MAX];
	const char *p = v;
	int n = 0;

	c->checkpoint_dir[0] = '\0';
	c->checkpoint_ndirs = 0;
	if (!*v)
		return 0;
	for (;;) {
		size_t len = strcspn(p, ",");
		if (len == 0) {
			snprintf(why, whylen, "--checkpoint-dir: '%s' has an empty directory name", v);
			return -EINVAL;
		}
		if (len >= sizeof(part)) {
			snprintf(why, whylen, "--checkpoint-dir: a directory longer than %zu "
				 "characters", sizeof(part) - 1);
			return -EINVAL;
		}
		if (n == CFG_CKPT_DIRS_MAX) {
			snprintf(why, whylen, "--checkpoint-dir: more than %d directories",
				 CFG_CKPT_DIRS_MAX);
			return -EINVAL;
		}
		memcpy(part, p, len);
		part[len] = '\0';
		for (int i = 0; i < n; i++)
			if (!strcmp(part, i ? c->checkpoint_more[i - 1] : c->checkpoint_dir)) {
				snprintf(why, whylen, "--checkpoint-dir: '%s' is given twice", part);
				return -EINVAL;
			}
		strcpy(n ? c->checkpoint_more[n - 1] : c->checkpoint_dir, part);
		n++;
		if (!p[len])
			break;
		p += len + 1;
	}
	c->checkpoint_ndirs = n;
	return 0;
}

INT_SETTER(set_ckwriters, checkpoint_writers, 1, 16, "--checkpoint-writers")

static int set_ckmode(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	if (strcmp(v, "live") && strcmp(v, "stop")) {
		snprintf(why, whylen, "--checkpoint-mode: '%s' is not one of stop, live", v);
		return -EINVAL;
	}
	c->checkpoint_live = !strcmp(v, "live");
	return 0;
}

static int set_restore(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	char *end;
	if (strcmp(v, "latest") != 0 && (strtoull(v, &end, 10) == 0 || *end)) {
		snprintf(why, whylen, "--restore: '%s' is not 'latest' or an epoch number", v);
		return -EINVAL;
	}
	return set_str(c->restore, sizeof(c->restore), v, "--restore", why, whylen);
}

static int set_kernel(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_str(c->kernel, sizeof(c->kernel), v, "--kernel", w, l);
}

static int set_initrd(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_str(c->initrd, sizeof(c->initrd), v, "--initrd", w, l);
}

static int set_append(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_str(c->append, sizeof(c->append), v, "--append", w, l);
}

static int set_disk(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_str(c->disk, sizeof(c->disk), v, "--disk", w, l);
}

static int set_run_dir(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_str(c->run_dir, sizeof(c->run_dir), v, "--run-dir", w, l);
}

static int set_guest_cmd(struct vc_config *c, const char *v, char *w, size_t l)
{
	/* The command travels hex-encoded on the kernel command line, which
	 * the kernel caps at 2048 bytes. */
	if (strlen(v) > 600) {
		snprintf(w, l, "--guest-cmd: longer than 600 characters (put a script in the image)");
		return -EINVAL;
	}
	return set_str(c->guest_cmd, sizeof(c->guest_cmd), v, "--guest-cmd", w, l);
}

static int set_qemu(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_str(c->qemu, sizeof(c->qemu), v, "--qemu", w, l);
}

static int set_memory(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	uint64_t mib = 0;

	/* strtoull would take "-N" as 2^64-N: a size starts with a digit */
	if (!errno && end != v && x > 0 && v[0] >= '0' && v[0] <= '9') {
		if (!strcmp(end, "") || !strcasecmp(end, "M") || !strcasecmp(end, "MiB"))
			mib = x;
		else if ((!strcasecmp(end, "G") || !strcasecmp(end, "GiB")) && x <= 1024)
			mib = x * 1024;	/* bounded first: x * 1024 could wrap */
	}
	if (mib < 64 || mib > 1024 * 1024) {
		snprintf(why, whylen, "--memory: '%s' is not a size from 64M to 1024G (e.g. 256M, 2G)", v);
		return -EINVAL;
	}
	c->memory_mib = mib;
	return 0;
}

static int set_accel(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	if (!strcmp(v, "auto"))
		c->accel = CFG_ACCEL_AUTO;
	else if (!strcmp(v, "kvm"))
		c->accel = CFG_ACCEL_KVM;
	else if (!strcmp(v, "tcg"))
		c->accel = CFG_ACCEL_TCG;
	else {
		snprintf(why, whylen, "--accel: '%s' is not one of auto, kvm, tcg", v);
		return -EINVAL;
	}
	return 0;
}

static int set_pin(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	if (!strcmp(v, "auto"))
		c->pin = CFG_PIN_AUTO;
	else if (!strcmp(v, "none"))
		c->pin = CFG_PIN_NONE;
	else {
		snprintf(why, whylen, "--pin: '%s' is not one of auto, none", v);
		return -EINVAL;
	}
	return 0;
}

static int set_bool(bool *dst, const char *v, const char *name, char *why,
		    size_t whylen)
{
	if (!strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1") || !strcmp(v, "true"))
		*dst = true;
	else if (!strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "false"))
		*dst = false;
	else {
		snprintf(why, whylen, "%s: '%s' is not yes or no", name, v);
		return -EINVAL;
	}
	return 0;
}

static int set_console(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_bool(&c->console, v, "--console", w, l);
}

static int set_clock(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_bool(&c->clock_sync, v, "--clock-sync", w, l);
}

static int set_fabric(struct vc_config *c, const char *v, char *w, size_t l)
{
	if (strcmp(v, "tcp") && strcmp(v, "mpi")) {
		snprintf(w, l, "--fabric %s: expected tcp or mpi", v);
		return -EINVAL;
	}
	return set_str(c->fabric, sizeof(c->fabric), v, "--fabric", w, l);
}

static int set_fabric_addr(struct vc_config *c, const char *v, char *w, size_t l)
{
	return set_str(c->fabric_addr, sizeof(c->fabric_addr), v, "--fabric-addr", w, l);
}

static int set_subnet(struct vc_config *c, const char *v, char *why, size_t whylen)
{
	char buf[40];
	struct in_addr a;
	long prefix;

	snprintf(buf, sizeof(buf), "%s", v);
	char *slash = strchr(buf, '/');
	if (!slash || parse_int(slash + 1, 8, 30, &prefix) < 0)
		goto bad;
	*slash = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		goto bad;
	uint32_t base = ntohl(a.s_addr);
	uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;
	if (base & ~mask) {
		snprintf(why, whylen, "--subnet: '%s' has host bits set (did you mean %u.%u.%u.%u/%ld?)",
			 v, (base & mask) >> 24, (base & mask) >> 16 & 255,
			 (base & mask) >> 8 & 255, (base & mask) & 255, prefix);
		return -EINVAL;
	}
	c->subnet_base = base;
	c->subnet_prefix = (int)prefix;
	return 0;
bad:
	snprintf(why, whylen, "--subnet: '%s' is not an IPv4 network like 10.10.0.0/24 (prefix 8-30)", v);
	return -EINVAL;
}

static const struct cfg_opt opts[] = {
	{ "kernel", "FILE", set_kernel, "guest kernel (default: the test guest beside the program, PREFIX/libexec/vcluster/guest/ or build/guest/)" },
	{ "initrd", "FILE", set_initrd, "guest initramfs (default: the test guest's initrd.img with --kernel unset)" },
	{ "append", "TEXT", set_append, "extra guest kernel command line" },
	{ "disk", "FILE", set_disk, "qcow2 disk image for every VM (each rank gets its own overlay)" },
	{ "memory", "SIZE", set_memory, "guest RAM, e.g. 256M or 2G (default 256M)" },
	{ "vcpus", "N", set_vcpus, "virtual CPUs per VM (default 1)" },
	{ "maxcpus", "N", set_maxcpus, "possible vCPUs per VM (default: --vcpus, at least 2, so TCG keeps a one-vCPU guest's memory barriers; a restore takes it from the checkpoint)" },
	{ "accel", "MODE", set_accel, "auto|kvm|tcg: auto probes /dev/kvm with a timeout, else TCG (default auto)" },
	{ "kvm-probe-ms", "MS", set_probe, "how long the KVM probe may take (default 3000)" },
	{ "subnet", "NET/P", set_subnet, "guest network; rank r gets address base+r+1 (default 10.10.0.0/24)" },
	{ "run-dir", "DIR", set_run_dir, "per-job directory for sockets and logs (default /tmp/vcluster-UID/JOB)" },
	{ "guest-cmd", "CMD", set_guest_cmd, "command every guest runs, then powers off (default: vcluster-traffic --all --seconds 10)" },
	{ "timeout", "SECONDS", set_timeout, "stop the whole run after this long; 0 = never (default 0)" },
	{ "grace", "SECONDS", set_grace, "on SIGINT/SIGTERM/shutdown, how long guests get to power off (default 10)" },
	{ "head-ssh-port", "PORT", set_ssh, "forward this host port to port 22 of rank 0's VM (head node)" },
	{ "qemu", "FILE", set_qemu, "QEMU binary (default: the patched one beside the program, PREFIX/libexec/vcluster/ or build/qemu/bin/, if there; else qemu-system-x86_64)" },
	{ "pin", "MODE", set_pin, "auto|none: bind vCPU and rank threads to cores with hwloc (default auto)" },
	{ "fabric-spin-us", "US", set_spin, "keep polling this long after traffic before sleeping (default: mpi 200, tcp 0; tcp yields the core first)" },
	{ "fabric", "tcp|mpi", set_fabric, "carry frames between ranks on TCP connections in the event loop, or as MPI messages (default tcp)" },
	{ "fabric-addr", "ADDR", set_fabric_addr, "tcp fabric: address this rank listens on (default: what its hostname resolves to)" },
	{ "checkpoint-dir", "DIR[,DIR2,...]", set_ckpt_dir, "where checkpoints go (one epoch-N directory each, and 'latest'); enables checkpointing; D1,D2,...: live RAM files spread over them all (one per disk; each must exist), the rest in D1" },
	{ "checkpoint-interval", "SECONDS", set_interval, "take a checkpoint this often (also: SIGUSR1 to mpirun, vcluster-ctl checkpoint)" },
	{ "keep", "K", set_keep, "keep only the newest K checkpoints (default: all)" },
	{ "checkpoint-mode", "stop|live", set_ckmode, "stop (default): the VMs are paused while they are saved; live: RAM is saved while they run, the pause only takes the last pages (needs the patched QEMU)" },
	{ "checkpoint-writers", "N", set_ckwriters, "live: RAM files (writer threads) per rank, 1..16 (default 1)" },
	{ "checkpoint-bandwidth", "MIB/S", set_ckbw, "cap the rate a VM's state is written at (default: as fast as the disk goes)" },
	{ "restore", "EPOCH|latest", set_restore, "restart from a checkpoint of --checkpoint-dir (VM settings come from it)" },
	{ "clock-sync", "yes|no", set_clock, "after a resume or restore, send each guest the host time; the test guest's vc-clockd steps its clock (default no)" },
	{ "vm", "qemu|none", set_vm, "none: a synthetic VM (vcluster-synth: all-to-all checked frames, tiny state) in QEMU's place, for scale tests (default qemu)" },
	{ "vms", "N", set_vms, "run VMs (node0..) on the first N ranks only; the other ranks are spares, a host a node can be migrated to (default: one VM per rank)" },
	{ "synth-rate", "FPS", set_synth_rate, "--vm none: frames a second each rank sends, round robin to all others (default 100)" },
	{ "synth-seconds", "S", set_synth_seconds, "--vm none: seconds of running time it sends for, then checks and exits (default 10)" },
	{ "synth-frame-size", "BYTES", set_synth_frame, "--vm none: frame size, 64-1514 (default 128)" },
	{ "console", "yes|no", set_console, "echo guest console lines on stdout, prefixed [nodeR] (default yes)" },
	{ NULL, NULL, NULL, NULL }
};

void cfg_usage(FILE *out)
{
	fprintf(out,
		"usage: mpirun -np N vcluster-launch [--job FILE] [OPTION VALUE]...\n"
		"\n"
		"Boots a virtual cluster: one VM per MPI rank, linked by an Ethernet that\n"
		"the ranks forward among themselves.  Every guest runs the guest command\n"
		"and powers off; the exit status is 0 when every guest command succeeded.\n"
		"\n"
		"  --job FILE              read settings from FILE ('name = value' lines,\n"
		"                          names as the options below; see jobs/)\n");
	for (const struct cfg_opt *o = opts; o->name; o++) {
		char left[48];
		snprintf(left, sizeof(left), "--%s %s", o->name, o->arg ? o->arg : "");
		fprintf(out, "  %-22s  %s\n", left, o->help);
	}
	fprintf(out,
		"  -v, --verbose           more detail in the rank logs (twice: on stderr)\n"
		"  -h, --help              this text\n"
		"      --version           the release and format versions\n"
		"\n"
		"Exit status: 0 all guests succeeded; the failing guest command's status\n"
		"(the largest) when one failed; 2 bad settings or a VM/rank fault; 3 shut\n"
		"down (vcluster-ctl) before the guests finished; 124 the --timeout passed;\n"
		"130/143 interrupted (SIGINT/SIGTERM).  Rank logs and consoles are under\n"
		"the run directory (RUN/rankN/{rank.log,console.log,qemu.log}); rank 0's\n"
		"control socket is RUN/ctl.sock (see vcluster-ctl).\n");
}

static const struct cfg_opt *find_opt(const char *name)
{
	for (const struct cfg_opt *o = opts; o->name; o++)
		if (!strcmp(o->name, name))
			return o;
	return NULL;
}

static int job_cb(void *ctx, const char *key, const char *value, char *why,
		  size_t whylen)
{
	const struct cfg_opt *o = find_opt(key);

	if (!o) {
		snprintf(why, whylen, "unknown setting '%s' (see vcluster-launch --help)", key);
		return -EINVAL;
	}
	char inner[256];
	int r = o->set(ctx, value, inner, sizeof(inner));
	if (r < 0)	/* drop the leading "--": the file says "name =" */
		snprintf(why, whylen, "%s", inner + (inner[0] == '-' && inner[1] == '-' ? 2 : 0));
	return r;
}

int cfg_load(struct vc_config *c, int argc, char **argv, char *err,
	     size_t errlen)
{
	struct option lopts[64];
	int n = 0, r;

	memset(c, 0, sizeof(*c));
	c->memory_mib = 256;
	c->vcpus = 1;
	c->accel = CFG_ACCEL_AUTO;
	c->kvm_probe_ms = 3000;
	c->subnet_base = 10u << 24 | 10u << 16;
	c->subnet_prefix = 24;
	c->grace_s = 10;
	c->console = true;
	c->fabric_spin_us = -1;	/* the channel's own (fabric.h) */
	c->synth_rate = SYNTH_DEFAULT_RATE;
	c->synth_seconds = SYNTH_DEFAULT_SECONDS;
	c->synth_frame = SYNTH_DEFAULT_FRAME;
	snprintf(c->guest_cmd, sizeof(c->guest_cmd), "vcluster-traffic --all --seconds 10");

	for (const struct cfg_opt *o = opts; o->name; o++)
		lopts[n++] = (struct option){ o->name, required_argument, NULL, 0 };
	lopts[n++] = (struct option){ "job", required_argument, NULL, 'j' };
	lopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	lopts[n++] = (struct option){ "version", no_argument, NULL, 'V' };
	lopts[n++] = (struct option){ "verbose", no_argument, NULL, 'v' };
	lopts[n] = (struct option){ 0 };

	/* Pass 1: --job, --help and --version only; report unknown options. */
	opterr = 0;
	optind = 1;
	int idx, ch;
	while ((ch = getopt_long(argc, argv, ":hv", lopts, &idx)) != -1) {
		if (ch == 'h') {
			cfg_usage(stdout);
			return 1;
		} else if (ch == 'V') {
			static const struct version_item v[] = {
				{ "format", "manifest", MANIFEST_VERSION },
				{ "format", "rq", RQ_VERSION },
				{ "wire", "fabric-batch", FBATCH_VERSION },
				{ "wire", "fabric-tcp-hello", FTCP_HELLO_VERSION },
				{ "wire", "ctrlmsg", CTRLMSG_VERSION },
				{ "wire", "ctl", CTL_PROTO_VERSION },
				{ "wire", "clock-frame", VC_CLOCK_VERSION },
				{ NULL, NULL, 0 }
			};
			version_print(stdout, "vcluster-launch", v);
			return 1;
		} else if (ch == 'j') {
			snprintf(c->job, sizeof(c->job), "%s", optarg);
		} else if (ch == '?') {
			snprintf(err, errlen, "unknown option '%s' (see --help)", argv[optind - 1]);
			return -EINVAL;
		} else if (ch == ':') {
			snprintf(err, errlen, "option '%s' needs a value", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		return -EINVAL;
	}
	if (c->job[0]) {
		r = jobspec_parse_file(c->job, job_cb, c, err, errlen);
		if (r < 0)
			return r;
	}
	/* Pass 2: the command line over the job file. */
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":hv", lopts, &idx)) != -1) {
		if (ch == 'v') {
			c->verbose++;
			continue;
		}
		if (ch != 0)
			continue;
		r = opts[idx].set(c, optarg, err, errlen);
		if (r < 0)
			return r;
	}
	if ((c->restore[0] || c->checkpoint_interval_s) && !c->checkpoint_dir[0]) {
		snprintf(err, errlen, "%s needs --checkpoint-dir",
			 c->restore[0] ? "--restore" : "--checkpoint-interval");
		return -EINVAL;
	}
	if (c->maxcpus && c->maxcpus < c->vcpus) {
		snprintf(err, errlen, "--maxcpus %d is below --vcpus %d", c->maxcpus, c->vcpus);
		return -EINVAL;
	}
	if (c->vm == CFG_VM_NONE && (c->disk[0] || c->kernel[0])) {
		snprintf(err, errlen, "--vm none runs no guest: --%s makes no sense with it",
			 c->disk[0] ? "disk" : "kernel");
		return -EINVAL;
	}
	if (c->initrd[0] && !c->kernel[0]) {
		snprintf(err, errlen, "--initrd needs --kernel");
		return -EINVAL;
	}
	return 0;
}

int cfg_set(struct vc_config *c, const char *name, const char *value,
	    char *why, size_t whylen)
{
	const struct cfg_opt *o = find_opt(name);
	if (!o) {
		snprintf(why, whylen, "unknown setting '%s'", name);
		return -EINVAL;
	}
	return o->set(c, value, why, whylen);
}

void cfg_subnet_str(const struct vc_config *c, char *out, size_t len)
{
	uint32_t b = c->subnet_base;
	snprintf(out, len, "%u.%u.%u.%u/%d", b >> 24, b >> 16 & 255, b >> 8 & 255,
		 b & 255, c->subnet_prefix);
}

int cfg_subnet_capacity(const struct vc_config *c)
{
	/* base+1 .. broadcast-1 */
	long hosts = (1L << (32 - c->subnet_prefix)) - 2;
	return hosts > 4096 ? 4096 : (int)hosts;
}

int cfg_maxcpus(const struct vc_config *c)
{
	if (c->maxcpus)
		return c->maxcpus;
	return c->vcpus > 1 ? c->vcpus : 2;
}
