#!/usr/bin/env bash
# timeout: 300
# serial: it asserts that status answers at once while clients dribble; other tests' load would make that a test of the load
# Control clients cannot stall rank 0: clients that dribble one byte a
# second are dropped after their 2 s deadline while vcluster-ctl status
# from another client still answers at once and frames keep moving; a client of
# another uid is refused by the SO_PEERCRED check (the socket is opened up
# with chmod so that the file mode is not what refuses it).
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
vc_launch 2 "$out" --guest-cmd 'ping -q node0 >/dev/null & ping -q node1 >/dev/null & sleep 600' \
	--timeout 250 --grace 2 &
launcher=$!
wait_for VCLUSTER-READY "$out" 2
sleep 3
sock=$VC_T/run/ctl.sock
[[ -S $sock ]] || fail "no control socket"

frames() {	# rank 0's frames_to_vm, from a fresh status
	ctl --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["ranks"][0]["fabric"]["frames_to_vm"])'
}

# The dribblers: 8 clients at once, one byte a second each, never a
# newline (a server taking clients one at a time, even with a deadline
# each, would keep status waiting 16 s); prints how long the launcher kept
# the connections open.
python3 - "$sock" > "$VC_T/dribble" 2>&1 <<'PY' &
import select, socket, sys, time
req = b'{"vcluster-ctl": 1, "command": "status"}'
socks = []
for _ in range(8):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    socks.append(s)
t0 = time.monotonic()
closed = {}
for b in req:
    for s in socks:
        if s in closed:
            continue
        try:
            s.send(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed[s] = time.monotonic() - t0
    end = time.monotonic() + 1.0
    while time.monotonic() < end and len(closed) < len(socks):
        live = [s for s in socks if s not in closed]
        r, _, _ = select.select(live, [], [], max(0, end - time.monotonic()))
        for s in r:
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b''
            if data == b'':
                closed[s] = time.monotonic() - t0
    if len(closed) == len(socks):
        break
print("open_s=%.2f" % max(closed.values()) if len(closed) == len(socks) else "open_s=%.2f" % (time.monotonic() - t0))
PY
dribbler=$!
sleep 0.5
f0=$(frames) || fail "status failed while a client dribbles"
t0=$(date +%s.%N)
ctl status > "$VC_T/status.txt" || fail "vcluster-ctl status failed while a client dribbles"
t1=$(date +%s.%N)
sleep 1
f1=$(frames) || fail "status failed while a client dribbles"
elapsed=$(python3 -c "print('%.2f' % ($t1 - $t0))")
python3 -c "import sys; sys.exit(0 if $elapsed < 3.0 else 1)" ||
	fail "vcluster-ctl status took ${elapsed} s while 8 other clients dribbled"
[[ $f1 -gt $f0 ]] || fail "no frame reached VM 0 while a client dribbled ($f0 -> $f1)"
wait $dribbler
open_s=$(sed -n 's/^open_s=//p' "$VC_T/dribble")
[[ -n $open_s ]] || fail "dribbler: $(cat "$VC_T/dribble")"
python3 -c "import sys; sys.exit(0 if 1.5 <= $open_s < 4.5 else 1)" ||
	fail "the dribbling clients were kept ${open_s} s (deadline 2 s)"

# Another uid: the socket and its directories are opened up so that only
# the peer-credential check can refuse it.
chmod o+x "$VC_T" "$VC_T/run"
chmod 666 "$sock"
reply=$(cd / && setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
try:
    s.sendall(b"{\"vcluster-ctl\": 1, \"command\": \"status\"}\n")
except (BrokenPipeError, ConnectionResetError):
    pass	# refused at once: the reason is already in our buffer
s.settimeout(5)
print(s.recv(4096).decode(errors="replace").strip())
' "$sock" 2>&1)
chmod 600 "$sock"
chmod o-x "$VC_T" "$VC_T/run"
[[ $reply == *"permission denied"* ]] || fail "a client of uid nobody got: $reply"
assert_grep 'control client of uid 65534 refused' "$VC_T/run/rank0/rank.log"
ctl status > /dev/null || fail "status after the refusal failed"

ctl shutdown | grep -q 'shutting down' || fail "shutdown not accepted"
wait $launcher; rc=$?
[[ $rc -eq 3 ]] || { tail -n 20 "$out"; fail "after vcluster-ctl shutdown: exit $rc, expected 3"; }
# The guests ping each other until the shutdown: frames sent to a VM that has already powered off are
# counted as gone, and balance like every other frame.
check_accounting "$VC_T/run"
assert_nothing_running
echo "ok: status in ${elapsed} s beside 8 dribbling clients (dropped after ${open_s} s), frames $f0 -> $f1, uid nobody refused"
