#!/usr/bin/env bash
# timeout: 600
# NPB kernels (bench/NPB) natively under mpirun: every kernel, class S, with
# 1, 2 and 4 processes must print "Verification = SUCCESSFUL" and exit 0;
# each kernel run with --perturb must print UNSUCCESSFUL and exit 1; bad
# usage must exit 2.  Run from the repo root after `make all`.
set -u

BIN=${BIN:-build/bin}
KERNELS=(ep is cg mg)
NPROCS=(1 2 4)
# Open MPI refuses to run as root unless told twice.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Two cores shared with other work: allow more ranks than cores, no pinning.
MPIRUN=(mpirun --oversubscribe --bind-to none)

out=$(mktemp -d "${TMPDIR:-/tmp}/t-npb-native.XXXXXX") || exit 1
trap 'rm -rf "$out"' EXIT
fails=0

fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# run LOG NP ARGS...: mpirun with a hard time limit, so that a hung job is
# killed (mpirun takes its ranks down with it) instead of lingering.
run() {
	local log=$1 np=$2
	shift 2
	timeout --kill-after=10 120 "${MPIRUN[@]}" -np "$np" "$@" \
		>"$log" 2>&1
}

show() {
	echo "---- last lines of $1:"
	tail -n 25 "$1"
	echo "----"
}

for k in "${KERNELS[@]}"; do
	if [[ ! -x "$BIN/npb-$k" ]]; then
		echo "FAIL: $BIN/npb-$k is missing; run 'make all' first"
		exit 1
	fi
done

for k in "${KERNELS[@]}"; do
	for np in "${NPROCS[@]}"; do
		log="$out/$k.S.$np.log"
		run "$log" "$np" "$BIN/npb-$k" --class S
		rc=$?
		if ! grep -Eq '^ Verification += +SUCCESSFUL$' "$log"; then
			fail "npb-$k class S, $np processes: no 'Verification = SUCCESSFUL' (exit $rc)"
			show "$log"
		elif (( rc != 0 )); then
			fail "npb-$k class S, $np processes: exit $rc, want 0"
			show "$log"
		else
			t=$(awk -F= '/Time in seconds/ {gsub(/ /, "", $2); print $2}' "$log")
			m=$(awk -F= '/Mop\/s total/ {gsub(/ /, "", $2); print $2}' "$log")
			echo "ok   npb-$k class S np=$np: SUCCESSFUL (${t}s, ${m} Mop/s)"
		fi
	done

	log="$out/$k.S.perturb.log"
	run "$log" 2 "$BIN/npb-$k" --class S --perturb
	rc=$?
	if ! grep -Eq '^ Verification += +UNSUCCESSFUL$' "$log"; then
		fail "npb-$k --perturb: no 'Verification = UNSUCCESSFUL' (exit $rc)"
		show "$log"
	elif (( rc != 1 )); then
		fail "npb-$k --perturb: exit $rc, want 1 (verification failed)"
		show "$log"
	else
		echo "ok   npb-$k class S --perturb: UNSUCCESSFUL, exit 1"
	fi
done

# Usage errors: exit 2 and no report.
check_usage() {
	local what=$1 np=$2
	shift 2
	local log="$out/usage.log"

	run "$log" "$np" "$@"
	local rc=$?
	if (( rc != 2 )) || grep -q 'Verification' "$log"; then
		fail "$what: exit $rc, want 2 without a report"
		show "$log"
	else
		echo "ok   $what: exit 2 ($(grep -m1 'error:' "$log"))"
	fi
}
check_usage "npb-is on 3 processes" 3 "$BIN/npb-is" --class S
check_usage "npb-cg on 3 processes" 3 "$BIN/npb-cg" --class S
check_usage "npb-ep with class X" 1 "$BIN/npb-ep" --class X
check_usage "npb-mg without --class" 1 "$BIN/npb-mg"

if (( fails )); then
	echo "t-npb-native: $fails check(s) failed"
	exit 1
fi
echo "t-npb-native: all checks passed"
exit 0
