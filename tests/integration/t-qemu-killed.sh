#!/usr/bin/env bash
# timeout: 600
# A QEMU killed mid-run stops every rank within a bounded time; the error
# names the rank; the exit status is non-zero.  The same for a rank (a
# vcluster-launch process) killed mid-run: mpirun names it, and no QEMU
# outlives its rank.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
vc_launch 3 "$out" --guest-cmd 'sleep 600' --timeout 200 &
launcher=$!
# Wait until every guest is up, then kill node1's QEMU.
wait_for VCLUSTER-READY "$out" 3
qpid=$(pgrep -f "qemu-system-x86_64 .*-name vcluster-node1 .*$VC_T" || true)
[[ -n "$qpid" ]] || fail "cannot find node1's QEMU"
start=$(date +%s)
kill -KILL $qpid
wait $launcher; rc=$?
took=$(( $(date +%s) - start ))
[[ $rc -ne 0 ]] || fail "launcher exited 0 after a QEMU was killed"
(( took <= 30 )) || fail "the job took ${took}s to stop after the QEMU died"
assert_grep 'rank 1 \(node1\): QEMU was killed by signal 9' "$out"
assert_nothing_running

# A rank that dies.
rm -rf "$VC_T/run"
vc_launch 3 "$out" --guest-cmd 'sleep 600' --timeout 200 &
launcher=$!
wait_for VCLUSTER-READY "$out" 3
rpid=$(for p in $(pgrep -f "vcluster-launch --run-dir $VC_T/run"); do
	[[ $(tr '\0' '\n' < /proc/$p/environ | grep -c '^OMPI_COMM_WORLD_RANK=2$') -eq 1 ]] && echo $p; done)
[[ -n "$rpid" ]] || fail "cannot find rank 2's process"
start=$(date +%s)
kill -KILL $rpid
wait $launcher; rc=$?
took=$(( $(date +%s) - start ))
[[ $rc -ne 0 ]] || fail "launcher exited 0 after a rank was killed"
(( took <= 30 )) || fail "the job took ${took}s to stop after a rank died"
assert_grep 'rank 2 .*(exited|killed|signal)' "$out"
assert_nothing_running
echo "ok: killed QEMU and killed rank named, jobs stopped"
