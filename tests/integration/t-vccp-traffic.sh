#!/usr/bin/env bash
# timeout: 480
# Three VMs run vcluster-traffic (TCP between all pairs and a UDP stream)
# while the cluster is checkpointed every 7 s.  The guests must see zero
# loss, duplication and reordering; at least one cut must have caught
# frames in flight (rank 2 pauses 300 ms after the others, so its VM keeps
# sending into the paused ones), and every frame a receive queue held must
# have been delivered exactly once after the resume.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
ck=$VC_T/ckpt
VC_TEST_PAUSE_DELAY_MS=300 VC_TEST_PAUSE_RANK=2 \
vc_launch 3 "$out" --guest-cmd 'vcluster-traffic --all --seconds 40' \
	--checkpoint-dir "$ck" --checkpoint-interval 7 --keep 2 --timeout 400
rc=$?
grep -E 'VCTRAFFIC|VCCP-CHECKPOINT|succeeded|error' "$out" || true
[[ $rc -eq 0 ]] || fail "launcher exited $rc"
assert_grep 'VCTRAFFIC rank=[0-2] peers=2 .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS' "$out" 3
n=$(grep -c 'VCCP-CHECKPOINT .*status=ok' "$out")
(( n >= 3 )) || fail "only $n checkpoints completed during the run"
assert_no_grep 'VCCP-CHECKPOINT .*status=aborted' "$out"

# Frames in flight at a cut, and exactly-once delivery of them.
queued=$(grep -oE 'VCCP-CHECKPOINT .*rq_frames=[0-9]+' "$out" | grep -oE '[0-9]+$' | paste -sd+ | bc)
(( queued > 0 )) || fail "no cut caught a frame in flight: the receive queue was never exercised"
delivered=$(cat "$VC_T"/run/rank*/rank.log | grep -oE 'frames_from_rq=[0-9]+' | grep -oE '[0-9]+$' | paste -sd+ | bc)
[[ "$delivered" -eq "$queued" ]] || fail "receive queues held $queued frames at the cuts, $delivered were delivered"

# --keep 2 and a complete, valid latest checkpoint with private files.
[[ $(ls -d "$ck"/epoch-* | wc -l) -eq 2 ]] || fail "--keep 2 left $(ls -d "$ck"/epoch-* | wc -l) epochs"
"$VC_BIN/vcluster-ckpt" verify "$ck" > "$VC_T/verify.json" || fail "latest checkpoint does not verify"
bad=$(find "$ck" -type f ! -perm 0600 | head -n 1)
[[ -z "$bad" ]] || fail "$bad is not mode 0600"
assert_nothing_running
echo "ok: $n checkpoints, $queued in-flight frames queued and delivered exactly once, zero loss"
