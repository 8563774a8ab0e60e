#!/usr/bin/env bash
# timeout: 600
# NPB in the virtual cluster: EP and CG class S on 2 VMs of the NPB guest
# (bench/NPB/guest, built by `make guest`).  node0 launches each kernel over
# both VMs with mpirun (daemons started through dropbear); the report must
# say "Verification = SUCCESSFUL" for 2 processes, every guest must exit 0,
# the launcher must exit 0 and nothing may be left running.
. "$(dirname "$0")/../lib/vc-test.sh"

initrd=$VC_ROOT/build/npb-guest/initrd.img
[[ -s $initrd ]] || fail "$initrd missing: run 'make guest' (it builds the NPB guest too)"

# no_timer_check: on a loaded host the kernel's IO-APIC timer check can miss
# the TCG guest's timer ticks and panic at boot.
for k in ep cg; do
	out=$VC_T/$k.out
	start=$(date +%s)
	vc_launch 2 "$out" --kernel "$VC_ROOT/build/guest/vmlinuz" --initrd "$initrd" \
		--memory 512M --vcpus 1 --timeout 240 --append no_timer_check \
		--guest-cmd "npb-guest-run --kernel $k --class S --np 2"
	rc=$?
	secs=$(( $(date +%s) - start ))
	grep -E '^\[node[01]\] (NPB-GUEST|VCLUSTER-EXIT| (Time in seconds|Total processes|Verification) +=)' "$out" || true
	[[ $rc -eq 0 ]] || { tail -n 40 "$out"; fail "$k: launcher exited $rc"; }
	K=${k^^}
	assert_grep "^\[node0\]  $K Benchmark Completed\.$" "$out" 1
	assert_grep '^\[node0\]  Class += +S$' "$out" 1
	assert_grep '^\[node0\]  Total processes += +2$' "$out" 1
	assert_grep '^\[node0\]  Verification += +SUCCESSFUL$' "$out" 1
	assert_grep '^\[node0\] NPB-GUEST mpirun status=0 ' "$out" 1
	assert_grep '^\[node[01]\] VCLUSTER-EXIT rank=[01] status=0$' "$out" 2
	assert_grep 'all 2 guests succeeded' "$out"
	check_accounting "$VC_T/run"
	assert_nothing_running
	echo "ok: $K class S on 2 VMs: SUCCESSFUL (${secs}s with boot)"
done
