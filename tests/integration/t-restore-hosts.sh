#!/usr/bin/env bash
# timeout: 900
# Restore on other hosts: a 3-VM traffic run, one rank per emulated host on vc-h1..vc-h3, is checkpointed
# (vcluster-ctl checkpoint) into a directory every host sees, then those three hosts crash (SIGKILL of every
# process on them: mpirun, Open MPI's daemons, the ranks, the QEMUs). The job is restored from that directory
# on vc-h4..vc-h6; the guests continue from the cut and finish: each must report exactly the messages a
# whole run delivers (--count per pair), zero loss, duplication and reordering, result=PASS. The restored
# ranks ran on vc-h4..vc-h6 (their links carried the rest of the traffic) and vc-h1..vc-h3 stayed silent.
. "$(dirname "$0")/../lib/vc-test.sh"
. "$(dirname "$0")/../lib/vc-hosts.sh"

vc_hosts_up 6
if [[ $VC_HOSTS -eq 0 ]]; then
	echo "skip: restoring on other hosts needs emulated hosts (tests/lib/hosts check)"
	exit 77
fi
count=1500
# --timeout: the guest's own give-up (default 190 s) must not be tighter than the launcher's on a loaded machine.
work="vcluster-traffic --all --count $count --timeout 600"
first=vc-h1,vc-h2,vc-h3
second=vc-h4,vc-h5,vc-h6
ck=$VC_T/ckpt   # under /tmp: the hosts share this machine's file system
out=$VC_T/out
vc_launch_on $first "$out" --guest-cmd "$work" --checkpoint-dir "$ck" --timeout 600 &
job=$!
VC_WAIT_S=400 wait_for 'vcluster-traffic\[2\]: 2 peers' "$out"
sleep 3
ctl checkpoint || fail "vcluster-ctl checkpoint failed"
VC_WAIT_S=240 wait_for 'VCCP-CHECKPOINT .*status=ok' "$out"
grep -E 'VCCP-CHECKPOINT' "$out"
grep -q 'VCTRAFFIC' "$out" && fail "the workload ended before the crash; the test proves nothing"
"$VC_HOSTS_TOOL" kill $first || fail "could not crash $first"
wait $job 2>/dev/null
assert_nothing_running
[[ -d $ck/latest || -L $ck/latest ]] || fail "no latest checkpoint in $ck"
# The crashed run has no exit lines; its cut balances.
check_accounting --killed --min-cuts 1 "$VC_T/run"
mv "$VC_T/run" "$VC_T/run.crashed"

res=$VC_T/res
vc_bytes_snap "$VC_T/bytes.0" "$first,$second"
vc_launch_on $second "$res" --checkpoint-dir "$ck" --restore latest --timeout 600
rc=$?
vc_bytes_snap "$VC_T/bytes.1" "$first,$second"
grep -E 'VCTRAFFIC|restor|resumed|VCLUSTER-EXIT' "$res" || true
[[ $rc -eq 0 ]] || { tail -n 20 "$res"; fail "restored run on $second exited $rc"; }
assert_grep 'restoring epoch 1 from' "$res"
# Exact accounting of the restored run, and each rank got back what it had queued from each peer at the cut.
check_accounting --prior 1 "$VC_T/run.crashed" "$VC_T/run"
for r in 0 1 2; do
	assert_grep "VCTRAFFIC rank=$r peers=2 .* tcp_msgs=$((2 * count)) .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS" "$res" 1
	assert_grep "VCLUSTER-EXIT rank=$r status=0" "$res" 1
done
# Where the restored ranks ran: the new hosts' links carried the rest of the traffic, the crashed ones nothing.
for h in vc-h4 vc-h5 vc-h6; do vc_assert_crossed "$VC_T/bytes.0" "$VC_T/bytes.1" $h 100000; done
for h in vc-h1 vc-h2 vc-h3; do
	b=$(awk -v h=$h '$1 == h { print $2 + $3 }' "$VC_T/bytes.0")
	a=$(awk -v h=$h '$1 == h { print $2 + $3 }' "$VC_T/bytes.1")
	(( a - b < 10000 )) || fail "$h's link carried $((a - b)) bytes during the restore on $second"
done
assert_nothing_running
echo "ok: checkpointed on $first, crashed, restored on $second; all 3 guests delivered 2x$count messages"
