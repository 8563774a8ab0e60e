#!/usr/bin/env bash
# timeout: 240
# A guest command that fails on one node makes the launcher exit with that
# status and name the rank.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
vc_launch 2 "$out" --guest-cmd 'if [ "$(hostname)" = node1 ]; then exit 7; fi; echo fine' \
	--timeout 200 --grace 5
rc=$?
[[ $rc -eq 7 ]] || { tail -n 20 "$out"; fail "launcher exited $rc, expected 7"; }
assert_grep 'rank 1 \(node1\): guest command exited with status 7' "$out"
assert_grep '\[node0\] fine' "$out"
check_accounting "$VC_T/run"
assert_nothing_running
echo "ok: failing guest named, exit 7"
