#!/usr/bin/env bash
# timeout: 420
# After a restore the guests' clocks lag the host by the time the job was
# down; --clock-sync corrects it (vc-clockd in the guest steps the clock).
# Without it the lag is at least the downtime; with it at most 2 s.
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
# The guest clock's offset: host stamp - guest time over the GTIME lines after
# the line matching $2, taking the smallest (the console echo only ever adds
# delay, seconds on a loaded machine), printed as its absolute value.
lag() {
	awk -v after="$2" 'f && / GTIME / { d = $1 - $NF; if (!n++ || d < m) m = d }
		$0 ~ after { f = 1 } END { if (m < 0) m = -m; print m + 0 }' "$1"
}

out=$VC_T/out
launch "$out" --clock-sync yes --checkpoint-dir "$ck" --timeout 300 --grace 1 \
	--guest-cmd 'while true; do echo GTIME $(date +%s); sleep 1; done'
wait_for '\[node1\] GTIME' "$out" 3
ctl checkpoint > /dev/null || fail "checkpoint failed"
pkill -KILL -f "$VC_T/run"; wait $job 2>/dev/null
down=12
sleep $down

res=$VC_T/res-nosync
launch "$res" --checkpoint-dir "$ck" --restore latest --timeout 120 --grace 1 --clock-sync no
wait_for 'VMs resumed from epoch' "$res"
wait_for '\[node1\] GTIME' "$res" 3
ctl shutdown > /dev/null; wait $job
l1=$(lag "$res" 'VMs resumed from epoch')
(( l1 >= down - 2 )) || fail "without --clock-sync the guests lag only ${l1}s after ${down}s down: the test cannot tell"

res=$VC_T/res-sync
launch "$res" --checkpoint-dir "$ck" --restore latest --timeout 120 --grace 1 --clock-sync yes
wait_for 'vc-clockd: clock stepped by' "$res" 2
wait_for '\[node1\] GTIME' "$res" 4
ctl shutdown > /dev/null; wait $job
l2=$(lag "$res" 'clock stepped by')
(( l2 <= 2 )) || fail "with --clock-sync the guests still lag ${l2}s"
assert_nothing_running
echo "ok: guest clock lag after restore ${l1}s without --clock-sync, ${l2}s with it"
