# Sourced by the TLM tests and bench/migrate/run: start test-guest VMs whose
# RAM is a shared backend, and run one TLM migration between two of them.
#   TLM_DIR (required): run area.  TLM_QEMU: patched QEMU binary.
TLM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TLM_QEMU=${TLM_QEMU:-$TLM_ROOT/build/qemu/bin/qemu-system-x86_64}
TLM_BIN=${TLM_BIN:-$TLM_ROOT/build/bin/tlm-migrate}
TLM_QMPCMD=$TLM_ROOT/tlm-migrate/tools/qmp-cmd
TLM_MAC=52:54:00:56:00:00
# Both ends of a hop need the same secret; the caller of the source makes it
# (here: once per sourcing shell, unless TLM_SECRET is set already).  An
# environment variable is readable only by this user and root
# (/proc/PID/environ); tlm-migrate --secret-file takes a 0600 file instead.
if [[ -z ${TLM_SECRET:-} ]]; then
	TLM_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
fi
export TLM_SECRET

tlm_hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }

# tlm_vm_start NAME MIB GUEST_CMD [RAMFILE]: start VM NAME (QMP
# $TLM_DIR/NAME.qmp, serial $TLM_DIR/NAME.serial, pid in $TLM_DIR/NAME.pid).
# Without RAMFILE its RAM is a memfd; with it, that file and -incoming defer;
# RAMFILE "default": QEMU's own RAM backend (private, not shareable: for
# QEMU's migration methods as their users run them) and -incoming defer;
# "private": that backend, booting (no -incoming).
# Either way the RAM block is "pc.ram", as with QEMU's default backend, so
# QEMU's migration moves a VM between the kinds.  Thread names are on
# (debug-threads: the vCPU threads are "CPU N/TCG").
# TLM_QEMU_EXTRA: more QEMU arguments (both sides must match); TLM_NETNS:
# run QEMU in that network namespace.
tlm_vm_start() {
	local name=$1 mib=$2 cmd=$3 ramfile=${4:-} in=()
	local obj=(-object) machine=q35,accel=tcg,memory-backend=pc.ram
	if [[ $ramfile == default ]]; then
		obj=() machine=q35,accel=tcg
		in=(-incoming defer)
	elif [[ $ramfile == private ]]; then
		obj=() machine=q35,accel=tcg
	elif [[ -n "$ramfile" ]]; then
		obj+=("memory-backend-file,id=pc.ram,size=${mib}M,mem-path=$ramfile,share=on")
		in=(-incoming defer)
	else
		obj+=("memory-backend-memfd,id=pc.ram,size=${mib}M,share=on")
	fi
	local ns=()
	[[ -n "${TLM_NETNS:-}" ]] && ns=(ip netns exec "$TLM_NETNS")
	"${ns[@]}" "$TLM_QEMU" -L /usr/share/qemu -name "tlm-$name,debug-threads=on" \
		-machine "$machine" -cpu max -m "${mib}M" -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot \
		"${obj[@]}" \
		-qmp "unix:$TLM_DIR/$name.qmp,server=on,wait=off" \
		-chardev "socket,id=con0,path=$TLM_DIR/$name.con,server=on,wait=off,logfile=$TLM_DIR/$name.serial" \
		-serial chardev:con0 \
		-netdev user,id=n0 -device "virtio-net-pci,netdev=n0,mac=$TLM_MAC,romfile=" \
		-kernel "$TLM_ROOT/build/guest/vmlinuz" -initrd "$TLM_ROOT/build/guest/initrd.img" \
		-append "console=ttyS0 quiet panic=-1 no_timer_check vc.rank=0 vc.n=1 vc.mac=$TLM_MAC vc.head=0 vc.cmd=$(tlm_hex "$cmd")" \
		"${in[@]}" ${TLM_QEMU_EXTRA:-} >"$TLM_DIR/$name.qemu.log" 2>&1 &
	echo $! >"$TLM_DIR/$name.pid"
	local i
	for i in $(seq 1 100); do
		[[ -S "$TLM_DIR/$name.qmp" ]] && return 0
		kill -0 "$(cat "$TLM_DIR/$name.pid")" 2>/dev/null || break
		sleep 0.1
	done
	echo "tlm_vm_start: QEMU $name did not start:"; cat "$TLM_DIR/$name.qemu.log"
	return 1
}

