# sealbox top-level Makefile.
#   make            build libsealbox.a, the programs and the tests into build/
#   make check      build and run every test; ends with "N passed, M failed"
#   make check SAN=1  the same with AddressSanitizer + UBSan, into build-san/
#   make deps       install the Debian packages the build and tests need
#   make demo       build, then start the whole pipeline on loopback (README)
#   make demo-stop  stop what make demo started
#   make bench      run the benchmarks under bench/ (not part of check)
#   make fuzz       build the libFuzzer targets (clang-14) into build-fuzz/ and
#                   run each for FUZZ_SECONDS (default 60); fails on any crash
#   make fuzz-seeds regenerate the binary seeds of tests/fuzz/corpus/

PKGS     := sqlite3 libsodium gmime-3.0 json-c libuv openssl libcurl
DEB_PKGS := build-essential pkg-config libsqlite3-dev libsodium-dev \
            libgmime-3.0-dev libjson-c-dev libuv1-dev libssl-dev \
            libcurl4-openssl-dev libmilter-dev mandoc sqlite3 python3 \
            postfix
# Only for `make fuzz`, not for `make check`.
FUZZ_PKGS := clang-14 libclang-rt-14-dev

CC       ?= cc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS   := -std=gnu11 -Wall -Wextra -Werror -O2 -g -D_GNU_SOURCE \
            -Wformat=2 -Wshadow -Wno-unused-parameter -fno-strict-aliasing
ifeq ($(SAN),1)
BUILD    := build-san
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
else
BUILD    := build
endif
CPPFLAGS := -Ishared $(PKG_CFLAGS)
LIBS     := $(PKG_LIBS) -lmilter -lpthread

LIB_SRC  := $(wildcard shared/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libsealbox.a

PROGS    := $(BUILD)/sealboxctl $(BUILD)/sealbox-lmtpd $(BUILD)/sealbox-milter
LMTPD_SRC := $(wildcard lmtpd/*.c)
LMTPD_OBJ := $(LMTPD_SRC:%.c=$(BUILD)/%.o)
MILTER_SRC := $(wildcard milter/*.c)
MILTER_OBJ := $(MILTER_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)
# Fuzz targets: tests/fuzz/fuzz_<name>.c. `make check` replays each one over
# tests/fuzz/corpus/<name>/ with the gcc build (replay_<name>).
FUZZ_NAMES  := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BIN  := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/replay_%)
SEEDS_BIN   := $(BUILD)/tests/fuzz/make_seeds
FUZZ_GCC_OBJ := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/fuzz_%.o) \
                $(BUILD)/tests/fuzz/replay.o $(BUILD)/tests/fuzz/make_seeds.o

.PHONY: all check deps demo demo-stop bench clean man-lint fuzz fuzz-build fuzz-seeds
FAULT_SO := $(BUILD)/tests/fault/libenospc.so
all: $(LIB) $(PROGS) $(UNIT_BIN) $(BENCH_BIN) $(REPLAY_BIN) $(SEEDS_BIN) $(FAULT_SO)

# LD_PRELOAD fault injection for tests (disk full); never installed.
# Built without the sanitizers: it is preloaded into other programs.
$(FAULT_SO): tests/fault/enospc.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -fPIC -shared -o $@ $< -ldl

$(BUILD)/%.o: %.c $(wildcard shared/*.h) | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/sealboxctl: $(BUILD)/ctl/sealboxctl.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(LMTPD_OBJ): $(wildcard lmtpd/*.h)

$(BUILD)/sealbox-lmtpd: $(LMTPD_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(MILTER_OBJ): $(wildcard milter/*.h)

$(BUILD)/sealbox-milter: $(MILTER_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(FUZZ_GCC_OBJ): tests/fuzz/fuzz_common.h

$(BUILD)/tests/fuzz/replay_%: $(BUILD)/tests/fuzz/replay.o $(BUILD)/tests/fuzz/fuzz_%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(SEEDS_BIN): $(BUILD)/tests/fuzz/make_seeds.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# ---- libFuzzer (clang-14): every shared/*.c compiled with coverage
# instrumentation + ASan + UBSan into build-fuzz/, linked directly into
# each target (not the gcc libsealbox.a).
FUZZ_CC      := clang-14
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_CFLAGS  := -std=gnu11 -Wall -Wextra -Werror -O1 -g -D_GNU_SOURCE \
                -Wformat=2 -Wshadow -Wno-unused-parameter -fno-strict-aliasing \
                -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BIN     := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/shared/%.o: shared/%.c $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(wildcard shared/*.h) $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(LIBS)

fuzz-build: $(FUZZ_LIB_OBJ) $(FUZZ_BIN)

# Like check: install what is missing, then re-run make so pkg-config sees it.
fuzz:
	@sh tests/install-deps.sh $(DEB_PKGS) $(FUZZ_PKGS)
	@$(MAKE) --no-print-directory fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-seeds: deps
	@$(MAKE) --no-print-directory $(SEEDS_BIN)
	$(SEEDS_BIN) tests/fuzz/corpus

# Fail early with a clear message instead of a wall of missing-header errors.
.PHONY: deps-check
deps-check:
	@pkg-config --exists $(PKGS) || { echo "missing build dependencies: run 'make deps'" >&2; exit 1; }

deps:
	@sh tests/install-deps.sh $(DEB_PKGS)

# check and demo install missing packages first, then re-run make so that
# pkg-config sees them (its output is read when the Makefile is parsed).
check: deps
	@$(MAKE) --no-print-directory all
	@sh tests/run.sh $(BUILD)

man-lint:
	mandoc -Tlint -W warning man/*.[0-9]

demo: deps
	@$(MAKE) --no-print-directory all
	@python3 tests/demo.py $(BUILD)

demo-stop:
	@python3 tests/demo.py $(BUILD) stop

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf build build-san build-fuzz
