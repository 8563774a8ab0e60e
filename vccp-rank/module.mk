# vccp-rank/: the checkpoint protocol, receive queue, manifest and the
# vcluster-ckpt inspector.  Linked into vcluster-launch.
VCCP_SRCS := vccp-rank/vccp.c vccp-rank/vccpio.c vccp-rank/restore.c vccp-rank/rq.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/livesave.c

$(BIN)/vcluster-ckpt: $(call objs,vccp-rank/vcluster-ckpt.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/rq.c) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS_COMMON)

all: $(BIN)/vcluster-ckpt

$(eval $(call unit_test,test_rq,tests/unit/test_rq.c vccp-rank/rq.c common/vcfmt.c common/afile.c,-lisal))
$(eval $(call unit_test,test_manifest,tests/unit/test_manifest.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/rq.c common/vcfmt.c common/afile.c common/log.c,-lisal -ljansson -Wl$(comma)--wrap=fsync))
# vcluster-ckpt itself under ASan, its main() renamed for the test to call.
$(eval $(call unit_test,test_ckpt_show,tests/unit/test_ckpt_show.c vccp-rank/vcluster-ckpt.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/rq.c common/vcfmt.c common/afile.c common/log.c,-lisal -ljansson -lpthread))
$(ASANDIR)/vccp-rank/vcluster-ckpt.o: ALL_CFLAGS += -Dmain=ckpt_main
$(eval $(call unit_test,test_restore,tests/unit/test_restore.c vccp-rank/restore.c common/qemuram.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/rq.c common/qmp.c common/qmpmig.c common/log.c common/vcfmt.c common/afile.c,-lisal -ljansson -lpthread))
$(eval $(call unit_test,test_vccp,tests/unit/test_vccp.c vccp-rank/vccp.c vccp-rank/vccpio.c vccp-rank/restore.c common/qemuram.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/rq.c common/qmp.c common/qmpmig.c common/log.c common/vcfmt.c common/afile.c common/worker.c common/firsterr.c common/child.c,-lisal -ljansson -lpthread))
$(eval $(call unit_test,test_liveram,tests/unit/test_liveram.c vccp-rank/liveram.c common/vcfmt.c common/afile.c,-lisal))
$(eval $(call unit_test,test_livesave,tests/unit/test_livesave.c vccp-rank/livesave.c vccp-rank/liveram.c common/vcfmt.c common/afile.c,-lisal -lpthread))
$(eval $(call unit_test,test_ckdirs,tests/unit/test_ckdirs.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/rq.c common/vcfmt.c common/afile.c common/log.c,-lisal -ljansson))
$(eval $(call unit_test,test_vccpio_dirs,tests/unit/test_vccpio_dirs.c vccp-rank/vccpio.c vccp-rank/manifest.c vccp-rank/liveram.c vccp-rank/rq.c common/vcfmt.c common/afile.c common/log.c common/child.c,-lisal -ljansson))
