# tlm-migrate/: live migration.  mstream is the parallel-streams transport
# (TCP or N files) the TLM engine sits on.
MSTREAM_SRCS := tlm-migrate/mstream.c tlm-migrate/ms_wire.c tlm-migrate/ms_tcp.c \
		tlm-migrate/ms_file.c tlm-migrate/ms_addr.c tlm-migrate/ms_auth.c
MSTREAM_LIB  := $(BUILD)/lib/libmstream.a

$(MSTREAM_LIB): $(call objs,$(MSTREAM_SRCS))
	@mkdir -p $(@D)
	ar rcs $@ $^

all: $(MSTREAM_LIB)

# Every mstream test links the library source, its two common helpers,
# ISA-L (CRC32C) and GnuTLS (HMAC, HKDF); one program per behaviour group,
# so a hang names itself.
MSTREAM_TEST_DEPS := $(MSTREAM_SRCS) common/vcfmt.c common/log.c
MSTREAM_TEST_LIBS := -lisal -lgnutls -lpthread
$(foreach t,addr tcp wire file auth,$(eval $(call unit_test,test_mstream_$(t),tests/unit/test_mstream_$(t).c $(MSTREAM_TEST_DEPS),$(MSTREAM_TEST_LIBS))))
$(ASANDIR)/tests/unit/test_mstream_%.o: ALL_CFLAGS += -Itlm-migrate

# The TLM engine: dirty log (patched QEMU), CHK/PS threads, receiver.
TLM_SRCS := tlm-migrate/main.c tlm-migrate/tlm.c tlm-migrate/dirty.c
$(BIN)/tlm-migrate: $(call objs,$(TLM_SRCS)) $(MSTREAM_LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS_COMMON) -lgnutls

all: $(BIN)/tlm-migrate
$(OBJDIR)/tlm-migrate/%.o: ALL_CFLAGS += -Itlm-migrate

# dirty.c's layout checks against hostile QEMU replies.
$(eval $(call unit_test,test_tlm_dirty,tests/unit/test_tlm_dirty.c tlm-migrate/dirty.c common/qmp.c common/log.c,-ljansson -lpthread))
$(ASANDIR)/tests/unit/test_tlm_dirty.o: ALL_CFLAGS += -Itlm-migrate
