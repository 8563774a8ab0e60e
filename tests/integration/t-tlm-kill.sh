#!/usr/bin/env bash
# timeout: 300
# TLM failures leave the source VM running:
#  - bad arguments: exit 2 with one line;
#  - a QEMU without the 0002 patch (Debian's stock binary): one line naming
#    `make qemu`;
#  - the receiver SIGKILLed mid-transfer: tlm-migrate exits 1 promptly with
#    one clear line, the source VM is running, its dirty log was stopped (a
#    second migration to a fresh receiver then succeeds) and the guest's own
#    memory check passes.
. "$(dirname "$0")/../lib/vc-test.sh"
. "$VC_ROOT/tlm-migrate/tools/tlm-vm.sh"
TLM_DIR=$VC_T
trap 'rm -f /dev/shm/tlm-$(basename "$VC_T")-*; vc_cleanup' EXIT

make -s -C "$VC_ROOT" qemu >"$VC_T/make-qemu.log" 2>&1 || { tail "$VC_T/make-qemu.log"; fail "make qemu failed"; }

# Bad input.
"$TLM_BIN" --to 127.0.0.1:1 >"$VC_T/bad1" 2>&1; [[ $? -eq 2 ]] || fail "missing --qmp: not exit 2"
assert_grep 'required' "$VC_T/bad1"
"$TLM_BIN" --qmp x --to 'nohost' >"$VC_T/bad2" 2>&1; [[ $? -eq 2 ]] || fail "bad --to: not exit 2"
assert_grep 'tlm-migrate: --to: entry 1' "$VC_T/bad2"
"$TLM_BIN" --qmp x --to 127.0.0.1:1 --streams 0 >"$VC_T/bad3" 2>&1; [[ $? -eq 2 ]] || fail "--streams 0: not exit 2"
assert_grep 'bad value "0" for --streams' "$VC_T/bad3"
"$TLM_BIN" --help | grep -q -- '--streams N' || fail "--help does not document --streams"

# Stock QEMU: one line pointing to make qemu.
if [[ -x /usr/bin/qemu-system-x86_64 ]]; then
	/usr/bin/qemu-system-x86_64 -machine q35,accel=tcg -nodefaults -display none -S \
		-qmp "unix:$VC_T/stock.qmp,server=on,wait=off" >/dev/null 2>&1 &
	"$TLM_BIN" --qmp "$VC_T/stock.qmp" --to 127.0.0.1:1 >"$VC_T/stock.out" 2>&1; rc=$?
	kill %1; wait %1 2>/dev/null
	cat "$VC_T/stock.out"
	[[ $rc -eq 1 ]] || fail "stock QEMU: exit $rc"
	assert_grep 'no x-vc-dirty-log-start.*make qemu' "$VC_T/stock.out"
fi

# The receiver killed mid-transfer.
mib=256
echo 'vc-dirtier --mib 128 --seconds 0 & p=$!; read x; kill $p; wait $p' >"$VC_T/guest.cmd"
tlm_vm_start vm0 $mib "$(cat "$VC_T/guest.cmd")" || fail "cannot start the source QEMU"
tlm_wait_serial VCDIRTY-START vm0 180 || { tail "$VC_T/vm0.serial"; fail "the guest's dirtier did not start"; }
port=$(( 20000 + RANDOM % 20000 ))
ram=/dev/shm/tlm-$(basename "$VC_T")-vm1.ram
"$TLM_BIN" --recv --listen "127.0.0.1:$port" --streams 4 --ram "$ram" --ram-size ${mib}M \
	>"$VC_T/recv1" 2>&1 &
rpid=$!
"$TLM_BIN" --qmp "$VC_T/vm0.qmp" --to "127.0.0.1:$port" --streams 4 >"$VC_T/send1" 2>&1 &
spid=$!
for _ in $(seq 1 200); do grep -q 'sent .*[1-9][0-9.]* MiB' "$VC_T/send1" && break; sleep 0.1; done
grep -q 'chk' "$VC_T/send1" || { cat "$VC_T/send1"; fail "the transfer did not start"; }
kill -KILL $rpid
start=$(date +%s)
wait $spid; rc=$?
took=$(( $(date +%s) - start ))
cat "$VC_T/send1"
[[ $rc -eq 1 ]] || fail "tlm-migrate exited $rc after the receiver died"
(( took <= 35 )) || fail "tlm-migrate took ${took}s to notice the receiver's death"
assert_grep '^tlm-migrate: lost the destination: .*; the source VM keeps running$' "$VC_T/send1"
assert_grep 'TLM-SUMMARY result=fail' "$VC_T/send1"
tlm_qmp vm0 query-status | grep -q '"running": true' || fail "the source VM is not running"

# The source is still good: migrate it for real.
tlm_hop vm0 vm1 $mib 4 $((port + 1)) --quiet || { cat "$VC_T/vm1.send" "$VC_T/vm1.recv"; fail "migration after the failure failed"; }
cat "$VC_T/vm1.send" "$VC_T/vm1.recv"
[[ $(tlm_kv crc32c "$VC_T/vm1.send") == $(tlm_kv crc32c "$VC_T/vm1.recv") ]] || fail "checksums differ"
tlm_vm_stop vm0
sleep 2
tlm_vm_type vm1 stop
tlm_wait_serial VCLUSTER-EXIT vm1 60 || fail "the guest did not finish"
assert_no_grep 'holds (pass|index)' <(cat "$VC_T"/vm*.serial)
assert_grep 'VCDIRTY mib=128 .* stale=0 bad_index=0 result=PASS' "$VC_T/vm1.serial"
tlm_vm_stop vm1
echo "ok: bad input refused, stock QEMU named, receiver death reported in ${took}s with the source running"
