#define LOG_PREFIX "vm"
#include "vctime.h"
#include "vm.h"

#include "afile.h"
#include "child.h"
#include "log.h"
#include "loop.h"
#include "qmp.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 96

struct vm {
	int rank;
	int node;		/* console lines are "[nodeN]" */
	pid_t pid;
	enum vm_state state;
	struct qmp *qmp;
	char dir[PATH_MAX];
	char console_path[PATH_MAX];
	char qemu_log[PATH_MAX];
	int console_fd;
	char line[4096];
	size_t linelen;
	bool have_exit_line;
	int guest_status;
	int wait_status;
	long long stop_quit_at, stop_kill_at;	/* ms, monotonic; 0 = not set */
	/* the start, from vm_spawn() until QEMU answers on QMP */
	char qmp_path[PATH_MAX];
	const struct pin_plan *pin;
	struct loop *loop;
	struct loop_timer *start_timer;
	int start_fd;			/* QMP's descriptor watched during it */
	long long start_deadline;	/* ms, monotonic */
	int deadline_ms;
	bool starting, start_done;	/* waiting; a QMP callback decided */
	int start_err;
	char start_why[512];
	vm_ready_cb ready_cb;
	void *ready_ctx;
};

static void hex_encode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (; *in && o + 2 < outlen; in++) {
		out[o++] = hex[(unsigned char)*in >> 4];
		out[o++] = hex[(unsigned char)*in & 15];
	}
	out[o] = '\0';
}

/* The last non-empty line of a file, for error messages. */
static void last_line(const char *path, char *out, size_t len)
{
	char *text;
	size_t n;

	out[0] = '\0';
	if (afile_read_all(path, 1 << 20, &text, &n) < 0)
		return;
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	char *nl = strrchr(text, '\n');
	snprintf(out, len, "%s", nl ? nl + 1 : text);
	free(text);
}

/* The first non-empty line of a file, for error messages. */
static void first_line(const char *path, char *out, size_t len)
{
	char *text, *p;
	size_t n;

	out[0] = '\0';
	if (afile_read_all(path, 1 << 20, &text, &n) < 0)
		return;
	for (p = text; *p == '\n' || *p == '\r'; p++)
		;
	p[strcspn(p, "\r\n")] = '\0';
	snprintf(out, len, "%s", p);
	free(text);
}

/* Copy in into out for a QEMU option value: commas doubled, as QEMU's
 * option parser reads ",," as a literal comma.  0 or -ENAMETOOLONG. */
static int qemu_opt_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in; in++) {
		size_t need = *in == ',' ? 2 : 1;
		if (o + need >= len)
			return -ENAMETOOLONG;
		out[o++] = *in;
		if (*in == ',')
			out[o++] = ',';
	}
	out[o] = '\0';
	return 0;
}

/* Run a tool (argv[0] looked up in PATH) without a shell: stdin from
 * /dev/null, stdout and stderr into logpath.  0 when it exited 0; else
 * -errno or -EIO with one line in why naming the tool, how it ended and
 * the first line it printed. */
static int run_tool(char *const argv[], const char *logpath, char *why, size_t whylen)
{
	pid_t pid;
	int st, r, logfd;

	logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (logfd < 0) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", logpath, strerror(errno));
		return r;
	}
	pid = child_spawn(argv, -1, logfd, logfd, 0, why, whylen);
	close(logfd);
	if (pid < 0)
		return pid;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			r = -errno;
			snprintf(why, whylen, "waiting for %s: %s", argv[0], strerror(errno));
			return r;
		}
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	char tail[256], how[48];
	first_line(logpath, tail, sizeof(tail));	/* the error; later lines add notes */
	if (WIFSIGNALED(st))
		snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(st));
	else
		snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(st));
	snprintf(why, whylen, "%s %s%s%s", argv[0], how, tail[0] ? ": " : "", tail);
	return -EIO;
}

