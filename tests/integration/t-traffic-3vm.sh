#!/usr/bin/env bash
# timeout: 420
# Three VMs on three ranks send TCP between all pairs and a paced UDP stream
# for 20 s; every guest must report zero loss, duplication and reordering,
# and the launcher must exit 0 with nothing left running.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
vc_launch 3 "$out" --guest-cmd 'vcluster-traffic --all --seconds 20' --timeout 300
rc=$?
cat "$out" | grep -E 'VCTRAFFIC|VCLUSTER-EXIT|launch:' || true
if [[ $rc -ne 0 ]]; then
	for r in 0 1 2; do echo "--- node$r console (tail)"; tail -n 15 "$VC_T/run/rank$r/console.log"; done
	fail "launcher exited $rc"
fi
assert_grep 'VCTRAFFIC rank=[0-2] peers=2 .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS' "$out" 3
# The UDP stream really ran: each node received datagrams from both peers.
for r in 0 1 2; do
	n=$(grep -oE "VCTRAFFIC rank=$r .* udp_rx=[0-9]+" "$out" | grep -oE '[0-9]+$')
	[[ ${n:-0} -ge 1000 ]] || fail "node$r received only ${n:-0} UDP datagrams"
done
assert_grep 'all 3 guests succeeded' "$out"
# Every rank kept a log and a console in its 0700 run directory.
for r in 0 1 2; do
	d=$VC_T/run/rank$r
	[[ $(stat -c %a "$d") == 700 ]] || fail "$d is not mode 0700"
	[[ -s $d/rank.log && -s $d/console.log ]] || fail "missing logs in $d"
done
assert_nothing_running
echo "ok: 3 VMs, zero loss/dup/reorder"
