#!/usr/bin/env bash
# timeout: 600
# serial: the litmus test races a guest against a host thread on the other core; another test there would hide the race
# A one-vCPU TCG guest's memory barriers order its accesses against QEMU's own threads (issue 11: the
# virtio TX stall, qemu-patches/README.md "0005"). The store-buffering litmus test between the guest
# (Linux's smp_mb()) and a host thread on the other core (qemu-patches/test/sb-litmus-run): stock QEMU
# with -smp 1 must show reorderings, or the machine cannot show them and the test skips; then the patched
# build with -smp 1 (0005) and stock QEMU with the launcher's -smp 1,maxcpus=2 must show none.
. "$(dirname "$0")/../lib/vc-test.sh"

run=$VC_ROOT/qemu-patches/test/sb-litmus-run
stock=/usr/bin/qemu-system-x86_64
patched=$VC_ROOT/build/qemu/bin/qemu-system-x86_64
n=${VC_TEST_SB_ITERATIONS:-3000000}
[[ $(id -u) -eq 0 ]] || { echo "skipped: needs root (mknod for the guest's initramfs)"; exit 77; }
[[ $(nproc) -ge 2 ]] || { echo "skipped: one host core cannot run guest and host side at once"; exit 77; }
[[ -x $stock ]] || { echo "skipped: no stock QEMU ($stock)"; exit 77; }
# The launcher really starts a one-vCPU VM with a second possible vCPU.
out=$VC_T/launch.out
vc_launch 1 "$out" --qemu "$stock" --guest-cmd true --timeout 180 || fail "a one-VM job with stock QEMU failed"
grep -h 'starting stock QEMU' "$out" "$VC_T/run/rank0/rank.log" 2>/dev/null | grep -q -- '-smp 1,maxcpus=2 ' ||
	fail "the launcher did not start the one-vCPU VM with -smp 1,maxcpus=2"

litmus() {	# QEMU SMP: print the reorder count
	local o
	o=$(TMPDIR=$VC_T timeout 240 "$run" "$1" "$2" "$n" 2>&1)
	echo "$o" | grep -v terminating >&2
	grep -oE 'both old \(reordered\) [0-9]+' <<<"$o" | grep -oE '[0-9]+$'
}

r=$(litmus "$stock" 1)
[[ -n $r ]] || fail "the litmus test did not run on stock QEMU"
[[ $r -gt 0 ]] || { echo "skipped: stock QEMU -smp 1 showed no reordering in $n iterations on this machine"; exit 77; }
echo "stock -smp 1: $r reorderings (the scenario can fail)"
r=$(litmus "$stock" 1,maxcpus=2)
[[ $r == 0 ]] || fail "stock QEMU with -smp 1,maxcpus=2 (the launcher's) reordered ${r:-?} times"
if [[ -x $patched ]] && "$patched" -version | grep -q vcluster; then
	r=$(litmus "$patched" 1)
	[[ $r == 0 ]] || fail "the patched QEMU with -smp 1 reordered ${r:-?} times (0005 missing?)"
else
	echo "note: no patched build ($patched): only the launcher's setting was checked"
fi
assert_nothing_running
echo "ok: a one-vCPU TCG guest's barriers hold with the launcher's -smp and with 0005"
