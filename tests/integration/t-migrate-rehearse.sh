#!/usr/bin/env bash
# timeout: 420
# vcluster-ctl migrate --rehearse (issue 14, steps 1, 2 and 5 of migrate.h's plan): --vms 2 on 3 ranks, one per
# emulated host vc-h1..vc-h3 (all on this host without them), node1 (vc-h2) sends its whole VM to the spare
# rank 2 (vc-h3, named by host) with QEMU's own migration (1 stream, then 4 multifd streams) while the
# guests exchange all-to-all traffic; the spare starts node1's QEMU (node1's MAC and name, -incoming defer -S),
# QEMU reports the migration completed at both ends, the guest RAM's CRC32C at the source at the stop equals
# the destination's before it would resume, the destination is thrown away and node1 runs on at rank 1. Then the destination QEMU is killed mid-transfer (--bandwidth caps it): the migration fails in one
# line, node1 keeps running, rank 2 is shown as a failed spare and refused as a target. The traffic has zero
# loss, duplication and reordering, the accounting balances, and nothing is left running. With hosts, the
# stream crossed vc-h3's link. The real move (without --rehearse) is still refused.
. "$(dirname "$0")/../lib/vc-test.sh"
. "$(dirname "$0")/../lib/vc-hosts.sh"

vc_hosts_up 3
to=2
[[ $VC_HOSTS -eq 0 ]] || to=vc-h3
out=$VC_T/out
log2=$VC_T/run/rank2/rank.log
vc_launch_on vc-h1,vc-h2,vc-h3 "$out" --accel tcg --vms 2 --guest-cmd 'vcluster-traffic --all --seconds 60' \
	--timeout 360 &
lpid=$!
VC_WAIT_S=300 wait_for 'all 2 VMs started' "$out"
# the guests talk before node1 moves (the traffic must run through the rehearsals)
VC_WAIT_S=300 wait_for 'vcluster-traffic\[1\]: 1 peers' "$out"

# the move itself is not built: refused, nothing changed
o=$(ctl migrate node1 --to $to 2>&1) && fail "migrate without --rehearse was accepted: $o"
grep -q 'moving a VM is not built yet' <<<"$o" || fail "migrate: unexpected refusal: $o"

rehearse() {	# STREAMS
	local t0 o
	t0=$(date +%s.%N)
	o=$(ctl migrate node1 --to $to --streams "$1" --rehearse 2>&1) || fail "rehearsal ($1 streams) failed: $o"
	echo "$o"
	grep -qE 'rehearsal of node1 from rank 1 .* to rank 2 .*: [0-9.]+ MiB sent, downtime [0-9]+ ms in [0-9.]+ s; the destination received the whole VM, RAM CRC32C 0x[0-9a-f]{8} at both ends; node1 runs on at rank 1' <<<"$o" ||
		fail "rehearsal ($1 streams): no summary line: $o"
	echo "rehearsal with $1 stream(s): $(echo "$(date +%s.%N) - $t0" | bc) s"
}
[[ $VC_HOSTS -eq 0 ]] || vc_bytes_snap "$VC_T/bytes.0" vc-h3
rehearse 1
# with hosts: the VM crossed vc-h3's link (its RAM, far more than the traffic's share in that time)
[[ $VC_HOSTS -eq 0 ]] || { vc_bytes_snap "$VC_T/bytes.1" vc-h3; vc_assert_crossed "$VC_T/bytes.0" "$VC_T/bytes.1" vc-h3 4000000; }
# the spare started node1's QEMU, not one of its own
grep -q -- '-name vcluster-node1 ' "$log2" || fail "rank 2 did not start node1's QEMU"
grep -q 'mac=52:54:00:56:00:01,' "$log2" || fail "rank 2's QEMU has not node1's MAC"
grep -q -- '-incoming defer -S' "$log2" || fail "rank 2's QEMU was not started to receive"
assert_grep 'the destination received the whole VM \(RAM CRC32C 0x[0-9a-f]{8}' "$log2" 1
rehearse 4
assert_grep 'the destination received the whole VM \(RAM CRC32C 0x[0-9a-f]{8}' "$log2" 2
pgrep -f "$VC_T/run/rank2/qmp.sock" >/dev/null && fail "the destination QEMU outlived its rehearsal"
ctl status | grep -qE '^2 +[^ ]+ +- +spare ' || fail "rank 2 is no longer a spare after the rehearsals"

# the destination dies mid-transfer: the migration fails, node1 runs on at rank 1, rank 2 is a failed spare
ctl migrate node1 --to $to --bandwidth 8 --rehearse >"$VC_T/fail.out" 2>&1 &
cpid=$!
wait_for 'destination QEMU listens at' "$log2" 3
sleep 1
dq=$(pgrep -f "$VC_T/run/rank2/qmp.sock") || fail "no destination QEMU to kill"
kill -KILL $dq
wait $cpid && fail "the migration with its destination killed succeeded: $(cat "$VC_T/fail.out")"
cat "$VC_T/fail.out"
grep -qE 'migration of node1 from rank 1 to rank 2 failed: .*node1 runs on at rank 1, rank 2 is marked a failed spare' \
	"$VC_T/fail.out" || fail "no failure line"
st=$(ctl status)
echo "$st"
grep -qE '^1 +[^ ]+ +node1 +running' <<<"$st" || fail "node1 is not running at rank 1 after the failure"
grep -qE '^2 +[^ ]+ +- +spare-failed' <<<"$st" || fail "rank 2 is not shown as a failed spare"
o=$(ctl migrate node1 --to $to --rehearse 2>&1) && fail "a failed spare was accepted: $o"
grep -q 'is a failed spare' <<<"$o" || fail "failed spare: unexpected refusal: $o"

wait $lpid
rc=$?
grep -E 'VCTRAFFIC|launch:|migrun:' "$out" || true
[[ $rc -eq 0 ]] || fail "launcher exited $rc"
assert_grep 'VCTRAFFIC rank=[01] peers=1 .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS' "$out" 2
assert_grep 'all 2 guests succeeded' "$out"
check_accounting "$VC_T/run"
assert_nothing_running
echo "ok: node1 rehearsed to the spare with 1 and 4 streams, a killed destination left it running, accounting balances"