# tlm_vm_type NAME TEXT: type a line on the VM's serial console.
tlm_vm_type() {
	python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode()); s.close()' "$TLM_DIR/$1.con" "$2"
}

tlm_qmp() { "$TLM_QMPCMD" "$TLM_DIR/$1.qmp" "${@:2}"; }

# tlm_vm_stop NAME: quit the VM and reap it.
tlm_vm_stop() {
	local pid
	pid=$(cat "$TLM_DIR/$1.pid" 2>/dev/null) || return 0
	tlm_qmp "$1" quit >/dev/null 2>&1 || kill -KILL "$pid" 2>/dev/null
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -f "$TLM_DIR/$1.pid"
}

# tlm_wait_serial PATTERN NAME [SECONDS]: until the VM's console shows PATTERN.
tlm_wait_serial() {
	local i n=$(( ${3:-120} * 4 ))
	for i in $(seq 1 $n); do
		grep -qE -- "$1" "$TLM_DIR/$2.serial" 2>/dev/null && return 0
		sleep 0.25
	done
	return 1
}

# tlm_wait_listening OUT PID [SECONDS]: until the receiver PID (output in
# OUT) says it listens (0); 1 (with its output) if it exits first or is not
# listening within SECONDS (default 60).  The destination QEMU must not
# start before: the receiver creates the RAM file, and one QEMU created
# first (mode 0644) is refused, so the receiver exits and the sender's
# connects are refused until its timeout.
tlm_wait_listening() {
	local out=$1 pid=$2 end=$((SECONDS + ${3:-60}))
	while ((SECONDS < end)); do
		grep -q listening "$out" 2>/dev/null && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			grep -q listening "$out" 2>/dev/null && return 0
			echo "tlm_wait_listening: the receiver exited before listening:"; cat "$out"
			return 1
		fi
		sleep 0.05
	done
	echo "tlm_wait_listening: the receiver is not listening after ${3:-60} s:"; cat "$out"
	return 1
}

# tlm_hop SRC DST MIB STREAMS PORT [SRC-OPTIONS...]: migrate VM SRC into a new
# VM DST (started here, RAM in /dev/shm) over STREAMS streams.  Outputs in
# $TLM_DIR/DST.{send,recv}.  Returns the source side's exit status (the
# receiver's is in $TLM_DIR/DST.recv.rc).
tlm_hop() {
	local src=$1 dst=$2 mib=$3 n=$4 port=$5 ram rpid rc
	shift 5
	ram=/dev/shm/tlm-$(basename "$TLM_DIR")-$dst.ram
	"$TLM_BIN" --recv --listen "127.0.0.1:$port" --streams "$n" --ram "$ram" ${TLM_RECV_EXTRA---verify} \
		--ram-size "${mib}M" --qmp "$TLM_DIR/$dst.qmp" >"$TLM_DIR/$dst.recv" 2>&1 &
	rpid=$!
	tlm_wait_listening "$TLM_DIR/$dst.recv" $rpid || { kill $rpid 2>/dev/null; wait $rpid; return 1; }
	tlm_vm_start "$dst" "$mib" "$(cat "$TLM_DIR/guest.cmd")" "$ram" || { kill $rpid; return 1; }
	# TLM_HOP_HOOK: a command run with the receiver's port once it listens
	# (e.g. a stranger connecting first).
	if [[ -n ${TLM_HOP_HOOK:-} ]]; then $TLM_HOP_HOOK "$port"; fi
	"$TLM_BIN" --qmp "$TLM_DIR/$src.qmp" --to "127.0.0.1:$port" --streams "$n" "$@" \
		>"$TLM_DIR/$dst.send" 2>&1
	rc=$?
	wait $rpid
	echo $? >"$TLM_DIR/$dst.recv.rc"
	return $rc
}

# tlm_kv KEY FILE: value of KEY=... in the summary line of FILE.
tlm_kv() { grep -E 'SUMMARY' "$2" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