/* The argv of vcluster-synth in QEMU's place (--vm none, synth.h): the
 * same VM link end, QMP socket and console file QEMU would get. */
struct synth_args {
	char rank[16], n[16], fd[16], rate[16], secs[16], size[16];
};

static int synth_argv(const struct vm_spec *s, int link_fd, char *qmp_path, char *console,
		      char **argv, struct synth_args *a)
{
	int argc = 0;

	snprintf(a->rank, sizeof(a->rank), "%d", s->node);
	snprintf(a->n, sizeof(a->n), "%d", s->nranks);
	snprintf(a->fd, sizeof(a->fd), "%d", link_fd);
	snprintf(a->rate, sizeof(a->rate), "%d", s->cfg->synth_rate);
	snprintf(a->secs, sizeof(a->secs), "%d", s->cfg->synth_seconds);
	snprintf(a->size, sizeof(a->size), "%d", s->cfg->synth_frame);
	argv[argc++] = (char *)s->qemu_bin;
	argv[argc++] = "--rank";
	argv[argc++] = a->rank;
	argv[argc++] = "--nranks";
	argv[argc++] = a->n;
	argv[argc++] = "--link-fd";
	argv[argc++] = a->fd;
	argv[argc++] = "--qmp";
	argv[argc++] = qmp_path;
	argv[argc++] = "--console";
	argv[argc++] = console;
	argv[argc++] = "--rate";
	argv[argc++] = a->rate;
	argv[argc++] = "--seconds";
	argv[argc++] = a->secs;
	argv[argc++] = "--frame-size";
	argv[argc++] = a->size;
	argv[argc++] = s->incoming ? "--incoming" : "--paused";
	argv[argc] = NULL;
	return argc;
}

static int make_overlay(const struct vm_spec *s, char *overlay, size_t len,
			char *why, size_t whylen)
{
	char base[PATH_MAX], log[PATH_MAX + 16], inner[512];
	int r;

	if (!realpath(s->cfg->disk, base)) {
		r = -errno;
		snprintf(why, whylen, "disk image %s: %s", s->cfg->disk, strerror(errno));
		return r;
	}
	snprintf(overlay, len, "%s/disk.qcow2", s->rank_dir);
	snprintf(log, sizeof(log), "%s/qemu-img.log", s->rank_dir);
	if (s->restore_disk) {
		/* The checkpoint's image is standalone: a copy is the disk. */
		char *argv[] = { "cp", "--sparse=always", "--", (char *)s->restore_disk,
				 overlay, NULL };
		r = run_tool(argv, log, inner, sizeof(inner));
		if (r < 0)
			snprintf(why, whylen, "could not copy the checkpoint's disk %s: %s",
				 s->restore_disk, inner);
		return r;
	}
	if (access(overlay, F_OK) == 0)
		return 0;	/* a restarted rank keeps its overlay */
	char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
			 overlay, NULL };
	r = run_tool(argv, log, inner, sizeof(inner));
	if (r < 0)
		snprintf(why, whylen, "could not create an overlay on %s: %s", s->cfg->disk, inner);
	return r;
}

/* In QEMU's child before the exec: every thread it will have inherits the
 * rank's cores (pin.h); its vCPU threads are bound one by one later. */
static void bind_qemu(void *pin)
{
	pin_bind_process(pin, 0);
}

