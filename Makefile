# vcluster top-level Makefile.
#
# Each directory adds its own pieces in a module.mk fragment (one owner each);
# this file holds only the common rules.  Targets users were promised:
#   make            build every program into build/bin
#   make demo       install missing Debian packages, build, build the test
#                   guest, run a 2-VM virtual cluster with a workload
#   make check      the whole test suite (.ci/run calls exactly this)
#   make guest      the test guest (kernel + initramfs) into build/guest
#   make qemu       the patched QEMU into build/qemu (qemu-patches/)
#   make bench      the benchmarks (each prints its own figures)
#   make install    programs, test guest, patched QEMU and docs into
#                   $(DESTDIR)$(PREFIX) (mk/install.mk)

SHELL      := /bin/bash
BUILD      := build
BIN        := $(BUILD)/bin
OBJDIR     := $(BUILD)/obj
ASANDIR    := $(BUILD)/obj-asan
TESTBIN    := $(BUILD)/tests

CC         := mpicc
CSTD       := -std=c11 -D_GNU_SOURCE
WARN       := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wformat=2 -Wno-format-truncation
CFLAGS     ?= -O2 -g
# Tests make check runs at once (tests/lib/run-suite -j: tests on emulated hosts one at a time,
# "# serial:" tests alone); 2 for the 2-core machines CI runs on.
VC_TEST_JOBS ?= 2
ALL_CFLAGS := $(CSTD) $(WARN) $(CFLAGS) -MMD -MP -Icommon -Ivcluster-launch -Ivccp-rank
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS_COMMON := -ljansson -lisal -lpthread

# Version of the release, from the file VERSION (the one place it is written;
# `make install` copies it); on-disk and wire formats carry their own versions,
# which every program's --version lists (common/version.h).
VC_VERSION := $(shell cat VERSION)
$(if $(VC_VERSION),,$(error VERSION is missing or empty))
ALL_CFLAGS += -DVC_VERSION=\"$(VC_VERSION)\"

.PHONY: all demo check check-unit check-integration guest qemu bench deps clean install
all:

objs      = $(patsubst %.c,$(OBJDIR)/%.o,$(1))
asan_objs = $(patsubst %.c,$(ASANDIR)/%.o,$(1))

$(OBJDIR)/%.o: %.c VERSION
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(ASANDIR)/%.o: %.c VERSION
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -c -o $@ $<

# unit_test NAME, SOURCES, LIBS: a test program built under ASan/UBSan.
UNIT_TESTS :=
define unit_test
UNIT_TESTS += $(TESTBIN)/$(1)
$(TESTBIN)/$(1): $(call asan_objs,$(2))
	@mkdir -p $$(@D)
	$$(CC) $(ASAN_FLAGS) -o $$@ $$^ $(3)
endef

include common/module.mk
include $(filter-out common/module.mk,$(sort $(wildcard */module.mk */*/module.mk)))
include mk/install.mk

# ---- packages --------------------------------------------------------------
deps:
	@mk/deps.sh core

# ---- the demo --------------------------------------------------------------
demo: deps
	@$(MAKE) --no-print-directory all guest
	@mk/demo.sh

# ---- tests -----------------------------------------------------------------
check: deps
	@$(MAKE) --no-print-directory all guest qemu $(UNIT_TESTS)
	@tests/lib/run-suite -j $(VC_TEST_JOBS) $(UNIT_TESTS) $(sort $(wildcard tests/integration/t-*.sh))

check-unit: $(UNIT_TESTS)
	@tests/lib/run-suite $(UNIT_TESTS)

check-integration: all guest qemu
	@tests/lib/run-suite -j $(VC_TEST_JOBS) $(sort $(wildcard tests/integration/t-*.sh))

clean:
	rm -rf $(BUILD)/obj $(BUILD)/obj-asan $(BUILD)/bin $(BUILD)/tests $(BUILD)/lib

-include $(shell find $(BUILD)/obj $(BUILD)/obj-asan -name '*.d' 2>/dev/null)
