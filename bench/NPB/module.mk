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