struct vm *vm_spawn(const struct vm_spec *s, int *link_fd, char *why, size_t whylen)
{
	const struct vc_config *c = s->cfg;
	char *argv[MAX_ARGS];
	int argc = 0;
	char mem[32], smp[32], qmp_arg[2 * PATH_MAX + 32], chardev[2 * PATH_MAX + 64];
	char netdev[64], fabric_dev[128], append[2048], cmdhex[1300], net[40];
	char head_netdev[96], overlay[PATH_MAX], drive[2 * PATH_MAX + 64];
	char mac[24], name[48], qmp_path[PATH_MAX], esc[2 * PATH_MAX];
	char machine[64], ram_obj[96];
	int sv[2] = { -1, -1 }, r;
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm) {
		errno = ENOMEM;
		return NULL;
	}
	vm->rank = s->rank;
	vm->node = s->node;
	vm->console_fd = -1;
	vm->start_fd = -1;
	vm->pin = s->pin;
	snprintf(vm->dir, sizeof(vm->dir), "%s", s->rank_dir);
	snprintf(vm->console_path, sizeof(vm->console_path), "%s/console.log", s->rank_dir);
	snprintf(vm->qemu_log, sizeof(vm->qemu_log), "%s/qemu.log", s->rank_dir);
	snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", s->rank_dir);
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s", qmp_path);
	unlink(qmp_path);
	unlink(vm->console_path);

	/* Paths go into QEMU option strings, where a comma separates options
	 * (",," is a literal one). */
	if (qemu_opt_escape(qmp_path, esc, sizeof(esc)) < 0 ||
	    snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", esc) >=
		    (int)sizeof(qmp_arg) ||
	    qemu_opt_escape(vm->console_path, esc, sizeof(esc)) < 0 ||
	    snprintf(chardev, sizeof(chardev), "file,id=con0,path=%s", esc) >=
		    (int)sizeof(chardev)) {
		r = -ENAMETOOLONG;
		snprintf(why, whylen, "run directory %s: path too long for QEMU's options", s->rank_dir);
		goto fail;
	}

	/* The VM link.  sv[0] is the rank's (the fabric makes it non-blocking).
	 * QEMU's end sv[1] is left blocking on purpose: stock QEMU's vde netdev
	 * drops a guest frame when send() fails with EAGAIN, and the link holds
	 * only net.unix.max_dgram_qlen (10) frames, so a non-blocking end would
	 * lose frames whenever the rank lags; blocking, stock QEMU waits in
	 * send() instead, which the fabric's spill bound keeps from deadlocking
	 * (fabric.c peer_can_take()).  The patched QEMU (qemu-patches/0004)
	 * makes its end non-blocking itself and queues the frame instead. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0) {
		r = -errno;
		snprintf(why, whylen, "socketpair: %s", strerror(errno));
		goto fail;
	}
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	struct synth_args sa;
	if (c->vm == CFG_VM_NONE) {
		argc = synth_argv(s, sv[1], qmp_path, vm->console_path, argv, &sa);
		goto spawn;
	}

	/* The node's identity, not the rank's: a spare that receives node K
	 * must start a QEMU that is node K (same MAC, name, kernel arguments,
	 * devices), or the migration stream would not load, and the guest
	 * keeps its address in any case.  MAC: locally administered, node
	 * number in the last two bytes. */
	snprintf(mac, sizeof(mac), "52:54:00:56:%02x:%02x", (s->node >> 8) & 255, s->node & 255);
	snprintf(name, sizeof(name), "vcluster-node%d", s->node);
	snprintf(mem, sizeof(mem), "%llu", (unsigned long long)c->memory_mib);
	/* Guest RAM on a shared memfd (issue 14): the TLM engine maps it from
	 * QEMU's descriptor (/proc/PID/fd); the rank maps nothing.  Its id is
	 * the default backend's, so the RAM block keeps the name "pc.ram" and
	 * checkpoints and migration streams of either kind stay compatible. */
	snprintf(machine, sizeof(machine), "q35,accel=%s,memory-backend=pc.ram",
		 s->kvm ? "kvm" : "tcg");
	snprintf(ram_obj, sizeof(ram_obj), "memory-backend-memfd,id=pc.ram,size=%lluM,share=on",
		 (unsigned long long)c->memory_mib);
	/* at least 2 possible vCPUs: TCG keeps the guest's barriers (see
	 * cfg_maxcpus) */
	snprintf(smp, sizeof(smp), "%d,maxcpus=%d", c->vcpus, cfg_maxcpus(c));
	snprintf(netdev, sizeof(netdev), "vde,id=fabric,sock=seqpacket://%d", sv[1]);
	snprintf(fabric_dev, sizeof(fabric_dev), "virtio-net-pci,netdev=fabric,mac=%s,romfile=", mac);
	cfg_subnet_str(c, net, sizeof(net));
	hex_encode(c->guest_cmd, cmdhex, sizeof(cmdhex));
	snprintf(append, sizeof(append),
		 "console=ttyS0 quiet panic=-1 no_timer_check vc.rank=%d vc.n=%d vc.net=%s vc.mac=%s vc.head=%d%s vc.cmd=%s%s%s",
		 s->node, s->nranks, net, mac, s->node == 0, c->clock_sync ? " vc.clocksync=1" : "", cmdhex,
		 c->append[0] ? " " : "", c->append);

	argv[argc++] = (char *)s->qemu_bin;
	if (s->firmware_dir) {
		argv[argc++] = "-L";
		argv[argc++] = (char *)s->firmware_dir;
	}
	argv[argc++] = "-name";
	argv[argc++] = name;
	argv[argc++] = "-machine";
	argv[argc++] = machine;
	argv[argc++] = "-object";
	argv[argc++] = ram_obj;
	argv[argc++] = "-cpu";
	argv[argc++] = s->kvm ? "host" : "max";
	argv[argc++] = "-m";
	argv[argc++] = mem;
	argv[argc++] = "-smp";
	argv[argc++] = smp;
	argv[argc++] = "-nodefaults";
	argv[argc++] = "-no-user-config";
	argv[argc++] = "-display";
	argv[argc++] = "none";
	argv[argc++] = "-no-reboot";
	argv[argc++] = "-qmp";
	argv[argc++] = qmp_arg;
	char live_arg[2 * PATH_MAX + 32];
	if (s->live_qmp) {	/* the live save's own monitor (livesrc.h) */
		unlink(s->live_qmp);
		if (qemu_opt_escape(s->live_qmp, esc, sizeof(esc)) < 0)
			esc[0] = '\0';
		snprintf(live_arg, sizeof(live_arg), "unix:%s,server=on,wait=off", esc);
		argv[argc++] = "-qmp";
		argv[argc++] = live_arg;
	}
	argv[argc++] = "-chardev";
	argv[argc++] = chardev;
	argv[argc++] = "-serial";
	argv[argc++] = "chardev:con0";
	argv[argc++] = "-netdev";
	argv[argc++] = netdev;
	argv[argc++] = "-device";
	argv[argc++] = fabric_dev;
	if (s->node == 0) {	/* the head node's NIC goes where node0 goes */
		if (c->head_ssh_port)
			snprintf(head_netdev, sizeof(head_netdev),
				 "user,id=head,hostfwd=tcp:127.0.0.1:%d-:22", c->head_ssh_port);
		else
			snprintf(head_netdev, sizeof(head_netdev), "user,id=head");
		argv[argc++] = "-netdev";
		argv[argc++] = head_netdev;
		argv[argc++] = "-device";
		argv[argc++] = "virtio-net-pci,netdev=head,romfile=";
	}
	if (c->disk[0]) {
		r = make_overlay(s, overlay, sizeof(overlay), why, whylen);
		if (r < 0)
			goto fail_close;
		if (qemu_opt_escape(overlay, esc, sizeof(esc)) < 0 ||
		    snprintf(drive, sizeof(drive), "file=%s,if=virtio,id=" VM_DISK_ID
			     ",format=qcow2,cache=writeback", esc) >= (int)sizeof(drive)) {
			r = -ENAMETOOLONG;
			snprintf(why, whylen, "disk overlay %s: path too long for QEMU's options", overlay);
			goto fail_close;
		}
		argv[argc++] = "-drive";
		argv[argc++] = drive;
	}
	if (s->kernel && s->kernel[0]) {
		argv[argc++] = "-kernel";
		argv[argc++] = (char *)s->kernel;
		if (s->initrd && s->initrd[0]) {
			argv[argc++] = "-initrd";
			argv[argc++] = (char *)s->initrd;
		}
		argv[argc++] = "-append";
		argv[argc++] = append;
	}
	if (s->incoming) {
		argv[argc++] = "-incoming";
		argv[argc++] = "defer";
		argv[argc++] = "-S";
	}
	argv[argc] = NULL;

