#!/usr/bin/env bash
# Build the NPB guest: the test guest's initramfs plus what MPI programs need
# to run across the VMs of a virtual cluster, all from the host's Debian
# packages (openmpi-bin, libopenmpi3, libpmix2, dropbear-bin).
#
#   build-npb-guest.sh OUTDIR BASE_INITRD PROGRAM...
#	OUTDIR/initrd.img: BASE_INITRD (build/guest/initrd.img) plus
#	  - the Open MPI runtime: mpirun/orterun, orted, ompi_info, their
#	    libraries, the MCA plugins (less those for InfiniBand, OFI, UCX, PSM
#	    and OpenSHMEM, which need fabrics a VM has not), the PMIx plugins,
#	    help files and our openmpi-mca-params.conf;
#	  - dropbear's server and client, a host key and a client key made for
#	    this build (OUTDIR/keys), npb-rsh (Open MPI's remote launcher);
#	  - npb-guest-run (the guest command) and PROGRAMs in /bin;
#	  - every library any of them loads (ldd closure), ld.so and its cache,
#	    /etc/passwd, group, shells and nsswitch.conf.
#	OUTDIR/libs.list names the libraries it holds.
#
#   build-npb-guest.sh --overlay OUTFILE GUESTDIR PROGRAM...
#	OUTFILE: a gzipped cpio archive with PROGRAMs in /opt/npb/bin and the
#	libraries they load that GUESTDIR/libs.list lacks (e.g. an official NPB
#	build's Fortran runtime).  `cat GUESTDIR/initrd.img OUTFILE > RUN.img`
#	is an initramfs with both: the kernel unpacks concatenated archives.
#
# Missing packages are installed with apt-get when run as root; otherwise the
# apt-get line is printed and the build fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
me=build-npb-guest

die() {
	echo "$me: $*" >&2
	exit 1
}

