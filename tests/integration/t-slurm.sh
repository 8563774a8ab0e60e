#!/usr/bin/env bash
# timeout: 600
# slurm/vcluster.job under real Slurm daemons (munged, slurmctld, slurmd from
# Debian's packages), started here with a temporary config and stopped at the
# end.  With emulated hosts (tests/lib/hosts) there is one slurmd on each of
# vc-h1..vc-h3 and slurmctld on vc-h1, and a 3-node job (3 VMs, one per host)
# runs a fixed amount of traffic (3000 messages per pair); without them
# (not root) one slurmd on this host runs a 2-task job (2 VMs, oversubscribed)
# of jobs/slurm-traffic.job.  The job starts three times:
#   0: `scancel --signal=USR1 --batch` -> checkpoint 1, the job goes on;
#      `scontrol requeue` ends it.
#   1: restores checkpoint 1; with the time limit cut to under VC_STOP_WITHIN
#      SIGUSR1 means the limit is near -> checkpoint 2, shutdown, the job
#      requeues itself.
#   2: restores checkpoint 2 and must end with exit 0 and the digests of a
#      plain run of the same job spec without Slurm or checkpoints.
. "$(dirname "$0")/../lib/vc-test.sh"
. "$(dirname "$0")/../lib/vc-hosts.sh"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "skip: Slurm and munge are not installed (as root: mk/deps.sh slurm)"
		exit 77
	fi
	"$VC_ROOT/mk/deps.sh" slurm || fail "mk/deps.sh slurm failed"
fi
[[ $(id -u) -eq 0 ]] || { echo "skip: the Slurm daemons of this test run as root"; exit 77; }

vc_hosts_up 3
if [[ $VC_HOSTS -eq 1 ]]; then
	N=3 nodes=(vc-h1 vc-h2 vc-h3) hostlist=vc-h1,vc-h2,vc-h3
	# Slurm's client commands reach slurmctld over the test subnet: run them on vc-h1.
	on_h1() { "$VC_HOSTS_TOOL" exec vc-h1 "$@"; }
	for c in sbatch squeue scontrol scancel sinfo; do eval "$c() { on_h1 $c \"\$@\"; }"; done
	# MPI inside the job (mpirun starts its daemons with srun): TCP on the test subnet only.
	net=$(sed -n 's/.*btl_tcp_if_include \([^ ]*\).*/\1/p' "$VC_T/hosts.opts")
	export OMPI_MCA_btl=tcp,self OMPI_MCA_pml=ob1 OMPI_MCA_btl_tcp_if_include=$net OMPI_MCA_oob_tcp_if_include=$net
	jobspec=$VC_T/traffic.job
	printf '%s\n' 'memory = 256M' 'vcpus = 1' 'guest-cmd = "vcluster-traffic --all --count 3000 --timeout 900"' 'timeout = 900' >"$jobspec"
else
	N=2 nodes=(node1) hostlist=""
	jobspec=$VC_ROOT/jobs/slurm-traffic.job
fi
peers=$((N - 1))

S=$VC_T/slurm
mkdir -p "$S/state" "$S/spool"
# munged wants every folder above its socket searchable by all.
chmod 711 "$VC_T"
chmod 755 "$S"
export SLURM_CONF=$S/slurm.conf
munged_pid="" ctld_pid="" slurmd_pids=""

# Processes of this test's Slurm: its daemons' children carry SLURM_CONF.
our_stepds() {
	local p
	for p in $(pgrep -x slurmstepd); do
		grep -qz "^SLURM_CONF=$SLURM_CONF\$" "/proc/$p/environ" 2>/dev/null && echo "$p"
	done
}

# Stop everything this test started, in order: jobs, then (once no
# slurmstepd of ours is left) slurmd, slurmctld, munged, each by its PID.
slurm_stop() {
	local i p jobs
	if [[ -n $ctld_pid ]]; then
		jobs=$(squeue -h -o %i 2>/dev/null)
		[[ -n $jobs ]] && scancel --quiet $jobs 2>/dev/null
		for i in $(seq 1 150); do [[ -z $(our_stepds) ]] && break; sleep 0.2; done
		[[ -z $(our_stepds) ]] || { echo "slurmstepd still running:"; ps -o pid,args -p "$(our_stepds | paste -sd,)"; }
	fi
	for p in $slurmd_pids $ctld_pid $munged_pid; do
		kill -TERM "$p" 2>/dev/null
		for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	slurmd_pids="" ctld_pid="" munged_pid=""
}