spawn:
	/* The command line, for the log and for a human to rerun it. */
	char cmdline[4096];
	size_t off = 0;
	for (int i = 0; i < argc && off < sizeof(cmdline); i++)
		off += (size_t)snprintf(cmdline + off, sizeof(cmdline) - off, "%s%s",
					i ? " " : "", argv[i]);
	pr_info("starting %s (%s): %s", c->vm == CFG_VM_NONE ? "the synthetic VM" :
		s->qemu_patched ? "patched QEMU" : "stock QEMU", s->qemu_bin, cmdline);

	int logfd = open(vm->qemu_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", vm->qemu_log, strerror(errno));
		goto fail_close;
	}
	/* QEMU dies with its rank, whatever kills the rank (child.h); it leads
	 * its own process group, so terminal signals go to the rank only. */
	struct child_opts co = {
		.fd0 = -1, .fd1 = logfd, .fd2 = logfd, .own_group = 1,
		.before_exec = s->pin ? bind_qemu : NULL, .ctx = (void *)s->pin,
	};
	vm->pid = child_spawn_opts(argv, &co, why, whylen);
	if (vm->pid < 0) {
		r = vm->pid;
		vm->pid = 0;
		close(logfd);
		goto fail_close;
	}
	close(logfd);
	close(sv[1]);
	sv[1] = -1;
	vm->state = VM_RUNNING;
	*link_fd = sv[0];
	return vm;

