"""0002 experiment: a toy external engine on top of x-vc-dirty-log-*.

Runs the patched QEMU (TCG) with guest RAM in memory-backend-memfd,share=on,
and a guest that alternates busy (writing a buffer) and idle phases.  The
engine copies all RAM once, then per epoch syncs the dirty log and copies
only the dirty pages into a file; at the end it stops the VM, syncs one last
time, and checks that its copy equals guest RAM byte for byte.  Then the
device state goes with a normal migration (x-ignore-shared) to a second
QEMU whose RAM is the engine's file, and the guest there checks itself.
usage: dirtylog.py QEMU WORKDIR KERNEL INITRD
exit status 0 when every check passed; an assertion otherwise."""
import mmap, os, struct, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP

qemu, d, kernel, initrd = sys.argv[1:5]
os.makedirs(d, exist_ok=True)
for f in os.listdir(d):
    os.unlink(os.path.join(d, f))
tag = '%d' % os.getpid()
region_path = '/dev/shm/vc-qemu-test-%s.dirty' % tag
copy_path = '/dev/shm/vc-qemu-test-%s.ram' % tag
MB = 256
common = ['-machine', 'q35,accel=tcg,memory-backend=mem', '-m', '%dM' % MB,
          '-display', 'none', '-no-reboot', '-L', '/usr/share/qemu',
          '-kernel', kernel, '-initrd', initrd,
          '-append', 'console=ttyS0 quiet panic=-1 vcwkb=8192 vcwbusy=3 vcwidle=3']
src = subprocess.Popen([qemu] + common + [
    '-object', 'memory-backend-memfd,id=mem,size=%dM,share=on' % MB,
    '-serial', 'file:%s/src.log' % d, '-qmp', 'unix:%s/src.qmp,server=on,wait=off' % d],
    stderr=open(d + '/src.err', 'w'))
dst = None

HDR = struct.Struct('<IIIIIIQQQIIQ')       # 64 bytes
DESC = struct.Struct('<64sQQQQQQIIQ')      # 128 bytes

def read_region():
    with open(region_path, 'rb') as f:
        data = f.read()
    h = HDR.unpack_from(data, 0)
    magic, version, hlen, nblocks, dsize, psize, rsize, epoch, dirty, flags = h[:10]
    assert magic == 0x4c444356 and data[:4] == b'VCDL', 'bad magic %#x' % magic
    assert version == 1 and hlen == 64 and dsize == 128 and psize == 4096, h
    assert rsize == len(data), (rsize, len(data))
    blocks = []
    for i in range(nblocks):
        f = DESC.unpack_from(data, hlen + i * dsize)
        blocks.append(dict(name=f[0].rstrip(b'\0').decode(), ram_offset=f[1],
                           length=f[2], nr_pages=f[3], bitmap_offset=f[4],
                           bitmap_size=f[5], dirty_pages=f[6], flags=f[7],
                           host_page_size=f[8], data=data))
    return dict(epoch=epoch, dirty=dirty, flags=flags, blocks=blocks)

