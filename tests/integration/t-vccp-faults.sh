#!/usr/bin/env bash
# timeout: 600
# Faults around checkpoints:
#  1. a QEMU killed while a checkpoint is being saved aborts that epoch; the
#     job stops naming the rank; the previous checkpoint restores and runs
#     to the end;
#     a request for a checkpoint while one runs is refused (vcluster-ctl
#     and SIGUSR1) with one clear line, and starts no epoch;
#  2. a truncated, bit-flipped or missing checkpoint file is refused at
#     restore with a message naming the file, and nothing in the checkpoint
#     changes; the intact checkpoint then restores and runs to the end;
#  3. a full disk (a small tmpfs) aborts the epoch with a clear error and
#     leaves the previous checkpoint intact.
. "$(dirname "$0")/../lib/vc-test.sh"

mnt=$VC_T/small
cleanup_mount() { mountpoint -q "$mnt" && umount "$mnt"; vc_cleanup; }
trap cleanup_mount EXIT



# ---- 1. QEMU killed during a checkpoint --------------------------------
ck=$VC_T/ck1
out=$VC_T/out1
vc_launch 2 "$out" --memory 128M --guest-cmd 'i=0; while [ $i -lt 40 ]; do sleep 1; i=$((i+1)); done; echo counted-to-$i' \
	--checkpoint-dir "$ck" --checkpoint-bandwidth 8 --timeout 300 &
job=$!
wait_for 'VCLUSTER-READY' "$out" 2
ctl checkpoint --no-wait >/dev/null || fail "first checkpoint request refused"
wait_for 'VCCP-CHECKPOINT epoch=1 status=ok' "$out"
ctl checkpoint --no-wait >/dev/null || fail "second checkpoint request refused"
wait_for 'epoch 2: VM paused' "$VC_T/run/rank1/rank.log"
# A request while epoch 2 runs is refused with one clear line, by
# vcluster-ctl and by SIGUSR1 alike, and starts no epoch.
ctl checkpoint --no-wait >"$VC_T/busy.out" 2>&1 && fail "a checkpoint request while epoch 2 runs was accepted"
cat "$VC_T/busy.out"
grep -q '^vcluster-ctl: a checkpoint is already running$' "$VC_T/busy.out" ||
	fail "the refused request did not say why: $(cat "$VC_T/busy.out")"
mp=$(pgrep -P $job -x mpirun) || fail "no mpirun under the job"
kill -USR1 $mp
wait_for 'SIGUSR1: a checkpoint is already running' "$VC_T/run/rank0/rank.log"
sleep 1		# inside the save: 8 MiB/s for tens of MiB
qpid=$(pgrep -f "qemu-system-x86_64 .*-name vcluster-node1 .*$VC_T") || fail "no QEMU for node1"
kill -KILL $qpid
wait $job; rc=$?
[[ $rc -ne 0 ]] || fail "job exited 0 after its QEMU was killed"
assert_grep 'rank 1 \(node1\): QEMU was killed by signal 9' "$out"
assert_grep 'checkpoint epoch 2 aborted' "$out"
assert_no_grep 'VCCP-CHECKPOINT epoch=2 status=ok' "$out"
assert_no_grep 'checkpoint epoch 3 requested' "$out"
[[ ! -e "$ck/epoch-000003" ]] || fail "a refused request left an epoch 3 behind"
[[ ! -e "$ck/epoch-000002/manifest" ]] || fail "the aborted epoch has a manifest"
[[ $(readlink "$ck/latest") == epoch-000001 ]] || fail "latest moved off epoch 1"
"$VC_BIN/vcluster-ckpt" verify "$ck" >/dev/null || fail "epoch 1 no longer verifies"
assert_nothing_running

# ---- 2. corrupt and truncated files refused, nothing changed ----------
e1=$ck/epoch-000001
cp -a "$e1" "$VC_T/backup"
tree_sum() { (cd "$ck" && find . -type f -exec sha256sum {} + | sort | sha256sum); }
res=$VC_T/res
printf '\x55' | dd of="$e1/rank1.vmstate" bs=1 seek=5000 count=1 conv=notrunc status=none
before=$(tree_sum)
rm -rf "$VC_T/run"
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore latest; rc=$?
[[ $rc -ne 0 ]] || fail "a bit-flipped file was restored"
assert_grep "epoch-000001/rank1.vmstate: CRC32C .* \(corrupt\)" "$res"
assert_grep 'restore refused; nothing was changed' "$res"
[[ "$(tree_sum)" == "$before" ]] || fail "the refused restore changed the checkpoint"

cp "$VC_T/backup/rank1.vmstate" "$e1/"
truncate -s 30 "$e1/rank0.rq"
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore 1; rc=$?
[[ $rc -ne 0 ]] || fail "a truncated file was restored"
assert_grep "epoch-000001/rank0.rq: .*truncated" "$res"
"$VC_BIN/vcluster-ckpt" verify "$ck" > /dev/null 2> "$VC_T/verify.err" && fail "vcluster-ckpt verify accepted a truncated file"
grep -q 'rank0.rq' "$VC_T/verify.err" || fail "vcluster-ckpt verify did not name the damaged file"
cp "$VC_T/backup/rank0.rq" "$e1/"