fail_close:
	close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
fail:
	free(vm);
	errno = -r;
	return NULL;
}

/* ---- the start on the loop: connect, qmp_capabilities, vCPU threads -- */

#define START_RETRY_MS	50	/* between connect attempts (and timeout checks) */

/* Done, one way or the other: stop watching, tell the caller.  Never from
 * inside a QMP callback (the caller may close QMP then). */
static void start_finish(struct vm *vm, int err, const char *why)
{
	loop_del_timer(vm->loop, vm->start_timer);
	vm->start_timer = NULL;
	if (vm->start_fd >= 0)
		loop_del_fd(vm->loop, vm->start_fd);
	vm->start_fd = -1;
	vm->starting = false;
	if (err == 0)
		pr_debug("QEMU answers on QMP");
	vm->ready_cb(vm->ready_ctx, vm, err, why);
}

/* A failed start: one line naming the rank, what went wrong and QEMU's
 * log with its last line (what QEMU said, if anything). */
static void start_fail(struct vm *vm, int err, const char *what)
{
	char tail[256], why[1024];

	last_line(vm->qemu_log, tail, sizeof(tail));
	snprintf(why, sizeof(why), "rank %d: %s (see %s%s%s)", vm->rank, what, vm->qemu_log,
		 tail[0] ? ": " : "", tail);
	start_finish(vm, err, why);
}

/* A QMP callback's verdict, acted on after the pump returns. */
static void start_decide(struct vm *vm, int err, const char *what)
{
	if (vm->start_done)
		return;
	vm->start_done = true;
	vm->start_err = err;
	snprintf(vm->start_why, sizeof(vm->start_why), "%s", what);
}

