#!/usr/bin/env python3
"""vqdump.py HMP_SOCKET: the fabric NIC's virtqueues, host and guest view.

Finds the virtio-net-pci whose netdev is "fabric" (it is not always
/machine/peripheral-anon/device[0]), prints `info virtio-status` and, for
the RX (0) and TX (1) queue, `info virtio-queue-status` (QEMU's view:
last_avail_idx, shadow_avail_idx, used_idx, signalled_used, inuse), then
reads the split ring's indices from guest memory (the guest's view):

  avail.flags avail.idx avail.used_event  (used_event: the used index at
                                           which the guest wants an interrupt)
  used.flags  used.idx  used.avail_event  (avail_event: the avail index at
                                           which QEMU wants a kick)

One line per queue, "VQ q=N ...", sums it up for a CSV.
"""
import re
import socket
import sys
import time


class Hmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(5)
        self.s.connect(path)
        self._read()

    def _read(self):
        buf = b''
        while not buf.endswith(b'(qemu) '):
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            buf += d
        return buf.decode(errors='replace')

    def cmd(self, c):
        self.s.sendall((c + '\n').encode())
        out = self._read()
        # drop the echo of the command and the prompt
        out = re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', out)
        lines = out.replace('\r', '').split('\n')
        lines = [l for l in lines if not l.startswith('(qemu)') and c not in l]
        return '\n'.join(lines).strip()


def field(text, name):
    m = re.search(r'^\s*' + name + r':\s*(\S+)', text, re.M)
    return m.group(1) if m else None


def u16s(h, addr, n):
    out = h.cmd('xp /%dhx 0x%x' % (n, addr))
    vals = re.findall(r'0x([0-9a-f]{4})\b', out.split(':', 1)[1] if ':' in out else out)
    return [int(v, 16) for v in vals[:n]]


def main():
    h = Hmp(sys.argv[1])
    dev = None
    for i in range(6):
        p = '/machine/peripheral-anon/device[%d]' % i
        nd = h.cmd('qom-get %s netdev' % p)
        if 'fabric' in nd:
            dev = p
            break
    if dev is None:
        print('vqdump: no device with netdev=fabric')
        return 1
    vb = dev + '/virtio-backend'
    print('fabric NIC:', dev)
    st = h.cmd('info virtio-status ' + vb)
    print(st)
    for q in (1, 0):
        t = h.cmd('info virtio-queue-status %s %d' % (vb, q))
        print(t)
        num = int(field(t, 'num') or 0)
        avail = int(field(t, 'avail') or '0', 0)
        used = int(field(t, 'used') or '0', 0)
        g = {}
        if num and avail and used:
            a = u16s(h, avail, 2)
            ue = u16s(h, avail + 4 + 2 * num, 1)
            u = u16s(h, used, 2)
            ae = u16s(h, used + 4 + 8 * num, 1)
            if len(a) == 2 and len(u) == 2 and ue and ae:
                g = dict(avail_flags=a[0], avail_idx=a[1], used_event=ue[0],
                         used_flags=u[0], used_idx_mem=u[1], avail_event=ae[0])
        host = dict(inuse=field(t, 'inuse'), last_avail=field(t, 'last_avail_idx'),
                    shadow_avail=field(t, 'shadow_avail_idx'), used_idx=field(t, 'used_idx'),
                    signalled_used=field(t, 'signalled_used'),
                    signalled_valid=field(t, 'signalled_used_valid'))
        print('VQ q=%d %s %s' % (q, ' '.join('%s=%s' % kv for kv in host.items()),
                                  ' '.join('%s=%s' % kv for kv in g.items())))
    print(h.cmd('info network'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
