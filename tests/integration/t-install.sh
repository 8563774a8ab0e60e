#!/usr/bin/env bash
# timeout: 300
# make install DESTDIR=... PREFIX=/usr: the tree holds every program, the
# patched QEMU, the test guest and the docs (nothing more, nothing less, each
# file the same as the built one), without rebuilding QEMU or the guest;
# every installed program's --version prints the release and exactly the
# format and wire versions its readers check; what is not built is left out
# with one line; and an installed launcher, moved away from the checkout,
# boots a one-VM job with the installed guest under the installed QEMU
# (/proc/PID/exe) and finishes.
. "$(dirname "$0")/../lib/vc-test.sh"
cd "$VC_ROOT" || fail "cd $VC_ROOT"

rel=$(cat VERSION)
[[ -n $rel ]] || fail "VERSION is empty"
qemu_b=build/qemu/bin/qemu-system-x86_64
guest_b=build/guest
[[ -f $guest_b/vmlinuz && -f $guest_b/initrd.img ]] || fail "no test guest in $guest_b (make guest)"
vc_make() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -C "$VC_ROOT" "$@"; }
stamps() { stat -L -c '%n %Y %s' "$qemu_b" "$guest_b/vmlinuz" "$guest_b/initrd.img" 2>/dev/null; }

# ---- the install ---------------------------------------------------------------
before=$(stamps)
dest=$VC_T/dest
vc_make install DESTDIR="$dest" PREFIX=/usr >"$VC_T/install.out" 2>&1 ||
	{ cat "$VC_T/install.out"; fail "make install failed"; }
[[ $(stamps) == "$before" ]] || fail "make install rebuilt QEMU or the guest: $before -> $(stamps)"
assert_no_grep 'qemu-patches:|build-guest' "$VC_T/install.out"
assert_grep "^make install: vcluster $rel in $dest/usr\$" "$VC_T/install.out" 1
if [[ -x $qemu_b ]]; then
	assert_no_grep 'no patched QEMU' "$VC_T/install.out"
else
	assert_grep '^make install: no patched QEMU .*stock qemu-system-x86_64' "$VC_T/install.out" 1
fi

# The programs: vcluster-launch, vcluster-ctl, vcluster-ckpt, tlm-migrate, and
# every other vcluster-* or tlm-* program the build makes (a new one must be
# installed, and given its versions below).
programs=$(cd build/bin && ls | grep -E '^(vcluster|tlm)-' | sort)
for p in vcluster-launch vcluster-ctl vcluster-ckpt tlm-migrate; do
	grep -qx "$p" <<<"$programs" || fail "$p is not built in build/bin"