static void on_cpus(void *ctx, int err, json_t *cpus, const char *why)
{
	struct vm *vm = ctx;
	char desc[256] = "", msg[600];
	size_t i, off = 0;
	json_t *cpu;

	if (err < 0) {
		/* the VM runs unbound, as before when binding failed */
		pr_warn("vCPU binding: query-cpus-fast: %s", why);
		start_decide(vm, 0, "");
		return;
	}
	json_array_foreach(cpus, i, cpu) {
		int idx = (int)json_integer_value(json_object_get(cpu, "cpu-index"));
		pid_t tid = (pid_t)json_integer_value(json_object_get(cpu, "thread-id"));
		int b = pin_bind_vcpu(vm->pin, idx, tid);
		if (off < sizeof(desc))
			off += (size_t)snprintf(desc + off, sizeof(desc) - off, "%svCPU %d thread %d%s",
						off ? ", " : "", idx, (int)tid,
						b < 0 ? " (bind failed)" : "");
	}
	snprintf(msg, sizeof(msg), "vCPU threads bound: %s", desc);
	pr_info("%s", msg);
	start_decide(vm, 0, "");
}

static void on_capabilities(void *ctx, int err, json_t *ret, const char *why)
{
	struct vm *vm = ctx;
	char what[600];

	if (err < 0) {
		snprintf(what, sizeof(what), "QEMU did not answer on QMP: %s", why);
		start_decide(vm, err == -EPIPE ? -ECHILD : err, what);
		return;
	}
	if (!vm->pin) {
		start_decide(vm, 0, "");
		return;
	}
	long long left = vm->start_deadline - vc_mono_ms();
	int r = qmp_exec_async(vm->qmp, "query-cpus-fast", NULL, -1,
			       left > 1000 ? (int)left : 1000, on_cpus, vm);
	if (r < 0) {
		snprintf(what, sizeof(what), "QEMU closed QMP at start: %s", strerror(-r));
		start_decide(vm, -ECHILD, what);
	}
}

/* After a pump: act on a verdict, or on the deadline. */
static void start_check(struct vm *vm)
{
	if (vm->start_done) {
		if (vm->start_err == 0)
			start_finish(vm, 0, "");
		else
			start_fail(vm, vm->start_err, vm->start_why);
	}
}

static void on_start_qmp_fd(struct loop *l, int fd, unsigned ev, void *ctx)
{
	struct vm *vm = ctx;

	if (qmp_pump(vm->qmp) < 0 && !vm->start_done)
		start_decide(vm, -ECHILD, "QEMU closed QMP at start");
	start_check(vm);
}

static void on_start_tick(struct loop *l, void *ctx)
{
	struct vm *vm = ctx;
	char what[600], why[256] = "";

	if (vm->qmp && !vm->start_done)
		qmp_pump(vm->qmp);	/* the commands' timeouts */
	if (vm->start_done) {
		start_check(vm);
		return;
	}
	if (vm_check_exit(vm)) {	/* closes QMP; start_fail drops its watch */
		start_fail(vm, -ECHILD, "QEMU exited before it answered on QMP");
		return;
	}
	if (vc_mono_ms() >= vm->start_deadline) {
		snprintf(what, sizeof(what), "QEMU did not answer on QMP within %d s",
			 (vm->deadline_ms + 999) / 1000);
		start_fail(vm, -ETIMEDOUT, what);
		return;
	}
	if (vm->qmp)
		return;
	long long left = vm->start_deadline - vc_mono_ms();
	vm->qmp = qmp_connect_async(vm->qmp_path, left > 1000 ? (int)left : 1000,
				    on_capabilities, vm, why, sizeof(why));
	if (!vm->qmp && errno != ENOENT && errno != ECONNREFUSED) {
		start_fail(vm, -errno, why);
		return;
	}
	if (vm->qmp) {
		int r = loop_add_fd(l, qmp_fd(vm->qmp), LOOP_IN, on_start_qmp_fd, vm);
		if (r < 0) {
			snprintf(what, sizeof(what), "watching QMP: %s", strerror(-r));
			start_fail(vm, r, what);
			return;
		}
		vm->start_fd = qmp_fd(vm->qmp);
	}
}

