#!/usr/bin/env bash
# timeout: 1200
# Faults in the middle of a checkpoint, one rank per emulated host (vc-h1..vc-h3), the checkpoints in a
# directory every host sees (a tmpfs, so that the disk can be filled at a chosen moment). Every guest counts
# to $N seconds of its own time; a run "finishes right" when all 3 print counted-to-$N.
#  P0  boot; epoch 1 commits; in epoch 2, all VM states saved, rank 1 (a non-coordinator) is SIGKILLed
#      before the receive queues are written (the ranks held there by the test hook): mpirun names
#      rank 1, epoch 2 started (requested, VMs paused) and never finished, latest stays on epoch 1.
#  P1  restore of epoch 1 (the checkpoint before the kill) on the same hosts. In it: a second checkpoint
#      request while epoch 3 runs (held by the hook) is refused, by vcluster-ctl and by SIGUSR1, with one line, and starts no
#      epoch; epoch 3 commits. Epoch 4: the disk fills while the ranks write their receive queues (test hook
#      VC_TEST_HOOK_DIR, "rq"): aborted naming rank 0's .rq file. The next: the disk fills while the
#      coordinator writes the manifest ("manifest"): aborted naming the manifest. latest stays on epoch 3,
#      which verifies; the job goes on and the guests finish right.
#  P2  restore of epoch 3; in the next epoch, every rank's files written and reported, rank 0 (the
#      coordinator) is SIGKILLed just before it writes the manifest (held by the hook): mpirun names rank 0,
#      that epoch started and never finished, latest stays on epoch 3.
#  P3  one rank's file missing (epoch 3's rank2.vmstate moved away): the restore is refused naming that file
#      and nothing changes; the file back, epoch 3 restores and the guests finish right.
# Every run's frame accounting is exact (check_accounting): the cuts of the killed runs, cut and exit of the
# finished ones, and each restored receive queue against the cut it was saved at.
. "$(dirname "$0")/../lib/vc-test.sh"
. "$(dirname "$0")/../lib/vc-hosts.sh"

mnt=$VC_T/ckfs
cleanup_all() { mountpoint -q "$mnt" && umount -l "$mnt"; vc_cleanup; vc_hosts_cleanup; }
trap cleanup_all EXIT

vc_hosts_up 3
if [[ $VC_HOSTS -eq 0 ]]; then
	echo "skip: faults on emulated hosts need emulated hosts (tests/lib/hosts check)"
	exit 77
fi
H=vc-h1,vc-h2,vc-h3
N=30
# (at-I every 5 s of guest time: how much of the count was left when a phase's faults were done)
work="i=0; while [ \$i -lt $N ]; do sleep 1; i=\$((i+1)); [ \$((i % 5)) -eq 0 ] && echo at-\$i; done; echo counted-to-\$i"
mkdir -p "$mnt"
mount -t tmpfs -o size=2g,mode=0700 tmpfs "$mnt" || fail "cannot mount a tmpfs for the checkpoints"
ck=$mnt/ck
hook=$VC_T/hook		# outside the tmpfs: the hook's files must be writable while it is full
mkdir -p "$hook"
export VC_TEST_HOOK_DIR=$hook
# The test hook holds an epoch at a chosen point (the ranks' workers wait there, the VMs paused).
common=(--checkpoint-dir "$ck" --timeout 500)

