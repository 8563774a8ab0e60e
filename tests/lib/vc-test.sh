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
# assert_same_peers REF RES N: the N nodes of a restored run (output RES) ended clean and received,
# peer by peer, the same data as the uninterrupted run (REF): their VCTRAFFIC-PEER lines are equal.
assert_same_peers() {
	local ref=$1 res=$2 n=$3
	_peers() { grep -oE 'VCTRAFFIC-PEER rank=.*' "$1" | sort; }
	[[ $(_peers "$ref" | wc -l) -eq $n ]] || fail "the reference run has no VCTRAFFIC-PEER line per node"
	assert_grep "VCTRAFFIC rank=[0-9]+ peers=$((n - 1)) .* udp_lost=0 udp_dup=0 udp_reorder=0 errors=0 .* result=PASS" "$res" "$n"
	if ! diff <(_peers "$ref") <(_peers "$res") > "$VC_T/peers.diff"; then
		cat "$VC_T/peers.diff"
		fail "the restored run received other data than the uninterrupted run (per-peer lines differ)"
	fi
}

wait_for() {
	for i in $(seq 1 $(( ${VC_WAIT_S:-180} * 4 ))); do
		[[ $(grep -cE -- "$1" "$2" 2>/dev/null) -ge ${3:-1} ]] && return 0
		sleep 0.25
	done
	fail "timed out waiting for '$1' in $2"
}

# vcluster-ctl against this test's run directory.
ctl() { "$VC_BIN/vcluster-ctl" --run-dir "$VC_T/run" "$@"; }

