#!/usr/bin/env bash
# timeout: 60
# vcluster-ctl believes only a control socket of the user's own: not one in
# a directory others can write, not one served by another uid, not a latest
# link (or its target) that someone else owns.  No VM is started: fake
# launchers (a few lines of Python) answer every request with "FAKE".
. "$(dirname "$0")/../lib/vc-test.sh"
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }

# fake_server DIR [UID]: serve DIR/ctl.sock, listening as UID (default: us).
fake_server() {
	python3 - "$1" "${2:-}" <<'PY' &
import os, socket, sys
d, uid = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
p = os.path.join(d, "ctl.sock")
if os.path.exists(p):
    os.unlink(p)
s.bind(p)
os.chmod(p, 0o777)
if uid:
    os.setgid(int(uid)); os.setuid(int(uid))	# listen() records these credentials
s.listen(4)
while True:
    c, _ = s.accept()
    try:
        c.recv(4096)
        c.sendall(b'{"ok": true, "message": "FAKE"}\n')
    except OSError:
        pass	# a client that refused us hung up
    c.close()
PY
	for i in $(seq 1 200); do [[ -S $1/ctl.sock ]] && break; sleep 0.1; done
	sleep 0.3
}

# A run directory every user can write: someone may have swapped the socket.
open=$VC_T/open
mkdir -m 777 "$open"; chmod 777 "$open"
fake_server "$open"
out=$("$VC_BIN/vcluster-ctl" --run-dir "$open" shutdown 2>&1); rc=$?
[[ $rc -ne 0 && $out != *FAKE* ]] || fail "talked to a socket in a world-writable directory: rc $rc: $out"
[[ $out == *"$open has mode 0777: writable by other users"* ]] || fail "unclear refusal: $out"

# A socket of ours is believed (the check is not simply "refuse").
mine=$VC_T/mine
mkdir -m 700 "$mine"
fake_server "$mine"
out=$("$VC_BIN/vcluster-ctl" --run-dir "$mine" shutdown 2>&1) || fail "refused our own socket: $out"
[[ $out == FAKE ]] || fail "unexpected reply: $out"

if [[ $(id -u) -eq 0 ]]; then
	# A private directory of ours, but the socket is served by uid 65534.
	theirs=$VC_T/theirs
	mkdir -m 700 "$theirs"
	fake_server "$theirs" 65534
	out=$("$VC_BIN/vcluster-ctl" --run-dir "$theirs" shutdown 2>&1); rc=$?
	[[ $rc -ne 0 && $out != *FAKE* ]] || fail "believed a launcher of uid 65534: rc $rc: $out"
	[[ $out == *"is served by uid 65534"* ]] || fail "unclear refusal: $out"

	# latest (in $XDG_RUNTIME_DIR/vcluster) naming another user's directory.
	export XDG_RUNTIME_DIR=$VC_T/xdg
	mkdir -m 700 -p "$XDG_RUNTIME_DIR/vcluster"
	job=$XDG_RUNTIME_DIR/vcluster/job-x
	mkdir -m 700 "$job"
	fake_server "$job"
	chown 65534:65534 "$job"
	ln -s job-x "$XDG_RUNTIME_DIR/vcluster/latest"
	out=$("$VC_BIN/vcluster-ctl" shutdown 2>&1); rc=$?
	[[ $rc -ne 0 && $out != *FAKE* ]] || fail "followed latest to uid 65534's directory: rc $rc: $out"
	[[ $out == *"$job is owned by uid 65534"* ]] || fail "unclear refusal: $out"
	# ... and the link itself owned by someone else.
	chown 0:0 "$job"
	chown -h 65534:65534 "$XDG_RUNTIME_DIR/vcluster/latest"
	out=$("$VC_BIN/vcluster-ctl" shutdown 2>&1); rc=$?
	[[ $rc -ne 0 && $out == *"latest is owned by uid 65534"* ]] || fail "followed a latest of uid 65534: rc $rc: $out"
	# Ours all the way: followed.
	chown -h 0:0 "$XDG_RUNTIME_DIR/vcluster/latest"
	out=$("$VC_BIN/vcluster-ctl" shutdown 2>&1) || fail "refused our own latest: $out"
	[[ $out == FAKE ]] || fail "unexpected reply: $out"
else
	echo "note: the other-uid cases need root (chown, setuid)"
fi
kill $(jobs -p) 2>/dev/null
wait 2>/dev/null
echo "ok: vcluster-ctl believes only private directories and sockets of its own user"
