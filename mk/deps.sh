#!/usr/bin/env bash
# Install the Debian packages a part of vcluster needs, or say what is missing.
#   mk/deps.sh GROUP...    groups: core qemu-build bench slurm fuzz (default: core)
# As root, missing packages are installed with apt-get.  Otherwise the one
# apt-get line needed is printed and the script fails.
set -euo pipefail

pkgs_for() {
	case "$1" in
	core)  echo gcc make pkg-config libc6-dev libopenmpi-dev openmpi-bin \
		    qemu-system-x86 qemu-utils libvdeplug-dev vde2 libhwloc-dev \
		    libjansson-dev libisal-dev libgnutls28-dev busybox-static cpio xz-utils \
		    zstd iproute2 procps psmisc kmod bc binutils python3 ;;
	qemu-build) echo dpkg-dev patch git gcc pkg-config python3 ninja-build meson \
		    libglib2.0-dev libpixman-1-dev zlib1g-dev libvdeplug-dev libslirp-dev \
		    libfdt-dev ;;
	bench) echo gnuplot-nox iproute2 ;;
	slurm) echo slurm-wlm munge ;;
	fuzz)  echo clang libclang-rt-dev ;;	# libFuzzer (make fuzz)
	*) echo "mk/deps.sh: unknown package group '$1'" >&2; return 2 ;;
	esac
}

want=()
for g in "${@:-core}"; do
	for p in $(pkgs_for "$g"); do want+=("$p"); done
done

missing=()
for p in "${want[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ "$st" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
	echo "vcluster: missing Debian packages; as root run:" >&2
	echo "  apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "vcluster: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them once if the install fails.
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