# check_accounting [OPTIONS] RUNDIR|FILE...: balance the VC-ACCT lines (vcluster-launch/facct.h) that the ranks
# of one run wrote into their logs (RUNDIR/rank*/rank.log; runs restored into the same directory append, and
# are told apart by the lines' run=), exactly, for every ordered pair of ranks (A, B):
#   every line of B      rx[A] + restored[A] = delivered[A] + queued[A] + discarded[A] + gone[A] + runt[A]
#                        + oversize[A]
#   every cut E          A's tx to B when it queued its marker = B's rx from A when that marker arrived
#                        (frames and bytes), and every rank printed its line of E
#   exit                 A's tx to B - A's unsent to B = B's rx from A (frames and bytes), every rank printed it
#   and discarded, runt, oversize (per peer), vm_runt, vm_oversize (frames the VM wrote) are all 0. Frames that
#   arrived after a VM had gone (gone) and frames left unsent for a VM that had gone when the channels shut
#   (unsent) are balanced like every other frame and printed, not refused: no running guest could receive them.
# Options:
#   --run K         check the K-th run found (1 = the first started); default: the latest
#   --allow F[,F]   these counters may be non-0 (the test forces them): discarded runt oversize vm_runt
#                   vm_oversize
#   --killed        the run was killed (SIGKILL, or a signal mpirun passed on): it has no exit lines, or not
#                   from every rank; its cuts are checked (no lines at all pass, unless --min-cuts asks for some)
#   --partial-cut E cut E may lack some ranks' lines (a fault during it); the ranks present are still checked
#                   line by line, pairs only where both printed
#   --prior E       the run was restored from epoch E of the run found before it: each rank's restored[A]
#                   must equal its queued[A] at its cut line of E there (the receive queue it saved)
#   --min-cuts N    at least N complete cuts
# Prints one summary line; fails naming the rank, peer and numbers.
check_accounting() {
	local allow="" killed=0 partial="" prior_e="" min_cuts=0 nth="" lines runs target prior="" out p
	local -a src=()
	while [[ $# -gt 0 ]]; do
		case $1 in
		--run) nth=$2; shift 2 ;;
		--allow) allow=$2; shift 2 ;;
		--killed) killed=1; shift ;;
		--partial-cut) partial="$partial $2"; shift 2 ;;
		--prior) prior_e=$2; shift 2 ;;
		--min-cuts) min_cuts=$2; shift 2 ;;
		*) if [[ -d $1 ]]; then src+=("$1"/rank*/rank.log); else src+=("$1"); fi; shift ;;
		esac
	done
	[[ ${#src[@]} -gt 0 ]] || fail "check_accounting: no run directory or log given"
	for p in "${src[@]}"; do [[ -r $p ]] || fail "check_accounting: cannot read $p"; done
	lines=$(grep -ho 'VC-ACCT run=.*' "${src[@]}")
	runs=$(grep -o '^VC-ACCT run=[0-9]*' <<<"$lines" | sed 's/.*=//' | sort -un)
	if [[ -z $runs && $killed -eq 1 && $min_cuts -eq 0 ]]; then
		echo "accounting: no VC-ACCT lines: the run was killed before any cut"
		return 0
	fi
	[[ -n $runs ]] || fail "check_accounting: no VC-ACCT lines in ${src[*]}"
	if [[ -n $nth ]]; then
		target=$(sed -n "${nth}p" <<<"$runs")
		[[ -n $target ]] || fail "check_accounting: no run $nth in ${src[*]} (found $(wc -l <<<"$runs"))"
	else
		target=$(tail -n 1 <<<"$runs")
	fi
	if [[ -n $prior_e ]]; then
		prior=$(awk -v t="$target" '$1 == t { print prev } { prev = $1 }' <<<"$runs")
		[[ -n $prior ]] || fail "check_accounting: --prior $prior_e but no run before run $target"
	fi
	out=$({
		[[ -n $prior ]] && grep "^VC-ACCT run=$prior " <<<"$lines" | sed 's/^/PRIOR /'
		grep "^VC-ACCT run=$target " <<<"$lines"
	} | awk -v allow=",$allow," -v killed=$killed -v partial=" $partial " -v prior_e="${prior_e:-0}" \
		-v have_prior=$([[ -n $prior ]] && echo 1 || echo 0) -v min_cuts="$min_cuts" '
	function bad(msg) { print "BAD " msg; nbad++ }
	{
		pre = ($1 == "PRIOR"); delete kv
		for (i = 1; i <= NF; i++) if (split($i, t, "=") == 2) kv[t[1]] = t[2]
		if (!("rank" in kv) || !("when" in kv)) next
		r = kv["rank"]; w = kv["when"]; e = kv["epoch"]
		key = (w == "cut" ? "cut" e : "exit")
		if (pre) {
			if (w == "cut" && ("peer" in kv) && e == prior_e) pq[r, kv["peer"]] = kv["queued"]
			next
		}
		if ("peers" in kv) {
			if (nr == "") nr = kv["peers"] + 1
			else if (nr + 0 != kv["peers"] + 1) bad("rank " r ": peers=" kv["peers"] ", others say " nr - 1)
			if ((key, r) in seen) bad("rank " r ": two " w " lines of epoch " e)
			seen[key, r] = 1; keys[key] = 1
			if (w == "cut") cuts[e] = 1
			for (f in kv) if (f == "vm_runt" || f == "vm_oversize")
				if (kv[f] + 0 != 0 && index(allow, "," f ",") == 0)
					bad("rank " r " (" w " " e "): " f "=" kv[f] " (frames its VM wrote, refused)")
			rest_e[r] = kv["restored_epoch"]
			next
		}
		p = kv["peer"]; lines++
		lhs = kv["rx_frames"] + kv["restored"]
		rhs = kv["delivered"] + kv["queued"] + kv["discarded"] + kv["gone"] + kv["runt"] + kv["oversize"]
		if (!("gone" in kv)) bad("rank " r ": a peer line without gone=")
		if (lhs != rhs)
			bad(sprintf("rank %s (%s %s) from rank %s: rx_frames %s + restored %s = %d but delivered %s + queued %s + discarded %s + gone %s + runt %s + oversize %s = %d", r, w, e, p, kv["rx_frames"], kv["restored"], lhs, kv["delivered"], kv["queued"], kv["discarded"], kv["gone"], kv["runt"], kv["oversize"], rhs))
		if (w == "exit") { ngone += kv["gone"]; nunsent += kv["unsent"] }
		for (f in kv) if (f == "discarded" || f == "runt" || f == "oversize")
			if (kv[f] + 0 != 0 && index(allow, "," f ",") == 0)
				bad("rank " r " (" w " " e ") peer " p ": " f "=" kv[f])
		tx[key, r, p] = kv["tx_frames"] - kv["unsent"]; txb[key, r, p] = kv["tx_bytes"] - kv["unsent_bytes"]
		rx[key, r, p] = kv["rx_frames"] + 0; rxb[key, r, p] = kv["rx_bytes"] + 0
		ctx[key, r, p] = kv["cut_tx_frames"]; ctxb[key, r, p] = kv["cut_tx_bytes"]
		crx[key, r, p] = kv["cut_rx_frames"]; crxb[key, r, p] = kv["cut_rx_bytes"]
		rest[r, p] = kv["restored"]; have[key, r, p] = 1
	}
	END {
		if (nr == "") { print "BAD no VC-ACCT lines"; exit }
		if (!killed && !("exit" in keys)) bad("no exit lines (a killed run needs --killed)")
		ncut = 0; frames = 0
		for (key in keys) {
			if (key == "exit" && killed) continue
			e = substr(key, 4); part = (key != "exit" && index(partial, " " e " "))
			complete = 1
			for (a = 0; a < nr; a++) if (!((key, a) in seen)) {
				complete = 0
				if (!part) bad("rank " a " printed no " (key == "exit" ? "exit line" : "line at cut " e))
			}
			if (key != "exit" && complete) ncut++
			for (a = 0; a < nr; a++) for (b = 0; b < nr; b++) {
				if (a == b || !((key, a, b) in have) || !((key, b, a) in have)) continue
				if (key == "exit") {
					frames += rx[key, b, a]
					if (tx[key, a, b] != rx[key, b, a] || txb[key, a, b] != rxb[key, b, a])
						bad(sprintf("exit: rank %d sent rank %d %s frames (%s bytes) but rank %d received %s (%s bytes)", a, b, tx[key, a, b], txb[key, a, b], b, rx[key, b, a], rxb[key, b, a]))
				} else if (ctx[key, a, b] == "-" || crx[key, b, a] == "-") {
					bad(sprintf("cut %s: no marker snapshot for %d->%d (sent %s, received %s)", e, a, b, ctx[key, a, b], crx[key, b, a]))
				} else if (ctx[key, a, b] + 0 != crx[key, b, a] + 0 || ctxb[key, a, b] + 0 != crxb[key, b, a] + 0) {
					bad(sprintf("cut %s: rank %d had sent rank %d %s frames (%s bytes) at its marker but rank %d had received %s (%s bytes) at that marker", e, a, b, ctx[key, a, b], ctxb[key, a, b], b, crx[key, b, a], crxb[key, b, a]))
				}
			}
		}
		if (ncut < min_cuts) bad("only " ncut " complete cuts, at least " min_cuts " expected")
		nrest = 0
		if (have_prior) for (b = 0; b < nr; b++) {
			if (rest_e[b] + 0 != prior_e + 0) { bad("rank " b ": restored_epoch=" rest_e[b] ", expected " prior_e); continue }
			for (a = 0; a < nr; a++) {
				if (a == b) continue
				if (!((b, a) in pq)) { bad("rank " b ": no line for peer " a " at cut " prior_e " of the prior run"); continue }
				if (pq[b, a] + 0 != rest[b, a] + 0)
					bad(sprintf("rank %d restored %s frames from rank %d, but its cut %s had queued %s", b, rest[b, a], a, prior_e, pq[b, a]))
				nrest += rest[b, a]
			}
		}
		if (killed) printf "OK %d ranks, %d peer lines, %d complete cuts balanced, no exit (killed)", nr, lines, ncut
		else printf "OK %d ranks, %d peer lines, %d complete cuts and exit balanced, %d frames between ranks, %d after a VM had gone, %d unsent at shutdown", nr, lines, ncut, frames, ngone, nunsent
		if (have_prior) printf ", %d restored frames matched cut %s", nrest, prior_e
		printf "\n"
	}')
	if grep -q '^BAD' <<<"$out"; then
		grep '^BAD' <<<"$out" | head -n 10 | sed 's/^BAD /accounting: /'
		fail "frame accounting of run $target (${src[*]}) does not balance"
	fi
	echo "accounting: run $target: ${out#OK }"
}

# accounting_can_fail FIELD [CHECK OPTIONS] RUNDIR: check_accounting is not vacuous: a copy of RUNDIR's logs in
# which one peer line of the latest run counts one frame fewer in FIELD (rx_frames: a frame lost; cut_rx_frames:
# a frame that crossed a cut) must fail it.
accounting_can_fail() {
	local field=$1 dir d=$VC_T/acct-mutant log run; shift
	dir=${!#}
	rm -rf "$d"
	mkdir -p "$d"
	for log in "$dir"/rank*/rank.log; do
		mkdir -p "$d/$(basename "$(dirname "$log")")"
		cp "$log" "$d/$(basename "$(dirname "$log")")/"
	done
	run=$(grep -ho 'VC-ACCT run=[0-9]*' "$d"/rank*/rank.log | sed 's/.*=//' | sort -un | tail -n 1)
	log=$(grep -l "VC-ACCT run=$run .* $field=[1-9]" "$d"/rank*/rank.log | head -n 1)
	[[ -n $log ]] || fail "accounting_can_fail: no line with $field > 0 in $dir"
	awk -v f="$field" -v run="$run" '!done && index($0, "VC-ACCT run=" run " ") && match($0, " " f "=[1-9][0-9]*") {
		n = substr($0, RSTART + length(f) + 2, RLENGTH - length(f) - 2)
		$0 = substr($0, 1, RSTART - 1) " " f "=" (n - 1) substr($0, RSTART + RLENGTH); done = 1 } { print }' \
		"$log" >"$log.new" && mv "$log.new" "$log"
	if (check_accounting "${@:1:$#-1}" "$d") >"$d/check.out" 2>&1; then
		cat "$d/check.out"
		fail "check_accounting passed logs in which $field lost a frame: it cannot fail"
	fi
	echo "accounting: with one frame fewer in $field the check fails, as it must: $(grep -m1 '^accounting:' "$d/check.out")"
}
