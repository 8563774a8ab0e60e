/* synth: a synthetic VM for `vcluster-launch --vm none` (vcluster-synth).
 *
 * Why a program in QEMU's place, and not a thread or a fake fabric: the
 * point of --vm none is to run exactly the code users run -- the rank's
 * event loop, the fabric, vm.c's start/stop/reap path and vccp's whole
 * protocol -- at a scale (hundreds of ranks on one machine) where QEMU
 * guests cannot run.  So vcluster-synth sits where QEMU sits: vm.c forks
 * and execs it like QEMU (PR_SET_PDEATHSIG, its own process group, log file),
 * it owns the far end of the same SOCK_SEQPACKET VM link (opened with
 * libvdeplug, seqpacket://FD, as QEMU's vde netdev does), it serves QMP on
 * the rank's qmp.sock (the commands the launcher, vccp and restore send)
 * and it writes its console to console.log, ending with the guest's exit
 * line.  A thread in the rank would share its address space (the per-rank
 * memory measured by bench/scale would include it), its signal mask and its
 * descriptors, and would skip vm.c; a fake fabric would prove nothing.
 *
 * What it does: while running, it sends `rate` frames a second (round
 * robin over every other rank, all to all) of `frame_size` bytes for
 * `seconds` of running time (paused time does not count), each frame
 * carrying a per-destination sequence number and a CRC32C; then one FIN
 * per peer with the number it sent.  It checks every frame it receives:
 * from each peer, sequence numbers must come exactly 0, 1, 2, ... up to
 * that peer's FIN (no loss, no duplicate, no reordering, no corruption).
 * When every FIN is in, it prints
 *   VCSYNTH rank=R peers=P sent=S received=V lost=L dup=D bad=B foreign=F
 *           hellos=H run_s=T status=ok|FAILED
 *   VCLUSTER-EXIT rank=R status=0|1
 * on its console and exits 0, as a guest powering off.  While paused
 * (QMP stop) it neither sends nor reads its link, as a stopped QEMU.
 *
 * Its "VM state" (QMP migrate to an fd passed with getfd) is the whole of
 * its program and counters: a vcfmt envelope (magic VC_MAGIC_SYNTH_STATE,
 * version, length, CRC32C of the body) holding the settings, the running
 * time, and per peer the next sequence number to send and to expect.  A
 * restore (-incoming: migrate-incoming from an fd) loads it, refusing one
 * of another rank or cluster size, and the run goes on where the
 * checkpoint cut it: the frames in flight at the cut come back from the
 * receive queue, so the check above stays exact across a kill and restore.
 *
 * Frames (after the 14-byte Ethernet header, ethertype 0x88b5, destination
 * MAC 52:54:00:56:hi:lo of the destination rank, as vm.c gives QEMU):
 *   be32 magic VC_MAGIC_SYNTH_FRAME, u8 version, u8 kind (1 data, 2 FIN,
 *   3 hello: one broadcast when the process starts, so that the fabrics
 *   learn its MAC as a guest's ARP would teach them),
 *   be16 header length (28), be32 source rank, be32 destination rank,
 *   be64 sequence (data) or count sent (FIN), padding, be32 CRC32C of
 *   everything after the Ethernet header before it.
 * Frames for another MAC (flooded while the fabric learns addresses) are
 * dropped and counted as "foreign", as a NIC filters them.
 *
 * Command line (built by vm.c):
 *   vcluster-synth --rank R --nranks N --link-fd FD --qmp PATH --console PATH
 *                  [--rate FPS] [--seconds S] [--frame-size BYTES] [--incoming]
 *                  [--paused]
 * --paused: start as QEMU -S would, until the first QMP cont (the launcher
 * sends it once every rank has started, so that at hundreds of ranks the
 * synthetic VMs start together, not over a start-up of minutes).
 */
#ifndef VC_SYNTH_H
#define VC_SYNTH_H

#define SYNTH_ETHERTYPE		0x88b5
#define SYNTH_FRAME_VERSION	1
#define SYNTH_STATE_VERSION	1
#define SYNTH_HDR_LEN		28	/* payload header, before padding */
#define SYNTH_FRAME_MIN		64
#define SYNTH_FRAME_MAX		1514
#define SYNTH_KIND_DATA		1
#define SYNTH_KIND_FIN		2
#define SYNTH_KIND_HELLO	3	/* broadcast, once per process start */

/* Defaults of the launcher's --synth-rate, --synth-seconds, --synth-frame-size. */
#define SYNTH_DEFAULT_RATE	100
#define SYNTH_DEFAULT_SECONDS	10
#define SYNTH_DEFAULT_FRAME	128

#endif
