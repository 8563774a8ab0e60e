# make install [PREFIX=/usr/local] [DESTDIR=]: the programs, the test guest,
# the patched QEMU and the documentation into $(DESTDIR)$(PREFIX).
#
#   PREFIX/bin/                  vcluster-launch vcluster-ctl vcluster-ckpt tlm-migrate
#   PREFIX/libexec/vcluster/     qemu-system-x86_64 (the patched QEMU, if `make qemu`
#                                built it) and guest/{vmlinuz,initrd.img} (the test
#                                guest, if `make guest` built it)
#   PREFIX/share/doc/vcluster/   VERSION, README.md, SECURITY.md, the components'
#                                READMEs, jobs/*.job, slurm/vcluster.job
#
# vcluster-launch finds its files from where it is (vcluster-launch/instpath.h):
# the tree can be moved as a whole, and PREFIX is not compiled into anything.
# The programs are built if they are not; QEMU and the guest never are (they
# take minutes and root): what is not built is left out, with one line saying
# so.  INSTALL_QEMU and INSTALL_GUEST name other builds of them (the test of
# this target points them at nothing).
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL_PROGRAMS := vcluster-launch vcluster-ctl vcluster-ckpt tlm-migrate vcluster-synth
INSTALL_QEMU     ?= $(BUILD)/qemu/bin/qemu-system-x86_64
INSTALL_GUEST    ?= $(BUILD)/guest
INSTALL_DOCS     := README.md SECURITY.md vccp-rank/README.md tlm-migrate/README.md \
		    qemu-patches/README.md slurm/README.md slurm/vcluster.job \
		    $(sort $(wildcard jobs/*.job))

.PHONY: install
install: $(addprefix $(BIN)/,$(INSTALL_PROGRAMS))
	@set -e; \
	case '$(PREFIX)' in /*) ;; *) echo "make install: PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 2 ;; esac; \
	d='$(DESTDIR)$(PREFIX)'; lx="$$d/libexec/vcluster"; doc="$$d/share/doc/vcluster"; \
	install -d -m 755 "$$d/bin" "$$lx" "$$doc"; \
	for p in $(INSTALL_PROGRAMS); do install -m 755 '$(BIN)'/"$$p" "$$d/bin/$$p"; done; \
	if [ -x '$(INSTALL_QEMU)' ]; then \
		install -m 755 '$(INSTALL_QEMU)' "$$lx/qemu-system-x86_64"; \
	else \
		echo "make install: no patched QEMU ($(INSTALL_QEMU); 'make qemu' builds it): not installed, the installed vcluster-launch runs the stock qemu-system-x86_64"; \
	fi; \
	if [ -f '$(INSTALL_GUEST)/vmlinuz' ] && [ -f '$(INSTALL_GUEST)/initrd.img' ]; then \
		install -d -m 755 "$$lx/guest"; \
		install -m 644 '$(INSTALL_GUEST)/vmlinuz' '$(INSTALL_GUEST)/initrd.img' "$$lx/guest/"; \
	else \
		echo "make install: no test guest ($(INSTALL_GUEST)/vmlinuz, initrd.img; 'make guest' builds it): not installed, the installed vcluster-launch needs --kernel/--initrd or --disk"; \
	fi; \
	install -m 644 VERSION "$$doc/VERSION"; \
	for f in $(INSTALL_DOCS); do install -D -m 644 "$$f" "$$doc/$$f"; done; \
	echo "make install: vcluster $(VC_VERSION) in $$d"