int vm_connect_async(struct vm *vm, struct loop *l, int deadline_ms, vm_ready_cb cb,
		     void *ctx)
{
	if (vm->starting || vm->qmp)
		return -EALREADY;
	vm->loop = l;
	vm->ready_cb = cb;
	vm->ready_ctx = ctx;
	vm->deadline_ms = deadline_ms;
	vm->start_deadline = vc_mono_ms() + deadline_ms;
	vm->start_done = false;
	/* the first attempt soon: QEMU creates the socket early */
	vm->start_timer = loop_add_timer(l, 5, START_RETRY_MS, on_start_tick, vm);
	if (!vm->start_timer)
		return -errno;
	vm->starting = true;
	return 0;
}

struct start_wait {
	bool done;
	int err;
	char *why;
	size_t whylen;
};

static void start_wait_done(void *ctx, struct vm *vm, int err, const char *why)
{
	struct start_wait *w = ctx;

	w->done = true;
	w->err = err;
	if (err < 0)
		snprintf(w->why, w->whylen, "%s", why);
}

int vm_connect_wait(struct vm *vm, struct loop *l, int deadline_ms, char *why, size_t whylen)
{
	struct start_wait w = { .why = why, .whylen = whylen };
	int r = vm_connect_async(vm, l, deadline_ms, start_wait_done, &w);

	while (r == 0 && !w.done)
		r = loop_run_once(l, 100);
	if (r < 0) {
		snprintf(why, whylen, "rank %d: the event loop: %s", vm->rank, strerror(-r));
		return r;
	}
	return w.err;
}

pid_t vm_pid(const struct vm *vm)
{
	return vm->pid;
}

enum vm_state vm_state(const struct vm *vm)
{
	return vm->state;
}

const char *vm_state_name(const struct vm *vm)
{
	static const char *names[] = { "running", "stopping", "exited" };
	return names[vm->state];
}

/* Not while starting: the start's watch owns QMP's descriptor. */
struct qmp *vm_qmp(struct vm *vm)
{
	return vm->starting ? NULL : vm->qmp;
}

int vm_qmp_fd(const struct vm *vm)
{
	return vm->qmp && !vm->starting ? qmp_fd(vm->qmp) : -1;
}

static void console_line(struct vm *vm, FILE *out)
{
	char clean[sizeof(vm->line)];
	size_t n = 0;

	/* Drop terminal escapes (SeaBIOS clears the screen) and stray bytes. */
	for (size_t i = 0; i < vm->linelen; i++) {
		unsigned char ch = (unsigned char)vm->line[i];
		if (ch == 0x1b) {
			i++;
			if (i < vm->linelen && vm->line[i] == '[')
				while (i + 1 < vm->linelen && !isalpha((unsigned char)vm->line[i + 1]))
					i++;
			i++;
			continue;
		}
		if (isprint(ch) || ch == '\t')
			clean[n++] = (char)ch;
	}
	clean[n] = '\0';
	vm->linelen = 0;
	if (!n)
		return;
	int rank, status;
	if (sscanf(clean, "VCLUSTER-EXIT rank=%d status=%d", &rank, &status) == 2) {
		vm->have_exit_line = true;
		vm->guest_status = status;
	}
	pr_debug("console: %s", clean);
	if (out) {
		fprintf(out, "[node%d] %s\n", vm->node, clean);
		fflush(out);
	}
}

void vm_console_pump(struct vm *vm, FILE *out)
{
	char buf[8192];

	if (vm->console_fd < 0) {
		vm->console_fd = open(vm->console_path, O_RDONLY | O_CLOEXEC);
		if (vm->console_fd < 0)
			return;
	}
	for (;;) {
		ssize_t n = read(vm->console_fd, buf, sizeof(buf));
		if (n <= 0)
			return;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' || buf[i] == '\r') {
				console_line(vm, out);
			} else if (vm->linelen < sizeof(vm->line) - 1) {
				vm->line[vm->linelen++] = buf[i];
			}
		}
	}
}

