#!/usr/bin/env bash
# timeout: 420
# A checkpoint includes each VM's disk.  Guests append random tokens to
# their disks (vc-disktest); the job is checkpointed, runs on (its disks
# move past the checkpoint), is killed with SIGKILL and restored: the
# restored memory and disk must be of the same moment, so every guest's
# final check (exactly the tokens it remembers are on its disk) passes.
. "$(dirname "$0")/../lib/vc-test.sh"

qemu-img create -q -f qcow2 "$VC_T/base.qcow2" 8M
ck=$VC_T/ckpt
out=$VC_T/out
vc_launch 2 "$out" --kernel "$VC_ROOT/build/guest/vmlinuz" --initrd "$VC_ROOT/build/guest/initrd.img" \
	--disk "$VC_T/base.qcow2" --checkpoint-dir "$ck" --timeout 300 --guest-cmd 'vc-disktest 24' &
job=$!
wait_for '\[node1\] DISKTEST step 8 ' "$out"
ctl checkpoint || fail "checkpoint failed"
at=$(grep -c '\[node1\] DISKTEST step' "$out")
wait_for '\[node1\] DISKTEST step' "$out" $(( at + 6 ))
grep -q DISKCHECK "$out" && fail "the workload ended before the kill"
pkill -KILL -f "$VC_T/run"; wait $job 2>/dev/null
assert_nothing_running
cp -a "$VC_T/run/rank1" "$VC_T/killed-rank1"
check_accounting --killed --min-cuts 1 "$VC_T/run"
mv "$VC_T/run" "$VC_T/run.killed"
"$VC_BIN/vcluster-ckpt" show "$ck" | grep -q '"rank0.disk.qcow2"' || fail "the manifest names no disk"
"$VC_BIN/vcluster-ckpt" verify "$ck" > /dev/null || fail "the checkpoint with disks does not verify"

res=$VC_T/res
rm -rf "$VC_T/run"
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore latest --timeout 300; rc=$?
grep -E 'DISKCHECK|restoring' "$res" || true
[[ $rc -eq 0 ]] || fail "restored run exited $rc"
assert_grep '\[node[01]\] DISKCHECK ok sectors=24' "$res" 2
check_accounting --prior 1 "$VC_T/run.killed" "$VC_T/run"

# The check can fail: the killed run's own disk (its overlay chain) holds
# more tokens than the checkpoint's, so a restore that took the disk from
# anywhere but the checkpoint would have failed DISKCHECK.
tokens() { qemu-img convert -q -O raw "$1" "$VC_T/raw" && strings "$VC_T/raw" | grep -c '^TOK:'; }
late=$(ls -t "$VC_T"/killed-rank1/disk.qcow2* | head -n 1)
n_ck=$(tokens "$ck/epoch-000001/rank1.disk.qcow2")
n_late=$(tokens "$late")
(( n_late > n_ck )) || fail "the killed run's disk ($n_late tokens) did not move past the checkpoint ($n_ck)"
assert_nothing_running
echo "ok: restored memory and disks agree (checkpoint disk $n_ck tokens, killed run's $n_late)"