on_exit() {
	local rc=$? f
	slurm_stop
	if [[ $rc -ne 0 ]]; then
		for f in "$S"/slurmctld.log "$S"/slurmd*.log "$S"/munged.log "$VC_T"/job*.out; do
			[[ -e $f ]] || continue
			echo "==== $f (last 60 lines)"
			tail -n 60 "$f"
		done
	fi
	vc_cleanup
	vc_hosts_cleanup
}
trap on_exit EXIT

# Two free TCP ports for slurmctld and slurmd.
ports=()
for p in $(shuf -i 20000-60000 -n 40); do
	ss -Htln "sport = :$p" | grep -q . || ports+=("$p")
	[[ ${#ports[@]} -eq 2 ]] && break
done

mungekey --create --keyfile="$S/munge.key" || fail "mungekey failed"
munged -F --socket="$S/munge.sock" --key-file="$S/munge.key" --pid-file="$S/munged.pid" \
	--seed-file="$S/munge.seed" --log-file="$S/munged.log" > "$S/munged.out" 2>&1 &
munged_pid=$!
for i in $(seq 1 50); do [[ -S $S/munge.sock ]] && break; sleep 0.1; done
[[ -S $S/munge.sock ]] || fail "munged did not come up"

if [[ $VC_HOSTS -eq 1 ]]; then
	ctld_host="vc-h1($(getent hosts vc-h1 | cut -d' ' -f1))"
	node_lines=$(for h in "${nodes[@]}"; do
		echo "NodeName=$h NodeAddr=$(getent hosts $h | cut -d' ' -f1) CPUs=8 State=UNKNOWN"; done)
else
	ctld_host=localhost
	node_lines="NodeName=node1 NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN"
fi
cat > "$SLURM_CONF" <<EOF
ClusterName=vctest
SlurmctldHost=$ctld_host
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$S/munge.sock,cred_expire=5
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd-%n.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
JobRequeue=1
KillWait=10
MailProg=/bin/true
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
$node_lines
PartitionName=vc Nodes=$(IFS=,; echo "${nodes[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
# Each daemon is started on its own line so that $! is its PID (hosts exec becomes the command).
if [[ $VC_HOSTS -eq 1 ]]; then
	"$VC_HOSTS_TOOL" exec vc-h1 slurmctld -D -i > "$S/slurmctld.out" 2>&1 &
else
	slurmctld -D -i > "$S/slurmctld.out" 2>&1 &
fi
ctld_pid=$!
for h in "${nodes[@]}"; do
	mkdir -p "$S/spool/$h"
	if [[ $VC_HOSTS -eq 1 ]]; then
		"$VC_HOSTS_TOOL" exec "$h" slurmd -D -N "$h" > "$S/slurmd-$h.out" 2>&1 &
	else
		slurmd -D -N "$h" > "$S/slurmd-$h.out" 2>&1 &
	fi
	slurmd_pids+=" $!"
done

# The reference: the same job spec without Slurm or checkpoints, while the
# daemons come up.
ref=$VC_T/ref
if [[ $VC_HOSTS -eq 1 ]]; then
	vc_launch_on "$hostlist" "$ref" --job "$jobspec" --timeout 900
else
	vc_launch 2 "$ref" --job "$jobspec" --timeout 300
fi ||
	fail "reference run failed: $(grep -E 'launch:|VCTRAFFIC' "$ref" | tail -n 4)"
check_accounting "$VC_T/run"
rm -rf "$VC_T/run"
for (( r = 0; r < N; r++ )); do
	d=$(grep -oE "VCTRAFFIC rank=$r .*digest=[0-9a-f]+ result=PASS" "$ref" | grep -oE 'digest=[0-9a-f]+')
	[[ -n $d ]] || fail "reference run: no digest of node$r"
	want[$r]=$d
done
grep -oE 'VCTRAFFIC rank=0 .*seconds=[0-9.]+' "$ref"

all_idle() { [[ $(sinfo -h -N -o %t 2>/dev/null | grep -c '^idle$') -eq ${#nodes[@]} ]]; }
for i in $(seq 1 150); do all_idle && break; sleep 0.2; done
all_idle || fail "not every node (${nodes[*]}) became idle: $(sinfo -N 2>&1)"

job_field() {	# JOB FIELD: one field of scontrol show job
	scontrol -o show job "$1" 2>/dev/null | grep -oE "(^| )$2=[^ ]*" | cut -d= -f2
}

wait_for() {	# SECONDS WHAT COMMAND...: poll COMMAND every 0.25 s (SECONDS times VC_TEST_TIMEOUT_MULT)
	local n=$(( $1 * 4 * ${VC_TEST_TIMEOUT_MULT:-1} )) what=$2 i
	shift 2
	for (( i = 0; i < n; i++ )); do "$@" && return 0; sleep 0.25; done
	fail "waited $(( n / 4 )) s in vain for $what"
}

out=$VC_T/job.out
# run N: what start N of the job wrote to the output file (appended).
run() {
	awk -v n="$1" '/vcluster\.job\[.*\]: job [0-9]+ start [0-9]+ on / { cur = $5 } cur == n' "$out" > "$VC_T/run$1.out"
	echo "$VC_T/run$1.out"
}
traffic_started() { grep -q "vcluster-traffic\\[1\\]: $peers peers" "$out" 2>/dev/null; }
resumed() { grep -q "all $N VMs resumed from epoch $1" "$out" 2>/dev/null; }
# The template's line once SIGUSR1's checkpoint in start N committed or
# failed; in the time-limit case (vacate) it tries three times first.
checkpointed() {
	grep -qE "vcluster.job.*: SIGUSR1 .*: (checkpoint epoch [0-9]+ committed|no checkpoint)" "$(run "$1")"
}
vacated() {
	grep -qE "vcluster.job.*: (SIGUSR1, .*: checkpoint epoch [0-9]+ committed|giving up; the job goes on)" "$(run "$1")"
}
gone() { ! pgrep -f "$VC_T/run/slurm-$job-r$1( |/|\$)" >/dev/null; }
started() { [[ $(job_field "$job" Restarts) -ge $1 ]] && grep -q "job $job start $1 on " "$out"; }
finished() { [[ $(job_field "$job" JobState) =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL)$ ]]; }
no_result_yet() {	# WHEN
	grep -q 'VCTRAFFIC' "$out" && fail "the workload ended before $1; the test proves nothing"
	return 0
}

t0=$(date +%s)
if [[ $VC_HOSTS -eq 1 ]]; then shape=(--nodes=3 --ntasks=3 --ntasks-per-node=1)
else shape=(--nodes=1 --ntasks=2 --ntasks-per-node=2); fi
export VC_JOB=$jobspec VC_CKPT_ROOT=$VC_T/ckpt VC_RUN_ROOT=$VC_T/run VC_CKPT_INTERVAL=0 VC_ARGS="--grace 2"
job=$(sbatch --parsable "${shape[@]}" --time=10 \
	--job-name=vc-test --output="$out" "$VC_ROOT/slurm/vcluster.job") || fail "sbatch failed"
job=${job%%;*}

# Start 0: SIGUSR1 far from the limit: checkpoint 1, the job goes on;
# `scontrol requeue` from outside ends it.
wait_for 120 "the workload of job $job to start" traffic_started
sleep 2
scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 --batch $job failed"
wait_for 60 "checkpoint 1 of job $job" checkpointed 0
no_result_yet "the requeue"
scontrol requeue "$job" || fail "scontrol requeue $job failed"
wait_for 60 "start 0 of job $job to stop" gone 0
# Its last lines are written once the next start began at the latest.
wait_for 60 "job $job to start again" started 1
r=$(run 0)
assert_grep "vcluster.job.*: no checkpoint yet: booting afresh" "$r" 1
assert_grep 'VCCP-CHECKPOINT epoch=1 status=ok' "$r" 1
assert_grep 'vcluster.job.*: SIGUSR1 \([0-9]+ s left\): checkpoint epoch 1 committed' "$r" 1
assert_grep 'vcluster.job.*: SIGTERM: stopping the virtual cluster; a restart restores: latest' "$r" 1
echo "ok start 0: USR1 checkpoint 1, scontrol requeue, stopped ($(( $(date +%s) - t0 )) s)"

# Start 1: restores checkpoint 1.  Then the time limit comes near: cut it
# to 7 minutes, so that less than VC_STOP_WITHIN (420 s) is left, and
# send SIGUSR1 as --signal=B:USR1@300 would (Slurm's own may come too):
# checkpoint 2, shutdown, the job requeues itself.
wait_for 120 "job $job to restore checkpoint 1" resumed 1
sleep 1
scontrol update JobId="$job" TimeLimit=7 || fail "scontrol update TimeLimit failed"
scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 --batch $job failed"
wait_for 90 "checkpoint 2 of job $job" vacated 1
# (An aborted checkpoint is tried again: the epoch that committed may be 3.)
e=$(grep -oE 'vcluster.job.*: SIGUSR1, [0-9]+ s before the time limit: checkpoint epoch [0-9]+ committed' "$out" |
	grep -oE 'epoch [0-9]+' | cut -d' ' -f2)
[[ -n $e ]] || { grep 'vcluster.job' "$out"; fail "start 1: no checkpoint committed after SIGUSR1 near the limit"; }
wait_for 60 "start 1 of job $job to stop" gone 1
no_result_yet "the shutdown"
wait_for 60 "job $job to start a third time" started 2
# Room for the last start to finish: with the 7-minute limit, Slurm's own SIGUSR1 (B:USR1@300) would come
# 2 minutes into it and checkpoint again (3 VMs on emulated hosts take longer than that).
scontrol update JobId="$job" TimeLimit=30 || fail "scontrol update TimeLimit=30 failed"
r=$(run 1)
assert_grep 'vcluster.job.*: restoring from checkpoint latest of ' "$r" 1
assert_grep 'restoring epoch 1 from .*/epoch-0*1$' "$r" 1
assert_grep "VCCP-CHECKPOINT epoch=$e status=ok" "$r" 1
assert_grep 'vcluster.job.*: shutting the virtual cluster down to requeue the job' "$r" 1
assert_grep 'vcluster.job.*: vcluster-launch exited with status 3$' "$r" 1
assert_grep "vcluster.job.*: stopped after a checkpoint .*; requeueing job $job" "$r" 1
echo "ok start 1: restored 1, USR1 near the limit, checkpoint $e, shutdown, self-requeue ($(( $(date +%s) - t0 )) s)"

# Start 2: restores that checkpoint and finishes with the plain run's digests.
wait_for 200 "job $job to finish" finished
grep -E 'vcluster.job|VCTRAFFIC|VCCP-CHECKPOINT|restoring epoch|resumed' "$out"
[[ $(job_field "$job" JobState) == COMPLETED && $(job_field "$job" ExitCode) == 0:0 ]] ||
	fail "job $job ended $(job_field "$job" JobState) $(job_field "$job" ExitCode)"
[[ $(job_field "$job" Restarts) -eq 2 ]] || fail "job $job: $(job_field "$job" Restarts) restarts, expected 2"
r=$(run 2)
assert_grep "restoring epoch $e from .*/epoch-0*$e\$" "$r" 1
assert_grep "all $N VMs resumed from epoch $e" "$r" 1
assert_grep 'VCTRAFFIC rank=' "$out" $N	# one summary per node (VCTRAFFIC-PEER lines are per peer)
for (( i = 0; i < N; i++ )); do
	got=$(grep -oE "VCTRAFFIC rank=$i .*digest=[0-9a-f]+ result=PASS" "$r" | grep -oE 'digest=[0-9a-f]+')
	[[ "$got" == "${want[$i]}" ]] ||
		fail "node$i of the restored job gave '$got', the plain run '${want[$i]}'"
done
assert_grep '^\[node[0-9]\] VCLUSTER-EXIT rank=[0-9] status=0$' "$r" $N
assert_grep 'vcluster.job.*: job ends with exit status 0$' "$r" 1
# Exact accounting of each start (their rank logs are under $VC_T/run, in start order), the restored ones
# against the cut they were restored from; an aborted epoch may lack the lines of a rank.
mapfile -t logs < <(find "$VC_T/run" -name rank.log)
partial=()
for a in $(grep -oE 'VCCP-CHECKPOINT epoch=[0-9]+ status=aborted' "$out" | grep -oE '[0-9]+' | sort -u); do
	partial+=(--partial-cut "$a")
done
# start 0 ends by the requeue's SIGTERM, which may take the ranks down before their exit lines: its cuts
# are checked, as for a killed run
check_accounting --run 1 --killed --min-cuts 1 "${partial[@]}" "${logs[@]}"
check_accounting --run 2 --prior 1 --min-cuts 1 "${partial[@]}" "${logs[@]}"
check_accounting --run 3 --prior "$e" "${partial[@]}" "${logs[@]}"
echo "ok start 2: restored $e, finished, digests equal the plain run ($(( $(date +%s) - t0 )) s)"

[[ -z $(squeue -h 2>/dev/null) ]] || fail "jobs left in the queue: $(squeue)"
slurm_stop
assert_nothing_running
if [[ $VC_HOSTS -eq 1 ]]; then
	left=$(for h in "${nodes[@]}"; do ip netns pids "$h"; done)
	[[ -z $left ]] || { ps -o pid,args -p "$(echo $left | tr ' ' ,)"; fail "processes left on the emulated hosts"; }
fi
echo "ok: Slurm daemons stopped, nothing left running"
