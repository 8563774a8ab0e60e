#!/usr/bin/env python3
"""hbmon.py CONSOCK OUT: read a VM's serial console (QEMU chardev socket),
write "TIME LINE" for every line to OUT (host clock).  The benchmark's guest
prints "hb" every 10 ms; gaps in the merged source+destination timestamps
are the downtime as the guest's outside world sees it."""
import socket
import sys
import time

s = socket.socket(socket.AF_UNIX)
for _ in range(200):
    try:
        s.connect(sys.argv[1])
        break
    except OSError:
        time.sleep(0.05)
out = open(sys.argv[2], "a", buffering=1)
buf = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    t = time.time()
    buf += d
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        out.write("%.4f %s\n" % (t, line.decode(errors="replace").strip()))
