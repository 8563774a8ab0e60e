#!/usr/bin/env bash
# timeout: 480
# Three VMs run vcluster-traffic (TCP between all pairs and a UDP stream)
# while the cluster is checkpointed every 7 s.  The guests must see zero
# loss, duplication and reordering; at least one cut must have caught
# frames in flight (rank 2 pauses 300 ms after the others, so its VM keeps
# sending into the paused ones), and every frame a receive queue held must
# have been delivered exactly once after the resume (counted rank by rank,
# without the frames that queued behind it after a resume).
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
# No epoch aborts while the guests run.  Once rank 0 hears that a VM has
# ended it starts no interval epoch; one it requested as that news was on
# its way aborts ("pausing the VM" of a QEMU that is gone, or "the VM is not
# running" at a rank whose guest had printed its result and powered off), no
# fault of the protocol.
first_exit=$(grep -n 'VCLUSTER-EXIT' "$out" | head -n 1 | cut -d: -f1)
assert_grep 'no more interval checkpoints: node[0-2].s VM has ended' "$out" 1
off=$(grep -n 'no more interval checkpoints' "$out" | head -n 1 | cut -d: -f1)
late=$(tail -n +"$off" "$out" | grep -c 'checkpoint epoch [0-9]* requested' || true)
(( late == 0 )) || fail "$late checkpoint(s) requested after rank 0 knew a VM had ended"
for e in $(grep -oE 'VCCP-CHECKPOINT epoch=[0-9]+ status=aborted' "$out" | grep -oE 'epoch=[0-9]+' | cut -d= -f2 | sort -u); do
	req=$(grep -n "checkpoint epoch $e requested" "$out" | head -n 1 | cut -d: -f1)
	# or the rank that aborted it found its VM stopped after its guest had
	# printed its result (powering off, its exit not yet at rank 0)
	abort=$(grep -n "checkpoint epoch $e aborted: rank [0-9]*: the VM is not running" "$out" | head -n 1)
	ar=$(sed -E 's/.*aborted: rank ([0-9]+):.*/\1/' <<<"$abort")
	done_at=$([[ -n "$abort" ]] && grep -n "VCTRAFFIC rank=$ar peers=.* result=" "$out" | head -n 1 | cut -d: -f1)
	if [[ -n "$first_exit" && -n "$req" ]] && (( req > first_exit )); then :
	elif [[ -n "$abort" && -n "$done_at" ]] && (( done_at < ${abort%%:*} )); then :
	else
		fail "checkpoint epoch $e aborted while the guests ran: $(grep "checkpoint epoch $e aborted" "$out" | head -n 1)"
	fi
	echo "epoch $e was requested as a guest powered off, before rank 0 knew, and aborted"
done

# Frames in flight at a cut, and exactly-once delivery of them, rank by
# rank: the frames each rank's receive queue held at its cuts (the sum of
# rq_frames over its VCCP-RANK lines) against those delivered to its VM from
# those queues (frames_from_cut).  Frames that a peer sent after its resume
# and that queued behind a queue still being delivered are delivered from
# it too (frames_from_rq counts them); they were not in flight at a cut and
# are not counted.
queued=0
for r in 0 1 2; do
	log=$VC_T/run/rank$r/rank.log
	q=$(grep -oE 'VCCP-RANK .*rq_frames=[0-9]+' "$log" | grep -oE '[0-9]+$' | paste -sd+ | bc)
	d=$(grep -oE 'fabric totals: .*frames_from_cut=[0-9]+' "$log" | grep -oE '[0-9]+$')
	all=$(grep -oE 'fabric totals: .*frames_from_rq=[0-9]+' "$log" | grep -oE '[0-9]+$')
	[[ -n "$q" && -n "$d" && -n "$all" ]] || fail "rank $r: no VCCP-RANK lines or fabric totals in $log"
	echo "rank $r: $q frames queued at its cuts, $d of them delivered; $((all - d)) more queued behind after a resume"
	[[ "$d" -eq "$q" ]] || fail "rank $r: its receive queues held $q frames at the cuts, $d were delivered"
	queued=$((queued + q))
done
total=$(grep -oE 'VCCP-CHECKPOINT .*rq_frames=[0-9]+' "$out" | grep -oE '[0-9]+$' | paste -sd+ | bc)
[[ "$total" -eq "$queued" ]] || fail "the checkpoint lines count $total queued frames, the ranks $queued"
(( queued > 0 )) || fail "no cut caught a frame in flight: the receive queue was never exercised"
# Exact accounting at every cut and at exit; an epoch that aborted (above: only after a guest had gone) may
# lack the lines of the rank whose VM had gone.
partial=()
for e in $(grep -oE 'VCCP-CHECKPOINT epoch=[0-9]+ status=aborted' "$out" | grep -oE 'epoch=[0-9]+' | cut -d= -f2 | sort -u); do
	partial+=(--partial-cut "$e")
done
check_accounting --min-cuts "$n" "${partial[@]}" "$VC_T/run"
grep -oE 'VCTRAFFIC rank=[0-2] .*tcp_retrans=-?[0-9]+' "$out" | sed -E 's/^VCTRAFFIC (rank=[0-2]).* (tcp_retrans=)/TCP retransmissions: \1 \2/'

# --keep 2 and a complete, valid latest checkpoint with private files.
[[ $(ls -d "$ck"/epoch-* | wc -l) -eq 2 ]] || fail "--keep 2 left $(ls -d "$ck"/epoch-* | wc -l) epochs"
"$VC_BIN/vcluster-ckpt" verify "$ck" > "$VC_T/verify.json" || fail "latest checkpoint does not verify"
bad=$(find "$ck" -type f ! -perm 0600 | head -n 1)
[[ -z "$bad" ]] || fail "$bad is not mode 0600"
assert_nothing_running
echo "ok: $n checkpoints, $queued in-flight frames queued and delivered exactly once, zero loss"