# need_pkgs PKG...: install what is missing (root) or say what to install.
need_pkgs() {
	local p st missing=()
	for p in "$@"; do
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[[ "$st" == "install ok installed" ]] || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	if [[ $(id -u) -ne 0 ]]; then
		echo "$me: missing Debian packages; as root run:" >&2
		echo "  apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "$me: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
		apt-get update -q >/dev/null
		apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

ma=$(gcc -print-multiarch 2>/dev/null || true)
ma=${ma:-x86_64-linux-gnu}
libdir=/usr/lib/$ma

# libs_of FILE...: the shared libraries FILEs load, transitively (ldd
# resolves the whole closure), one path a line; the loader too.
libs_of() {
	local f
	for f in "$@"; do
		# Scripts and static programs have no closure.
		ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' || true
	done | sort -u
}

# put_libs ROOT SKIPLIST LIB...: copy each library (the file its name
# resolves to) into ROOT under its own name in $libdir, the loader into
# /lib64; names in SKIPLIST (a file, may be empty) are left out.  Prints
# the names copied.
put_libs() {
	local root=$1 skip=$2 l name
	shift 2
	for l in "$@"; do
		name=$(basename "$l")
		grep -qxF "$name" "$skip" 2>/dev/null && continue
		if [[ "$name" == ld-linux* ]]; then
			install -D -m 0755 "$(readlink -f "$l")" "$root/lib64/$name"
		else
			install -D -m 0644 "$(readlink -f "$l")" "$root$libdir/$name"
		fi
		echo "$name"
	done
}

# pack ROOT OUTFILE: ROOT as a gzipped newc cpio archive, atomically.
# The archive holds the cluster's private ssh keys: it is written 0600
# (umask 077 for the file itself; the modes inside are the tree's own).
pack() {
	rm -f "$2.tmp"
	(umask 077; (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
		gzip -6 > "$2.tmp")
	chmod 0600 "$2.tmp"
	mv "$2.tmp" "$2"
}

if [[ "${1:-}" == --overlay ]]; then
	[[ $# -ge 4 ]] || die "usage: $0 --overlay OUTFILE GUESTDIR PROGRAM..."
	outfile=$2 guestdir=$3
	shift 3
	[[ -s "$guestdir/libs.list" ]] || die "$guestdir/libs.list missing: build the NPB guest first (make npb-guest)"
	work=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	mkdir -p "$work/root/opt/npb/bin"
	for p in "$@"; do
		[[ -f "$p" && -x "$p" ]] || die "$p is not an executable file"
		install -m 0755 "$p" "$work/root/opt/npb/bin/"
	done
	mapfile -t libs < <(libs_of "$@")
	n=$(put_libs "$work/root" "$guestdir/libs.list" "${libs[@]}" | wc -l)
	pack "$work/root" "$outfile"
	echo "$me: $outfile: $# programs in /opt/npb/bin, $n more libraries ($(du -h "$outfile" | cut -f1))" >&2
	exit 0
fi

[[ $# -ge 2 ]] || die "usage: $0 OUTDIR BASE_INITRD PROGRAM..."
out=$1 base=$(readlink -f "$2")
shift 2
progs=("$@")
[[ -s "$base" ]] || die "$base missing: build the test guest first (make guest)"
need_pkgs openmpi-bin libopenmpi3 dropbear-bin cpio gzip libc-bin

pkglibdir=$(ompi_info --parsable --path pkglibdir 2>/dev/null | awk -F: '{print $3}')
pkgdatadir=$(ompi_info --parsable --path pkgdatadir 2>/dev/null | awk -F: '{print $3}')
sysconfdir=$(ompi_info --parsable --path sysconfdir 2>/dev/null | awk -F: '{print $3}')
[[ -d "$pkglibdir" && -d "$pkgdatadir" ]] || die "cannot find Open MPI's plugin and data directories (ompi_info --path)"
pmixdir=$libdir/pmix2
orterun=$(readlink -f "$(command -v mpirun)")

mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"
(cd "$root" && gzip -dc "$base" | cpio -id --quiet --no-absolute-filenames)
mkdir -p "$root"/{usr/bin,usr/sbin,lib64,"$libdir",root/.ssh,etc/dropbear,opt/npb/bin}
chmod 0700 "$root/root" "$root/root/.ssh"
# /lib is a directory of its own in the test guest (the modules).
ln -sfn "$libdir" "$root/lib/$ma"

# Open MPI: launcher, daemon, info tool; the MCA plugins a VM can use.
install -m 0755 "$orterun" "$root/usr/bin/orterun"
ln -sf orterun "$root/usr/bin/mpirun"
ln -sf orterun "$root/usr/bin/mpiexec"
install -m 0755 /usr/bin/orted "$root/usr/bin/orted"
install -m 0755 "$(readlink -f "$(command -v ompi_info)")" "$root/usr/bin/ompi_info"
mkdir -p "$root$pkglibdir"
skip_re='_(ucx|ofi|psm|psm2|openib|uct|verbs)\.so$|^mca_(atomic|memheap|scoll|spml|sshmem)_|monitoring'
plugins=()
for f in "$pkglibdir"/*.so; do
	[[ $(basename "$f") =~ $skip_re ]] && continue
	install -m 0644 "$f" "$root$pkglibdir/"
	plugins+=("$f")
done
if [[ -d "$pmixdir" ]]; then
	mkdir -p "$root$pmixdir/lib"
	cp -a "$pmixdir/lib/pmix" "$root$pmixdir/lib/"
	[[ -d "$pmixdir/share" ]] && cp -a "$pmixdir/share" "$root$pmixdir/"
	plugins+=("$pmixdir"/lib/pmix/*.so)
fi
mkdir -p "$root$pkgdatadir" "$root$sysconfdir"
cp "$pkgdatadir"/help-*.txt "$root$pkgdatadir/"
: > "$root$sysconfdir/openmpi-default-hostfile"
install -m 0644 "$here/openmpi-mca-params.conf" "$root$sysconfdir/openmpi-mca-params.conf"

# dropbear, keys made for this build, the launcher glue.
install -m 0755 /usr/sbin/dropbear "$root/usr/sbin/dropbear"
install -m 0755 /usr/bin/dbclient "$root/usr/bin/dbclient"
keys=$work/keys
mkdir -p -m 0700 "$keys"
chmod 0700 "$keys"
(umask 077
 dropbearkey -t ed25519 -f "$keys/host_key" >/dev/null 2>&1
 dropbearkey -t ed25519 -f "$keys/id_dropbear" >/dev/null 2>&1)
install -m 0600 "$keys/host_key" "$root/etc/dropbear/dropbear_ed25519_host_key"
dropbearkey -y -f "$keys/host_key" | awk '/^ssh-/ {print $1, $2}' > "$root/etc/dropbear/host_key.pub"
install -m 0600 "$keys/id_dropbear" "$root/root/.ssh/id_dropbear"
dropbearkey -y -f "$keys/id_dropbear" | grep '^ssh-' > "$root/root/.ssh/authorized_keys"
chmod 0600 "$root/root/.ssh/authorized_keys"
install -m 0755 "$here/npb-rsh" "$here/npb-guest-run" "$root/usr/bin/"

for p in "${progs[@]}"; do
	[[ -f "$p" && -x "$p" ]] || die "$p is not an executable file"
	install -m 0755 "$p" "$root/bin/"
done

# Users and name lookup for glibc, dropbear and Open MPI.
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo 'root:*:19000:0:99999:7:::' > "$root/etc/shadow"
chmod 0600 "$root/etc/shadow"
printf '/bin/sh\n/bin/ash\n' > "$root/etc/shells"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' > "$root/etc/nsswitch.conf"

# Every library those programs load, then ld.so's cache.
elves=("$root/usr/bin/orterun" "$root/usr/bin/orted" "$root/usr/bin/ompi_info" \
	/usr/sbin/dropbear /usr/bin/dbclient "${plugins[@]}" "${progs[@]}")
mapfile -t libs < <(libs_of "${elves[@]}")
put_libs "$root" /dev/null "${libs[@]}" | LC_ALL=C sort > "$work/libs.list"
printf '%s\n' "$libdir" "/lib/$ma" > "$root/etc/ld.so.conf"
ldconfig -r "$root" 2>/dev/null || die "ldconfig -r failed"

# No documentation in a boot image.
rm -rf "$root/usr/share/doc" "$root/usr/share/man"
pack "$root" "$work/initrd.img"
rm -rf "$out/keys"
mv "$keys" "$out/keys"
mv "$work/libs.list" "$out/libs.list"
mv "$work/initrd.img" "$out/initrd.img"
echo "$me: $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1), $(wc -l < "$out/libs.list") libraries, ${#plugins[@]} plugins)" >&2