# One rank's file missing: refused, naming the file; nothing changed.
mv "$e1/rank1.vmstate" "$VC_T/rank1.vmstate.away"
before=$(tree_sum)
rm -rf "$VC_T/run"
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore latest; rc=$?
[[ $rc -ne 0 ]] || fail "a checkpoint with a missing file was restored"
grep -E 'rank1.vmstate|refused' "$res"
assert_grep "epoch-000001/rank1.vmstate: No such file or directory" "$res"
assert_grep 'restore refused; nothing was changed' "$res"
[[ "$(tree_sum)" == "$before" ]] || fail "the refused restore changed the checkpoint"
mv "$VC_T/rank1.vmstate.away" "$e1/rank1.vmstate"

vc_launch 3 "$res" --checkpoint-dir "$ck" --restore latest; rc=$?
[[ $rc -ne 0 ]] || fail "restored a 2-rank checkpoint with 3 ranks"
assert_grep 'was taken with 2 ranks; this job has 3' "$res"

# A manifest is data from elsewhere: a config key a checkpoint never writes
# (here the QEMU binary) refuses the restore, naming the file and the key,
# and the binary it names never runs.  The forged manifest has a valid CRC.
cp "$e1/manifest" "$VC_T/manifest.good"
cat > "$VC_T/evil-qemu" <<SH
#!/bin/sh
touch "$VC_T/evil-ran"
exit 1
SH
chmod +x "$VC_T/evil-qemu"
python3 - "$e1/manifest" "$VC_T/evil-qemu" <<'PY'
import json, struct, sys
def crc32c(data, crc=0):
    crc ^= 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xffffffff
path, evil = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
magic, ver, hlen, blen, flags = struct.unpack(">IHHQI", raw[:20])
m = json.loads(raw[hlen:hlen + blen])
m["config"]["qemu"] = evil
body = json.dumps(m).encode()
hdr = struct.pack(">IHHQI", magic, ver, hlen, len(body), flags)
open(path, "wb").write(hdr + struct.pack(">I", crc32c(hdr)) + body + struct.pack(">I", crc32c(body)))
PY
"$VC_BIN/vcluster-ckpt" verify "$ck" >/dev/null || fail "the forged manifest does not pass verify (test bug)"
rm -rf "$VC_T/run"
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore latest; rc=$?
[[ $rc -ne 0 ]] || fail "a manifest naming its own QEMU was restored"
[[ ! -e $VC_T/evil-ran ]] || fail "the restore ran the binary a manifest named"
assert_grep "epoch-000001/manifest: config key 'qemu' is not one a checkpoint writes" "$res"
cp "$VC_T/manifest.good" "$e1/manifest"

# The intact checkpoint restores, and the workload counts to the end.
rm -rf "$VC_T/run"
vc_launch 2 "$res" --checkpoint-dir "$ck" --restore latest --timeout 200; rc=$?
[[ $rc -eq 0 ]] || fail "restore of the good epoch 1 exited $rc: $(tail -n 5 "$res")"
assert_grep '\[node[01]\] counted-to-40' "$res" 2
check_accounting "$VC_T/run"
assert_nothing_running

# ---- 3. full disk ------------------------------------------------------
mkdir -p "$mnt"
mount -t tmpfs -o size=600m,mode=0700 tmpfs "$mnt" || fail "cannot mount a tmpfs"
ck=$mnt/ck
out=$VC_T/out3
rm -rf "$VC_T/run"
vc_launch 2 "$out" --memory 128M --guest-cmd 'sleep 300' --checkpoint-dir "$ck" --timeout 300 --grace 1 &
job=$!
wait_for 'VCLUSTER-READY' "$out" 2
ctl checkpoint --no-wait >/dev/null || fail "checkpoint request refused"
wait_for 'VCCP-CHECKPOINT epoch=1 status=ok' "$out"
used=$(df --output=used -k "$mnt" | tail -n 1)
mount -o remount,size=$(( used + 16384 ))k "$mnt"
ctl checkpoint --no-wait >/dev/null || fail "second checkpoint request refused"
wait_for 'VCCP-CHECKPOINT epoch=2 status=aborted' "$out"
assert_grep 'checkpoint epoch 2 aborted: .*No space left on device' "$out"
[[ $(readlink "$ck/latest") == epoch-000001 ]] || fail "latest moved off epoch 1"
[[ ! -e "$ck/epoch-000002" ]] || fail "the aborted epoch left files behind"
"$VC_BIN/vcluster-ckpt" verify "$ck" > /dev/null || fail "epoch 1 no longer verifies after the full disk"
# The job goes on after an aborted epoch.
st=$(ctl --json status) || fail "status after the aborted epoch failed"
echo "$st" | grep -q '"vm":"running"' || fail "VMs not running after the aborted epoch: $st"
ctl shutdown >/dev/null
wait $job; rc=$?
[[ $rc -eq 3 ]] || fail "shutdown after the aborted epoch: exit $rc"
assert_nothing_running
echo "ok: killed QEMU aborts the epoch; damaged files refused by name; full disk aborts cleanly"
