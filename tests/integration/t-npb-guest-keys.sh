#!/usr/bin/env bash
# timeout: 300
# The NPB guest's initrd holds the cluster's private ssh keys: the image,
# the keys directory and the key files are readable by their owner only.
. "$(dirname "$0")/../lib/vc-test.sh"
[[ -s $VC_ROOT/build/guest/initrd.img ]] || { echo "skip: no test guest (make guest)"; exit 77; }
command -v dropbearkey >/dev/null && command -v orted >/dev/null ||
	{ echo "skip: dropbear-bin or openmpi-bin missing"; exit 77; }
umask 022	# what a user typically has: the builder must not rely on it
out=$VC_T/npb
"$VC_ROOT/bench/NPB/guest/build-npb-guest.sh" "$out" "$VC_ROOT/build/guest/initrd.img" /bin/true \
	> "$VC_T/build.log" 2>&1 || { tail -n 20 "$VC_T/build.log"; fail "build-npb-guest.sh failed"; }
[[ $(stat -c %a "$out/initrd.img") == 600 ]] || fail "initrd.img is mode $(stat -c %a "$out/initrd.img"), not 600"
[[ $(stat -c %a "$out/keys") == 700 ]] || fail "keys/ is mode $(stat -c %a "$out/keys"), not 700"
for k in "$out"/keys/*; do
	[[ $(( 8#$(stat -c %a "$k") & 8#077 )) -eq 0 ]] || fail "$k is mode $(stat -c %a "$k")"
done
# The key really is in the image (else the check above proves little).
zcat "$out/initrd.img" | cpio -it --quiet 2>/dev/null | grep -q '^root/.ssh/id_dropbear$' ||
	fail "no private key in the image"
"$VC_ROOT/bench/NPB/guest/build-npb-guest.sh" --overlay "$VC_T/ov.cpio.gz" "$out" /bin/true \
	> "$VC_T/build.log" 2>&1 || fail "--overlay failed"
[[ $(stat -c %a "$VC_T/ov.cpio.gz") == 600 ]] || fail "overlay is mode $(stat -c %a "$VC_T/ov.cpio.gz")"
echo "ok: NPB guest image and keys are private"
