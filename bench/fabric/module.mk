# bench/fabric/: the fabric measured without VMs, next to vde_switch.
$(BIN)/vde-endpoint: bench/fabric/vde-endpoint.c
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -o $@ $< -lvdeplug

$(BIN)/fabric-bench: $(call objs,bench/fabric/fabric-bench.c vcluster-launch/fabric.c vcluster-launch/facct.c vcluster-launch/fbatch.c vcluster-launch/ftcp.c vccp-rank/rq.c) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ -lvdeplug -lgnutls $(LDLIBS_COMMON)

all: $(BIN)/vde-endpoint $(BIN)/fabric-bench
