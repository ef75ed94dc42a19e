# SPDX-License-Identifier: GPL-2.0
# suite.mk - included by each suite's Makefile (after TEST_PROGS / TEST_GEN_PROGS): the kselftest-style targets.
#   TEST_PROGS      scripts in the suite directory
#   TEST_GEN_PROGS  programs built by meson into build/tests/<suite>/
#   make -C tests/<suite> run_tests      KTAP on stdout; exit 0 pass, 1 fail, 4 skip
TESTS_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
SUITE_DIR := $(abspath $(dir $(firstword $(MAKEFILE_LIST))))
BUILD ?= $(abspath $(TESTS_DIR)/../build)

.PHONY: run_tests list
run_tests:
	@$(TESTS_DIR)/lib/run_suite.sh $(SUITE_DIR) $(BUILD)/tests/$(notdir $(SUITE_DIR)) $(TEST_PROGS) $(TEST_GEN_PROGS)

list:
	@echo $(TEST_PROGS) $(TEST_GEN_PROGS)
