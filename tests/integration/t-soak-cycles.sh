#!/usr/bin/env bash
# timeout: 1200
# The soak of issue 12, short: bench/soak/run --kind cycles on 4 emulated hosts (one VM each) under
# all-to-all traffic, a checkpoint every 5 s, 10 SIGKILL-and-restore cycles (mpirun killed at a random
# point after a phase's first committed checkpoint, so some kills land inside the next one; every rank and
# QEMU gone, then --restore latest); the last restore runs to the end. Pass: the soak says pass; the
# guests lost, duplicated and reordered no frame; every checkpoint taken while the guests ran committed
# (only one the interval requested after all 4 had printed their results may abort, on a VM powering off,
# naming the closed QMP socket); cycles.csv has a
# row per cycle with its restored epoch (each newer than the last), its pause, flush, save and resume; the
# frame accounting of every phase is exact (check_accounting, by the soak and again here from its logs):
# at every cut and at the end, for every ordered pair of ranks, and each restored receive queue equals what
# the cut it came from had queued.
# The workload (--cycle-seconds) covers the cycles with room to spare: a restore goes back to the latest
# checkpoint, so a cycle moves the guests on by about one interval (two if the kill came after the next
# checkpoint, which is rare: the kill comes within an interval of the checkpoint's end, and the next one is
# requested an interval after the last one's request and takes seconds with 4 VMs), and the last phase runs
# the rest. 1.5 intervals a cycle: half the cycles may take two. If the workload ends before a kill, the
# soak fails saying so (--cycle-seconds too short), never passes.
. "$(dirname "$0")/../lib/vc-test.sh"

why=$("$VC_ROOT/tests/lib/hosts" check) || { echo "skip: $why"; exit 77; }
K=10
I=5
res=$VC_T/results
logs=$VC_T/logs
"$VC_ROOT/bench/soak/run" --kind cycles --hosts 4 --cycles $K --interval $I --cycle-seconds $(( 3 * K * I / 2 + 15 )) \
	--runs 1 --bound 900 --gone-wait 30 --out "$res" --logs "$logs" --bin "$VC_BIN" >"$VC_T/soak.out" 2>&1
rc=$?
cat "$VC_T/soak.out"
if [[ $rc -ne 0 ]]; then
	# The failed run's logs outlive this test's area.
	keep=$VC_ROOT/build/test-logs/t-soak-cycles.failed
	rm -rf "$keep"; [[ -d $res/failed ]] && cp -a "$res/failed" "$keep" && echo "logs kept in $keep"
	cat "$res/runs.csv" "$res/cycles.csv"
	fail "bench/soak/run exited $rc"
fi
[[ $(wc -l < "$res/runs.csv") -eq 2 ]] || fail "runs.csv: expected 1 run"
# runs.csv: result, vms_clean, frames lost/dup/reordered, checkpoints, aborted, restored epochs.
IFS=, read -r _ kind _ _ result _ secs phases clean lost dup reord msgs urx nck nab restored gones _ < <(tail -n 1 "$res/runs.csv")
echo "run: $result in ${secs}s, $phases phases, $clean clean guests, lost=$lost dup=$dup reordered=$reord" \
	"tcp_msgs=$msgs udp_rx=$urx checkpoints=$nck aborted=$nab restored=$restored gone=$gones"
[[ $kind == cycles && $result == pass ]] || fail "the soak run did not pass: $(tail -n 1 "$res/runs.csv")"
[[ $phases -eq $(( K + 1 )) && $clean -eq 4 ]] || fail "expected $((K + 1)) phases and 4 clean guests"
[[ $lost == 0 && $dup == 0 && $reord == 0 ]] || fail "frames lost $lost, duplicated $dup, reordered $reord"
(( msgs > 0 && urx > 0 )) || fail "no traffic counted (tcp_msgs=$msgs udp_rx=$urx)"
# No checkpoint may abort while the guests run. One the interval requested after every guest had printed its
# result (the workload over, the VMs powering off) aborts naming a closed QMP socket: the end of the run.
L=$logs/cycles-patched-1
fin=$L/out-$K
done_at=$(grep -nE '\[node[0-9]+\] VCTRAFFIC rank=' "$fin" | cut -d: -f1 | sort -n | tail -n 1)
[[ $(grep -cE '\[node[0-9]+\] VCTRAFFIC rank=' "$fin") -eq 4 ]] || fail "$fin: not 4 VCTRAFFIC lines"
late=0
for e in $(cat "$L"/out-* | grep -oE 'VCCP-CHECKPOINT epoch=[0-9]+ status=aborted' | grep -oE '[0-9]+' | sort -un); do
	req=$(grep -nE "checkpoint epoch $e requested" "$fin" | cut -d: -f1 | head -n 1)
	why=$(grep -m1 -oE "checkpoint epoch $e aborted: .*" "$L"/out-* | cut -d: -f2-)
	if [[ -n $req ]] && (( req > done_at )) && grep -q "QEMU closed the QMP socket" <<<"$why"; then
		echo "epoch $e, requested after the guests' results, aborted at the end of the run:$why"
		late=$(( late + 1 ))
	else
		fail "checkpoint epoch $e aborted while the guests ran:$why"
	fi
