# SPDX-License-Identifier: GPL-2.0
# Makefile - top-level build: userspace (meson/ninja), sluice_blk.ko (kbuild, one dir per kernel), bpf, lab, checks.
#
#   make                 userspace + bpf into build/, the module for $(KVER) into build/kmod/<kver>/
#   make deps            install the Debian packages (idempotent)
#   make check           every test: unit (plain, ASan+UBSan, clang -Wthread-safety), lab suites on every kernel
#   make demo            the main job (natively where the host allows it, else in the lab)
#   make bench           benchmarks, printed as ratios against a peer run in the same invocation
#   make lab CMD='...'   run CMD in the lab VM ([KVER=6.1|6.12|<full>]); exits with CMD's status
#   make kmod-all        the module for every installed kernel with headers
#   make clean

REPO   := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD  := $(REPO)/build
KVER_SPEC := $(KVER)
KVER_FULL  = $(shell $(REPO)/scripts/kver.sh $(KVER_SPEC))
KVERS_ALL  = $(shell $(REPO)/scripts/kver.sh --all)
KMOD_SRCS  = $(wildcard $(REPO)/kmod/*.c $(REPO)/kmod/*.h $(REPO)/kmod/Kbuild) \
	     $(wildcard $(REPO)/include/uapi/linux/*.h $(REPO)/include/sluice/*.h)

.PHONY: all user kmod kmod-all deps check demo bench lab clean FORCE

all: user kmod

$(BUILD)/build.ninja:
	@mkdir -p $(BUILD)
	meson setup --buildtype=debugoptimized -Dwerror=true $(BUILD) $(REPO) >/dev/null

user: $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The module for one kernel: kbuild wants the sources beside the objects, so each kernel gets
# its own directory of symlinks (build/kmod/<kver>/) and the sources stay clean.
kmod:
	@+$(MAKE) --no-print-directory kmod-one KV=$(KVER_FULL)

kmod-all:
	@set -e; for v in $(KVERS_ALL); do $(MAKE) --no-print-directory kmod-one KV=$$v; done

kmod-one: FORCE
	@test -n "$(KV)" || { echo "kmod: no kernel version (run 'make deps')" >&2; exit 1; }
	@test -e /lib/modules/$(KV)/build/Makefile || \
		{ echo "kmod: no headers for $(KV) in /lib/modules/$(KV)/build (run 'make deps')" >&2; exit 1; }
	@mkdir -p $(BUILD)/kmod/$(KV)
	@for f in $(REPO)/kmod/* $(REPO)/include/sluice/*.c; do ln -sf $$f $(BUILD)/kmod/$(KV)/; done
	$(MAKE) -C /lib/modules/$(KV)/build M=$(BUILD)/kmod/$(KV) SLUICE_ROOT=$(REPO) modules

deps:
	@$(REPO)/scripts/deps.sh

check:
	@$(REPO)/tests/check.sh

demo:
	@$(REPO)/scripts/demo.sh

bench: all
	@$(REPO)/scripts/bench.sh

# CMD is passed unexpanded (make would otherwise eat its $?, $VAR ...).
lab:
	@$(REPO)/tests/lab/lab.sh $(if $(KVER_SPEC),--kver $(KVER_SPEC)) -- '$(subst ','"'"',$(value CMD))'

clean:
	rm -rf $(BUILD) $(REPO)/build-*

FORCE:
