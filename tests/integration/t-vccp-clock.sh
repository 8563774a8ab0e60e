#!/usr/bin/env bash
# timeout: 420
# After a restore the guests' clocks lag the host by the time the job was
# down; --clock-sync corrects it (vc-clockd in the guest steps the clock).
# Without it every node's lag is at least the downtime; with it at most 2 s
# on every node.
. "$(dirname "$0")/../lib/vc-test.sh"

ck=$VC_T/ckpt
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s)" "$l"; done; }

# launch N OUT ARGS...: in the background, every output line stamped with
# host time; $job is the pipeline's launcher.
launch() {
	local out=$1; shift
	rm -rf "$VC_T/run"
	(mpirun -np 2 "$VC_BIN/vcluster-launch" --run-dir "$VC_T/run" "$@" 2>&1 | stamp > "$out") &
	job=$!
}
# Each node's clock offset: host stamp - guest time over that node's GTIME
# lines after its line matching $2 (a line without a node tag, such as the
# launcher's, starts every node), taking the smallest (the console echo only
# ever adds delay, seconds on a loaded machine), as its absolute value.
# Prints "node0=L0 node1=L1 ..." for $3 nodes; a node with fewer than $4
# (default 1) such lines gets "none".  Every node is checked on its own: the
# smallest over all nodes would pass when one node is right.
lags() {
	awk -v after="$2" -v n="$3" -v need="${4:-1}" '
		function node() {
			if (match($0, /\[node[0-9]+\]/)) return substr($0, RSTART + 5, RLENGTH - 6) + 0
			return -1
		}
		$0 ~ after { k = node(); if (k < 0) all = 1; else f[k] = 1; next }
		/ GTIME / { k = node()
			if (k >= 0 && (all || f[k])) {
				d = $1 - $NF; c[k]++
				if (!(k in m) || d < m[k]) m[k] = d
			} }
		END { for (i = 0; i < n; i++) {
			v = c[i] >= need ? (m[i] < 0 ? -m[i] : m[i]) : "none"
			printf "%snode%d=%s", i ? " " : "", i, v }
		      print "" }' "$1"
}
# wait_lags FILE AFTER N: until every node has N GTIME lines after its mark.
wait_lags() {
	for i in $(seq 1 $(( ${VC_WAIT_S:-180} * 2 ))); do
		[[ $(lags "$1" "$2" 2 "$3") != *none* ]] && return 0
		sleep 0.5
	done
	fail "timed out waiting for $3 GTIME lines of every node after '$2' in $1: $(lags "$1" "$2" 2)"
}
# check_lags "node0=L0 node1=L1" OP LIMIT WHAT: every node's lag OP LIMIT.
check_lags() {
	local kv n v
	for kv in $1; do
		n=${kv%%=*} v=${kv#*=}
		[[ $v != none ]] || fail "$4: no GTIME line from $n"
		(( v $2 $3 )) || fail "$4: $n lags ${v}s ($1)"
	done
}

out=$VC_T/out
launch "$out" --clock-sync yes --checkpoint-dir "$ck" --timeout 300 --grace 1 \
	--guest-cmd 'while true; do echo GTIME $(date +%s); sleep 1; done'
wait_for '\[node1\] GTIME' "$out" 3
ctl checkpoint > /dev/null || fail "checkpoint failed"
pkill -KILL -f "$VC_T/run"; wait $job 2>/dev/null
check_accounting --killed --min-cuts 1 "$VC_T/run"
cp -a "$VC_T/run" "$VC_T/run.killed"
down=12
sleep $down

res=$VC_T/res-nosync
launch "$res" --checkpoint-dir "$ck" --restore latest --timeout 120 --grace 1 --clock-sync no
wait_for 'VMs resumed from epoch' "$res"
wait_lags "$res" 'VMs resumed from epoch' 3
ctl shutdown > /dev/null; wait $job
check_accounting --prior 1 "$VC_T/run.killed" "$VC_T/run"
l1=$(lags "$res" 'VMs resumed from epoch' 2)
echo "without --clock-sync, after ${down}s down: $l1"
check_lags "$l1" '>=' $(( down - 2 )) "without --clock-sync (the test cannot tell otherwise)"

res=$VC_T/res-sync
launch "$res" --checkpoint-dir "$ck" --restore latest --timeout 120 --grace 1 --clock-sync yes
wait_for '\[node0\] vc-clockd: clock stepped by' "$res"
wait_for '\[node1\] vc-clockd: clock stepped by' "$res"
wait_lags "$res" 'clock stepped by' 3
ctl shutdown > /dev/null; wait $job
check_accounting --prior 1 "$VC_T/run.killed" "$VC_T/run"
l2=$(lags "$res" 'clock stepped by' 2)
echo "with --clock-sync: $l2"
check_lags "$l2" '<=' 2 "with --clock-sync"
assert_nothing_running
echo "ok: every guest's clock lag after restore without --clock-sync ($l1), with it ($l2)"
