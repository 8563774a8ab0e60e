#!/usr/bin/env bash
# timeout: 300
# --vms 2 on 3 ranks: ranks 0 and 1 run node0 and node1, rank 2 is a spare (no VM, no QEMU) that still joins
# the fabric's mesh: the two guests exchange all-to-all traffic with zero loss, duplication and reordering,
# the spare's broadcasts in (ARP) are counted as gone, `vcluster-ctl status` names each rank's host and node
# and shows the spare, and the exact accounting balances over all three ranks. vcluster-ctl migrate refuses
# a bad request in one line (unknown node, a target that is not a spare, bad --streams) and changes nothing.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
vc_launch 3 "$out" --accel tcg --vms 2 --guest-cmd 'vcluster-traffic --all --seconds 8' --timeout 240 &
lpid=$!
wait_for 'all 2 VMs started' "$out"
# the spare started no QEMU: its rank directory has no QEMU log
[[ ! -e $VC_T/run/rank2/qemu.log ]] || fail "the spare rank started a VM"
st=$(ctl status) || fail "vcluster-ctl status failed"
echo "$st"
grep -qE '^0 +[^ ]+ +node0 +running' <<<"$st" || fail "status: rank 0 does not run node0"
grep -qE '^1 +[^ ]+ +node1 +running' <<<"$st" || fail "status: rank 1 does not run node1"
grep -qE '^2 +[^ ]+ +- +spare' <<<"$st" || fail "status: rank 2 is not shown as a spare"
host=$(hostname)
grep -qE "^2 +$host " <<<"$st" || fail "status: rank 2's host is not $host"
# vcluster-ctl migrate refuses, in one line naming the node or rank, and changes nothing
refuse() {	# PATTERN ARGS...
	local pat=$1 o; shift
	o=$(ctl migrate "$@" 2>&1) && fail "migrate $* was accepted: $o"
	grep -qE -- "$pat" <<<"$o" || fail "migrate $*: expected '$pat', got: $o"
}
refuse 'node7: no such node' node7 --to 2
refuse 'not a node name' vm1 --to 2
refuse 'rank 0 \(.*\) is not a spare: it runs node0' node1 --to 0
refuse 'no such rank \(ranks 0 to 2\)' node1 --to 5
refuse 'no rank runs on that host' node1 --to no-such-host
refuse '\-\-streams must be 1 to 16' node1 --to 2 --streams 17
refuse 'migrate NODE --to HOST\|RANK' node1
refuse 'node1 from rank 1 .* to rank 2 .*: moving a VM is not built yet' node1 --to 2 --streams 4
ctl status | grep -qE '^2 +[^ ]+ +- +spare' || fail "a refused migration changed the spare"
wait $lpid
rc=$?
grep -E 'VCTRAFFIC|launch:' "$out" || true
[[ $rc -eq 0 ]] || fail "launcher exited $rc"
assert_grep 'VCTRAFFIC rank=[01] peers=1 .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS' "$out" 2
assert_grep 'all 2 guests succeeded' "$out"
check_accounting "$VC_T/run"
assert_grep 'VC-ACCT .* rank=2 when=exit .* peers=2 from_vm=0 ' "$VC_T/run/rank2/rank.log" 1
assert_nothing_running
echo "ok: 2 VMs and a spare rank, zero loss/dup/reorder, accounting balances"
