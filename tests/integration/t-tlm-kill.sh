#!/usr/bin/env bash
# timeout: 300
# TLM failures leave the source VM running:
#  - bad arguments: exit 2 with one line;
#  - a QEMU without the 0002 patch (Debian's stock binary): one line naming
#    `make qemu`;
#  - no secret, a secret file others can read, a --ram path that is a
#    symbolic link or someone else's file: refused with one line;
#  - the patched QEMU refuses a dirty-log region path that already exists
#    (a symlink or a file planted at a predictable name) and leaves it alone;
#  - the receiver SIGKILLed mid-transfer: tlm-migrate exits 1 promptly with
#    one clear line, the source VM is running, its dirty log was stopped (a
#    second migration to a fresh receiver then succeeds) and the guest's own
#    memory check passes;
#  - that second migration starts from a QEMU left with postcopy-ram on (a
#    post-copy migration before), and has a stranger connect to the receiver first with
#    a plain hello, a setup chunk of the right RAM size and a page of junk:
#    it is refused and logged, the migration completes with equal checksums
#    and the guest finds no bad page.
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
"$TLM_BIN" --version | grep -qx 'wire mstream 2' || fail "--version lacks the mstream wire version"
env -u TLM_SECRET "$TLM_BIN" --qmp x --to 127.0.0.1:1 >"$VC_T/bad4" 2>&1; [[ $? -eq 2 ]] || fail "no secret: not exit 2"
assert_grep 'no secret: give --secret-file FILE or set TLM_SECRET' "$VC_T/bad4"
"$TLM_BIN" --gen-secret "$VC_T/secret" || fail "--gen-secret failed"
[[ $(stat -c %a "$VC_T/secret") == 600 ]] || fail "--gen-secret: mode $(stat -c %a "$VC_T/secret")"
chmod 644 "$VC_T/secret"
"$TLM_BIN" --qmp x --to 127.0.0.1:1 --secret-file "$VC_T/secret" >"$VC_T/bad5" 2>&1; [[ $? -eq 2 ]] || fail "0644 secret: not exit 2"
assert_grep "secret-file $VC_T/secret: mode 0644: readable by others" "$VC_T/bad5"
echo junk >"$VC_T/victim"
ln -s "$VC_T/victim" "$VC_T/ram-link"
"$TLM_BIN" --recv --listen 127.0.0.1:0 --ram "$VC_T/ram-link" --ram-size 1M >"$VC_T/bad6" 2>&1; [[ $? -eq 1 ]] || fail "--ram symlink: not exit 1"
assert_grep "ram-link: .*symbolic link: refused" "$VC_T/bad6"
[[ $(cat "$VC_T/victim") == junk ]] || fail "--ram followed the symlink"
chmod 644 "$VC_T/victim"
"$TLM_BIN" --recv --listen 127.0.0.1:0 --ram "$VC_T/victim" --ram-size 1M >"$VC_T/bad7" 2>&1; [[ $? -eq 1 ]] || fail "--ram 0644 file: not exit 1"
assert_grep "victim: already there and not this user's private file" "$VC_T/bad7"
[[ $(cat "$VC_T/victim") == junk ]] || fail "--ram truncated a file that was not its own"

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

# A region path planted in advance (symlink or file): refused, untouched.
ln -s "$VC_T/victim" "$VC_T/planted.dirty"
tlm_qmp vm0 x-vc-dirty-log-start "{\"path\": \"$VC_T/planted.dirty\"}" >"$VC_T/plant1" 2>&1 &&
	fail "the patched QEMU opened a planted symlink as its dirty log"
assert_grep 'File exists' "$VC_T/plant1"
tlm_qmp vm0 x-vc-dirty-log-start "{\"path\": \"$VC_T/victim\"}" >"$VC_T/plant2" 2>&1 &&
	fail "the patched QEMU opened a planted file as its dirty log"
assert_grep 'File exists' "$VC_T/plant2"
[[ $(cat "$VC_T/victim") == junk ]] || fail "the planted file was truncated"
ls /dev/shm/tlm-dirty-* 2>/dev/null && fail "a dirty-log file in /dev/shm before any migration"

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

