#!/usr/bin/env bash
# timeout: 300
# vcluster-ctl status shows every rank with fabric counters; vcluster-ctl
# shutdown powers the cluster down; SIGTERM to mpirun stops everything.
. "$(dirname "$0")/../lib/vc-test.sh"

wait_ready() {	# N FILE
	for i in $(seq 1 240); do
		[[ $(grep -c VCLUSTER-READY "$2" 2>/dev/null) -eq $1 ]] && return 0
		sleep 0.5
	done
	fail "the guests did not come up"
}

out=$VC_T/out
vc_launch 2 "$out" --guest-cmd 'ping -c 3 -W 5 node0 && ping -c 3 -W 5 node1 && sleep 600' \
	--timeout 250 --grace 2 &
launcher=$!
wait_ready 2 "$out"
for i in $(seq 1 60); do grep -q '3 packets received' "$out" && break; sleep 0.5; done
sleep 1.5	# one stats period
"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" --json status > "$VC_T/status.json" ||
	fail "vcluster-ctl status failed"
python3 - "$VC_T/status.json" <<'PY' || fail "status reply is wrong: $(cat $VC_T/status.json)"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["ok"] and s["size"] == 2, s
for r in s["ranks"]:
    assert r["vm"] == "running", r
    f = r["fabric"]
    assert f["frames_from_vm"] > 0 and f["frames_to_vm"] > 0, f
PY
"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" status | grep -qE '^1 +[^ ]+ +node1 +running' || fail "text status lacks rank 1 (host, node1, running)"
[[ $(stat -c %a "$VC_T/run/ctl.sock") == 600 ]] || fail "ctl.sock is not mode 0600"
"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" shutdown | grep -q 'shutting down' || fail "shutdown not accepted"
wait $launcher; rc=$?
[[ $rc -eq 3 ]] || { tail -n 20 "$out"; fail "after vcluster-ctl shutdown: exit $rc, expected 3"; }
check_accounting "$VC_T/run"
assert_grep 'vcluster-ctl shutdown: powering the VMs down' "$out"
assert_nothing_running

# SIGTERM to mpirun: it forwards the signal; the ranks stop their VMs.
rm -rf "$VC_T/run"
vc_launch 2 "$out" --guest-cmd 'sleep 600' --timeout 250 --grace 2 &
launcher=$!
wait_ready 2 "$out"
mp=$(pgrep -P $launcher mpirun || echo $launcher)
kill -TERM $mp
wait $launcher; rc=$?
[[ $rc -ne 0 ]] || fail "SIGTERM: launcher exited 0"
# mpirun passes SIGTERM on and may take the ranks down before they print their exit lines: as a killed run.
check_accounting --killed "$VC_T/run"
assert_nothing_running
"$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" status 2>&1 | grep -q 'is the virtual cluster running' ||
	fail "vcluster-ctl against a finished run should say so"
echo "ok: status, shutdown (exit 3), SIGTERM (exit $rc)"
