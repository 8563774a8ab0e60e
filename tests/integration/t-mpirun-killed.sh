#!/usr/bin/env bash
# timeout: 400
# kill -9 of mpirun while 3 VMs exchange traffic: within 1 s no rank
# (vcluster-launch) and no QEMU of that run may be left -- a restore
# started next must not race orphans for the same directories.  With the
# lifeline they are gone in about 0.1 s; without it, Open MPI's own
# noticing of the lost daemon took 2.2 to 5.0 s here.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
mpirun -np 3 "$VC_BIN/vcluster-launch" --run-dir "$VC_T/run" \
	--guest-cmd 'vcluster-traffic --all --seconds 300' --timeout 350 >"$out" 2>&1 &
mpirun_pid=$!
wait_for VCLUSTER-READY "$out" 3
sleep 3		# the traffic is flowing
ranks=$(pgrep -f "^[^ ]*/vcluster-launch --run-dir $VC_T/run" || true)
qemus=$(pgrep -f "qemu-system-x86_64 .*-name vcluster-node[0-9]+ .*$VC_T/run" || true)
[[ $(wc -w <<< "$ranks") -eq 3 ]] || { ps -o pid,ppid,args -p ${ranks:-1}; fail "expected 3 ranks, found: $ranks"; }
[[ $(wc -w <<< "$qemus") -eq 3 ]] || fail "expected 3 QEMUs, found: $qemus"
grep -q VCTRAFFIC "$out" && fail "the traffic ended before the kill"

# The processes still running (zombies run nothing) among those recorded.
alive() {
	local p st
	for p in $ranks $qemus; do
		st=$(ps -o stat= -p "$p" 2>/dev/null) || continue
		[[ $st == Z* ]] || echo "$p"
	done
}

kill -KILL "$mpirun_pid"
start=$(date +%s%N)
gone_ms=""
while :; do
	now=$(date +%s%N)
	if [[ -z $(alive) ]]; then
		gone_ms=$(( (now - start) / 1000000 ))
		break
	fi
	(( now - start >= 1000000000 )) && break
	sleep 0.1
done
if [[ -z $gone_ms ]]; then
	left=$(alive)
	[[ -n $left ]] && ps -o pid,ppid,stat,args -p $left | cut -c1-160
	fail "$(wc -w <<< "$left") of 6 processes (3 ranks, 3 QEMUs) still running 1 s after kill -9 of mpirun"
fi
wait "$mpirun_pid" 2>/dev/null
echo "ok: 3 ranks and 3 QEMUs gone ${gone_ms} ms after kill -9 of mpirun"
