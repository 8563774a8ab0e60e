#!/usr/bin/env bash
# timeout: 60
# slurm/vcluster.job trusts nothing from the environment: a knob that is
# not a whole number is refused by name before bash arithmetic could run
# what it holds (a[$(cmd)]), and a run root that other users can write is
# refused.  No cluster starts: VC_LAUNCHER=none stops any run that gets
# past the checks.
. "$(dirname "$0")/../lib/vc-test.sh"

job() {	# VAR=VALUE...: run the job script with those, output to $VC_T/out
	env SLURM_JOB_ID=4242 VC_HOME="$VC_ROOT" VC_LAUNCHER=none VC_CKPT_DIR="$VC_T/ck" \
		VC_RUN_ROOT="$VC_T/root" "$@" bash "$VC_ROOT/slurm/vcluster.job" >"$VC_T/out" 2>&1
}

cd "$VC_T" || fail "cd"
for var in VC_CKPT_INTERVAL VC_KEEP VC_STOP_WITHIN SLURM_RESTART_COUNT; do
	rm -f "$VC_T/pwned"
	job "$var=a[\$(touch $VC_T/pwned)]"; rc=$?
	[[ -e $VC_T/pwned ]] && fail "$var was evaluated: its command ran"
	[[ $rc -eq 2 ]] || { cat "$VC_T/out"; fail "$var: exit $rc, expected 2"; }
	assert_grep "$var='a\[\\\$\(touch .*\)\]' is not a whole number" "$VC_T/out" 1
done
job VC_KEEP=-1; [[ $? -eq 2 ]] || fail "VC_KEEP=-1 accepted"
assert_grep "VC_KEEP='-1' is not a whole number" "$VC_T/out" 1

# Good numbers pass the checks (and the run stops at VC_LAUNCHER=none).
job VC_KEEP=3 VC_CKPT_INTERVAL=0 VC_STOP_WITHIN=100; rc=$?
assert_grep "VC_LAUNCHER=none: not mpirun or srun" "$VC_T/out" 1
[[ $(stat -c %a "$VC_T/root") == 700 ]] || fail "run root not made 0700"

# A run root someone else could have prepared.
mkdir -m 777 "$VC_T/open"; chmod 777 "$VC_T/open"
job VC_RUN_ROOT="$VC_T/open"; rc=$?
[[ $rc -eq 2 ]] || fail "world-writable run root: exit $rc"
assert_grep "$VC_T/open has mode 777: writable by others" "$VC_T/out" 1
ln -s "$VC_T/root" "$VC_T/link"
job VC_RUN_ROOT="$VC_T/link"; rc=$?
[[ $rc -eq 2 ]] || fail "symlinked run root: exit $rc"
assert_grep "$VC_T/link is a symbolic link" "$VC_T/out" 1
if [[ $(id -u) -eq 0 ]]; then
	mkdir -m 700 "$VC_T/theirs"; chown 65534:65534 "$VC_T/theirs"
	job VC_RUN_ROOT="$VC_T/theirs"; rc=$?
	[[ $rc -eq 2 ]] || fail "run root of uid 65534: exit $rc"
	assert_grep "$VC_T/theirs is owned by uid 65534, not by you" "$VC_T/out" 1
fi
echo "ok: the job script's knobs and run root are checked before use"
