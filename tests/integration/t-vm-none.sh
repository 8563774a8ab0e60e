#!/usr/bin/env bash
# timeout: 300
# --vm none: 8 ranks with the synthetic VM (vcluster-synth) in QEMU's place,
# all-to-all frames, checkpoints, SIGKILL of the whole job, restore.
#  - Every synthetic VM sends RATE frames/s round robin to the 7 others for
#    SECS s of running time, each with a per-destination sequence number and
#    a CRC, and checks that from every peer it gets exactly 0, 1, 2, ... up
#    to the peer's FIN: no loss, duplicate, reordering or corruption.
#  - Rank 3 pauses 300 ms after the others (VC_TEST_PAUSE_*), so it keeps
#    sending into 7 held ranks: frames are certainly in flight at the cut
#    and go into the receive queues.
#  - Two checkpoints commit; then SIGKILL of mpirun, nothing may be left;
#    the restore from the latest one continues the run from the cut, and
#    the exact check must still pass on every rank, with every frame sent
#    counted once: sent = received summed over the ranks, and each rank
#    sent RATE * SECS.
. "$(dirname "$0")/../lib/vc-test.sh"

N=8 RATE=150 SECS=20
ck=$VC_T/ckpt
out=$VC_T/out
common=(--vm none --pin none --synth-rate $RATE --synth-seconds $SECS --checkpoint-dir "$ck")

VC_TEST_PAUSE_DELAY_MS=300 VC_TEST_PAUSE_RANK=3 \
vc_launch $N "$out" "${common[@]}" --checkpoint-interval 3 --timeout 200 &
job=$!
VC_WAIT_S=60 wait_for 'VCCP-CHECKPOINT epoch=2 status=ok' "$out"
grep -q 'VCSYNTH rank=[0-9]+ peers' "$out" && fail "a synthetic VM finished before the kill; the test proves nothing"
grep -oE 'VCCP-CHECKPOINT epoch=[0-9]+ status=ok ranks=[0-9]+ bytes=[0-9]+ rq_frames=[0-9]+ total_s=[0-9.]+' "$out"
kill -KILL $job
pkill -KILL -f "$VC_T/run" 2>/dev/null
wait $job 2>/dev/null
assert_nothing_running
# the latest checkpoint is the newest committed one, 2 or 3
latest=$(readlink "$ck/latest" | grep -oE '[0-9]+$' | sed 's/^0*//')
cut=$(grep -oE "VCCP-CHECKPOINT epoch=$latest status=ok .*rq_frames=[0-9]+" "$out" | grep -oE '[0-9]+$')
[[ -n "$cut" ]] || fail "no VCCP-CHECKPOINT line for the latest epoch $latest"
(( cut > 0 )) || fail "no frame was in flight at the cut of epoch $latest: the receive queue path was not exercised"

res=$VC_T/res
rm -rf "$VC_T/run"
# Only where the checkpoint is: the synthetic VM and its rate come from
# the manifest, as QEMU's settings do.
vc_launch $N "$res" --pin none --checkpoint-dir "$ck" --restore latest --timeout 200
rc=$?
grep -E 'VCSYNTH rank=[0-9]+ peers|restoring' "$res" || true
[[ $rc -eq 0 ]] || { tail -n 30 "$res"; fail "the restored run exited $rc"; }
assert_grep "restoring epoch $latest from" "$res"
assert_grep 'VCSYNTH rank=[0-9]+: state loaded \(run_s=[1-9]' "$res" $N
assert_grep 'VCSYNTH rank=[0-9]+ peers=7 .* lost=0 dup=0 bad=0 .* status=ok' "$res" $N
assert_no_grep 'status=FAILED' "$res"

# The receive queues of the cut: what the checkpoint reported, loaded by
# the restore and delivered exactly.
total=0
for r in $(seq 0 $((N - 1))); do
	log=$VC_T/run/rank$r/rank.log
	n=$(grep -oE 'VM state of epoch [0-9]+ loaded; [0-9]+ frames' "$log" | grep -oE '[0-9]+ frames' | grep -oE '[0-9]+')
	d=$(grep -oE 'fabric totals: .*frames_from_cut=[0-9]+' "$log" | grep -oE '[0-9]+$')
	[[ -n "$n" && -n "$d" ]] || fail "rank $r: no receive queue size or fabric totals in $log"
	[[ "$d" -eq "$n" ]] || fail "rank $r: the receive queue held $n frames at the cut, $d were delivered"
	total=$((total + n))
done
[[ "$total" -eq "$cut" ]] || fail "the checkpoint reported rq_frames=$cut, the restore loaded $total"

sent=0 recv=0
while read -r s v; do
	[[ "$s" -eq $((RATE * SECS)) ]] || fail "a synthetic VM sent $s frames, not $((RATE * SECS))"
	sent=$((sent + s)) recv=$((recv + v))
done < <(grep -oE 'VCSYNTH rank=[0-9]+ peers=7 sent=[0-9]+ received=[0-9]+' "$res" |
	 sed -E 's/.*sent=([0-9]+) received=([0-9]+)/\1 \2/')
[[ $sent -eq $recv && $sent -eq $((N * RATE * SECS)) ]] || fail "sent $sent frames in all, received $recv"
assert_nothing_running
echo "ok: $N synthetic VMs, $sent frames all to all checked exactly across 2+ checkpoints, a SIGKILL and a restore of epoch $latest ($cut frames in flight at its cut)"
