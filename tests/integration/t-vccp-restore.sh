#!/usr/bin/env bash
# timeout: 600
# Kill the whole job with SIGKILL (launcher and QEMUs) right after a
# checkpoint; restore from latest; the workload continues from the
# checkpoint and ends with the same result as a run without checkpoints
# (vcluster-traffic --count sends a fixed amount, so its digests are fixed).
. "$(dirname "$0")/../lib/vc-test.sh"

work='vcluster-traffic --all --count 4000'
ref=$VC_T/ref
vc_launch 2 "$ref" --guest-cmd "$work" --timeout 300 || fail "reference run failed: $(tail -n 5 "$ref")"
rm -rf "$VC_T/run"

out=$VC_T/out
ck=$VC_T/ckpt
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

res=$VC_T/res
rm -rf "$VC_T/run"
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore latest --timeout 300
rc=$?
grep -E 'VCTRAFFIC|restor|resumed' "$res" || true
[[ $rc -eq 0 ]] || fail "restored run exited $rc"
assert_grep 'restoring epoch 1 from' "$res"
for r in 0 1; do
	want=$(grep -oE "VCTRAFFIC rank=$r .*digest=[0-9a-f]+" "$ref" | grep -oE 'digest=[0-9a-f]+')
	got=$(grep -oE "VCTRAFFIC rank=$r .*digest=[0-9a-f]+ result=PASS" "$res" | grep -oE 'digest=[0-9a-f]+')
	[[ -n "$want" && "$want" == "$got" ]] || fail "node$r: restored run gave '$got', reference '$want'"
done
assert_nothing_running
echo "ok: restored after SIGKILL; results equal the uninterrupted run"
