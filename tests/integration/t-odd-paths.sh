#!/usr/bin/env bash
# timeout: 240
# Paths are data, never code or options: a disk image whose name holds a
# quote and a command substitution, and a run directory with a comma (QEMU's
# option separator), must give a VM that boots and runs its command, with no
# shell ever interpreting a path (the marker file must not appear).
. "$(dirname "$0")/../lib/vc-test.sh"

marker=$VC_T/injected
disk="$VC_T/x'\$(touch injected)'y.qcow2"	# relative: the ranks run in $VC_T
qemu-img create -q -f qcow2 "$disk" 8M || fail "qemu-img create"
# A tool that fails says why in the one error line (qemu-img's own words).
echo 'not an image' > "$VC_T/plain,file.img"
mpirun -np 1 "$VC_BIN/vcluster-launch" --run-dir "$VC_T/bad" --disk "$VC_T/plain,file.img" \
	>"$VC_T/bad.out" 2>&1; rc=$?
[[ $rc -eq 2 ]] || fail "an overlay on a non-image: exit $rc, expected 2"
assert_grep "rank 0: could not create an overlay on $VC_T/plain,file.img: qemu-img exited with status 1: qemu-img: .*Image is not in qcow2 format" "$VC_T/bad.out" 1

run="$VC_T/run,a=b"
out=$VC_T/out
cd "$VC_T" || fail "cd $VC_T"
mpirun -np 1 "$VC_BIN/vcluster-launch" --run-dir "$run" --disk "$disk" \
	--kernel "$VC_ROOT/build/guest/vmlinuz" --initrd "$VC_ROOT/build/guest/initrd.img" \
	--guest-cmd 'echo odd-paths-ok' --timeout 180 >"$out" 2>&1; rc=$?
[[ -e $marker ]] && fail "a path was run by a shell: $marker exists"
grep -E 'launch:|odd-paths-ok|VCLUSTER-EXIT' "$out" || true
[[ $rc -eq 0 ]] || { tail -n 20 "$out"; tail -n 5 "$run/rank0/qemu.log" 2>/dev/null; fail "launcher exited $rc"; }
assert_grep '\[node0\] odd-paths-ok' "$out" 1
[[ -s $run/rank0/disk.qcow2 ]] || fail "no overlay in $run/rank0"
[[ -s $run/rank0/console.log ]] || fail "no console log in $run/rank0 (QEMU option parsing split the path)"
check_accounting "$run"
assert_nothing_running
echo "ok: quote, \$(...) and comma in paths are plain data"
