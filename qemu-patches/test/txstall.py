#!/usr/bin/env python3
"""txstall: provoke the guest TX stall of issue #11 and count it.

Two TCG VMs run the vcluster test guest's `vcluster-traffic --all` (TCP
between them plus a paced UDP stream).  Each VM's fabric NIC is a vde netdev
on a SOCK_SEQPACKET socketpair, as vcluster-launch/vm.c makes it; this script
holds the other end of both and forwards frames between them like a rank does
(non-blocking writes, a bounded queue per direction).  While the traffic runs
it perturbs one VM at a time, every 0.5 to 2 s:

  hold     stop reading that VM's link for 50 ms to --hold-max (0.4 s):
           the link fills (a blocking QEMU end blocks QEMU's main loop in
           send()); the guest's TX ring fills too if the hold is long
  stop     QMP "stop" during the hold, "cont" 50-400 ms later, the hold
           released in between
  restore  (--mode restore) instead of cont: "migrate" the stopped VM to a
           file, SIGKILL it, start a new QEMU with -incoming on a new link,
           load the file and cont, as vcluster's checkpoint/restore does

A run is PASS if both guests finish cleanly, LOSS if they finish but report
errors (with --mode restore the frames on a dead QEMU's link are lost, so
UDP loss is expected there with any QEMU), STALL if a guest logs "NETDEV
WATCHDOG" or the guests do not both finish within the bound; the script
then captures the fabric NIC's virtqueue status (x-query-virtio-queue-status, TX = queue 1, RX = queue 0), the HMP
"info virtio-queue-status" text and where QEMU's main thread is (wchan,
syscall), prints them, and kills everything.  Exit status: 0 if no run
stalled, 1 if any did, 2 on a harness error.

  txstall.py --qemu BIN [--runs N] [--seconds S] [--mode stop|restore]
             [--qemu-link blocking|nonblocking] [--out DIR]
"""
import argparse, json, os, random, select, signal, socket, subprocess
import sys, threading, time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from qmp import QMP  # noqa: E402

top = os.path.abspath(os.path.join(here, '..', '..'))
GUEST = os.path.join(top, 'build', 'guest')
QMAX = 4096                     # frames queued per direction in the "rank"


def hexcmd(s):
    return s.encode().hex()


