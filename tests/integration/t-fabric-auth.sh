#!/usr/bin/env bash
# timeout: 180
# The TCP fabric's peers prove who they are (issue 13): while two ranks run,
# a stranger connects to rank 0's fabric listener three times -- with bytes
# that are no hello, with a well-formed hello claiming rank 1 followed by a
# proof under a wrong secret, and saying nothing at all.  Each connection
# must get one log line naming its address and be closed, and the job must
# go on and end normally.
. "$(dirname "$0")/../lib/vc-test.sh"

out=$VC_T/out
mpirun -np 2 "$VC_BIN/fabric-bench" --fabric tcp "$VC_BIN/vde-endpoint" --mode idle --count 40 \
	> "$out" 2>&1 &
mp=$!
bin=$(readlink -f "$VC_BIN/fabric-bench")
ports=
for _ in $(seq 120); do
	# one listener per rank (Open MPI's own listen on the wildcard
	# address); which is rank 0's the stranger finds out
	ports=$(ss -ltnpH 2>/dev/null | grep '"fabric-bench"' | awk '{print $4}' | grep -vE '^(0\.0\.0\.0|\[::\]|\*):' | sort -u)
	[[ $(echo "$ports" | grep -c .) -ge 2 ]] && break
	sleep 0.5
done
[[ $(echo "$ports" | grep -c .) -ge 2 ]] ||
	{ kill $mp; wait $mp; fail "no fabric listeners found (is the TCP fabric built?)"; }
echo "fabric listeners:" $ports
src=$VC_T/stranger-src
python3 - "$src" $ports <<'PY' || { kill $mp; wait $mp; fail "the stranger was not closed"; }
import os, socket, struct, sys, time
srcfile = sys.argv[1]
addrs = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[2:]]

def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff

def msg(typ, frm, to, size, nonce, mac):
    m = struct.pack(">IHHB3xIII16s32s", 0x56434648, 1, 76, typ, frm, to, size, nonce, mac)
    return m + struct.pack(">I", crc32c(m))

def closed(s, timeout):
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(4096)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False

# 1: not a hello
s = socket.create_connection(addrs[0])
# the address the rank sees the stranger come from (the kernel's choice
# of source on loopback differs between machines)
with open(srcfile, "w") as f:
    f.write(s.getsockname()[0] + "\n")
s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 76)
assert closed(s, 10), "garbage: still open"
# 2: a hello to rank 0 claiming rank 1 (only rank 0's listener answers
# it), then a proof under the wrong secret
answered = 0
for a in addrs:
    s = socket.create_connection(a)
    s.sendall(msg(1, 1, 0, 2, os.urandom(16), bytes(32)))
    s.settimeout(10)
    got = b""
    while len(got) < 152:
        d = s.recv(152 - len(got))
        if not d:
            break
        got += d
    if len(got) < 152:
        continue
    answered += 1
    s.sendall(msg(2, 1, 0, 2, bytes(16), os.urandom(32)))
    assert closed(s, 10), "wrong proof: still open"
assert answered == 1, "%d listeners answered a hello to rank 0" % answered
# 3: silent: closed after the handshake deadline
s = socket.create_connection(addrs[0])
assert closed(s, 30), "silent: still open"
print("stranger closed 3 times")
PY
wait $mp
rc=$?
cat "$out"
host=$(cat "$src" 2>/dev/null)
[[ -n $host ]] || fail "the stranger never connected"
host=${host//./\\.}
[[ $rc -eq 0 ]] || fail "the job did not go on: fabric-bench exited $rc"
assert_grep "connection from $host:[0-9]+: magic 0x[0-9a-f]+, expected 0x56434648; closed" "$out" 1
assert_grep "connection from $host:[0-9]+ \(claiming a rank of this job\): proof of rank 1 does not check .*; closed" "$out" 1
assert_grep "connection from $host:[0-9]+: did not prove who it is within 10 s; closed" "$out" 1
assert_grep 'VDEEP idle rank=[01]' "$out" 2
assert_nothing_running
echo "ok: 3 strangers logged by address and closed, the job went on"
