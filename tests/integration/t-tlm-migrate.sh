#!/usr/bin/env bash
# timeout: 420
# TLM live migration of a 256 MiB test guest whose vc-dirtier rewrites
# 128 MiB flat out: a chain of hops (default 8: streams 1, 4, 1, 4, ...), each
# from the current VM into a new destination QEMU.  Each hop: both sides
# succeed, the CRC32C of guest RAM at the source after the stop equals the
# destination's before it resumes, the destination runs.  At the end the
# guest's own check (every page holds its index and the latest pass, before
# and after each write) reports no stale page.  TLM_TEST_HOPS="1 4 ..."
# changes the chain (the race of qemu-patches 0001 shows within one or two
# hops at this dirty rate when it is there).
. "$(dirname "$0")/../lib/vc-test.sh"
. "$VC_ROOT/tlm-migrate/tools/tlm-vm.sh"
TLM_DIR=$VC_T
trap 'rm -f /dev/shm/tlm-$(basename "$VC_T")-*; vc_cleanup' EXIT

make -s -C "$VC_ROOT" qemu >"$VC_T/make-qemu.log" 2>&1 || { tail "$VC_T/make-qemu.log"; fail "make qemu failed"; }
[[ -x "$TLM_BIN" ]] || fail "$TLM_BIN not built"

hops=(${TLM_TEST_HOPS:-1 4 1 4 1 4 1 4})
mib=256
echo 'vc-dirtier --mib 128 --seconds 0 & p=$!; read x; kill $p; wait $p' >"$VC_T/guest.cmd"
tlm_vm_start vm0 $mib "$(cat "$VC_T/guest.cmd")" || fail "cannot start the source QEMU"
tlm_wait_serial VCDIRTY-START vm0 180 || { tail "$VC_T/vm0.serial"; fail "the guest's dirtier did not start"; }
sleep 2
port=$(( 20000 + RANDOM % 20000 ))
for i in "${!hops[@]}"; do
	src=vm$i dst=vm$((i + 1)) n=${hops[$i]}
	tlm_hop $src $dst $mib "$n" $((port + i)) --quiet; rc=$?
	cat "$VC_T/$dst.send" "$VC_T/$dst.recv"
	[[ $rc -eq 0 ]] || fail "hop $((i + 1)) ($n streams): tlm-migrate exited $rc"
	[[ $(cat "$VC_T/$dst.recv.rc") -eq 0 ]] || fail "hop $((i + 1)): the receiver failed"
	scrc=$(tlm_kv crc32c "$VC_T/$dst.send") dcrc=$(tlm_kv crc32c "$VC_T/$dst.recv")
	[[ -n "$scrc" && "$scrc" == "$dcrc" ]] ||
		fail "hop $((i + 1)): guest RAM checksum $scrc at the source, $dcrc at the destination"
	[[ $(tlm_kv streams "$VC_T/$dst.send") -eq $n ]] || fail "hop $((i + 1)): wrong stream count"
	tlm_qmp $dst query-status | grep -q '"running": true' || fail "hop $((i + 1)): destination not running"
	tlm_qmp $src query-status | grep -q postmigrate || fail "hop $((i + 1)): source not in postmigrate"
	tlm_vm_stop $src
	rm -f "/dev/shm/tlm-$(basename "$VC_T")-$src.ram"
	echo "hop $((i + 1)): $n stream(s) ok, crc32c $scrc, downtime $(tlm_kv downtime_s "$VC_T/$dst.recv") s"
	sleep 1
done
last=vm${#hops[@]}
# A few more passes on the last destination, then end the dirtier.
sleep 3
tlm_vm_type $last stop
tlm_wait_serial 'VCLUSTER-EXIT' $last 60 || { tail "$VC_T/$last.serial"; fail "the guest did not finish"; }
cat "$VC_T"/vm*.serial | grep -E 'holds|VCDIRTY' || true
assert_no_grep 'holds (pass|index)' <(cat "$VC_T"/vm*.serial)
assert_grep 'VCDIRTY mib=128 .* stale=0 bad_index=0 result=PASS' "$VC_T/$last.serial"
assert_grep 'VCLUSTER-EXIT rank=0 status=0' "$VC_T/$last.serial"
tlm_vm_stop $last
echo "ok: ${#hops[@]} TLM hops (streams ${hops[*]}) with the guest dirtying flat out, no stale page"