done
docs="VERSION README.md SECURITY.md vccp-rank/README.md tlm-migrate/README.md
qemu-patches/README.md slurm/README.md slurm/vcluster.job $(cd "$VC_ROOT" && ls jobs/*.job)"
{
	for p in $programs; do echo "bin/$p"; done
	[[ -x $qemu_b ]] && echo libexec/vcluster/qemu-system-x86_64
	echo libexec/vcluster/guest/vmlinuz
	echo libexec/vcluster/guest/initrd.img
	for d in $docs; do echo "share/doc/vcluster/$d"; done
} | sort >"$VC_T/want"
(cd "$dest/usr" && find . -type f -o -type l | sed 's|^\./||' | sort) >"$VC_T/got"
diff -u "$VC_T/want" "$VC_T/got" >"$VC_T/tree.diff" ||
	{ cat "$VC_T/tree.diff"; fail "installed tree differs from the layout (- missing, + extra)"; }
[[ $(find "$dest" -mindepth 1 -maxdepth 1) == "$dest/usr" ]] || fail "make install wrote outside DESTDIR/PREFIX"
same() {	# SOURCE INSTALLED MODE
	cmp -s "$1" "$2" || fail "$2 is not a copy of $1"
	[[ $(stat -c %a "$2") == "$3" ]] || fail "$2: mode $(stat -c %a "$2"), expected $3"
}
for p in $programs; do same "build/bin/$p" "$dest/usr/bin/$p" 755; done
[[ -x $qemu_b ]] && same "$qemu_b" "$dest/usr/libexec/vcluster/qemu-system-x86_64" 755
same "$guest_b/vmlinuz" "$dest/usr/libexec/vcluster/guest/vmlinuz" 644
same "$guest_b/initrd.img" "$dest/usr/libexec/vcluster/guest/initrd.img" 644
for d in $docs; do same "$d" "$dest/usr/share/doc/vcluster/$d" 644; done

# ---- --version -----------------------------------------------------------------
# Expected lines from the defines the readers check.
def() {	# HEADER NAME: the value of #define NAME
	local v
	v=$(awk -v n="$2" '$1 == "#define" && $2 == n { print $3 }' "$1")
	[[ $v =~ ^[0-9]+$ ]] || fail "no numeric #define $2 in $1"
	echo "$v"
}
manifest="format manifest $(def vccp-rank/manifest.h MANIFEST_VERSION)"
rq="format rq $(def vccp-rank/rq.h RQ_VERSION)"
ctlw="wire ctl $(def vcluster-launch/ctl.h CTL_PROTO_VERSION)"
declare -A want_v=(
	[vcluster-launch]="$manifest
$rq
wire fabric-batch $(def vcluster-launch/fbatch.h FBATCH_VERSION)
wire fabric-tcp-hello $(def vcluster-launch/ftcp.h FTCP_HELLO_VERSION)
wire ctrlmsg $(def vcluster-launch/ctrlmsg.h CTRLMSG_VERSION)
$ctlw
wire clock-frame $(def common/vc_magic.h VC_CLOCK_VERSION)"
	[vcluster-ctl]="$ctlw"
	[vcluster-synth]="wire synth-frame $(def vcluster-launch/synth.h SYNTH_FRAME_VERSION)
format synth-state $(def vcluster-launch/synth.h SYNTH_STATE_VERSION)"
	[vcluster-ckpt]="$manifest
$rq"
	[tlm-migrate]="wire tlm $(def tlm-migrate/tlm.h TLM_WIRE_VERSION)
wire mstream $(def tlm-migrate/mstream.h MSTREAM_WIRE_VERSION_AUTH)
format dirty-log $(def tlm-migrate/dirty.h DIRTY_REGION_VERSION)"
)
for p in $programs; do
	[[ -n ${want_v[$p]:-} ]] || fail "no expected versions for the installed program $p (add them to this test)"
	out=$VC_T/version-$p
	"$dest/usr/bin/$p" --version >"$out" 2>"$out.err" || fail "$p --version: exit $?: $(cat "$out.err")"
	[[ $(head -n 1 "$out") == "$p $rel" ]] || fail "$p --version: first line '$(head -n 1 "$out")', expected '$p $rel'"
	tail -n +2 "$out" | grep -vE '^(format|wire) [a-z][a-z0-9-]* [0-9]+$' &&
		fail "$p --version: lines not of the form 'format|wire NAME VERSION'"
	diff <(sort <<<"${want_v[$p]}") <(tail -n +2 "$out" | sort) >"$out.diff" ||
		{ cat "$out.diff"; fail "$p --version: versions differ from the headers (< expected, > printed)"; }
	echo "$p --version: $(paste -sd' ' "$out" | cut -c1-150)"
done
[[ $(./vcluster-setup --version) == "vcluster-setup $rel" ]] || fail "vcluster-setup --version: '$(./vcluster-setup --version)'"

# ---- the defaults, bad input, nothing built --------------------------------------
vc_make install DESTDIR="$VC_T/dflt" >"$VC_T/dflt.out" 2>&1 || { cat "$VC_T/dflt.out"; fail "make install (default PREFIX) failed"; }
[[ -x $VC_T/dflt/usr/local/bin/vcluster-launch ]] || fail "PREFIX does not default to /usr/local"
rm -rf "$VC_T/dflt"
vc_make install DESTDIR="$VC_T/rel" PREFIX=usr >"$VC_T/rel.out" 2>&1 && fail "a relative PREFIX was taken"
assert_grep "make install: PREFIX must be an absolute path, not 'usr'" "$VC_T/rel.out" 1
[[ -e $VC_T/rel ]] && fail "a refused PREFIX still wrote $VC_T/rel"

bare=$VC_T/bare
vc_make install DESTDIR="$bare" PREFIX=/usr INSTALL_QEMU="$VC_T/none/qemu" INSTALL_GUEST="$VC_T/none" \
	>"$VC_T/bare.out" 2>&1 || { cat "$VC_T/bare.out"; fail "make install without QEMU and guest failed"; }
assert_grep "^make install: no patched QEMU \\($VC_T/none/qemu; 'make qemu' builds it\\): not installed" "$VC_T/bare.out" 1
assert_grep "^make install: no test guest \\($VC_T/none/vmlinuz, initrd.img; 'make guest' builds it\\): not installed" "$VC_T/bare.out" 1
[[ $(wc -l <"$VC_T/bare.out") -eq 3 ]] || { cat "$VC_T/bare.out"; fail "make install said more than one line per missing part"; }
[[ -d $bare/usr/libexec/vcluster && -z $(ls -A "$bare/usr/libexec/vcluster") ]] ||
	fail "libexec/vcluster should exist and be empty: $(ls -A "$bare/usr/libexec/vcluster" 2>&1)"
# That launcher looks for the guest in its own tree, not in the checkout's.
mpirun -np 1 "$bare/usr/bin/vcluster-launch" --run-dir "$VC_T/run-bare" >"$VC_T/bare-run.out" 2>&1; rc=$?
[[ $rc -eq 2 ]] || { tail "$VC_T/bare-run.out"; fail "launcher without an installed guest: exit $rc, expected 2"; }
assert_grep "test guest kernel \\(not installed: make guest, then make install\\) $bare/usr/libexec/vcluster/guest/vmlinuz: No such file or directory" "$VC_T/bare-run.out" 1
rm -rf "$bare"

# ---- the installed launcher boots a VM ----------------------------------------------
# Moved out of DESTDIR: the tree finds its files wherever it is.
moved=$VC_T/moved
mv "$dest/usr" "$moved" || fail "mv"
lx=$moved/libexec/vcluster
if [[ -x $qemu_b ]]; then want_qemu=$lx/qemu-system-x86_64; else want_qemu=$(readlink -f "$(command -v qemu-system-x86_64)"); fi
run=$VC_T/run
mpirun -np 1 "$moved/bin/vcluster-launch" --run-dir "$run" --guest-cmd 'sleep 2; echo install-ok' \
	--timeout 240 >"$VC_T/run.out" 2>&1 &
mpid=$!
qpid=
for _ in $(seq 1 240); do
	for p in $(pgrep -f -- "-name vcluster-node0 .*$run" || true); do
		[[ $(readlink "/proc/$p/exe" 2>/dev/null) == *qemu-system* ]] && qpid=$p
	done
	[[ -n $qpid ]] && break
	kill -0 $mpid 2>/dev/null || break
	sleep 0.25
done
[[ -n $qpid ]] || { wait $mpid; tail -n 20 "$VC_T/run.out"; fail "no QEMU process for node0 appeared"; }
exe=$(readlink "/proc/$qpid/exe")
tr '\0' '\n' <"/proc/$qpid/cmdline" >"$VC_T/qemu.args"
[[ $exe == "$want_qemu" ]] || fail "the installed launcher runs QEMU $exe, expected $want_qemu"
grep -qx -- "$lx/guest/vmlinuz" "$VC_T/qemu.args" || { cat "$VC_T/qemu.args"; fail "QEMU does not boot the installed kernel"; }
grep -qx -- "$lx/guest/initrd.img" "$VC_T/qemu.args" || fail "QEMU does not boot the installed initrd"
grep -F -- "$VC_ROOT" "$VC_T/qemu.args" && fail "QEMU's command line names the checkout"
wait $mpid; rc=$?
grep -E 'launch:|install-ok|VCLUSTER-EXIT' "$VC_T/run.out" | tail -n 20
[[ $rc -eq 0 ]] || { tail -n 20 "$VC_T/run.out"; fail "the installed launcher exited $rc"; }
assert_grep '\[node0\] install-ok' "$VC_T/run.out" 1
assert_grep 'VCLUSTER-EXIT rank=0 status=0' "$VC_T/run.out" 1
assert_grep "QEMU: $want_qemu" "$run/rank0/rank.log" 1
assert_nothing_running
echo "ok: make install tree, --version of $(wc -w <<<"$programs") programs, installed launcher booted with $exe"
