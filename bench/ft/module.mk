# bench/ft/: measurements behind issue 16's choice of fault-tolerance method.
$(BIN)/dirty-probe: $(call objs,bench/ft/dirty-probe.c tlm-migrate/dirty.c) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS_COMMON)

all: $(BIN)/dirty-probe
$(OBJDIR)/bench/ft/%.o: ALL_CFLAGS += -Itlm-migrate
