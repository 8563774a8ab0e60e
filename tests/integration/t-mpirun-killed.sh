#!/usr/bin/env bash
# timeout: 400
# kill -9 of mpirun while 3 VMs exchange traffic: within 3 s no rank
# (vcluster-launch) and no QEMU of that run may be left -- a restore
# started next must not race orphans for the same directories.  One rank
# is held just before the kill (every thread ptrace-stopped, as under a
# debugger; SIGSTOP would not do: the kernel sends a stopped orphan SIGHUP
# and SIGCONT): it cannot notice anything itself, so only a lifeline that
# needs no help from the rank passes.  Without one, Open MPI's own noticing
# of the lost daemon took 0.46 to 5.0 s for running ranks here, and a held
# rank stays until it is let go.
. "$(dirname "$0")/../lib/vc-test.sh"
command -v python3 >/dev/null || { echo "skip: no python3 (to hold a rank with ptrace)"; exit 77; }

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

# The processes still running among those recorded (a zombie runs
# nothing).  Reads /proc with builtins only: no fork per check.
alive() {
	local p st
	for p in $ranks $qemus; do
		read -r st 2>/dev/null < "/proc/$p/stat" || continue
		st=${st##*) }
		[[ ${st:0:1} == Z ]] || echo "$p"
	done
}

# hold PID SECONDS: ptrace-stop every thread of PID for SECONDS.
hold() {
	exec python3 - "$@" <<'PY'	# exec: $! of "hold ... &" is python itself
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 0x4206, 0x4207, 0x40000000
pid, held = int(sys.argv[1]), set()
for _ in range(3):	# a thread may start while we attach
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        if tid in held:
            continue
        if libc.ptrace(PTRACE_SEIZE, tid, None, None) or libc.ptrace(PTRACE_INTERRUPT, tid, None, None):
            sys.exit(f"ptrace {tid}: {os.strerror(ctypes.get_errno())}")
        os.waitpid(tid, WALL)
        held.add(tid)
print(f"holding {len(held)} threads of {pid}", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:	# until it is gone, at most SECONDS
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    except OSError:
        break
    time.sleep(0.05)
PY
}
held=$(head -n 1 <<< "$ranks")
hold "$held" 10 > "$VC_T/hold.out" 2>&1 &
holder=$!
for i in $(seq 1 100); do grep -q holding "$VC_T/hold.out" && break; sleep 0.1; done
grep -q holding "$VC_T/hold.out" || { cat "$VC_T/hold.out"; fail "could not hold rank $held"; }
cat "$VC_T/hold.out"
# (No checkpoint runs here and a killed run prints no exit lines: there is no frame accounting to check.)
kill -KILL "$mpirun_pid"
start=$(date +%s%N)
gone_ms=""
while :; do
	now=$(date +%s%N)
	if [[ -z $(alive) ]]; then
		gone_ms=$(( (now - start) / 1000000 ))
		break
	fi
	(( now - start >= 3000000000 )) && break
	sleep 0.05
done
if [[ -z $gone_ms ]] || (( gone_ms > 3000 )); then
	left=$(alive)
	[[ -n $left ]] && ps -o pid,ppid,stat,args -p $left | cut -c1-160
	kill "$holder" 2>/dev/null
	fail "$(wc -w <<< "$left") of 6 processes (3 ranks, 3 QEMUs) still running 3 s after kill -9 of mpirun"
fi
wait "$mpirun_pid" 2>/dev/null
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
echo "ok: 3 ranks and 3 QEMUs gone ${gone_ms} ms after kill -9 of mpirun"
