# vcluster's device set for x86_64-softmmu.
#
# The build script copies this file into the QEMU tree as
# configs/devices/x86_64-softmmu/vcluster.mak and configures with
# --without-default-devices --with-devices-x86_64=vcluster, so only these
# boards and devices (plus what they select) are compiled.  It keeps every
# device the pc/q35 machines create by default, so a guest sees the same
# machine as under Debian's stock QEMU.  Add a line here if a launcher needs
# another -device; the next "make qemu" reconfigures.

# Boards
CONFIG_Q35=y
CONFIG_I440FX=y
CONFIG_MICROVM=y

# Devices the boards create by default (same machine as stock QEMU)
CONFIG_HPET=y
CONFIG_VMPORT=y
CONFIG_VMMOUSE=y
CONFIG_VGA_PCI=y
CONFIG_E1000_PCI=y
CONFIG_E1000E_PCI_EXPRESS=y
CONFIG_PARALLEL=y

# virtio devices for the guests
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_SCSI=y
CONFIG_VIRTIO_SERIAL=y
CONFIG_VIRTIO_RNG=y
CONFIG_VIRTIO_BALLOON=y

# Small helpers: isa-debugcon/isa-debug-exit, pvpanic, ivshmem, root ports
CONFIG_ISA_DEBUG=y
CONFIG_PVPANIC_ISA=y
CONFIG_PVPANIC_PCI=y
CONFIG_IVSHMEM_DEVICE=y
CONFIG_PCIE_PORT=y
