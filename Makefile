# mcpgate — one entry point. `make help` lists the targets.
#
# Outputs go to $(O) (build/ by default, build/san/ for the sanitizer build
# that `make test` uses). Generated files (skeletons, BPF objects, binaries)
# live there only and are never committed.

.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:

O        ?= build
SAN      ?= 0
V        ?= 0
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
ARCH     := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

ifeq ($(V),1)
Q :=
msg =
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wimplicit-fallthrough -Wmissing-field-initializers
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -D_GNU_SOURCE -Iinclude -I$(O) -fno-strict-aliasing
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
endif
LIBS     := -lbpf -lelf -lz -lssl -lcrypto -ljansson -lcurl -lpthread

# Every userspace module except the daemon's main(), in its concern folder
# (userspace/core, net, node, proxy, ...: DESIGN.md). The unit tests include
# the module they test, so they link against the others; base names must
# stay unique for tests/unit/test_<module>.c to name exactly one module.
MODULES  := $(filter-out userspace/mcpgated.c,$(sort $(shell find userspace -name '*.c')))
MOD_OBJS := $(patsubst userspace/%.c,$(O)/obj/%.o,$(MODULES))
HEADERS  := $(wildcard include/mcpgate/*.h)
ifneq ($(words $(notdir $(MODULES))),$(words $(sort $(notdir $(MODULES)))))
$(error userspace module base names must be unique: $(notdir $(MODULES)))
endif
CTL_SRCS := $(sort $(wildcard tools/mcpgatectl/*.c))

BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(O)/bpf/%.o,$(BPF_SRCS))
SKELS    := $(patsubst bpf/%.bpf.c,$(O)/%.skel.h,$(BPF_SRCS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))

# The system include dirs clang -target bpf needs (asm/types.h and friends),
# as libbpf-bootstrap finds them.
CLANG_BPF_SYS_INCLUDES := $(shell $(CLANG) -v -E - </dev/null 2>&1 \
	| sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }')

.PHONY: all help deps unit e2e test test-kernel demo bench fuzz fuzz-seeds clean fmt fmt-check

all: $(O)/mcpgated $(O)/mcpgatectl $(O)/kubectl-mcpgate

help:
	@echo 'make            build mcpgated and mcpgatectl into $(O)/'
	@echo 'make demo       build, start a fake cluster + node + pod on this machine, show mcpgate at work'
	@echo 'make test       install missing packages, unit tests + end-to-end tests (ASan/UBSan build, root)'
	@echo 'make unit       unit tests only (cmocka)'
	@echo 'make e2e        end-to-end tests only (real eBPF; root)'
	@echo 'make test-kernel  kernel-path smoke on Debian 6.1 (the EKS AL2023 kernel) under qemu'
	@echo 'make bench      benchmarks, printing figures'
	@echo 'make fuzz       build the libFuzzer targets and run each for FUZZ_SECONDS (default 20)'
	@echo 'make deps       install the Debian packages the build and tests need'
	@echo 'make clean      remove build/'
	@echo 'V=1 for verbose commands; O=dir for another output directory'

# Every target that builds or runs something installs what it needs first
# (an order-only prerequisite of the first compile steps); quiet when all is
# there. Targets with more needs call a profile of the same script.
deps:
	$(Q)scripts/install-deps.sh

# ---- eBPF ----

$(O)/bpf/%.bpf.o: bpf/%.bpf.c include/mcpgate/abi.h $(wildcard bpf/lib/*.bpf.h) | $(O)/bpf deps
	$(call msg,BPF,$@)
	$(Q)$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
		-Iinclude -Ibpf -I$(O) $(CLANG_BPF_SYS_INCLUDES) -c $< -o $@

# Only bpf/destroy.bpf.c (kernel types, a kfunc) uses vmlinux.h; it is
# generated from this machine's BTF and never committed. The object is
# optional at run time: the loader falls back when it does not load.
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
$(O)/vmlinux.h: | $(O)/bpf deps
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@

$(O)/bpf/destroy.bpf.o: $(O)/vmlinux.h

$(O)/bpf/%.o: $(O)/bpf/%.bpf.o
	$(call msg,GEN-OBJ,$@)
	$(Q)$(BPFTOOL) gen object $@ $<

$(O)/%.skel.h: $(O)/bpf/%.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name mg_$* > $@

# ---- userspace ----

# -MMD: each object depends on exactly the headers it includes.
$(O)/obj/%.o: userspace/%.c $(SKELS) | $(O)/obj
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(MOD_OBJS:.o=.d) $(O)/obj/mcpgated.d

$(O)/mcpgated: $(O)/obj/mcpgated.o $(MOD_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(O)/mcpgatectl: $(CTL_SRCS) $(wildcard tools/mcpgatectl/*.h) $(MOD_OBJS) $(HEADERS)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $(CTL_SRCS) $(MOD_OBJS) $(LIBS) -o $@

# The kubectl plugin is the same binary; main.c dispatches by argv[0].
$(O)/kubectl-mcpgate: $(O)/mcpgatectl
	$(call msg,LN,$@)
	$(Q)ln -sf mcpgatectl $@

# ---- tests ----

# A unit test #includes the module it tests (to reach its statics), so it is
# linked against every other module object but that one.
$(O)/tests/test_%: tests/unit/test_%.c $(MOD_OBJS) $(HEADERS) | $(O)/tests
	$(call msg,TEST-CC,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $< $(filter-out %/$*.o,$(MOD_OBJS)) \
		$(LIBS) -lcmocka -o $@

unit: $(UNIT_BINS)
	$(Q)fail=0; for t in $(UNIT_BINS); do \
		echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 $$t || fail=1; done; \
	exit $$fail

e2e: all
	$(Q)tests/e2e/clients/install.sh
	$(Q)MG_BUILD=$(O) tests/e2e/run.sh

test: deps
	$(Q)$(MAKE) --no-print-directory fmt-check
	$(Q)$(MAKE) --no-print-directory O=build/san SAN=1 all unit
	$(Q)$(MAKE) --no-print-directory O=build/san SAN=1 e2e
	$(Q)$(MAKE) --no-print-directory O=build/san SAN=1 test-kernel
	$(Q)$(MAKE) --no-print-directory fuzz-seeds

# The kernel smoke runs inside a VM on another kernel (tests/kernel/run.sh);
# it drives the loader module itself, so it links every module object.
$(O)/tests/smoke: tests/kernel/smoke.c $(MOD_OBJS) $(HEADERS) | $(O)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $< $(MOD_OBJS) $(LIBS) -o $@

test-kernel: deps
	$(Q)scripts/install-deps.sh kernel
	$(Q)$(MAKE) --no-print-directory all $(O)/tests/smoke
	$(Q)MG_BUILD=$(O) tests/kernel/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)MG_BUILD=$(O) tests/e2e/demo.sh

bench: deps
	$(Q)scripts/install-deps.sh bench
	$(Q)$(MAKE) --no-print-directory all $(O)/bench_mask
	$(Q)MG_BUILD=$(O) tests/bench/run.sh

# The masking benchmark includes the mask modules it measures (one unit).
$(O)/bench_mask: tests/bench/bench_mask.c $(wildcard userspace/mask/*.[ch]) $(HEADERS)
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -std=gnu11 -Iinclude $< -ljansson -lz -lssl -lcrypto -o $@

# libFuzzer targets: clang, ASan+UBSan, each includes the module it fuzzes;
# the modules it calls into without fuzzing them are compiled beside it as
# their own translation units (FUZZ_WITH_<name>), so their statics never
# collide with the included module's.
FUZZ_WITH_cgroup_path := userspace/net/httpc.c userspace/core/secretfile.c
FUZZ_WITH_config      := userspace/core/addr.c
FUZZ_WITH_endpoints   := userspace/core/addr.c userspace/net/httpc.c userspace/core/secretfile.c \
			 userspace/core/metrics.c
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(HEADERS) $(MODULES) | build/fuzz deps
	$(call msg,FUZZ-CC,$@)
	$(Q)$(CLANG) -g -O1 -std=gnu11 -D_GNU_SOURCE -Iinclude -Ibuild \
		-Werror=implicit-function-declaration -fsanitize=fuzzer,address,undefined $< $(FUZZ_WITH_$*) \
		-lssl -lcrypto -ljansson -lz -lcurl -lpthread -o $@

# Every fuzz target builds and replays its seed corpus (no new inputs): part
# of `make test`, so a target cannot rot while the modules move under it.
fuzz-seeds: $(FUZZ_BINS)
	$(Q)n_ok=0; for f in $(FUZZ_BINS); do \
		n=$$(basename $$f); printf '  %-20s ' "$$n"; \
		$$f -runs=0 tests/fuzz/corpus/$${n#fuzz_} >build/fuzz/$$n.seeds.log 2>&1 \
			|| { echo FAIL; tail -n 20 build/fuzz/$$n.seeds.log; \
			     echo "fuzz-seeds: $$n_ok passed, 1 failed"; exit 1; }; \
		n_ok=$$((n_ok + 1)); grep -o 'INITED.*' build/fuzz/$$n.seeds.log | head -n 1; done; \
	echo "fuzz-seeds: $$n_ok passed, 0 failed"

FUZZ_SECONDS ?= 20
fuzz: $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do \
		n=$$(basename $$f); mkdir -p build/fuzz/corpus-$$n; \
		echo "== $$n ($(FUZZ_SECONDS)s)"; \
		$$f -max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus-$$n tests/fuzz/corpus/$${n#fuzz_} \
			2>&1 | tail -n 3 || exit 1; done

$(O)/bpf $(O)/obj $(O)/tests build/fuzz:
	$(Q)mkdir -p $@

# What clang-format keeps in shape (the repo's .clang-format); `make
# fmt-check` fails on any difference, and `make test` runs it.
FMT_SRCS = $(sort $(shell find userspace tools include/mcpgate tests/unit tests/fuzz tests/kernel tests/bench -name '*.[ch]') $(wildcard bpf/*.c bpf/lib/*.h))

fmt-check:
	$(Q)scripts/install-deps.sh fmt
	$(Q)clang-format --dry-run --Werror $(FMT_SRCS)

fmt:
	$(Q)scripts/install-deps.sh fmt
	$(Q)clang-format -i $(FMT_SRCS)

clean:
	$(Q)rm -rf build
