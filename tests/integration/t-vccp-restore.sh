#!/usr/bin/env bash
# timeout: 600
# Kill the whole job with SIGKILL (launcher and QEMUs) right after a
# checkpoint taken with frames in flight; restore from latest; the workload
# continues from the checkpoint and ends with the same data received as a
# run without checkpoints.
#  - vcluster-traffic --count sends a fixed number of TCP messages and UDP
#    datagrams per pair, with payloads fixed by (sender, receiver, seq), and
#    prints per peer a digest over every payload byte it received: every
#    peer's line (counts, bytes, digest) must equal the uninterrupted run's.
#  - Rank 1 pauses 300 ms after rank 0 (VC_TEST_PAUSE_*), so its VM keeps
#    sending into the held rank 0: the receive queue at the cut must not be
#    empty (the restore logs its size per rank), and every frame of it must
#    be delivered to the restored VM exactly once (frames_from_cut).
. "$(dirname "$0")/../lib/vc-test.sh"

work='vcluster-traffic --all --count 4000 --udp-count 3000 --udp-pps 300'
ref=$VC_T/ref
vc_launch 2 "$ref" --guest-cmd "$work" --timeout 300 || fail "reference run failed: $(tail -n 5 "$ref")"
check_accounting "$VC_T/run"
rm -rf "$VC_T/run"

out=$VC_T/out
ck=$VC_T/ckpt
VC_TEST_PAUSE_DELAY_MS=300 VC_TEST_PAUSE_RANK=1 \
vc_launch 2 "$out" --guest-cmd "$work" --checkpoint-dir "$ck" --timeout 300 &
job=$!
for i in $(seq 1 400); do grep -q 'vcluster-traffic\[1\]: 1 peers' "$out" 2>/dev/null && break; sleep 0.25; done
sleep 2
"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" checkpoint || fail "vcluster-ctl checkpoint failed"
for i in $(seq 1 240); do grep -q 'VCCP-CHECKPOINT .*status=ok' "$out" && break; sleep 0.25; done
grep -q 'VCCP-CHECKPOINT .*status=ok' "$out" || fail "the checkpoint did not complete"
grep -q 'VCTRAFFIC' "$out" && fail "the workload ended before the kill; the test proves nothing"
pkill -KILL -f "$VC_T/run" ; pkill -KILL -P $job 2>/dev/null; kill -KILL $job 2>/dev/null
wait $job 2>/dev/null
sleep 0.5
assert_nothing_running
grep -oE 'VCCP-CHECKPOINT .*rq_frames=[0-9]+' "$out"
cut=$(grep -oE 'VCCP-CHECKPOINT .*status=ok .*rq_frames=[0-9]+' "$out" | grep -oE '[0-9]+$')

# The killed run has no exit lines; its cut balances.
check_accounting --killed --min-cuts 1 "$VC_T/run"
accounting_can_fail cut_rx_frames --killed "$VC_T/run"
mv "$VC_T/run" "$VC_T/run.killed"
res=$VC_T/res
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore latest --timeout 300
rc=$?
grep -E 'VCTRAFFIC|restor|resumed' "$res" || true
[[ $rc -eq 0 ]] || fail "restored run exited $rc"
assert_grep 'restoring epoch 1 from' "$res"

# The receive queue at the cut: not empty, as the restore loaded it, and
# delivered exactly (only the frames queued at the cut are counted, not
# those that queued behind them after the resume).
total=0
for r in 0 1; do
	log=$VC_T/run/rank$r/rank.log
	n=$(grep -oE 'VM state of epoch 1 loaded; [0-9]+ frames in the receive queue' "$log" | grep -oE '[0-9]+ frames' | grep -oE '[0-9]+')
	d=$(grep -oE 'fabric totals: .*frames_from_cut=[0-9]+' "$log" | grep -oE '[0-9]+$')
	[[ -n "$n" && -n "$d" ]] || fail "rank $r: no receive queue size or fabric totals in $log"
	echo "rank $r: $n frames in the receive queue at the cut, $d of them delivered to the restored VM"
	[[ "$d" -eq "$n" ]] || fail "rank $r: the receive queue held $n frames at the cut, $d were delivered"
	total=$((total + n))
done
(( total > 0 )) || fail "the receive queue was empty at the cut on every rank: the restore of in-flight frames was not exercised"
[[ "$total" -eq "$cut" ]] || fail "the checkpoint reported rq_frames=$cut, the restore loaded $total"

# The restored run balances exactly, and what each rank got back in its receive queue is what it had queued
# from each peer at the cut of epoch 1 in the killed run.
check_accounting --prior 1 "$VC_T/run.killed" "$VC_T/run"

# Same data received, peer by peer, as the uninterrupted run.
assert_same_peers "$ref" "$res" 2
for r in 0 1; do
	want=$(grep -oE "VCTRAFFIC rank=$r .*digest=[0-9a-f]+" "$ref" | grep -oE 'digest=[0-9a-f]+')
	got=$(grep -oE "VCTRAFFIC rank=$r .*digest=[0-9a-f]+ result=PASS" "$res" | grep -oE 'digest=[0-9a-f]+')
	[[ -n "$want" && "$want" == "$got" ]] || fail "node$r: restored run gave '$got', reference '$want'"
done
grep -oE 'VCTRAFFIC rank=[01] .*tcp_retrans=-?[0-9]+' "$res" | sed -E 's/^VCTRAFFIC (rank=[01]).* (tcp_retrans=)/TCP retransmissions after the restore: \1 \2/'
assert_nothing_running
echo "ok: restored after SIGKILL with $total frames in flight at the cut, all delivered; every peer received the same data as the uninterrupted run"