# rank_pid R: the vcluster-launch process of rank R of the current run.
rank_pid() {
	local p
	for p in $(pgrep -f "vcluster-launch --run-dir $VC_T/run" || true); do
		tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && echo "$p"
	done
}
latest() { readlink "$ck/latest"; }
t0=$(date +%s)
took() { echo "($(( $(date +%s) - t0 )) s into the test)"; }
# at OUT: the furthest any guest of OUT has counted
at() { grep -oE '\] at-[0-9]+$' "$1" | grep -oE '[0-9]+$' | sort -n | tail -n 1; }
# gone DIR: wait until DIR (an aborted epoch, cleaned up by the worker) is gone
gone() {
	for i in $(seq 1 $(( 30 * 4 ))); do [[ -e $1 ]] || return 0; sleep 0.25; done
	ls -lR "$ck"; fail "the aborted epoch left $1 behind"
}
# next_phase NAME: keep the last run's logs under run-NAME, start clean.
next_phase() { [[ -d $VC_T/run ]] && mv "$VC_T/run" "$VC_T/run-$1"; return 0; }
finished_right() {	# OUT
	assert_grep '\[node[012]\] counted-to-'"$N"'$' "$1" 3
	for r in 0 1 2; do assert_grep "VCLUSTER-EXIT rank=$r status=0" "$1" 1; done
}
# request OUT: ask for a checkpoint; E is the epoch rank 0 started for it (an aborted epoch leaves no
# directory, so its number is given again).
request() {
	local n
	n=$(grep -c 'checkpoint epoch [0-9]* requested' "$1")
	ctl checkpoint --no-wait >/dev/null || fail "a checkpoint request was refused"
	wait_for 'checkpoint epoch [0-9]+ requested' "$1" $(( n + 1 ))
	E=$(grep -oE 'checkpoint epoch [0-9]+ requested' "$1" | sed -n "$(( n + 1 ))p" | grep -oE '[0-9]+')
}
# hold_at POINT N: arm the test hook at POINT (VC_TEST_HOOK_DIR), request an epoch (E), wait until N
# workers stand at POINT inside it.
hold_at() {
	local point=$1 n=$2 e
	rm -f "$hook"/*
	touch "$hook/$point"
	request "$out"; e=$E
	for i in $(seq 1 $(( 240 * 4 ))); do
		[[ $(ls "$hook" | grep -c "^$point\.reached\.") -ge $n ]] && break
		grep -q "VCCP-CHECKPOINT epoch=$e " "$out" && break
		sleep 0.25
	done
	[[ $(ls "$hook" | grep -c "^$point\.reached\.") -eq $n ]] ||
		fail "epoch $e: $(ls "$hook" | grep -c "^$point\.reached\.") of $n workers reached the '$point' hook"
	rm -f "$hook/$point"	# disarmed: the next epoch runs without it
}
# kill_at POINT N R JOB: SIGKILL rank R's process while an epoch holds N workers at POINT (after every
# rank's VM state is saved and before its receive queue is written: "rq"; after every report and
# before the manifest: "manifest").
kill_at() {
	local point=$1 n=$2 r=$3 job=$4 pid rc e
	hold_at "$point" "$n"; e=$E
	pid=$(rank_pid "$r")
	[[ -n $pid ]] || fail "no process for rank $r"
	grep -q "VCCP-CHECKPOINT epoch=$e " "$out" && fail "epoch $e ended before the kill; the test proves nothing"
	kill -KILL "$pid"
	wait "$job"; rc=$?
	[[ $rc -ne 0 ]] || fail "the job exited 0 after rank $r was killed"
	grep -E "rank $r .*(exited on signal|killed)|signal 9" "$out" | head -n 3
	assert_grep "rank $r .*(exited on signal 9|killed)" "$out"
	# It happened inside epoch E: requested, the VMs paused, never finished.
	assert_grep "checkpoint epoch $e requested" "$out"
	assert_grep "epoch $e: VM paused" "$VC_T/run/rank$r/rank.log"
	assert_no_grep "VCCP-CHECKPOINT epoch=$e " "$out"
	[[ ! -e $ck/epoch-$(printf '%06d' "$e")/manifest ]] || fail "the interrupted epoch $e has a manifest"
	"$VC_HOSTS_TOOL" kill $H 2>/dev/null	# what is left of the job on the hosts (Open MPI's daemons)
	assert_nothing_running
}

# ---- P0: boot, epoch 1, rank 1 killed during epoch 2 -------------------------------------------------
out=$VC_T/out0
vc_launch_on $H "$out" --memory 128M --guest-cmd "$work" "${common[@]}" &
job=$!
VC_WAIT_S=400 wait_for 'VCLUSTER-READY' "$out" 3
ctl checkpoint >/dev/null || fail "checkpoint epoch 1 failed"
assert_grep 'VCCP-CHECKPOINT epoch=1 status=ok' "$out"
[[ $(latest) == epoch-000001 ]] || fail "latest is '$(latest)', not epoch-000001"
kill_at rq 3 1 $job
[[ $E -eq 2 ]] || fail "the killed epoch is $E, not 2"
[[ $(latest) == epoch-000001 ]] || fail "latest moved off epoch 1 after the kill in epoch 2"
"$VC_BIN/vcluster-ckpt" verify "$ck" >/dev/null || fail "epoch 1 no longer verifies after the kill"
# cut 2 came before the kill (at the rq hook, after the VM states): both cuts complete and balanced
check_accounting --killed --min-cuts 2 "$VC_T/run"
echo "P0: rank 1 killed inside epoch 2; latest still epoch 1 $(took)"

# ---- P1: restore epoch 1; busy request; disk full at the rq and at the manifest -----------------------
next_phase p0
out=$VC_T/out1
vc_launch_on $H "$out" --restore latest "${common[@]}" &
job=$!
VC_WAIT_S=300 wait_for 'all 3 VMs resumed from epoch 1' "$out"
# Epoch 3 held inside (every rank before its receive queue) while the second requests come.
hold_at rq 3
[[ $E -eq 3 ]] || fail "the epoch after epoch 1 and the interrupted epoch 2 is $E, not 3"
ctl checkpoint --no-wait >"$VC_T/busy.out" 2>&1 && fail "a checkpoint request while epoch 3 runs was accepted"
cat "$VC_T/busy.out"
grep -q '^vcluster-ctl: a checkpoint is already running$' "$VC_T/busy.out" ||
	fail "the refused request did not say why: $(cat "$VC_T/busy.out")"
mp=$(pgrep -P $job -x mpirun || pgrep -f "^mpirun .*vcluster-launch --run-dir $VC_T/run" | head -n 1)
[[ -n $mp ]] || fail "no mpirun for the job"
kill -USR1 "$mp"
wait_for 'SIGUSR1: a checkpoint is already running' "$VC_T/run/rank0/rank.log"
grep -q 'VCCP-CHECKPOINT epoch=3 ' "$out" && fail "epoch 3 ended before the second request; the test proves nothing"
touch "$hook/rq.go"
wait_for 'VCCP-CHECKPOINT epoch=3 ' "$out"
assert_grep 'VCCP-CHECKPOINT epoch=3 status=ok' "$out"
assert_no_grep 'checkpoint epoch 4 requested' "$out"
[[ $(latest) == epoch-000003 ]] || fail "latest is '$(latest)' after epoch 3"

# fill_at POINT N: hold N workers at POINT of a new epoch, fill the tmpfs, let them go; the epoch must
# abort.
fill_at() {
	local point=$1 n=$2 used e
	hold_at "$point" "$n"; e=$E
	used=$(df --output=used -k "$mnt" | tail -n 1)
	mount -o remount,size=$(( used + 1024 ))k "$mnt" || fail "cannot shrink the tmpfs"
	dd if=/dev/zero of="$mnt/fill" bs=64k status=none 2>/dev/null
	[[ $(df --output=avail -k "$mnt" | tail -n 1) -eq 0 ]] || fail "the tmpfs is not full: $(df -k "$mnt" | tail -n 1)"
	touch "$hook/$point.go"
	wait_for "VCCP-CHECKPOINT epoch=$e " "$out"
	rm -f "$mnt/fill"
	mount -o remount,size=2g "$mnt" || fail "cannot grow the tmpfs back"
	assert_grep "VCCP-CHECKPOINT epoch=$e status=aborted" "$out"
}
fill_at rq 3
grep -E "checkpoint epoch $E" "$out"
assert_grep "checkpoint epoch $E aborted: rank 0: writing $ck/epoch-$(printf %06d $E)/rank0.rq: No space left on device" "$out"
gone "$ck/epoch-$(printf %06d $E)"	# the aborted epoch's clean-up runs on the worker
fill_at manifest 1
grep -E "checkpoint epoch $E" "$out"
assert_grep "checkpoint epoch $E aborted: writing $ck/epoch-$(printf %06d $E)/manifest: No space left on device" "$out"
gone "$ck/epoch-$(printf %06d $E)"
[[ $(latest) == epoch-000003 ]] || fail "latest is '$(latest)' after the aborted epochs"
"$VC_BIN/vcluster-ckpt" verify "$ck" >/dev/null || fail "the checkpoints no longer verify after the full disk"
st=$(ctl --json status) || fail "status after the aborted epochs failed"
echo "$st" | grep -q '"vm":"running"' || fail "VMs not running after the aborted epochs: $st"
a=$(at "$out")
echo "P1: the faults done with the guests at second ${a:-<5} of $N of their count $(took)"
wait $job; rc=$?
[[ $rc -eq 0 ]] || { tail -n 20 "$out"; fail "the restored run of epoch 1 exited $rc"; }
finished_right "$out"
"$VC_HOSTS_TOOL" kill $H 2>/dev/null
assert_nothing_running
# the receive queues restored from cut 1; cuts 3 (ok), 4 and 5 (aborted after the cut) complete and balanced
check_accounting --prior 1 --min-cuts 3 "$VC_T/run-p0" "$VC_T/run"
accounting_can_fail rx_frames "$VC_T/run"
echo "P1: epoch 1 restored and finished; busy request refused; full disk at rq and manifest aborted both $(took)"

# ---- P2: restore epoch 3; the coordinator killed during the next epoch ---------------------------------------
next_phase p1
out=$VC_T/out2
vc_launch_on $H "$out" --restore latest "${common[@]}" &
job=$!
VC_WAIT_S=300 wait_for 'all 3 VMs resumed from epoch 3' "$out"
kill_at manifest 1 0 $job
[[ $(latest) == epoch-000003 ]] || fail "latest moved off epoch 3 after the coordinator was killed"
check_accounting --killed --prior 3 --min-cuts 1 "$VC_T/run-p1" "$VC_T/run"
echo "P2: rank 0 killed inside epoch $E; latest still epoch 3 $(took)"

# ---- P3: one rank's file missing, refused; then epoch 3 restores and finishes ------------------------
next_phase p2
e3=$ck/epoch-000003
tree_sum() { (cd "$ck" && find . -type f -exec sha256sum {} + | sort | sha256sum); }
mv "$e3/rank2.vmstate" "$VC_T/rank2.vmstate.away"
before=$(tree_sum)
out=$VC_T/out3
vc_launch_on $H "$out" --restore latest "${common[@]}"; rc=$?
[[ $rc -ne 0 ]] || fail "a checkpoint with a missing file was restored"
grep -E 'rank2.vmstate|refused' "$out" | head -n 3
assert_grep "epoch-000003/rank2.vmstate: No such file or directory" "$out"
assert_grep 'restore refused; nothing was changed' "$out"
[[ "$(tree_sum)" == "$before" ]] || fail "the refused restore changed the checkpoint"
"$VC_HOSTS_TOOL" kill $H 2>/dev/null
assert_nothing_running
mv "$VC_T/rank2.vmstate.away" "$e3/rank2.vmstate"
next_phase p3a
out=$VC_T/out4
vc_launch_on $H "$out" --restore latest "${common[@]}"; rc=$?
[[ $rc -eq 0 ]] || { tail -n 20 "$out"; fail "the restore of epoch 3 exited $rc"; }
assert_grep 'restoring epoch 3 from' "$out"
finished_right "$out"
"$VC_HOSTS_TOOL" kill $H 2>/dev/null
assert_nothing_running
check_accounting --prior 3 "$VC_T/run-p1" "$VC_T/run"
echo "P3: the missing file refused, epoch 3 restored and finished $(took)"
echo "ok: on 3 hosts: rank 1 and rank 0 killed inside a checkpoint, disk full at the receive queue and at the manifest, a busy request and a missing file each named; epochs 1 and 3 restored and finished"
