#!/usr/bin/env bash
# timeout: 900
# Live checkpoints (--checkpoint-mode live, issue 15): RAM is written while
# the VMs run, the cut pauses them only for the last pages, the device
# state (x-ignore-shared: no RAM in QEMU's stream) and the receive queue.
#  - two checkpoint directories (--checkpoint-dir CK,CK2): each rank's
#    RAM file 1 goes to CK2, the rest stays in CK; stop checkpoints are all
#    in CK; --keep 3 prunes both; a missing or non-directory CK2 is refused
#    at start, a RAM file missing from CK2 refuses the restore by name;
#  - traffic (vcluster-traffic --count, fixed payloads) across 1 stop
#    checkpoint (vcluster-ctl checkpoint --mode stop) and then 5 live ones,
#    so both kinds meet the same guests (the cluster pause of each is
#    printed);
#  - every cut balances exactly (check_accounting);
#  - vcluster-ckpt verify checks every RAM file; a bit flipped in one is
#    refused naming the file;
#  - SIGKILL after the 5th; restore from latest (a live one): the workload
#    completes with the uninterrupted run's per-peer digests.
#  - With stock QEMU, --checkpoint-mode live refuses in one line.
. "$(dirname "$0")/../lib/vc-test.sh"

stock=$(command -v qemu-system-x86_64 || true)
if [[ -n "$stock" ]]; then
	out=$VC_T/stock
	vc_launch 1 "$out" --accel tcg --qemu "$stock" --checkpoint-dir "$VC_T/ck-stock" --checkpoint-mode live \
		--guest-cmd true --timeout 60 && fail "live mode started with stock QEMU $stock"
	assert_grep 'checkpoint-mode live needs the patched QEMU' "$out"
	rm -rf "$VC_T/run"
fi
# A further checkpoint directory that is not there: refused before anything starts.
out=$VC_T/nodir
mkdir -p "$VC_T/ck-a"
vc_launch 1 "$out" --accel tcg --checkpoint-dir "$VC_T/ck-a,$VC_T/no-such" --guest-cmd true \
	--timeout 60 && fail "started with a missing checkpoint directory"
assert_grep "checkpoint directory $VC_T/no-such: No such file or directory" "$out"
assert_no_grep 'QEMU:' "$out"
rm -rf "$VC_T/run"

work='vcluster-traffic --all --count 6000 --udp-count 4000 --udp-pps 300'
ref=$VC_T/ref
vc_launch 2 "$ref" --accel tcg --guest-cmd "$work" --timeout 400 || fail "reference run failed: $(tail -n 5 "$ref")"
check_accounting "$VC_T/run"
rm -rf "$VC_T/run"

out=$VC_T/out
ck=$VC_T/ckpt
ck2=$VC_T/ckpt2
mkdir -p "$ck" "$ck2"
vc_launch 2 "$out" --accel tcg --guest-cmd "$work" --checkpoint-dir "$ck,$ck2" --checkpoint-mode live \
	--checkpoint-writers 2 --keep 3 --timeout 400 &
job=$!
for i in $(seq 1 400); do grep -q 'vcluster-traffic\[1\]: 1 peers' "$out" 2>/dev/null && break; sleep 0.25; done
"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" checkpoint --mode stop || fail "the stop checkpoint failed"
# (before --keep prunes it) a stop checkpoint: all in the first directory
"$VC_BIN/vcluster-ckpt" show "$ck" 1 | grep -q '"mode": *"stop"' || fail "epoch 1 is not recorded as a stop checkpoint"
[[ ! -e "$ck/epoch-000001/rank0.ram.0" ]] || fail "the stop checkpoint has RAM files"
[[ -s "$ck/epoch-000001/rank1.vmstate" && ! -e "$ck2/epoch-000001" ]] ||
	fail "the stop checkpoint is not all in $ck"
for n in 1 2 3 4 5; do
	"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" checkpoint || fail "live checkpoint $n failed: $(grep -E 'abort|live' "$out" | tail -3)"
done
[[ $(grep -c 'VCCP-CHECKPOINT .*status=ok' "$out") -eq 6 ]] || fail "not 1 stop and 5 live checkpoints"
grep -q 'VCTRAFFIC' "$out" && fail "the workload ended before the kill; the test proves nothing"
pkill -KILL -f "$VC_T/run" ; pkill -KILL -P $job 2>/dev/null; kill -KILL $job 2>/dev/null
wait $job 2>/dev/null
sleep 0.5
assert_nothing_running
grep -oE 'VCCP-CHECKPOINT .*total_s=[0-9.]+' "$out"
grep -hoE 'live save: .*' "$VC_T"/run/rank*/rank.log | tail -2
check_accounting --killed --min-cuts 6 "$VC_T/run"
# Cluster pause per epoch: the first VM paused to the last resumed.
cat "$VC_T"/run/rank*/rank.log | grep -oE 'VCCP-RANK epoch=[0-9]+ rank=[0-9]+ pause_unix=[0-9.]+ resume_unix=[0-9.]+' |
	awk '{ split($2,e,"="); split($4,p,"="); split($5,r,"=");
	       if (!(e[2] in lo) || p[2] < lo[e[2]]) lo[e[2]] = p[2];
	       if (r[2] > hi[e[2]]) hi[e[2]] = r[2] }
	     END { for (k in lo) printf "epoch %s: cluster pause %.0f ms\n", k, (hi[k] - lo[k]) * 1000 }' | sort