# The source is still good: migrate it for real, with a stranger first.
cat >"$VC_T/stranger.py" <<'PY'
import socket, struct, sys, zlib
try:
    from crc32c import crc32c  # not in Debian; computed by hand below
except ImportError:
    def crc32c(b, crc=0):
        crc ^= 0xffffffff
        for x in b:
            crc ^= x
            for _ in range(8):
                crc = (crc >> 1) ^ (0x82f63b78 & -(crc & 1))
        return crc ^ 0xffffffff
port, ram = int(sys.argv[1]), int(sys.argv[2])
def msg(version, size, kind, body):
    b = struct.pack(">IHHH", 0x56434d53, version, size, kind) + body
    b = b.ljust(size - 4, b"\0")
    return b + struct.pack(">I", crc32c(b))
def chunk(seq, typ, payload):
    h = struct.pack(">IHHHHIQQI", 0x56434d53, 1, 40, 3, 0, typ, 0, seq, len(payload))
    h += struct.pack(">I", crc32c(h))
    return h + payload + struct.pack(">I", crc32c(h + payload))
s = socket.create_connection(("127.0.0.1", port), timeout=10)
hello = msg(1, 40, 1, struct.pack(">HHHQ", 0, 4, 0, 0x1234))
setup = struct.pack(">IIIIQ", 2, 1, 4096, 0, ram).ljust(96, b"\0")
pages = struct.pack(">IIQQ", 0, 1, 1 << 62, 0) + struct.pack(">I", 5) + b"\xaa" * 4096
s.sendall(hello + chunk(0, 0x544c0001, setup) + chunk(1, 0x544c0002, pages))
got = b""
while True:
    try:
        d = s.recv(4096)
    except OSError:
        break
    if not d:
        break
    got += d
print("stranger: got %d bytes back: %s" % (len(got), got[24+40:24+40+76].split(b"\0")[0].decode(errors="replace")))
PY
stranger() { python3 "$VC_T/stranger.py" "$1" $((mib << 20)) >"$VC_T/stranger.out" 2>&1; }
# As if its last migration had been a post-copy one (issue 14): the engine
# must turn postcopy-ram off as it turns x-ignore-shared on.
tlm_qmp vm0 migrate-set-capabilities '{"capabilities": [{"capability": "x-ignore-shared", "state": false}, {"capability": "postcopy-ram", "state": true}]}' >/dev/null ||
	fail "cannot set postcopy-ram on the source"
TLM_HOP_HOOK=stranger tlm_hop vm0 vm1 $mib 4 $((port + 1)) --quiet ||
	{ cat "$VC_T/stranger.out" "$VC_T/vm1.send" "$VC_T/vm1.recv"; fail "migration after the failure failed"; }
cat "$VC_T/stranger.out" "$VC_T/vm1.send" "$VC_T/vm1.recv"
assert_grep 'mstream: connection from 127.0.0.1:[0-9]* dropped: version 1, expected 2' "$VC_T/vm1.recv"
assert_grep 'version 1, expected 2' "$VC_T/stranger.out"
[[ $(tlm_kv crc32c "$VC_T/vm1.send") == $(tlm_kv crc32c "$VC_T/vm1.recv") ]] || fail "checksums differ"
ls /dev/shm/tlm-dirty-* 2>/dev/null && fail "a dirty-log file left in /dev/shm"
tlm_vm_stop vm0
sleep 2
tlm_vm_type vm1 stop
tlm_wait_serial VCLUSTER-EXIT vm1 60 || fail "the guest did not finish"
assert_no_grep 'holds (pass|index)' <(cat "$VC_T"/vm*.serial)
assert_grep 'VCDIRTY mib=128 .* stale=0 bad_index=0 result=PASS' "$VC_T/vm1.serial"
tlm_vm_stop vm1
echo "ok: bad input refused, planted paths refused, stock QEMU named, receiver death reported in ${took}s with the source running, a stranger dropped"
