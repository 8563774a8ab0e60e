# tests/guest/: the test guest (kernel + initramfs) and its static tools.
GUEST_DIR   := $(BUILD)/guest
GUEST_TOOLS := vc-guestcfg vcluster-traffic vc-dirtier vc-clockd
GUEST_BINS  := $(addprefix $(GUEST_DIR)/tools/,$(GUEST_TOOLS))
GUEST_CC    := gcc
GUEST_CFLAGS := -static -O2 -std=gnu11 -Wall -Wextra -Wno-unused-parameter -pthread

$(GUEST_DIR)/tools/%: tests/guest/%.c tests/guest/vc_guest.h
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) -o $@ $<

GUEST_SCRIPTS := tests/guest/vc-disktest

$(GUEST_DIR)/initrd.img: tests/guest/build-guest.sh tests/guest/init $(GUEST_BINS) $(GUEST_SCRIPTS)
	tests/guest/build-guest.sh $(GUEST_DIR) $(GUEST_BINS) $(GUEST_SCRIPTS)

guest: $(GUEST_DIR)/initrd.img
