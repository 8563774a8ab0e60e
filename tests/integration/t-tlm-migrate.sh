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
# hops at this dirty rate when it is there).  A "pc" entry is a hop by
# QEMU's own post-copy (RAM a shared file at both ends, postcopy-ram left on
# at both, as a management layer leaves it): the TLM hop after it failed
# with "Postcopy is not compatible with ignore-shared" before the engine
# turned off what conflicts with x-ignore-shared (issue 14).
. "$(dirname "$0")/../lib/vc-test.sh"
. "$VC_ROOT/tlm-migrate/tools/tlm-vm.sh"
TLM_DIR=$VC_T
trap 'rm -f /dev/shm/tlm-$(basename "$VC_T")-*; vc_cleanup' EXIT

make -s -C "$VC_ROOT" qemu >"$VC_T/make-qemu.log" 2>&1 || { tail "$VC_T/make-qemu.log"; fail "make qemu failed"; }
[[ -x "$TLM_BIN" ]] || fail "$TLM_BIN not built"

hops=(${TLM_TEST_HOPS:-1 4 pc 1 4 1 4 1 4})
mib=256
echo 'vc-dirtier --mib 128 --seconds 0 & p=$!; read x; kill $p; wait $p' >"$VC_T/guest.cmd"
tlm_vm_start vm0 $mib "$(cat "$VC_T/guest.cmd")" || fail "cannot start the source QEMU"
tlm_wait_serial VCDIRTY-START vm0 180 || { tail "$VC_T/vm0.serial"; fail "the guest's dirtier did not start"; }
sleep 2
port=$(( 20000 + RANDOM % 20000 ))

# pc_hop SRC DST PORT: QEMU's post-copy from SRC into a new DST.
pc_hop() {
	local src=$1 dst=$2 p=$3 st= i
	local ram=/dev/shm/tlm-$(basename "$VC_T")-$dst.ram
	tlm_vm_start "$dst" $mib "$(cat "$VC_T/guest.cmd")" "$ram" || fail "cannot start $dst"
	for v in $src $dst; do
		tlm_qmp $v migrate-set-capabilities '{"capabilities": [{"capability": "postcopy-ram", "state": true}]}' >/dev/null ||
			fail "postcopy-ram on $v"
	done
	# Slow enough that pre-copy cannot finish before the switch-over.
	tlm_qmp $src migrate-set-parameters '{"max-bandwidth": 33554432}' >/dev/null
	tlm_qmp $dst migrate-incoming "{\"uri\": \"tcp:127.0.0.1:$p\"}" >/dev/null || fail "migrate-incoming on $dst"
	tlm_qmp $src migrate "{\"uri\": \"tcp:127.0.0.1:$p\"}" >/dev/null || fail "migrate from $src"
	sleep 1
	tlm_qmp $src migrate-start-postcopy >"$VC_T/$dst.pc" 2>&1 ||
		{ cat "$VC_T/$dst.pc"; fail "migrate-start-postcopy refused: not a post-copy hop"; }
	for i in $(seq 1 1200); do
		st=$(tlm_qmp $src query-migrate | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p')
		[[ $st == completed || $st == failed ]] && break
		sleep 0.1
	done
	[[ $st == completed ]] || fail "post-copy $src -> $dst: $st"
	for i in $(seq 1 300); do tlm_qmp $dst query-status | grep -q '"running": true' && break; sleep 0.1; done
	tlm_qmp $dst query-status | grep -q '"running": true' || fail "post-copy: $dst not running"
	tlm_qmp $dst query-migrate-capabilities | python3 -c 'import json, sys
sys.exit(not any(c["capability"] == "postcopy-ram" and c["state"] for c in json.load(sys.stdin)))' ||
		fail "post-copy: postcopy-ram not left on at $dst"
	tlm_vm_stop $src
	rm -f "/dev/shm/tlm-$(basename "$VC_T")-$src.ram"
	echo "hop: post-copy $src -> $dst ok, postcopy-ram left on"
}

for i in "${!hops[@]}"; do
	src=vm$i dst=vm$((i + 1)) n=${hops[$i]}
	if [[ $n == pc ]]; then
		pc_hop $src $dst $((port + i))
		sleep 1
		continue
	fi
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
echo "ok: ${#hops[@]} hops (TLM streams, pc: QEMU post-copy: ${hops[*]}) with the guest dirtying flat out, no stale page"