bool vm_check_exit(struct vm *vm)
{
	if (vm->state == VM_EXITED)
		return true;
	int status;
	pid_t r = waitpid(vm->pid, &status, WNOHANG);
	if (r != vm->pid)
		return false;
	vm->wait_status = status;
	vm->state = VM_EXITED;
	qmp_close(vm->qmp);
	vm->qmp = NULL;
	vm_console_pump(vm, NULL);
	if (vm->linelen)
		console_line(vm, NULL);
	return true;
}

int vm_result(const struct vm *vm, int *guest_status, char *why, size_t whylen)
{
	int st = vm->wait_status;

	if (vm->have_exit_line) {
		*guest_status = vm->guest_status;
		return 0;
	}
	if (WIFSIGNALED(st)) {
		snprintf(why, whylen, "QEMU was killed by signal %d (%s) before the guest finished",
			 WTERMSIG(st), strsignal(WTERMSIG(st)));
	} else {
		char tail[200];
		last_line(vm->qemu_log, tail, sizeof(tail));
		snprintf(why, whylen, "QEMU exited with status %d before the guest reported%s%s",
			 WEXITSTATUS(st), tail[0] ? ": " : "", tail);
	}
	return -1;
}

/* The reply to a stop command: nothing waits for it (the stop deadlines in
 * vm_tick() act whatever QEMU answers); a refusal is worth a debug line. */
static void stop_cmd_done(void *ctx, int err, json_t *ret, const char *why)
{
	if (err < 0)
		pr_debug("%s: %s", (const char *)ctx, why);
}

/* Send a stop command without waiting: these run inside the rank's loop. */
static void stop_cmd(struct vm *vm, const char *cmd)
{
	if (vm->qmp && qmp_exec_async(vm->qmp, cmd, NULL, -1, 2000, stop_cmd_done,
				      (void *)cmd) < 0)
		pr_debug("%s: not sent (QMP closed)", cmd);
}

void vm_request_stop(struct vm *vm, int grace_ms)
{
	if (vm->state != VM_RUNNING)
		return;
	vm->state = VM_STOPPING;
	stop_cmd(vm, "system_powerdown");
	vm->stop_quit_at = vc_mono_ms() + grace_ms;
	vm->stop_kill_at = vm->stop_quit_at + 5000;
}

void vm_kill(struct vm *vm)
{
	if (vm->state == VM_EXITED)
		return;
	vm->state = VM_STOPPING;
	vm->stop_quit_at = vc_mono_ms();
	vm->stop_kill_at = vm->stop_quit_at + 2000;
	vm_tick(vm);
}

void vm_tick(struct vm *vm)
{
	long long now = vc_mono_ms();

	if (vm->state != VM_STOPPING)
		return;
	if (vm->stop_quit_at && now >= vm->stop_quit_at) {
		vm->stop_quit_at = 0;
		stop_cmd(vm, "quit");
	}
	if (vm->stop_kill_at && now >= vm->stop_kill_at) {
		vm->stop_kill_at = 0;
		pr_warn("QEMU (pid %d) did not stop; killing it", (int)vm->pid);
		kill(vm->pid, SIGKILL);
	}
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->starting) {	/* cancelled: nobody is told */
		loop_del_timer(vm->loop, vm->start_timer);
		if (vm->start_fd >= 0)
			loop_del_fd(vm->loop, vm->start_fd);
	}
	if (vm->state != VM_EXITED && vm->pid > 0) {
		kill(vm->pid, SIGKILL);
		waitpid(vm->pid, NULL, 0);
	}
	qmp_close(vm->qmp);
	if (vm->console_fd >= 0)
		close(vm->console_fd);
	free(vm);
}
