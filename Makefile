# sealbox top-level Makefile.
#   make            build libsealbox.a, sealboxctl and the tests into build/
#   make check      build and run every test; ends with "N passed, M failed"
#   make check SAN=1  the same with AddressSanitizer + UBSan, into build-san/
#   make deps       install the Debian packages the build and tests need
#   make demo       build, then run the store demo (README)
#   make bench      run the benchmarks under bench/ (not part of check)

PKGS     := sqlite3 libsodium gmime-3.0 json-c libuv openssl libcurl
DEB_PKGS := build-essential pkg-config libsqlite3-dev libsodium-dev \
            libgmime-3.0-dev libjson-c-dev libuv1-dev libssl-dev \
            libcurl4-openssl-dev libmilter-dev mandoc sqlite3 python3

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

PROGS    := $(BUILD)/sealboxctl
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)

.PHONY: all check deps demo bench clean man-lint
all: $(LIB) $(PROGS) $(UNIT_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c $(wildcard shared/*.h) | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/sealboxctl: $(BUILD)/ctl/sealboxctl.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

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
	@sh tests/demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf build build-san
