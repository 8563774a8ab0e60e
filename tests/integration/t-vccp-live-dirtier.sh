#!/usr/bin/env bash
# timeout: 600
# A live checkpoint of a guest that rewrites its memory flat out
# (vc-dirtier, 96 MiB, every page checked before each rewrite and whole at
# the end).  Under TCG the guest dirties fewer pages per round than the
# save writes, so VC_TEST_LIVE_READY_PAGES=0 (no round is quiet enough)
# makes the save end by one of its bounds, on dirty rounds (8) or on the
# files' size (2x RAM), the cut taking the rest.  SIGKILL, restore: the guest's
# check of every byte of every page passes (no stale, torn or wrong page).
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
ck=$VC_T/ckpt
VC_TEST_LIVE_READY_PAGES=0 \
vc_launch 1 "$out" --accel tcg --guest-cmd 'vc-dirtier --mib 96 --seconds 60' --checkpoint-dir "$ck" \
	--checkpoint-mode live --checkpoint-writers 2 --timeout 400 &
job=$!
for i in $(seq 1 600); do grep -q 'VCDIRTY-FILLED' "$out" 2>/dev/null && break; sleep 0.25; done
grep -q 'VCDIRTY-FILLED' "$out" || fail "the dirtier did not fill its memory: $(tail -3 "$out")"
sleep 2
"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" checkpoint || fail "the live checkpoint failed: $(grep -E 'abort|live' "$out" | tail -3)"
grep -q 'VCDIRTY ' "$out" && fail "the dirtier ended before the kill; the test proves nothing"
pkill -KILL -f "$VC_T/run" ; pkill -KILL -P $job 2>/dev/null; kill -KILL $job 2>/dev/null
wait $job 2>/dev/null
sleep 0.5
assert_nothing_running
line=$(grep -hoE 'live save: .*' "$VC_T/run/rank0/rank.log" | tail -1)
echo "$line"
rounds=$(grep -oE 'in [0-9]+ rounds' <<<"$line" | grep -oE '[0-9]+')
atcut=$(grep -oE '[0-9]+ at the cut' <<<"$line" | grep -oE '^[0-9]+')
bound=$(grep -oE 'bound=[a-z]+' <<<"$line" | cut -d= -f2)
bytes=$(grep -oE '[0-9]+ bytes in' <<<"$line" | grep -oE '^[0-9]+')
case "$bound" in
rounds) [[ "$rounds" -eq 8 ]] || fail "bound=rounds after $rounds rounds, not 8 ($line)" ;;
bytes) ;;
*) fail "the save of a flat-out writer did not end by a bound ($line)" ;;
esac
# 2x the 256 MiB of RAM, then at most one round and the cut's pages past it
(( bytes <= (2 * 256 + 2 * 97) * 1048576 )) || fail "the RAM files hold $bytes bytes, past the cap"
(( atcut > 0 )) || fail "the cut took no page: the guest was not dirtying memory during the save"
grep -oE 'VCCP-CHECKPOINT .*total_s=[0-9.]+' "$out"
"$VC_BIN/vcluster-ckpt" verify "$ck" latest >/dev/null || fail "verify failed on the live checkpoint"

mv "$VC_T/run" "$VC_T/run.killed"
res=$VC_T/res
vc_launch 1 "$res" --accel tcg --checkpoint-dir "$ck" --restore latest --timeout 400
rc=$?
grep -E 'VCDIRTY|RAM of' "$res" "$VC_T/run/rank0/rank.log" | tail -4 || true
[[ $rc -eq 0 ]] || fail "restored run exited $rc"
grep -q 'RAM of epoch 1 loaded from 2 files' "$VC_T/run/rank0/rank.log" || fail "the RAM files were not loaded"
assert_grep 'VCDIRTY mib=96 .* corrupt=0 stale=0 bad_index=0 result=PASS' "$res" 1
assert_nothing_running
echo "ok: a flat-out writer's live checkpoint ended at its bound ($bound: $rounds rounds, $bytes bytes, $atcut pages at the cut); the restored guest's whole-page check passed"