# The manifest says live and names 2 RAM files per rank, file 1 in the
# second directory; verify reads them; --keep 3 pruned both directories.
m=$("$VC_BIN/vcluster-ckpt" show "$ck" latest)
grep -q '"mode": *"live"' <<<"$m" || fail "the manifest does not record mode live"
grep -q "\"$ck2\"" <<<"$m" || fail "the manifest does not list $ck2"
for r in 0 1; do
	[[ -s "$ck/latest/rank$r.ram.0" && ! -e "$ck/latest/rank$r.ram.1" ]] || fail "rank$r.ram.0 not (only) in $ck"
	[[ -s "$ck2/epoch-000006/rank$r.ram.1" && ! -e "$ck2/epoch-000006/rank$r.ram.0" ]] ||
		fail "rank$r.ram.1 not (only) in $ck2"
done
ls "$ck" "$ck2"
[[ $(cd "$ck" && echo epoch-*) == "epoch-000004 epoch-000005 epoch-000006" ]] || fail "--keep 3 left $(ls "$ck")"
[[ $(cd "$ck2" && echo epoch-*) == "epoch-000004 epoch-000005 epoch-000006" ]] || fail "--keep 3 left $(ls "$ck2") in $ck2"
"$VC_BIN/vcluster-ckpt" verify "$ck" latest || fail "vcluster-ckpt verify failed on a good live checkpoint"
# A flipped bit in a RAM file: refused, naming it (on a copy of the epoch).
bad=$VC_T/bad
mkdir -p "$bad" && cp -a "$ck/$(readlink "$ck/latest")" "$bad/" && ln -s "$(readlink "$ck/latest")" "$bad/latest"
f=$bad/latest/rank1.ram.0
printf '\xff' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") - 100 )) conv=notrunc status=none
"$VC_BIN/vcluster-ckpt" verify "$bad" latest > "$VC_T/bad.out" 2>&1 && fail "verify passed a corrupt RAM file"
grep -q 'rank1.ram.0' "$VC_T/bad.out" || fail "verify did not name the corrupt file: $(cat "$VC_T/bad.out")"
rm -rf "$bad"

mv "$VC_T/run" "$VC_T/run.killed"
# A RAM file missing from the second directory: the restore refuses by name
# before any VM starts, and nothing changes.
gone=$ck2/epoch-000006/rank1.ram.1
mv "$gone" "$gone.away"
vc_launch 2 "$VC_T/refused" --accel tcg --checkpoint-dir "$ck,$ck2" --restore latest --timeout 60 &&
	fail "restored with $gone missing"
assert_grep "cannot restore: $gone: No such file" "$VC_T/refused"
"$VC_BIN/vcluster-ckpt" verify "$ck" > "$VC_T/gone.out" 2>&1 && fail "verify passed with $gone missing"
grep -q "$gone" "$VC_T/gone.out" || fail "verify did not name $gone: $(cat "$VC_T/gone.out")"
mv "$gone.away" "$gone"
[[ $(readlink "$ck/latest") == epoch-000006 ]] || fail "the refused restore moved latest"
rm -rf "$VC_T/run"
res=$VC_T/res
vc_launch 2 "$res" --accel tcg --checkpoint-dir "$ck,$ck2" --restore latest --timeout 400
rc=$?
grep -E 'VCTRAFFIC|restor|resumed|RAM of' "$res" "$VC_T"/run/rank*/rank.log | tail -8 || true
[[ $rc -eq 0 ]] || fail "restored run exited $rc"
assert_grep 'restoring epoch 6 from' "$res"
grep -q 'RAM of epoch 6 loaded from 2 files' "$VC_T/run/rank1/rank.log" || fail "rank 1 did not load its RAM files"
check_accounting --prior 6 "$VC_T/run.killed" "$VC_T/run"

assert_same_peers "$ref" "$res" 2
assert_nothing_running
echo "ok: 1 stop and 5 live checkpoints over 2 directories balanced, verify covers the RAM files in both, restored after SIGKILL with the uninterrupted digests"
