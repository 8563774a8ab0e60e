# tests/fuzz/: fuzz targets for vcluster's readers of untrusted bytes.
#
# Each target tests/fuzz/fuzz_T.c is built twice:
#   build/tests/fuzz_T   replay driver (replay.c) under ASan/UBSan with the
#                        project compiler; a unit test: `make check` and
#                        `make check-unit` run every file of
#                        tests/fuzz/corpus/T once (a second or two).
#   build/fuzz/fuzz_T    clang's libFuzzer under ASan/UBSan, for
#                        `make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="rq jobspec"]`
#                        (packages: mk/deps.sh fuzz).
# `make fuzz-corpus` regenerates the seed corpus with the writers' own APIs.

FUZZ_TARGETS_ALL := vcfmt rq manifest jobspec config mstream mstream_addr ctrlmsg fbatch ftcp
FUZZ_TARGETS     ?= $(FUZZ_TARGETS_ALL)
FUZZ_SECONDS     ?= 60

fuzz_srcs_vcfmt        := common/vcfmt.c
fuzz_srcs_rq           := vccp-rank/rq.c common/vcfmt.c common/afile.c
fuzz_srcs_manifest     := vccp-rank/manifest.c vccp-rank/liveram.c common/vcfmt.c common/afile.c common/log.c
fuzz_srcs_jobspec      := common/jobspec.c common/afile.c
fuzz_srcs_config       := vcluster-launch/config.c common/jobspec.c common/afile.c
# the mstream library's sources (tlm-migrate/module.mk is read after this file)
fuzz_srcs_mstream      := tlm-migrate/mstream.c tlm-migrate/ms_wire.c tlm-migrate/ms_tcp.c \
			  tlm-migrate/ms_file.c tlm-migrate/ms_addr.c tlm-migrate/ms_auth.c \
			  common/vcfmt.c common/log.c
fuzz_srcs_mstream_addr := $(fuzz_srcs_mstream)
fuzz_srcs_ctrlmsg      := vcluster-launch/ctrlmsg.c common/vcfmt.c
fuzz_srcs_fbatch       := vcluster-launch/fbatch.c common/vcfmt.c
fuzz_srcs_ftcp         := vcluster-launch/ftcp.c common/vcfmt.c common/log.c
fuzz_libs_vcfmt        := -lisal
fuzz_libs_rq           := -lisal
fuzz_libs_manifest     := -lisal -ljansson
fuzz_libs_jobspec      :=
fuzz_libs_config       :=
fuzz_libs_mstream      := -lisal -lgnutls -lpthread
fuzz_libs_mstream_addr := -lisal -lgnutls -lpthread
fuzz_libs_ctrlmsg      := -lisal
fuzz_libs_fbatch       := -lisal
# ftcp.c's set-up calls MPI (not reached by the target; clang links no MPI by itself)
fuzz_libs_ftcp         := -lisal -lgnutls $(shell mpicc -showme:link 2>/dev/null)

# The replay programs, run with the unit tests.
$(foreach t,$(FUZZ_TARGETS_ALL),$(eval $(call unit_test,fuzz_$(t),tests/fuzz/fuzz_$(t).c tests/fuzz/replay.c $(fuzz_srcs_$(t)),$(fuzz_libs_$(t)))))
$(ASANDIR)/tests/fuzz/%.o: ALL_CFLAGS += -Itlm-migrate

# ---- libFuzzer builds (clang) ---------------------------------------------
FUZZ_CC     ?= clang
FUZZDIR     := $(BUILD)/fuzz
FUZZOBJ     := $(BUILD)/obj-fuzz
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	       -fno-omit-frame-pointer
FUZZ_CFLAGS := $(CSTD) -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP \
	       -Icommon -Ivcluster-launch -Ivccp-rank -Itlm-migrate \
	       -DVC_VERSION=\"$(VC_VERSION)\" $(shell mpicc -showme:compile 2>/dev/null)

$(FUZZOBJ)/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

define fuzz_bin
$(FUZZDIR)/fuzz_$(1): $(patsubst %.c,$(FUZZOBJ)/%.o,tests/fuzz/fuzz_$(1).c $(fuzz_srcs_$(1)))
	@mkdir -p $$(@D)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $$@ $$^ $(fuzz_libs_$(1))
endef
$(foreach t,$(FUZZ_TARGETS_ALL),$(eval $(call fuzz_bin,$(t))))

.PHONY: fuzz fuzz-build fuzz-corpus clean-fuzz
fuzz-build:
	@mk/deps.sh fuzz
	@$(MAKE) --no-print-directory $(foreach t,$(FUZZ_TARGETS),$(FUZZDIR)/fuzz_$(t))

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-fuzz.sh $(FUZZ_TARGETS)

# ---- seed corpus -----------------------------------------------------------
FUZZ_GEN_SRCS := tests/fuzz/gen-corpus.c vccp-rank/rq.c vccp-rank/manifest.c vccp-rank/liveram.c \
		 $(fuzz_srcs_mstream) common/afile.c vcluster-launch/ctrlmsg.c \
		 vcluster-launch/fbatch.c vcluster-launch/ftcp.c
$(BUILD)/tests/fuzz-gen-corpus: $(call objs,$(FUZZ_GEN_SRCS))
	@mkdir -p $(@D)
	$(CC) -o $@ $^ -lisal -ljansson -lgnutls -lpthread
$(OBJDIR)/tests/fuzz/%.o: ALL_CFLAGS += -Itlm-migrate

fuzz-corpus: $(BUILD)/tests/fuzz-gen-corpus
	$(BUILD)/tests/fuzz-gen-corpus tests/fuzz/corpus

clean: clean-fuzz
clean-fuzz:
	rm -rf $(FUZZDIR) $(FUZZOBJ)

-include $(shell find $(FUZZOBJ) -name '*.d' 2>/dev/null)
