/* config: vcluster-launch's settings, from a job file and the command line.
 *
 * One table describes every option; the command line (--name value) and a
 * job file (name = value, see common/jobspec.h) both go through it, so they
 * accept exactly the same settings and check them the same way.  The
 * command line wins over the job file.
 */
#ifndef VC_CONFIG_H
#define VC_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_CKPT_DIRS_MAX	8	/* CKPT_MAX_DIRS of vccp-rank/manifest.h */

enum cfg_accel { CFG_ACCEL_AUTO, CFG_ACCEL_KVM, CFG_ACCEL_TCG };
enum cfg_pin { CFG_PIN_AUTO, CFG_PIN_NONE };
enum cfg_vm { CFG_VM_QEMU, CFG_VM_NONE };	/* none: vcluster-synth (synth.h) */

struct vc_config {
	char job[PATH_MAX];
	char kernel[PATH_MAX];		/* empty: the built test guest */
	char initrd[PATH_MAX];
	char append[1024];
	char disk[PATH_MAX];		/* qcow2 image; optional */
	uint64_t memory_mib;
	int vcpus;
	int maxcpus;			/* possible vCPUs; 0: cfg_maxcpus() decides */
	enum cfg_accel accel;
	int kvm_probe_ms;
	uint32_t subnet_base;		/* host order */
	int subnet_prefix;
	char run_dir[PATH_MAX];		/* empty: chosen at start */
	char guest_cmd[1024];
	int timeout_s;			/* 0: none */
	int grace_s;
	int head_ssh_port;		/* 0: none */
	char qemu[PATH_MAX];		/* empty: patched if built, else stock */
	enum cfg_pin pin;
	bool console;			/* echo guest console lines */
	bool clock_sync;		/* set guest clocks after resume/restore */
	int fabric_spin_us;		/* busy-poll window after traffic */
	char fabric[8];			/* "tcp", "mpi"; empty: the default */
	char fabric_addr[256];		/* tcp: listen address; empty: hostname's */
	char checkpoint_dir[PATH_MAX];	/* the first of --checkpoint-dir D1,D2,...
					 * (manifest, latest, VM state, disks);
					 * empty: no checkpoints */
	/* the others, where live RAM files are spread too (manifest.h) */
	char checkpoint_more[CFG_CKPT_DIRS_MAX - 1][PATH_MAX];
	int checkpoint_ndirs;		/* 1 + those; 0 without checkpoints */
	int checkpoint_interval_s;	/* 0: only on request */
	int keep;			/* 0: keep all */
	int checkpoint_bandwidth;	/* MiB/s; 0: unlimited */
	bool checkpoint_live;		/* --checkpoint-mode live (issue 15) */
	int checkpoint_writers;		/* live: RAM files per rank; 0: 1 */
	char restore[32];		/* "latest", an epoch, or empty */
	enum cfg_vm vm;
	int synth_rate;			/* --vm none: frames/s each rank sends */
	int synth_seconds;		/* of running time */
	int synth_frame;		/* bytes per frame */
	int vms;			/* ranks 0..vms-1 run a VM, the rest are spares; 0: all */
	int verbose;
};

/* Defaults, then --job FILE, then the other options of argv.  Returns 0,
 * 1 when --help or --version was handled (exit 0), or -EINVAL with a one-
 * line reason in err (naming the option, or FILE:LINE for job files). */
int cfg_load(struct vc_config *c, int argc, char **argv, char *err,
	     size_t errlen);

/* Apply one setting by its option name (as a job file line would).
 * 0 or -EINVAL with the reason in why. */
int cfg_set(struct vc_config *c, const char *name, const char *value,
	    char *why, size_t whylen);

/* Print the full --help text. */
void cfg_usage(FILE *out);

/* "10.10.0.0/24" style text of the subnet. */
void cfg_subnet_str(const struct vc_config *c, char *out, size_t len);

/* The VM's possible vCPUs: --maxcpus, else --vcpus but at least 2.  TCG
 * (QEMU 7.2) elides a guest's memory barriers when the machine has one
 * possible vCPU, and the guest then races QEMU's virtio code on the rings
 * (a lost kick or interrupt stalls the fabric NIC for good: issue 11,
 * qemu-patches/README.md "0005").  A second, never plugged, vCPU keeps
 * them with stock QEMU.  The number is part of the VM's machine (its saved
 * state), so a restore takes it from the checkpoint. */
int cfg_maxcpus(const struct vc_config *c);

/* Largest number of ranks the subnet has addresses for. */
int cfg_subnet_capacity(const struct vc_config *c);

#endif
