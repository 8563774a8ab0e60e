# Sourced by integration tests after vc-test.sh: ranks on emulated hosts (tests/lib/hosts), one per host.
#   vc_hosts_up N               make vc-h1..vc-hN (or fall back, see below); removed when the test exits
#   vc_launch_on HOSTS OUT ARGS run the launcher with one rank per host of the comma list HOSTS, mpirun on
#                               the first of them; output to OUT; returns its exit status
#   vc_bytes_snap FILE HOSTS    append "HOST RX TX" of each host's link to FILE
#   vc_assert_crossed BEFORE AFTER HOST MIN   HOST's link carried at least MIN bytes (rx+tx) in between
# Without emulated hosts (not root, no namespaces, or VC_NO_HOSTS=1 to compare) VC_HOSTS is 0 after vc_hosts_up, which says why, and
# vc_launch_on runs every rank on this host; tests that need hosts then skip.
VC_HOSTS_TOOL=$VC_ROOT/tests/lib/hosts
VC_HOSTS=0

vc_hosts_cleanup() {
	# Processes of the test may still sit in a host's namespace; vc_cleanup kills them, then the hosts go.
	[[ $VC_HOSTS -eq 1 ]] && "$VC_HOSTS_TOOL" down
	return 0
}
trap 'vc_cleanup; vc_hosts_cleanup' EXIT

vc_hosts_up() {	# N
	local why
	if [[ -n ${VC_NO_HOSTS:-} ]]; then
		echo "note: VC_NO_HOSTS is set; the ranks run on this one host"
		return 0
	fi
	if ! why=$("$VC_HOSTS_TOOL" check); then
		echo "note: $why; the ranks run on this one host"
		return 0
	fi
	"$VC_HOSTS_TOOL" up "$1" --owner $$ >"$VC_T/hosts.opts" || fail "tests/lib/hosts up $1 failed"
	VC_HOSTS=1
	echo "emulated hosts: $(seq -f 'vc-h%g' -s ' ' 1 "$1") (mpirun $(cat "$VC_T/hosts.opts"))"
}

vc_launch_on() {	# HOSTS OUT ARGS...
	local hosts=$1 out=$2 np opts; shift 2
	np=$(tr ',' '\n' <<<"$hosts" | wc -l)
	if [[ $VC_HOSTS -eq 0 ]]; then
		vc_launch "$np" "$out" "$@"
		return
	fi
	opts=$("$VC_HOSTS_TOOL" opts "$hosts") || fail "tests/lib/hosts opts $hosts failed"
	# shellcheck disable=SC2086  # the options are words
	"$VC_HOSTS_TOOL" exec "${hosts%%,*}" mpirun $opts -np "$np" \
		"$VC_BIN/vcluster-launch" --run-dir "$VC_T/run" "$@" >"$out" 2>&1
}

vc_bytes_snap() {	# FILE HOSTS
	local h
	for h in ${2//,/ }; do echo "$h $("$VC_HOSTS_TOOL" bytes "$h")"; done >>"$1"
}

vc_assert_crossed() {	# BEFORE AFTER HOST MIN
	local b a
	b=$(awk -v h="$3" '$1 == h { print $2 + $3 }' "$1")
	a=$(awk -v h="$3" '$1 == h { print $2 + $3 }' "$2")
	[[ -n $b && -n $a ]] || fail "no byte counters of $3's link"
	echo "$3: link carried $((a - b)) bytes (rx+tx), at least $4 needed"
	(( a - b >= $4 )) || fail "$3's link carried only $((a - b)) bytes, less than the $4 its guest exchanged: the ranks did not talk over the emulated links"
}
