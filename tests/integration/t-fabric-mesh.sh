#!/usr/bin/env bash
# timeout: 400
# The fabric without VMs, on each channel (TCP, then MPI): three libvdeplug
# endpoints send unicast and broadcast frames to each other while one reads
# slowly.  Every frame must arrive exactly once and in order, and the slow
# reader must have forced backpressure (the fabric stalled reading a
# sender) instead of a drop.
. "$(dirname "$0")/../lib/vc-test.sh"

for fab in tcp mpi; do
	out=$VC_T/out-$fab
	mpirun -np 3 "$VC_BIN/fabric-bench" --fabric $fab "$VC_BIN/vde-endpoint" --mode mesh \
		--count 20000 --size 1400 --slow-rank 1 --slow-us 200 > "$out" 2>&1
	rc=$?
	cat "$out"
	[[ $rc -eq 0 ]] || fail "$fab: fabric-bench exited $rc"
	assert_grep 'VDEEP mesh rank=[0-2] .* errors=0 result=PASS' "$out" 3
	# The endpoints stop reading before the channels shut: what they left is counted (gone, unsent) and balances.
	check_accounting "$out"
	stalls=$(grep -oE 'FABRIC rank=[02] .*stalls=[0-9]+' "$out" | grep -oE '[0-9]+$' | paste -sd+ | bc)
	(( stalls > 0 )) || fail "$fab: the slow reader never caused backpressure (stalls=$stalls): the test proved nothing"
	# No pass may end with work that no descriptor announces (a lost wake-up: it waits out the nap).
	! grep -E 'FABRIC rank=.* unarmed=[1-9]' "$out" || fail "$fab: a pass left work no event announces"
	echo "ok: $fab: 3 endpoints, exactly-once in-order delivery, $stalls backpressure stalls"
done
assert_nothing_running
