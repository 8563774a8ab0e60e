#!/usr/bin/env bash
# Build the vcluster test guest from Debian packages only:
#   build/guest/vmlinuz     the cloud kernel (linux-image-cloud-amd64)
#   build/guest/initrd.img  busybox-static, our init, the virtio modules and
#                           our static guest tools
# usage: build-guest.sh OUTDIR TOOL...
# The kernel package is fetched with `apt-get download` and unpacked, never
# installed on the host; it is cached in OUTDIR/cache.
set -euo pipefail
out=$1; shift
tools=("$@")
here=$(cd "$(dirname "$0")" && pwd)
cache=$out/cache
mkdir -p "$cache"

meta=linux-image-cloud-amd64
kpkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z "$kpkg" ]]; then
	echo "build-guest: refreshing package lists to find $meta" >&2
	apt-get update -q >/dev/null
	kpkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n "$kpkg" ]] || { echo "build-guest: cannot resolve $meta to a kernel package" >&2; exit 1; }
kver=${kpkg#linux-image-}

deb=$(ls "$cache/${kpkg}"_*.deb 2>/dev/null | head -n 1 || true)
if [[ -z "$deb" ]]; then
	echo "build-guest: downloading $kpkg" >&2
	(cd "$cache" && apt-get download -q "$kpkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
	deb=$(ls "$cache/${kpkg}"_*.deb 2>/dev/null | head -n 1 || true)
	[[ -n "$deb" ]] || { echo "build-guest: apt-get download $kpkg failed" >&2; exit 1; }
fi

work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/k"
depmod -b "$work/k" "$kver"
moddir=$work/k/lib/modules/$kver

root=$work/root
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules,usr/bin}
cp /bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
	[[ "$a" == busybox ]] || ln -sf busybox "$root/bin/$a"
done

# The modules the fabric NIC (and disks) need, dependencies first.
: > "$root/lib/modules/load.list"
declare -A done_mod=()
add_mod() {
	local rel=$1 dep
	[[ -n "${done_mod[$rel]:-}" ]] && return
	done_mod[$rel]=1
	for dep in $(awk -F': ' -v m="$rel" '$1 == m {print $2}' "$moddir/modules.dep"); do
		add_mod "$dep"
	done
	local src=$moddir/$rel name
	name=$(basename "$rel")
	case "$name" in
	*.ko.xz) xz -dc "$src" > "$root/lib/modules/${name%.xz}"; name=${name%.xz} ;;
	*.ko.zst) zstd -qdc "$src" > "$root/lib/modules/${name%.zst}"; name=${name%.zst} ;;
	*) cp "$src" "$root/lib/modules/$name" ;;
	esac
	echo "$name" >> "$root/lib/modules/load.list"
}
for m in virtio_pci virtio_net virtio_blk; do
	rel=$(awk -F: -v m="$m" '{n=$1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); if (n == m) {print $1; exit}}' "$moddir/modules.dep")
	[[ -n "$rel" ]] || { echo "build-guest: module $m not in $kpkg" >&2; exit 1; }
	add_mod "$rel"
done

install -m 0755 "$here/init" "$root/init"
for t in "${tools[@]}"; do install -m 0755 "$t" "$root/bin/"; done

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -6 > "$work/initrd.img"
cp "$work/k/boot/vmlinuz-$kver" "$work/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
mv "$work/vmlinuz" "$out/vmlinuz"
echo "$kpkg" > "$out/kernel-package"
echo "build-guest: $out/vmlinuz ($kpkg) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1))" >&2
