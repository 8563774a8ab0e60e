# bench/NPB/: the NAS Parallel Benchmark kernels EP, IS, CG and MG, a
# clean-room C + MPI rewrite from the spec sheet (see bench/NPB/README.md).
NPB_DIR     := bench/NPB/kernels
NPB_KERNELS := ep is cg mg
NPB_BINS    := $(addprefix $(BIN)/npb-,$(NPB_KERNELS))

# The report block prints the flags the kernels were built with.
$(call objs,$(NPB_DIR)/npb_common.c): ALL_CFLAGS += -DNPB_CFLAGS='"$(CFLAGS)"'

# npb_kernel NAME: build/bin/npb-NAME from NAME.c and the shared module.
define npb_kernel
$(BIN)/npb-$(1): $(call objs,$(NPB_DIR)/$(1).c $(NPB_DIR)/npb_common.c)
	@mkdir -p $$(@D)
	$$(CC) -o $$@ $$^ -lm
endef
$(foreach k,$(NPB_KERNELS),$(eval $(call npb_kernel,$(k))))

all: $(NPB_BINS)

# The NPB guest (bench/NPB/guest/): the test guest's initramfs plus the Open
# MPI runtime, dropbear and these kernels, so that MPI jobs run across the
# VMs of a virtual cluster.  Built with the test guest (`make guest`).
NPB_GUEST_DIR  := $(BUILD)/npb-guest
NPB_GUEST_SRCS := $(addprefix bench/NPB/guest/,build-npb-guest.sh npb-guest-run npb-rsh openmpi-mca-params.conf)

$(NPB_GUEST_DIR)/initrd.img: $(BUILD)/guest/initrd.img $(NPB_BINS) $(NPB_GUEST_SRCS)
	bench/NPB/guest/build-npb-guest.sh $(NPB_GUEST_DIR) $(BUILD)/guest/initrd.img $(NPB_BINS)

.PHONY: npb-guest
npb-guest: $(NPB_GUEST_DIR)/initrd.img
guest: $(NPB_GUEST_DIR)/initrd.img