done
(( nab == late )) || fail "$nab checkpoints aborted, $late of them after the workload"
(( nck >= K + 1 )) || fail "only $nck checkpoints committed for $K cycles"
[[ $(tr ';' '\n' <<< "$restored" | grep -c .) -eq $K ]] || fail "restored epochs '$restored': not $K restores"
# cycles.csv: a row per cycle and one for the last phase; restored epochs increase; timings present.
[[ $(grep -c '^cycles,' "$res/cycles.csv") -eq $(( K + 1 )) ]] || { cat "$res/cycles.csv"; fail "cycles.csv: not $((K + 1)) rows"; }
awk -F, -v k=$K 'NR > 1 {
	if ($4 != "final" && ($13 == "" || $11 == "")) { print "cycle " $4 ": no kill figures"; bad = 1 }
	if ($5 > 0 && ($6 == "" || $7 == "" || $6 + 0 <= prev)) { print "cycle " $4 ": restored epoch " $6 " after " prev; bad = 1 }
	if ($6 != "") prev = $6 + 0
	if ($8 > 0 && ($14 == "" || $15 == "" || $16 == "" || $17 == "")) { print "cycle " $4 ": no pause/flush/save/resume"; bad = 1 }
} END { exit bad }' "$res/cycles.csv" || { cat "$res/cycles.csv"; fail "cycles.csv is not right"; }
# The soak checked the accounting of each phase (a phase that did not balance fails the run); check it again
# from the logs it kept, and that the check can fail.
[[ $(grep -cE '^  phase [0-9]+: accounting: run [0-9]+: 4 ranks' "$VC_T/soak.out") -eq $(( K + 1 )) ]] ||
	fail "the soak did not report the accounting of all $((K + 1)) phases"
acct=$(tail -n 1 "$res/runs.csv" | awk -F, '{ print $NF }')
(( acct >= nck )) || fail "runs.csv: $acct balanced cuts, fewer than the $nck committed checkpoints"
for (( p = 0; p <= K; p++ )); do
	src=("$L/run-$p")
	opts=()
	(( p > 0 )) && src=("$L/run-$(( p - 1 ))" "$L/run-$p")
	(( p < K )) && opts+=(--killed --min-cuts 1)
	e=$(grep -m1 -oE 'restoring epoch [0-9]+' "$L/out-$p" | grep -oE '[0-9]+$')
	(( p > 0 )) && { [[ -n $e ]] || fail "phase $p: no 'restoring epoch' line"; opts+=(--prior "$e"); }
	# a cut the kill interrupted may lack some ranks' lines
	ok=" $(grep -oE 'VCCP-CHECKPOINT epoch=[0-9]+ status=ok' "$L/out-$p" | grep -oE '[0-9]+' | paste -sd' ') "
	for c in $(cat "$L/run-$p"/rank*/rank.log | grep -oE 'VC-ACCT run=[0-9]+ rank=[0-9]+ when=cut epoch=[0-9]+' |
		grep -oE '[0-9]+$' | sort -un); do
		[[ $ok == *" $c "* ]] || opts+=(--partial-cut "$c")
	done
	echo -n "phase $p: "
	check_accounting "${opts[@]}" "${src[@]}"
done
accounting_can_fail rx_frames "$L/run-$K"
inside=$(awk -F, 'NR > 1 && $12 == 1' "$res/cycles.csv" | wc -l)
echo "cycles.csv: $K cycles, $inside kills inside a checkpoint; cuts.csv: $(( $(wc -l < "$res/cuts.csv") - 1 )) checkpoints"
work=$(grep -m1 -oE '^work area: /tmp/vc-soak\.[A-Za-z0-9]+' "$VC_T/soak.out" | cut -d' ' -f3)
[[ -n $work ]] || fail "the soak did not print its work area"
sleep 0.5
left=$(pgrep -f "$work" || true)
[[ -z $left ]] || { ps -o pid,args -p "$(paste -sd, <<< "$left")"; fail "processes of the soak still running"; }
assert_nothing_running
echo "ok: $K kill-and-restore cycles on 4 hosts, 0 frames lost, duplicated or reordered"
