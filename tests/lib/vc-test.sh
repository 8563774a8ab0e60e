# Sourced by integration tests: a private run area, the launcher under
# mpirun, assertions, and cleanup of everything the test started.
set -u
VC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VC_BIN=$VC_ROOT/build/bin
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Quiet Open MPI's own chatter about oversubscribed cores and the like.
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
VC_T=$(mktemp -d /tmp/vc-test.XXXXXX)
chmod 700 "$VC_T"

vc_cleanup() {
	local pids
	# Anything still running from this test's run area (QEMUs, ranks).
	pids=$(pgrep -f "$VC_T" || true)
	[[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null
	[[ -n "${VC_KEEP:-}" ]] || rm -rf "$VC_T"
}
trap vc_cleanup EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

# vc_launch NP OUTFILE ARGS...: run the launcher, output to OUTFILE, return
# its exit status.
vc_launch() {
	local np=$1 out=$2; shift 2
	mpirun -np "$np" "$VC_BIN/vcluster-launch" --run-dir "$VC_T/run" "$@" >"$out" 2>&1
}

assert_grep() {	# PATTERN FILE [COUNT]
	local n
	n=$(grep -cE -- "$1" "$2" || true)
	if [[ $# -ge 3 ]]; then
		[[ "$n" -eq "$3" ]] || { tail -n 30 "$2"; fail "expected $3 lines matching '$1' in $2, found $n"; }
	else
		[[ "$n" -ge 1 ]] || { tail -n 30 "$2"; fail "no line matching '$1' in $2"; }
	fi
}

assert_no_grep() {	# PATTERN FILE
	if grep -qE -- "$1" "$2"; then
		grep -E -- "$1" "$2" | head -n 5
		fail "unexpected lines matching '$1' in $2"
	fi
}

# No process of this test may outlive it.
assert_nothing_running() {
	local pids
	sleep 0.5
	pids=$(pgrep -f "$VC_T" | while read -r p; do
		[[ $(ps -o stat= -p "$p" 2>/dev/null) == Z* ]] || echo "$p"; done)
	[[ -z "$pids" ]] || { ps -o pid,args -p $pids; fail "processes still running after the launcher exited"; }
}

# wait_for PATTERN FILE [N]: until FILE has N (default 1) lines matching the
# extended regex, at most VC_WAIT_S seconds (default 180: TCG guests on a
# loaded 2-core machine can take minutes to boot).
wait_for() {
	for i in $(seq 1 $(( ${VC_WAIT_S:-180} * 4 ))); do
		[[ $(grep -cE -- "$1" "$2" 2>/dev/null) -ge ${3:-1} ]] && return 0
		sleep 0.25
	done
	fail "timed out waiting for '$1' in $2"
}

# vcluster-ctl against this test's run directory.
ctl() { "$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" "$@"; }
