#!/usr/bin/env bash
# timeout: 420
# Three VMs on three ranks, one rank per emulated host (vc-h1..vc-h3, tests/lib/hosts: MPI over TCP on shaped
# veth links, no shared memory), send TCP between all pairs and a paced UDP stream for 20 s; every guest must
# report zero loss, duplication and reordering, the launcher must exit 0 with nothing left running, and each
# host's link must have carried at least the bytes its guest exchanged. Without namespaces (not root) the
# ranks run on this one host.
. "$(dirname "$0")/../lib/vc-test.sh"
. "$(dirname "$0")/../lib/vc-hosts.sh"

vc_hosts_up 3
hosts=vc-h1,vc-h2,vc-h3
out=$VC_T/out
[[ $VC_HOSTS -eq 1 ]] && vc_bytes_snap "$VC_T/bytes.0" $hosts
vc_launch_on $hosts "$out" --guest-cmd 'vcluster-traffic --all --seconds 20' --timeout 300
rc=$?
[[ $VC_HOSTS -eq 1 ]] && vc_bytes_snap "$VC_T/bytes.1" $hosts
cat "$out" | grep -E 'VCTRAFFIC|VCLUSTER-EXIT|launch:|fabric: frames' || true
if [[ $rc -ne 0 ]]; then
	for r in 0 1 2; do echo "--- node$r console (tail)"; tail -n 15 "$VC_T/run/rank$r/console.log"; done
	fail "launcher exited $rc"
fi
assert_grep 'VCTRAFFIC rank=[0-2] peers=2 .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS' "$out" 3
# The UDP stream really ran. udp_lost=0 above is exact (each sender tells its receiver over TCP how many
# datagrams it sent); this count only shows that datagrams flowed. Nominally 200/s from each peer, TCG guests
# on a loaded 2-core machine send far fewer (664 for node0 in one 20 s run at load 20), hence the low bound.
for r in 0 1 2; do
	n=$(grep -oE "VCTRAFFIC rank=$r .* udp_rx=[0-9]+" "$out" | grep -oE '[0-9]+$')
	[[ ${n:-0} -ge 200 ]] || fail "node$r received only ${n:-0} UDP datagrams"
done
assert_grep 'all 3 guests succeeded' "$out"
check_accounting "$VC_T/run"
accounting_can_fail rx_frames "$VC_T/run"
# Every rank kept a log and a console in its 0700 run directory.
for r in 0 1 2; do
	d=$VC_T/run/rank$r
	[[ $(stat -c %a "$d") == 700 ]] || fail "$d is not mode 0700"
	[[ -s $d/rank.log && -s $d/console.log ]] || fail "missing logs in $d"
done
# Rank r ran on vc-h(r+1) and its guest's traffic crossed that host's link: every byte a guest exchanged
# with its peers went through MPI between hosts, so the link carried at least that much.
if [[ $VC_HOSTS -eq 1 ]]; then
	for r in 0 1 2; do
		b=$(grep -oE "VCTRAFFIC rank=$r .* tcp_bytes=[0-9]+" "$out" | grep -oE '[0-9]+$')
		vc_assert_crossed "$VC_T/bytes.0" "$VC_T/bytes.1" "vc-h$((r + 1))" "${b:-1}"
	done
fi
assert_nothing_running
echo "ok: 3 VMs on $([[ $VC_HOSTS -eq 1 ]] && echo "3 emulated hosts" || echo "one host"), zero loss/dup/reorder"
