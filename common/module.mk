# common/: the library both vcluster programs and tlm-migrate link.
COMMON_SRCS := common/log.c common/vcfmt.c common/qmp.c common/afile.c common/rundir.c \
	       common/jobspec.c common/worker.c common/qmpmig.c common/firsterr.c \
	       common/child.c common/qemuram.c
COMMON_LIB  := $(BUILD)/lib/libvccommon.a

$(COMMON_LIB): $(call objs,$(COMMON_SRCS))
	@mkdir -p $(@D)
	ar rcs $@ $^

all: $(COMMON_LIB)

$(eval $(call unit_test,test_vcfmt,tests/unit/test_vcfmt.c common/vcfmt.c,-lisal))
$(eval $(call unit_test,test_jobspec,tests/unit/test_jobspec.c common/jobspec.c common/afile.c,))
$(eval $(call unit_test,test_qmp,tests/unit/test_qmp.c common/qmp.c common/log.c,-ljansson -lpthread))
comma := ,
$(eval $(call unit_test,test_afile,tests/unit/test_afile.c common/afile.c,-Wl$(comma)--wrap=fstat))
$(eval $(call unit_test,test_rundir,tests/unit/test_rundir.c common/rundir.c common/afile.c,))
$(eval $(call unit_test,test_child,tests/unit/test_child.c common/child.c,))
