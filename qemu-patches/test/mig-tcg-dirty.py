#!/usr/bin/env python3
"""0001 experiment: does a TCG migration lose guest writes?

The guest (vcwrite) keeps rewriting a small buffer (512 KiB by default, so
its pages stay in QEMU's TCG TLB).  The source migrates it to a second QEMU
over a unix socket with a tiny downtime limit and bandwidth, so that it
iterates (dirty syncs with the guest running) for a while, then lets it
converge.  The destination guest then checks its buffer: a page that went
back in time is printed as "VCWRITE CORRUPT".  Stock QEMU 7.2 loses writes
(the sync fast path clears dirty bits without resetting the TLB, so the
migration converges early on a stale buffer); with 0001 it does not.

usage: mig-tcg-dirty.py SRC_QEMU DST_QEMU WORKDIR KERNEL INITRD
prints one result line; exit status 0 = no corruption, 1 = corruption,
2 = the experiment itself failed."""
import os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP

src_bin, dst_bin, d, kernel, initrd = sys.argv[1:6]
kb = os.environ.get('VCWKB', '512')
os.makedirs(d, exist_ok=True)
for f in os.listdir(d):
    os.unlink(os.path.join(d, f))
common = ['-machine', 'q35,accel=tcg', '-m', '256M', '-display', 'none',
          '-no-reboot', '-L', '/usr/share/qemu', '-kernel', kernel, '-initrd', initrd,
          '-append', 'console=ttyS0 quiet panic=-1 vcwkb=' + kb]
procs = []
try:
    procs.append(subprocess.Popen([dst_bin] + common + [
        '-serial', 'file:%s/dst.log' % d, '-qmp', 'unix:%s/dst.qmp,server=on,wait=off' % d,
        '-incoming', 'unix:%s/mig.sock' % d], stderr=open(d + '/dst.err', 'w')))
    procs.append(subprocess.Popen([src_bin] + common + [
        '-serial', 'file:%s/src.log' % d, '-qmp', 'unix:%s/src.qmp,server=on,wait=off' % d],
        stderr=open(d + '/src.err', 'w')))
    qs = QMP(d + '/src.qmp')
    QMP(d + '/dst.qmp')
    t0 = time.time()
    while 'round=' not in open(d + '/src.log').read():
        if time.time() - t0 > 180:
            print('guest did not start (see %s)' % d)
            sys.exit(2)
        time.sleep(0.5)
    time.sleep(3)
    # Iterate for a while (several dirty syncs with the guest running),
    # then let it converge.
    qs.cmd('migrate-set-parameters', **{'downtime-limit': 1, 'max-bandwidth': 32 << 20})
    qs.cmd('migrate', uri='unix:%s/mig.sock' % d)
    time.sleep(12)
    qs.cmd('migrate-set-parameters', **{'downtime-limit': 10000, 'max-bandwidth': 4 << 30})
    while True:
        st = qs.cmd('query-migrate')
        if st.get('status') in ('completed', 'failed', 'cancelled'):
            break
        time.sleep(0.2)
    if st['status'] != 'completed':
        print('migration %s' % st['status'])
        sys.exit(2)
    time.sleep(8)
    log = open(d + '/dst.log').read().splitlines()
    corrupt = [l for l in log if 'CORRUPT' in l]
    last = [l for l in log if l.startswith('VCWRITE')][-1:]
    print('%s -> %s: %d dirty syncs, destination guest: %d CORRUPT lines, last "%s"' % (
        src_bin, dst_bin, st.get('ram', {}).get('dirty-sync-count', 0), len(corrupt),
        last[0] if last else 'no output'))
    for l in corrupt[:3]:
        print('    ' + l)
    sys.exit(1 if corrupt or not last else 0)
finally:
    for p in procs:
        p.kill()
        p.wait()
