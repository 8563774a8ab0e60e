#!/usr/bin/env bash
# timeout: 600
# serial: the stock run must lose frames (the scenario forced frames into QEMU); load shifts the timing it builds on
# Frames inside QEMU at the cut (issue #4, qemu-patches/0003).  Rank 1 keeps
# writing frames to its paused VM for 400 ms (VC_TEST_LATE_HOLD_*) while
# rank 0's VM still runs and sends (VC_TEST_PAUSE_DELAY_*), so node1's QEMU
# is offered some 400 frames after its pause.  Checkpoint 3 s into the
# traffic, SIGKILL the job, restore from latest.
#   patched QEMU (build/qemu): the frames stay on the link or travel in the
#     VM state ("vde-netdev/fabric" section): zero UDP loss on both nodes;
#   stock QEMU: it read them into its net queue, which the VM state lacks:
#     node1 must lose datagrams, or the scenario did not force frames into
#     QEMU and the patched run proved nothing.
. "$(dirname "$0")/../lib/vc-test.sh"

make -s -C "$VC_ROOT" qemu >"$VC_T/make-qemu.log" 2>&1 ||
	fail "make qemu failed: $(tail -n 5 "$VC_T/make-qemu.log")"
patched=$VC_ROOT/build/qemu/bin/qemu-system-x86_64
stock=/usr/bin/qemu-system-x86_64
[[ -x $patched ]] || fail "$patched missing after make qemu"
[[ -x $stock ]] || fail "$stock missing (package qemu-system-x86)"

work='vcluster-traffic --all --seconds 15 --udp-pps 1000'

# scenario KIND QEMU-OPTION...: checkpoint under the late-frames knobs,
# kill, restore; leaves $VC_T/KIND.{out,res,rc} and the rank logs.
scenario() {
	local kind=$1; shift
	local out=$VC_T/$kind.out res=$VC_T/$kind.res ck=$VC_T/$kind.ckpt job i
	rm -rf "$VC_T/run"
	VC_TEST_LATE_HOLD_MS=400 VC_TEST_LATE_HOLD_RANK=1 \
	VC_TEST_PAUSE_DELAY_MS=500 VC_TEST_PAUSE_RANK=0 \
	vc_launch 2 "$out" "$@" --memory 256M --guest-cmd "$work" \
		--checkpoint-dir "$ck" --timeout 300 &
	job=$!
	for i in $(seq 1 480); do
		grep -q 'vcluster-traffic\[1\]: 1 peers' "$out" 2>/dev/null && break
		sleep 0.25
	done
	grep -q 'vcluster-traffic\[1\]: 1 peers' "$out" || fail "$kind: the traffic did not start"
	sleep 3
	ctl checkpoint || fail "$kind: vcluster-ctl checkpoint failed"
	for i in $(seq 1 240); do
		grep -q 'VCCP-CHECKPOINT .*status=ok' "$out" && break
		sleep 0.25
	done
	grep -q 'VCCP-CHECKPOINT .*status=ok' "$out" || fail "$kind: the checkpoint did not complete"
	grep -q 'VCTRAFFIC' "$out" && fail "$kind: the workload ended before the kill; the test proves nothing"
	cat "$VC_T"/run/rank*/rank.log >"$VC_T/$kind.ranklog" 2>/dev/null
	pkill -KILL -f "$VC_T/run"; pkill -KILL -P "$job" 2>/dev/null; kill -KILL "$job" 2>/dev/null
	wait "$job" 2>/dev/null
	assert_nothing_running

	rm -rf "$VC_T/run"
	vc_launch 2 "$res" "$@" --checkpoint-dir "$ck" --restore latest --timeout 300
	echo $? >"$VC_T/$kind.rc"
	cat "$VC_T"/run/rank*/rank.log >>"$VC_T/$kind.ranklog" 2>/dev/null
	assert_nothing_running
	# The fabric's accounting is exact either way (what stock QEMU loses, it loses after the link): the
	# killed run at its cut, the restored one at exit and against what it had queued at the cut.
	check_accounting --run 1 --killed --min-cuts 1 "$VC_T/$kind.ranklog"
	check_accounting --prior 1 "$VC_T/$kind.ranklog"
	echo "---- $kind: exit $(cat "$VC_T/$kind.rc")"
	grep -E 'VCTRAFFIC|restoring epoch' "$res" || true
	grep -oE 'VCTRAFFIC rank=[01] .*tcp_retrans=-?[0-9]+' "$res" |
		sed -E "s/^VCTRAFFIC (rank=[01]).* (tcp_retrans=)/$kind: TCP retransmissions after the restore: \1 \2/" || true
	assert_grep 'restoring epoch 1 from' "$res"
}

# Which QEMU ran, in both runs of a scenario (launcher and rank logs).
assert_qemu() {	# KIND patched|stock
	local n
	n=$(cat "$VC_T/$1".{out,res,ranklog} | grep -c "starting $2 QEMU" || true)
	(( n >= 4 )) || fail "$1: expected 'starting $2 QEMU' for 2 VMs in each run, found $n lines"
	cat "$VC_T/$1".{out,res,ranklog} | grep -q "starting $([[ $2 == stock ]] && echo patched || echo stock) QEMU" &&
		fail "$1: the log names the wrong QEMU"
	return 0
}

# Frames in the vde-netdev/fabric section of a VM state file, 0 without one.
# The section header is the first occurrence of the name (the stream's JSON
# description at the end repeats it): name, be32 instance, be32 version,
# then the be32 frame count.
vde_frames() {
	local f=$1 off b
	off=$(grep -abo 'vde-netdev/fabric' "$f" | head -n 1 | cut -d: -f1)
	[[ -n "$off" ]] || { echo 0; return 0; }
	b=($(od -An -tu1 -j $((off + 17 + 8)) -N 4 "$f"))
	echo $(( (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3] ))
}

# udp_lost of node R in KIND's restored run, or empty.
lost() { grep -oE "VCTRAFFIC rank=$2 .*udp_lost=[0-9]+" "$VC_T/$1.res" | grep -oE '[0-9]+$'; }

# Named with --qemu, as a site would name its own build: the launcher asks
# the binary what it is (it used to take any --qemu for stock).
scenario patched --qemu "$patched"
assert_qemu patched patched
[[ $(cat "$VC_T/patched.rc") -eq 0 ]] || fail "patched: restored run exited $(cat "$VC_T/patched.rc")"
assert_grep 'VCTRAFFIC rank=[01] peers=1 .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS' \
	"$VC_T/patched.res" 2
# The frames node1's QEMU held at the cut travelled in its VM state.
carried=$(vde_frames "$VC_T"/patched.ckpt/epoch-*/rank1.vmstate)
echo "patched: node1's VM state carries $carried frames (section vde-netdev/fabric)"
(( carried > 0 )) || fail "patched: no frame in node1's VM state: the scenario put no frame in QEMU at the cut"

scenario stock --qemu "$stock"
assert_qemu stock stock
l1=$(lost stock 1)
[[ -n "$l1" ]] || fail "stock: no VCTRAFFIC line from node1 after the restore (exit $(cat "$VC_T/stock.rc"))"
(( l1 > 0 )) || fail "stock QEMU lost no frame (node1 udp_lost=0): the scenario did not force frames into QEMU's net queue, so the patched run proves nothing"
assert_nothing_running
echo "ok: frames offered to QEMU at the cut: stock QEMU lost $l1 UDP datagrams on node1 after the restore, patched QEMU 0 ($carried frames carried in node1's VM state)"
