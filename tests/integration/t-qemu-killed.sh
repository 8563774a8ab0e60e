#!/usr/bin/env bash
# timeout: 600
# A QEMU killed mid-run stops every rank within a bounded time; the error
# names the rank; the exit status is non-zero.  The same for a rank (a
# vcluster-launch process) killed mid-run: mpirun names it, and no QEMU
# outlives its rank.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
# kill_one WHAT FIND PATTERN: start 3 VMs, kill -KILL the process FIND
# prints once every guest is up, and require the job to stop non-zero
# within 30 s with PATTERN in its output and nothing left running.
kill_one() {
	local what=$1 find=$2 pattern=$3 pid launcher rc start took
	rm -rf "$VC_T/run"
	vc_launch 3 "$out" --guest-cmd 'sleep 600' --timeout 200 &
	launcher=$!
	wait_for VCLUSTER-READY "$out" 3
	pid=$($find)
	[[ -n "$pid" ]] || fail "cannot find $what"
	start=$(date +%s)
	kill -KILL $pid
	wait $launcher; rc=$?
	took=$(( $(date +%s) - start ))
	[[ $rc -ne 0 ]] || fail "launcher exited 0 after $what was killed"
	(( took <= 30 )) || fail "the job took ${took}s to stop after $what died"
	assert_grep "$pattern" "$out"
	assert_nothing_running
	# A killed QEMU: the ranks wind down, so their exit lines balance (frames that reach the rank whose VM
	# died are counted as gone).  A killed rank takes the job down before any line: nothing to check.
	[[ $find == node1_qemu ]] && check_accounting "$VC_T/run"
	return 0
}

node1_qemu() { pgrep -f "qemu-system-x86_64 .*-name vcluster-node1 .*$VC_T" || true; }
rank2_process() {
	local p
	for p in $(pgrep -f "vcluster-launch --run-dir $VC_T/run"); do
		[[ $(tr '\0' '\n' < /proc/$p/environ | grep -c '^OMPI_COMM_WORLD_RANK=2$') -eq 1 ]] && echo $p
	done
}

kill_one "node1's QEMU" node1_qemu 'rank 1 \(node1\): QEMU was killed by signal 9'
kill_one "rank 2's process" rank2_process 'rank 2 .*(exited|killed|signal)'
echo "ok: killed QEMU and killed rank named, jobs stopped"
