#!/usr/bin/env bash
# timeout: 120
# tests/lib/hosts itself: each emulated host has its own hostname and address and reaches the others by
# name; the test subnet exists only inside the test namespaces; the links are shaped to --rate (a TCP
# stream between two hosts is measured); Open MPI starts one process per host by name through the agent;
# `hosts kill` ends every process on a host; `down` removes everything and is idempotent, and `up` cleans
# what a crashed owner left behind.
. "$(dirname "$0")/../lib/vc-test.sh"
H=$VC_ROOT/tests/lib/hosts
if ! why=$("$H" check); then echo "skip: $why"; exit 77; fi
trap 'vc_cleanup; "$H" down' EXIT
net=10.77.0

opts=$("$H" up 3 --rate 40mbit --owner $$) || fail "hosts up 3 failed"
for k in 1 2 3; do
	[[ $("$H" exec vc-h$k hostname) == vc-h$k ]] || fail "vc-h$k has hostname '$("$H" exec vc-h$k hostname)'"
	"$H" exec vc-h$k ip -4 -br addr show dev eth0 | grep -q "$net.$k/24" || fail "vc-h$k has no $net.$k/24"
	grep -qE "^${net}\.${k}[[:space:]]+vc-h$k # vcluster-test-hosts$" /etc/hosts || fail "no /etc/hosts line for vc-h$k"
done
ip -4 -br addr | grep -q "$net\." && fail "the test subnet leaked into this machine's own network namespace"

# A TCP stream from vc-h1 to vc-h3 by name, 3 s: about 40 Mbit/s, never much more.
cat >"$VC_T/sink.py" <<'PY'
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); n = 0; t0 = time.time()
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
print("%.1f" % (n * 8 / (time.time() - t0) / 1e6))
PY
cat >"$VC_T/src.py" <<'PY'
import socket, sys, time
for i in range(50):
    try:
        c = socket.create_connection((sys.argv[1], 5201), timeout=5); break
    except OSError: time.sleep(0.1)
buf = b"x" * 65536; t0 = time.time()
while time.time() - t0 < 3: c.sendall(buf)
c.close()
PY
"$H" exec vc-h3 python3 "$VC_T/sink.py" >"$VC_T/mbit" &
sink=$!
"$H" exec vc-h1 python3 "$VC_T/src.py" vc-h3 || fail "no TCP stream from vc-h1 to vc-h3 by name"
wait $sink || fail "the receiver on vc-h3 failed"
mbit=$(cat "$VC_T/mbit")
echo "vc-h1 -> vc-h3 at --rate 40mbit: $mbit Mbit/s"
awk -v m="$mbit" 'BEGIN { exit !(m >= 15 && m <= 46) }' || fail "measured $mbit Mbit/s on a 40mbit link"

# Open MPI: one process per host, started by host name, mpirun on vc-h1.
out=$("$H" exec vc-h1 timeout 60 mpirun $opts -np 3 hostname | sort | tr '\n' ' ')
[[ $out == "vc-h1 vc-h2 vc-h3 " ]] || fail "mpirun on the hosts ran on: $out"

# kill: every process on a host ends (a crash).
"$H" exec vc-h2 sleep 300 &
for _ in $(seq 1 50); do [[ -n $(ip netns pids vc-h2) ]] && break; sleep 0.1; done
[[ -n $(ip netns pids vc-h2) ]] || fail "sleep did not start on vc-h2"
"$H" kill vc-h2 || fail "hosts kill vc-h2 failed"
[[ -z $(ip netns pids vc-h2) ]] || fail "processes left on vc-h2 after hosts kill"
wait

# A crashed owner: its hosts are taken over and rebuilt by the next up; then down twice.
"$H" down || fail "hosts down failed"
bash -c 'exit 0' & dead=$!; wait $dead
VC_HOSTS_WAIT=5 "$H" up 2 --owner $dead >/dev/null || fail "hosts up 2 after the first owner finished"
"$H" exec vc-h1 sleep 300 &
"$H" up 2 --owner $$ >/dev/null || fail "up over hosts of a dead owner failed"
[[ -z $(ip netns pids vc-h1) ]] || fail "up left a crashed owner's process on vc-h1"
[[ -e /run/netns/vc-h3 ]] && fail "vc-h3 survived an up 2"
wait
"$H" down && "$H" down || fail "hosts down is not idempotent"
[[ -z $(ip netns list | grep -E '^vc-h') ]] || fail "namespaces left after down: $(ip netns list)"
grep -q 'vcluster-test-hosts' /etc/hosts && fail "/etc/hosts lines left after down"
[[ -e /run/vc-hosts ]] && fail "/run/vc-hosts left after down"
assert_nothing_running
echo "ok: hostnames, addresses, names, isolation, shaping ($mbit Mbit/s at 40mbit), mpirun by host name, kill, down"
