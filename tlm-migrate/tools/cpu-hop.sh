#!/usr/bin/env bash
# tlm-migrate/tools/cpu-hop.sh RATE STREAMS [WRAP]: one TLM hop on loopback of a 512 MiB guest
# (bench/migrate's guest: hb every 10 ms + vc-dirtier --mib 200 --full
# --rate RATE MiB/s: 1 is bench/migrate's idle, 119 its 125mb), with CPU
# accounting; WRAP: strace|perf|none.  Root (tc is not used: loopback only)
# Env: TLM_BIN (engine), OUT (dir for results)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rate=$1 n=$2 wrap=${3:-none}
OUT=${OUT:-/tmp/tlm-cpuhop-out-$$}
mkdir -p "$OUT"
TLM_DIR=$(mktemp -d /tmp/tlm-cpuhop.XXXXXX)
. "$ROOT/tlm-migrate/tools/tlm-vm.sh"
cleanup() {
	for p in "$TLM_DIR"/*.pid; do [[ -f $p ]] && kill -KILL "$(cat "$p")" 2>/dev/null; done
	jobs -p | xargs -r kill 2>/dev/null
	rm -f /dev/shm/tlm-$(basename "$TLM_DIR")-*
	rm -rf "$TLM_DIR"
}
trap cleanup EXIT
mib=512
echo "(while :; do echo hb; sleep 0.01; done) & vc-dirtier --mib 200 --seconds 0 --full --rate $rate" >"$TLM_DIR/guest.cmd"
tlm_vm_start vm0 $mib "$(cat "$TLM_DIR/guest.cmd")" || exit 1
tlm_wait_serial VCDIRTY-START vm0 600 || { echo "guest did not start"; exit 1; }
sleep 3
qcpu() { python3 "$ROOT/bench/migrate/cpu.py" "$(cat "$TLM_DIR/$1.pid")"; }
# baseline: the source QEMU's non-vCPU CPU over 10 s without migration
b0=$(qcpu vm0); sleep 10; b1=$(qcpu vm0)
echo "baseline src QEMU non-vCPU: $(echo "$b1 - $b0" | bc) s in 10 s" | tee "$OUT/baseline"
port=$(( 40000 + RANDOM % 10000 ))
ram=/dev/shm/tlm-$(basename "$TLM_DIR")-vm1.ram
/usr/bin/time -f "%U %S %e" -o "$OUT/recv.cpu" "$TLM_BIN" --recv --listen "127.0.0.1:$port" --streams "$n" --ram "$ram" \
	--ram-size ${mib}M --qmp "$TLM_DIR/vm1.qmp" --timeout 300 >"$OUT/recv" 2>&1 &
rp=$!
tlm_wait_listening "$OUT/recv" $rp 120 || exit 1
tlm_vm_start vm1 $mib "$(cat "$TLM_DIR/guest.cmd")" "$ram" || exit 1
c_s0=$(qcpu vm0) c_d0=$(qcpu vm1)
t0=$(date +%s.%N)
case $wrap in
strace) pre=(strace -c -f -o "$OUT/strace") ;;
perf) pre=(perf record -F 997 -g -o "$OUT/perf.data") ;;
*) pre=() ;;
esac
/usr/bin/time -f "%U %S %e" -o "$OUT/send.cpu" "${pre[@]}" "$TLM_BIN" --qmp "$TLM_DIR/vm0.qmp" --to "127.0.0.1:$port" --streams "$n" --timeout 300 >"$OUT/send" 2>&1
rc=$?
c_s1=$(qcpu vm0)
wait $rp
t1=$(date +%s.%N)
c_d1=$(qcpu vm1)
echo "rc=$rc wall $(echo "$t1 - $t0" | bc) s" | tee "$OUT/result"
echo "send tlm-migrate (user sys wall): $(cat "$OUT/send.cpu" | tail -1)" | tee -a "$OUT/result"
echo "recv tlm-migrate (user sys wall): $(cat "$OUT/recv.cpu" | tail -1)" | tee -a "$OUT/result"
echo "src QEMU non-vCPU: $(echo "$c_s1 - $c_s0" | bc) s; dst QEMU non-vCPU: $(echo "$c_d1 - $c_d0" | bc) s" | tee -a "$OUT/result"
grep -E "SUMMARY|cpu s|stage 3" "$OUT/send" "$OUT/recv" | tee -a "$OUT/result"
bytes=$(tlm_kv bytes "$OUT/send")
echo "load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/result"
python3 - "$OUT" "$bytes" "$c_s1" "$c_s0" <<'PY' | tee -a "$OUT/result"
import sys
out, b, s1, s0 = sys.argv[1], int(sys.argv[2] or 0), float(sys.argv[3]), float(sys.argv[4])
u, s, e = map(float, open(out + "/send.cpu").read().split()[-3:])
gib = b / 2**30
if gib:
    print("sender: tlm-migrate %.2f s (%.2f user %.2f sys) + QEMU %.2f s = %.2f s for %.3f GiB: %.2f s/GiB (tlm-migrate alone %.2f s/GiB)"
          % (u + s, u, s, s1 - s0, u + s + s1 - s0, gib, (u + s + s1 - s0) / gib, (u + s) / gib))
PY