def dirty_pages(b):
    bm = b['data'][b['bitmap_offset']:b['bitmap_offset'] + b['bitmap_size']]
    pages = []
    for w in range(len(bm) // 8):
        word = struct.unpack_from('<Q', bm, w * 8)[0]
        while word:
            low = word & -word
            pages.append(w * 64 + low.bit_length() - 1)
            word ^= low
    return pages

def last_guest_line():
    lines = [l for l in open(d + '/src.log').read().splitlines() if l.startswith('VCWRITE')]
    return lines[-1] if lines else ''

try:
    q = QMP(d + '/src.qmp')
    t0 = time.time()
    while 'round=' not in open(d + '/src.log').read():
        if time.time() - t0 > 120:
            raise SystemExit('guest did not start')
        time.sleep(0.5)

    info = q.cmd('x-vc-dirty-log-start', path=region_path)
    print('start ->', {k: v for k, v in info.items() if k != 'blocks'})
    for b in info['blocks']:
        print('   block', b)
    blk = info['blocks'][0]
    assert blk['name'] == 'mem' and blk['shared'] and blk['length'] == MB << 20
    try:
        q.cmd('x-vc-dirty-log-start', path=region_path)
        raise SystemExit('second start accepted')
    except RuntimeError as e:
        print('second start refused:', e)

    ram = mmap.mmap(os.open('/proc/%d/fd/%d' % (src.pid, blk['fd']), os.O_RDONLY),
                    blk['length'], prot=mmap.PROT_READ)
    cfd = os.open(copy_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.ftruncate(cfd, blk['length'])
    copy = mmap.mmap(cfd, blk['length'])
    copy[:] = ram[:]                                  # epoch 0: everything
    copied = blk['length'] // 4096

    for n in range(12):
        time.sleep(1)
        info = q.cmd('x-vc-dirty-log-sync')
        reg = read_region()
        rb = reg['blocks'][0]
        pages = dirty_pages(rb)
        assert reg['epoch'] == info['epoch'] and reg['dirty'] == info['dirty-pages']
        assert len(pages) == rb['dirty_pages'] == info['blocks'][0]['dirty-pages']
        for p in pages:
            copy[p * 4096:(p + 1) * 4096] = ram[p * 4096:(p + 1) * 4096]
        copied += len(pages)
        print('epoch %2d: %6d dirty pages (%5.1f MiB)   guest: %s' % (
            info['epoch'], info['dirty-pages'], info['dirty-pages'] / 256.0,
            last_guest_line()))

    def wait_busy():
        while 'idle' in last_guest_line() or 'round=' not in last_guest_line():
            time.sleep(0.2)
        time.sleep(0.5)

    # merge mode: bits accumulate over two syncs
    wait_busy()
    a = q.cmd('x-vc-dirty-log-sync')
    for p in dirty_pages(read_region()['blocks'][0]):
        copy[p * 4096:(p + 1) * 4096] = ram[p * 4096:(p + 1) * 4096]
    time.sleep(0.5)
    b = q.cmd('x-vc-dirty-log-sync', merge=True)
    reg = read_region()
    pages = dirty_pages(reg['blocks'][0])
    print('merge: epoch %d had %d, epoch %d had %d, bitmap now holds %d (flags %#x)' % (
        a['epoch'], a['dirty-pages'], b['epoch'], b['dirty-pages'], len(pages), reg['flags']))
    assert len(pages) >= max(a['dirty-pages'], b['dirty-pages']) and reg['flags'] == 1
    for p in pages:
        copy[p * 4096:(p + 1) * 4096] = ram[p * 4096:(p + 1) * 4096]

    # final stage: stop the guest while it is busy, last sync, compare
    wait_busy()
    q.cmd('x-vc-dirty-log-sync')
    for p in dirty_pages(read_region()['blocks'][0]):
        copy[p * 4096:(p + 1) * 4096] = ram[p * 4096:(p + 1) * 4096]
    time.sleep(0.3)
    q.cmd('stop')
    print('guest stopped while: %s' % last_guest_line())
    info = q.cmd('x-vc-dirty-log-sync')
    reg = read_region()
    pages = dirty_pages(reg['blocks'][0])
    for p in pages:
        copy[p * 4096:(p + 1) * 4096] = ram[p * 4096:(p + 1) * 4096]
    copied += len(pages)
    diff = sum(1 for p in range(blk['length'] // 4096)
               if copy[p * 4096:(p + 1) * 4096] != ram[p * 4096:(p + 1) * 4096])
    print('final epoch %d (VM stopped): %d dirty pages; engine copied %d pages '
          'in all (%.1f x RAM); pages differing from guest RAM: %d' % (
              info['epoch'], info['dirty-pages'], copied,
              copied / (blk['length'] / 4096.0), diff))
    assert diff == 0
    again = q.cmd('x-vc-dirty-log-sync')
    print('sync while stopped again: %d dirty pages' % again['dirty-pages'])

    # a migration that copies the tracked block: sync must refuse
    q.cmd('migrate-set-parameters', **{'max-bandwidth': 1 << 20})
    q.cmd('migrate', uri='exec:cat > /dev/null')
    try:
        q.cmd('x-vc-dirty-log-sync')
        raise SystemExit('sync during a full migration accepted')
    except RuntimeError as e:
        print('sync during a migration without x-ignore-shared refused:', e)
    q.cmd('migrate_cancel')
    while q.cmd('query-migrate')['status'] not in ('cancelled', 'failed'):
        time.sleep(0.1)
    q.cmd('migrate-set-parameters', **{'max-bandwidth': 4 << 30})
    q.cmd('migrate-set-capabilities', capabilities=[{'capability': 'x-ignore-shared', 'state': True}])

    # device state + non-shared RAM by a normal migration, x-ignore-shared
    dst = subprocess.Popen([qemu] + common + [
        '-object', 'memory-backend-file,id=mem,size=%dM,share=on,mem-path=%s' % (MB, copy_path),
        '-serial', 'file:%s/dst.log' % d, '-qmp', 'unix:%s/dst.qmp,server=on,wait=off' % d,
        '-incoming', 'defer'], stderr=open(d + '/dst.err', 'w'))
    qd = QMP(d + '/dst.qmp')
    qd.cmd('migrate-set-capabilities', capabilities=[{'capability': 'x-ignore-shared', 'state': True}])
    qd.cmd('migrate-incoming', uri='unix:%s/mig.sock' % d)
    time.sleep(0.5)
    q.cmd('migrate', uri='unix:%s/mig.sock' % d)
    # the log is still running: a sync during the migration is allowed
    # (x-ignore-shared skips the tracked block)
    s = q.cmd('x-vc-dirty-log-sync')
    print('sync during x-ignore-shared migration: ok, epoch %d' % s['epoch'])
    while True:
        st = q.cmd('query-migrate')
        if st['status'] in ('completed', 'failed', 'cancelled'):
            break
        time.sleep(0.2)
    print('migration (x-ignore-shared): %s, %d RAM pages sent (non-shared blocks)' % (
        st['status'], st.get('ram', {}).get('normal', 0)))
    assert st['status'] == 'completed'
    q.cmd('x-vc-dirty-log-stop')
    reg = read_region()
    print('after stop: region flags %#x (stopped bit 2), epoch %d' % (reg['flags'], reg['epoch']))
    assert reg['flags'] & 2
    try:
        q.cmd('x-vc-dirty-log-sync')
        raise SystemExit('sync after stop accepted')
    except RuntimeError as e:
        print('sync after stop refused:', e)
    # all-blocks: every migratable block, layout checked against the reply
    info = q.cmd('x-vc-dirty-log-start', path=region_path, **{'all-blocks': True})
    reg = read_region()
    assert len(reg['blocks']) == len(info['blocks'])
    for rb, b in zip(reg['blocks'], info['blocks']):
        assert rb['name'] == b['name'][:63] and rb['bitmap_offset'] == b['bitmap-offset']
        assert rb['length'] == b['length'] and rb['ram_offset'] == b['ram-offset']
    print('all-blocks start: %d blocks: %s' % (len(info['blocks']), ', '.join(
        '%s(%dK%s)' % (b['name'], b['length'] >> 10, ',shared' if b['shared'] else '')
        for b in info['blocks'])))
    q.cmd('x-vc-dirty-log-sync')
    q.cmd('x-vc-dirty-log-stop')
    qd.cmd('cont')
    time.sleep(10)
    log = open(d + '/dst.log').read().splitlines()
    corrupt = [l for l in log if 'CORRUPT' in l]
    last = [l for l in log if l.startswith('VCWRITE')][-1:]
    print('destination guest: %d CORRUPT lines; last: %s' % (len(corrupt), last))
    assert not corrupt and last and 'errors=0' in last[0]
    print('dirtylog: all checks passed')
finally:
    src.kill(); src.wait()
    if dst:
        dst.kill(); dst.wait()
    for f in (region_path, copy_path):
        if os.path.exists(f):
            os.unlink(f)