class VM:
    def __init__(self, h, rank, incoming=None):
        self.h, self.rank = h, rank
        self.dir = os.path.join(h.out, 'vm%d' % rank)
        os.makedirs(self.dir, exist_ok=True)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setblocking(False)            # our end: the rank's, non-blocking
        if h.args.qemu_link == 'nonblocking':
            b.setblocking(False)
        self.link = a
        qfd = b.fileno()
        os.set_inheritable(qfd, True)
        self.qmp_path = os.path.join(self.dir, 'qmp.sock')
        if os.path.exists(self.qmp_path):
            os.unlink(self.qmp_path)
        self.console = os.path.join(self.dir, 'console.log')
        mac = '52:54:00:56:00:%02x' % rank
        append = ('console=ttyS0 quiet panic=-1 no_timer_check vc.rank=%d '
                  'vc.n=2 vc.net=10.10.0.0/24 vc.mac=%s vc.head=0 vc.cmd=%s'
                  % (rank, mac, hexcmd(h.guest_cmd)))
        argv = [h.args.qemu, '-L', '/usr/share/qemu', '-name', 'txstall%d' % rank,
                '-machine', 'q35,accel=tcg', '-cpu', 'max', '-m', '256',
                '-smp', '1', '-nodefaults', '-no-user-config',
                '-display', 'none', '-no-reboot',
                '-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path,
                '-chardev', 'file,id=con0,path=%s' % self.console +
                (',append=on' if incoming else ''),
                '-serial', 'chardev:con0',
                '-netdev', 'vde,id=fabric,sock=seqpacket://%d' % qfd,
                '-device', 'virtio-net-pci,id=fab,netdev=fabric,mac=%s,romfile=' % mac,
                '-kernel', os.path.join(GUEST, 'vmlinuz'),
                '-initrd', os.path.join(GUEST, 'initrd.img'),
                '-append', append]
        if incoming:
            argv += ['-incoming', 'defer', '-S']
        log = open(os.path.join(self.dir, 'qemu.log'), 'a')
        self.p = subprocess.Popen(argv, pass_fds=(qfd,), stdout=log,
                                  stderr=log, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        b.close()
        log.close()
        self.qmp = QMP(self.qmp_path, timeout=60)
        if incoming:
            self.qmp.cmd('migrate-incoming', uri='exec:cat %s' % incoming)
            wait_migration(self.qmp, 120)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        try:
            self.link.close()
        except OSError:
            pass

    def console_text(self):
        try:
            with open(self.console, errors='replace') as f:
                return f.read()
        except OSError:
            return ''


def wait_migration(q, bound):
    t_end = time.time() + bound
    while time.time() < t_end:
        st = q.cmd('query-migrate').get('status')
        if st == 'completed':
            return
        if st in ('failed', 'cancelled'):
            raise RuntimeError('migration %s' % st)
        time.sleep(0.05)
    raise RuntimeError('migration did not complete in %d s' % bound)


class Switch(threading.Thread):
    """The rank's side of both links: forwards frames, can hold a link."""

    def __init__(self, h):
        super().__init__(daemon=True)
        self.h = h
        self.lock = threading.Lock()
        self.q = [[], []]               # frames waiting to be written to VM i
        self.hold = [False, False]
        self.frames_from = [0, 0]
        self.drops = 0
        self.stopping = False

    def run(self):
        while not self.stopping:
            with self.lock:
                vms = list(self.h.vms)
            rl, wl = [], []
            for i, vm in enumerate(vms):
                if vm is None:
                    continue
                if not self.hold[i]:
                    rl.append(vm.link)
                if self.q[i]:
                    wl.append(vm.link)
            try:
                r, w, _ = select.select(rl, wl, [], 0.02)
            except (OSError, ValueError):
                continue
            for i, vm in enumerate(vms):
                if vm is None:
                    continue
                if vm.link in w:
                    while self.q[i]:
                        try:
                            vm.link.send(self.q[i][0])
                            self.q[i].pop(0)
                        except BlockingIOError:
                            break
                        except (OSError, IndexError):
                            # A dead VM's link, or its queue cleared by
                            # a restore meanwhile.
                            self.q[i].clear()
                            break
                if vm.link in r:
                    for _ in range(256):
                        try:
                            f = vm.link.recv(70000)
                        except (BlockingIOError, OSError):
                            break
                        if not f:
                            break
                        self.frames_from[i] += 1
                        o = 1 - i
                        if len(self.q[o]) >= QMAX:
                            self.drops += 1
                        else:
                            self.q[o].append(f)


def main_thread_in_send(pid):
    for _ in range(5):
        try:
            with open('/proc/%d/task/%d/syscall' % (pid, pid)) as f:
                nr = f.read().split()[0]
        except (OSError, IndexError):
            return False
        if nr in ('44', '46'):
            return True
        time.sleep(0.004)
    return False


def capture(h, vm, why):
    out = ['--- capture of vm%d (%s)' % (vm.rank, why)]
    pid = vm.p.pid
    for f in ('wchan', 'syscall'):
        try:
            with open('/proc/%d/task/%d/%s' % (pid, pid, f)) as fh:
                out.append('main thread %s: %s' % (f, fh.read().strip()))
        except OSError as e:
            out.append('main thread %s: %s' % (f, e))
    res = {}

    def ask():
        try:
            res['st'] = vm.qmp.cmd('query-status')
            for qi, name in ((1, 'TX'), (0, 'RX')):
                res[name] = vm.qmp.cmd('x-query-virtio-queue-status',
                                       path='/machine/peripheral/fab/virtio-backend',
                                       queue=qi)
            res['hmp'] = vm.qmp.cmd('human-monitor-command', **{
                'command-line': 'info virtio-queue-status /machine/peripheral/fab/virtio-backend 1'})
        except Exception as e:  # noqa: BLE001
            res['error'] = str(e)
    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        out.append('QMP did not answer in 10 s (main loop blocked?)')
    for k in ('st', 'TX', 'RX', 'error'):
        if k in res:
            out.append('%s: %s' % (k, json.dumps(res[k], sort_keys=True)))
    if 'hmp' in res:
        out.append(res['hmp'].rstrip())
    out.append('switch: frames from vm0 %d vm1 %d, queued to vm0 %d vm1 %d, '
               'dropped %d' % (h.sw.frames_from[0], h.sw.frames_from[1],
                               len(h.sw.q[0]), len(h.sw.q[1]), h.sw.drops))
    con = vm.console_text().splitlines()
    out += ['console: ' + l for l in con[-8:]]
    return '\n'.join(out)


class Harness:
    def __init__(self, args, run):
        self.args = args
        self.out = os.path.join(args.out, 'run%03d' % run)
        os.makedirs(self.out, exist_ok=True)
        self.guest_cmd = 'vcluster-traffic --all --seconds %d' % args.seconds
        self.vms = [None, None]

    def qmp_timed(self, vm, name, bound, **kw):
        res = {}

        def go():
            try:
                res['r'] = vm.qmp.cmd(name, **kw)
            except Exception as e:  # noqa: BLE001
                res['e'] = e
        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t, res

    def perturb(self, k, stats):
        vm = self.vms[k]
        sw = self.sw
        sw.hold[k] = True
        time.sleep(random.uniform(0.05, self.args.hold_max))
        t, res = self.qmp_timed(vm, 'stop', 30)
        time.sleep(random.uniform(0.02, 0.2))
        # Where QEMU's main thread is while its link is full: syscall 44
        # (sendto) or 46 (sendmsg) means blocked in send(), BQL held.
        if main_thread_in_send(vm.p.pid):
            stats['stop_blocked'] += 1
        through = self.args.mode == 'restore' and self.args.hold_through_save
        if not through:
            sw.hold[k] = False
        t.join(30)
        if t.is_alive():
            sw.hold[k] = False
            return 'QMP stop did not return in 30 s'
        time.sleep(random.uniform(0.05, 0.4))
        if self.args.mode == 'restore':
            img = os.path.join(self.out, 'vm%d.state' % k)
            vm.qmp.cmd('migrate', uri='exec:cat > %s' % img)
            wait_migration(vm.qmp, 120)
            sw.hold[k] = False
            with sw.lock:
                self.vms[k] = None
                sw.q[k].clear()
            vm.kill()
            nvm = VM(self, k, incoming=img)
            with sw.lock:
                self.vms[k] = nvm
            vm = nvm
            stats['restores'] += 1
            # Before cont: TX elements the loaded state says QEMU popped and
            # did not complete.  Nothing on the destination completes them.
            st = vm.qmp.cmd('x-query-virtio-queue-status',
                            path='/machine/peripheral/fab/virtio-backend',
                            queue=1)
            if st.get('inuse', 0) > 0:
                stats['tx_inuse'] += 1
        vm.qmp.cmd('cont')
        stats['stops'] += 1
        return None

    def run(self):
        a = self.args
        self.sw = Switch(self)
        stats = {'stops': 0, 'stop_blocked': 0, 'restores': 0, 'tx_inuse': 0}
        t0 = time.time()
        verdict, detail = 'PASS', ''
        try:
            self.vms = [VM(self, 0), VM(self, 1)]
            self.sw.start()
            # Wait for both guests to be up.
            while not all('VCLUSTER-READY' in v.console_text() for v in self.vms):
                if time.time() - t0 > 120:
                    raise RuntimeError('guests not ready in 120 s')
                time.sleep(0.2)
            t_ready = time.time()
            k = 0
            while time.time() - t_ready < a.seconds - 2:
                time.sleep(random.uniform(0.5, 2.0))
                err = self.perturb(k, stats)
                if err:
                    verdict, detail = 'STALL', err
                    break
                if any('NETDEV WATCHDOG' in v.console_text() for v in self.vms):
                    break
                k = 1 - k
            bound = time.time() + a.seconds + 60
            while verdict == 'PASS':
                cons = [v.console_text() for v in self.vms]
                if any('NETDEV WATCHDOG' in c for c in cons):
                    verdict = 'STALL'
                    detail = 'NETDEV WATCHDOG'
                    break
                if all('VCLUSTER-EXIT' in c for c in cons):
                    if not all('VCLUSTER-EXIT rank=%d status=0' % i in c
                               for i, c in enumerate(cons)):
                        # Finished, but e.g. UDP datagrams lost with a
                        # restore (frames on the old link): not a stall.
                        verdict, detail = 'LOSS', 'a guest reported errors'
                    break
                if time.time() > bound:
                    verdict, detail = 'STALL', 'guests did not finish'
                    break
                time.sleep(0.5)
            if verdict == 'STALL':
                time.sleep(1)
                for v in self.vms:
                    if v is not None:
                        detail += '\n' + capture(self, v, detail.splitlines()[0])
        except Exception as e:  # noqa: BLE001
            verdict, detail = 'ERROR', str(e)
        finally:
            self.sw.stopping = True
            for v in self.vms:
                if v is not None:
                    v.kill()
        for v in self.vms:
            if v is not None:
                for l in v.console_text().splitlines():
                    if 'VCTRAFFIC' in l:
                        detail += '\n  ' + l.strip()
        return verdict, stats, detail, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--seconds', type=int, default=40)
    ap.add_argument('--mode', choices=('stop', 'restore'), default='stop')
    ap.add_argument('--qemu-link', choices=('blocking', 'nonblocking'),
                    default='blocking')
    ap.add_argument('--out', default=os.path.join(top, 'build', 'txstall'))
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--hold-through-save', action='store_true',
                    help='with --mode restore, keep the link held until '
                    'the save completed (the link stays full across it)')
    ap.add_argument('--hold-max', type=float, default=0.4,
                    help='longest hold before the stop, s (default 0.4; '
                    'longer holds let the guest fill its TX ring)')
    a = ap.parse_args()
    if a.seed is not None:
        random.seed(a.seed)
    for f in ('vmlinuz', 'initrd.img'):
        if not os.path.exists(os.path.join(GUEST, f)):
            print('txstall: %s missing: run make guest' % os.path.join(GUEST, f))
            return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    counts = {}
    for i in range(a.runs):
        verdict, stats, detail, dt = Harness(a, i).run()
        counts[verdict] = counts.get(verdict, 0) + 1
        print('txstall: run %d/%d %s in %.0f s (%d stops, %d with QEMU main '
              'thread in send() during the hold, %d restores, %d loaded '
              'with TX elements in use) %s' % (
                  i + 1, a.runs, verdict, dt, stats['stops'],
                  stats['stop_blocked'], stats['restores'], stats['tx_inuse'],
                  detail.splitlines()[0] if detail else ''), flush=True)
        if verdict not in ('PASS', 'LOSS'):
            print('\n'.join(detail.splitlines()[1:]), flush=True)
    print('txstall: %s qemu-link=%s mode=%s: %s' % (
        a.qemu, a.qemu_link, a.mode,
        ', '.join('%s %d' % kv for kv in sorted(counts.items()))))
    return 0 if set(counts) <= {'PASS', 'LOSS'} else (2 if 'ERROR' in counts else 1)


if __name__ == '__main__':
    sys.exit(main())
