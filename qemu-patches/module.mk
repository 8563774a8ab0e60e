# qemu-patches: vcluster's patched QEMU.
#   make qemu    build/qemu/bin/qemu-system-x86_64 (Debian's QEMU source plus
#                our series); cached by build/qemu/.stamp.  See README.md.
.PHONY: qemu
qemu:
	@qemu-patches/build
