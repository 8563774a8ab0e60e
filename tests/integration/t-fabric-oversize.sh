#!/usr/bin/env bash
# timeout: 300
# Frames longer than the fabric takes (FABRIC_FRAME_MAX, a jumbo frame) are refused whole and counted, never cut:
# node0 raises its fabric MTU to 9600 and pings node1 with 9400-byte payloads (9442-byte frames). Rank 0 must
# count every one as vm_oversize and forward none (ping gets no reply, and the per-pair accounting, which counts
# every frame that crossed, balances exactly), while ordinary pings before and after pass. node1 stays up until
# node0 tells it (a TCP connection to its port 7777) that the pings are done, not for a fixed time.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
cmd='if [ "$(hostname)" = node0 ]; then
dev=$(ip -4 addr | grep "inet 10\.10\.0\." | sed "s/.* //");
ip link set "$dev" mtu 9600 || exit 3;
ping -c 2 -W 5 node1 > /dev/null || exit 4;
if ping -c 3 -W 3 -s 9400 node1; then exit 5; fi;
ping -c 2 -W 5 node1 > /dev/null || exit 6;
echo OVERSIZE-DONE;
i=0; until echo done | nc node1 7777; do i=$((i+1)); [ $i -lt 20 ] || exit 8; sleep 1; done;
else timeout 200 nc -l -p 7777 > /dev/null || exit 7; fi'
vc_launch 2 "$out" --guest-cmd "$cmd" --timeout 240
rc=$?
grep -E 'OVERSIZE|VCLUSTER-EXIT|packets' "$out" || true
[[ $rc -eq 0 ]] || { tail -n 20 "$out"; fail "launcher exited $rc (guest 3: mtu, 4/6: ordinary ping failed, 5: oversize ping answered, 7/8: node0's end never reached node1)"; }
assert_grep '\[node0\] OVERSIZE-DONE' "$out" 1
n=$(grep -ho 'VC-ACCT run=[0-9]* rank=0 when=exit .* vm_oversize=[0-9]*' "$VC_T/run/rank0/rank.log" | tail -n 1 | grep -oE '[0-9]+$')
echo "rank 0 refused ${n:-0} oversize frames from its VM"
(( ${n:-0} >= 3 )) || fail "rank 0 counted ${n:-0} oversize frames, expected at least the 3 pings"
check_accounting --allow vm_oversize "$VC_T/run"
# Without --allow the same run fails the check: oversize frames are never silently accepted.
if (check_accounting "$VC_T/run") >"$VC_T/strict.out" 2>&1; then
	fail "check_accounting accepted oversize frames it was not told of"
fi
assert_grep 'vm_oversize=' "$VC_T/strict.out"
assert_nothing_running
echo "ok: $n oversize frames refused whole and counted, none forwarded, ordinary pings pass"
