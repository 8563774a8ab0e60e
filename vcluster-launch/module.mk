# vcluster-launch/: the MPI program (one rank per host) and vcluster-ctl.
LAUNCH_SRCS := vcluster-launch/main.c vcluster-launch/config.c \
	       vcluster-launch/fabric.c vcluster-launch/facct.c vcluster-launch/fbatch.c vcluster-launch/ftcp.c \
	       vcluster-launch/vm.c \
	       vcluster-launch/accel.c vcluster-launch/pin.c vcluster-launch/ctl.c \
	       vcluster-launch/lifeline.c \
	       vcluster-launch/loop.c vcluster-launch/ctrlmsg.c vcluster-launch/status.c \
	       vcluster-launch/setup.c vcluster-launch/livesrc.c tlm-migrate/dirty.c \
	       vcluster-launch/migrate.c vcluster-launch/migrun.c vcluster-launch/ramsum.c \
	       $(VCCP_SRCS)
# where the test guest and the patched QEMU are (build tree or installed)
LAUNCH_SRCS += vcluster-launch/instpath.c
LAUNCH_LIBS := -lvdeplug -lhwloc -lgnutls $(LDLIBS_COMMON)

$(BIN)/vcluster-launch: $(call objs,$(LAUNCH_SRCS)) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LAUNCH_LIBS)

$(BIN)/vcluster-ctl: $(call objs,vcluster-launch/vcluster-ctl.c) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS_COMMON)

all: $(BIN)/vcluster-launch $(BIN)/vcluster-ctl
$(OBJDIR)/vcluster-launch/livesrc.o: ALL_CFLAGS += -Itlm-migrate

$(eval $(call unit_test,test_fbatch,tests/unit/test_fbatch.c vcluster-launch/fbatch.c common/vcfmt.c,-lisal))
$(eval $(call unit_test,test_config,tests/unit/test_config.c vcluster-launch/config.c common/jobspec.c common/afile.c,))
$(eval $(call unit_test,test_loop,tests/unit/test_loop.c vcluster-launch/loop.c common/worker.c,-lpthread))
$(eval $(call unit_test,test_instpath,tests/unit/test_instpath.c vcluster-launch/instpath.c,))
$(eval $(call unit_test,test_accel,tests/unit/test_accel.c vcluster-launch/accel.c common/child.c,))
$(eval $(call unit_test,test_migrate,tests/unit/test_migrate.c vcluster-launch/migrate.c,-ljansson))
$(eval $(call unit_test,test_ctrlmsg,tests/unit/test_ctrlmsg.c vcluster-launch/ctrlmsg.c common/vcfmt.c,-lisal))

# The synthetic VM of --vm none (synth.h): QEMU's place, for scale tests.
$(BIN)/vcluster-synth: $(call objs,vcluster-launch/synth.c) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ -lvdeplug $(LDLIBS_COMMON)

all: $(BIN)/vcluster-synth
$(eval $(call unit_test,test_facct,tests/unit/test_facct.c vcluster-launch/facct.c,))
$(eval $(call unit_test,test_ftcp,tests/unit/test_ftcp.c vcluster-launch/ftcp.c common/vcfmt.c common/log.c,-lgnutls -lisal))
# The fabric on 2 MPI ranks with real VM links: built without ASan, which
# refuses libvdeplug's dlopen(RTLD_DEEPBIND) of its seqpacket plug-in.
FABRIC_GONE_SRCS := tests/unit/test_fabric_gone.c vcluster-launch/fabric.c vcluster-launch/facct.c \
	vcluster-launch/fbatch.c vcluster-launch/ftcp.c vccp-rank/rq.c
UNIT_TESTS += $(TESTBIN)/test_fabric_gone
$(TESTBIN)/test_fabric_gone: $(call objs,$(FABRIC_GONE_SRCS)) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ -lvdeplug -lgnutls $(LDLIBS_COMMON)
$(eval $(call unit_test,test_vm,tests/unit/test_vm.c vcluster-launch/vm.c vcluster-launch/pin.c vcluster-launch/loop.c vcluster-launch/config.c common/worker.c common/qmp.c common/log.c common/afile.c common/child.c common/jobspec.c,-lhwloc -ljansson -lpthread))
$(eval $(call unit_test,test_ramsum,tests/unit/test_ramsum.c vcluster-launch/ramsum.c common/qemuram.c common/vcfmt.c,-lisal))
