#!/usr/bin/env bash
# timeout: 180
# Bad input gets one clear line naming the file or option, and a non-zero
# exit, before any VM starts.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out

vc_launch 2 "$out" --kernel "$VC_T/no-such-vmlinuz"; rc=$?
[[ $rc -eq 2 ]] || fail "missing kernel: exit $rc, expected 2"
assert_grep "kernel $VC_T/no-such-vmlinuz: No such file or directory" "$out" 1

cat > "$VC_T/bad.job" <<'JOB'
# a job with a mistake on line 4
memory = 256M
vcpus = 1
guest-cmd "echo hi"
JOB
vc_launch 2 "$out" --job "$VC_T/bad.job"; rc=$?
[[ $rc -eq 2 ]] || fail "malformed job: exit $rc, expected 2"
assert_grep "$VC_T/bad.job:4: expected 'key = value'" "$out" 1

printf 'memory = 256M\nmemroy = 1G\n' > "$VC_T/typo.job"
vc_launch 2 "$out" --job "$VC_T/typo.job"; rc=$?
[[ $rc -eq 2 ]] || fail "unknown key: exit $rc"
assert_grep "typo.job:2: unknown setting 'memroy'" "$out" 1

vc_launch 2 "$out" --job "$VC_T/absent.job"; rc=$?
[[ $rc -eq 2 ]] || fail "missing job file: exit $rc"
assert_grep "absent.job: No such file or directory" "$out" 1

vc_launch 2 "$out" --memory 10; rc=$?
[[ $rc -eq 2 ]] || fail "bad memory: exit $rc"
assert_grep "\-\-memory: '10' is not a size" "$out" 1

vc_launch 2 "$out" --bogus 1; rc=$?
[[ $rc -eq 2 ]] || fail "unknown option: exit $rc"
assert_grep "unknown option '--bogus'" "$out" 1

vc_launch 2 "$out" --disk "$VC_T/missing.qcow2"; rc=$?
[[ $rc -eq 2 ]] || fail "missing disk: exit $rc"
assert_grep "disk image $VC_T/missing.qcow2: No such file or directory" "$out" 1

vc_launch 2 "$out" --qemu "$VC_T/no-qemu"; rc=$?
[[ $rc -eq 2 ]] || fail "missing QEMU: exit $rc"
assert_grep "QEMU binary $VC_T/no-qemu" "$out" 1

# A QEMU that refuses to start: the error carries QEMU's own complaint.
vc_launch 2 "$out" --memory 256M --append 'x' --qemu /bin/false; rc=$?
[[ $rc -eq 2 ]] || fail "QEMU that fails: exit $rc"
assert_grep "rank 0: QEMU did not start|rank 0: .*qemu.log" "$out"

# A QEMU that starts but never answers on QMP: the rank gives up at its
# deadline (3 s here, 30 s by default) with a line naming the rank and
# QEMU's log, and stops it.
cat > "$VC_T/mute-qemu" <<'SH'
#!/usr/bin/env bash
[[ $1 == -version ]] && { echo "QEMU emulator version 7.2.0"; exit 0; }
exec -a "$0" sleep 600
SH
chmod +x "$VC_T/mute-qemu"
start=$SECONDS
VC_TEST_QMP_DEADLINE_MS=3000 vc_launch 2 "$out" --memory 256M --qemu "$VC_T/mute-qemu"; rc=$?
[[ $rc -eq 2 ]] || fail "QEMU that never answers: exit $rc"
assert_grep "rank 0: QEMU did not answer on QMP within 3 s \(see .*/rank0/qemu.log" "$out"
(( SECONDS - start < 60 )) || fail "QEMU that never answers: the job took $((SECONDS - start)) s to stop"
assert_nothing_running

help=$("$VC_BIN/vcluster-launch" --help)
for o in --job --guest-cmd --memory --accel --checkpoint-dir --restore --timeout; do
	grep -q -- "$o " <<< "$help" || fail "--help does not document $o"
done
# An option of the help text that needs another is refused with a reason.
vc_launch 2 "$out" --restore latest; rc=$?
[[ $rc -eq 2 ]] || fail "--restore without --checkpoint-dir: exit $rc"
assert_grep "\-\-restore needs --checkpoint-dir" "$out" 1
# --vms: not more VMs than ranks; spare ranks and checkpoints do not mix (yet).
vc_launch 2 "$out" --vms 3; rc=$?
[[ $rc -eq 2 ]] || fail "--vms 3 on 2 ranks: exit $rc"
assert_grep "\-\-vms 3: only 2 ranks" "$out" 1
vc_launch 2 "$out" --vms 1 --checkpoint-dir "$VC_T/ck"; rc=$?
[[ $rc -eq 2 ]] || fail "--vms 1 with --checkpoint-dir: exit $rc"
assert_grep "\-\-vms 1 leaves 1 spare ranks; checkpoints .* do not work with spare ranks" "$out" 1
# No run here gets as far as the fabric: there are no frames, and no VC-ACCT lines, to account for.
[[ -z $(grep -rh 'VC-ACCT' "$VC_T/run" 2>/dev/null) ]] || fail "a refused run printed frame accounting"
assert_nothing_running
echo "ok: every bad input refused with a clear message"
