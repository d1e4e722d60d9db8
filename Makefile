# bepipe-lua - plain GNU make. `make` builds ./bepipe-lua; `make test` runs every test;
# `make demo` runs the pipeline on generated events; `make bench` measures it.
PKG_CONFIG ?= pkg-config
PKGS = luajit libcurl openssl jansson libmicrohttpd libprotobuf-c zlib libisal libnghttp2
EV_LIBS ?= -lev
CJSON_LIBS ?= -llua5.1-cjson
PREFIX ?= /usr/local
VERSION = 0.1.0
BUILD ?= build
LUAJIT ?= luajit

# Debian packages the build needs, those `make demo` adds (its emulator runs on Node, found on
# the PATH or Debian's nodejs), and those only the tests add (npm: see deps-test).
DEB_BUILD = build-essential pkg-config luajit libluajit-5.1-dev lua-cjson lua-cjson-dev \
            libev-dev libcurl4-openssl-dev libssl-dev libjansson-dev libmicrohttpd-dev \
            libsimdjson-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev libisal-dev libnghttp2-dev
DEB_DEMO = python3
# (llvm: /usr/bin/llvm-symbolizer, which the sanitizers run for stacks with file:line)
DEB_TEST = libcmocka-dev clang libclang-rt-14-dev llvm python3 openssl \
           luarocks python3-yaml groff-base man-db debootstrap

WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BP_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -fvisibility=hidden -O2 -g \
            $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null) -MMD -MP \
            -DBP_VERSION='"$(VERSION)"' -DBP_LIB_DIR='"$(PREFIX)/share/bepipe-lua/lua"'
ifeq ($(CI),true)
BP_CFLAGS += -Werror
endif
# C++ only for runtime/json_lua.cpp, the bridge to simdjson (a C++ library)
BP_CXXFLAGS = -std=c++17 -D_GNU_SOURCE -Wall -Wextra -Wshadow -fvisibility=hidden -O2 -g \
              $(shell $(PKG_CONFIG) --cflags luajit 2>/dev/null) -MMD -MP
ifeq ($(CI),true)
BP_CXXFLAGS += -Werror
endif
BP_LDLIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) $(EV_LIBS) $(CJSON_LIBS) -lsimdjson \
            -lstdc++ -lm

LIB_SRCS = $(filter-out runtime/main.c,$(wildcard runtime/*.c))
LIB_CXX_SRCS = $(wildcard runtime/*.cpp)
# The Storage Write API's fixed messages: C from proto/*.proto by protoc-c, into $(BUILD)/proto
# (only runtime/proto_*.c include the generated headers)
PROTO_SRCS = $(wildcard proto/*.proto)
PROTO_HDRS = $(PROTO_SRCS:proto/%.proto=$(BUILD)/proto/%.pb-c.h)
LIB_OBJS = $(LIB_SRCS:runtime/%.c=$(BUILD)/%.o) $(LIB_CXX_SRCS:runtime/%.cpp=$(BUILD)/%.o) \
           $(PROTO_SRCS:proto/%.proto=$(BUILD)/%.pb-c.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)

ifeq ($(V),1)
Q =
else
Q = @
endif

.PHONY: all deps deps-demo deps-test test bench demo install clean sanitize unit emulator valgrind fuzz \
        fuzz-build alloc-fail alloc-fail-build
all: deps bepipe-lua

# Installs the Debian packages of $(1) that are missing (apt-get, through sudo when not root);
# fails when it cannot. One shell command, so a recipe line may start with `@$(call ...)` or use
# it inside a shell group. One dpkg-query for the whole list: it runs in every make.
define install_missing
have=" $$(dpkg-query -W -f='$${db:Status-Status} $${Package}\n' $(1) 2>/dev/null | \
    sed -n 's/^installed //p' | tr '\n' ' ')"; \
missing=$$(for p in $(1); do case "$$have" in (*" $$p "*) ;; (*) echo $$p ;; esac; done); \
if [ -n "$$missing" ]; then \
    echo "installing Debian packages:" $$missing; \
    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
    $$SUDO apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
        $$missing >/dev/null || exit 1; \
fi
endef

# The build's packages come first: every object waits for them (order-only, below), so `make -jN`
# on a machine without them never compiles before they are there. The demo's and the tests'
# packages follow, one apt-get at a time (apt holds a lock), while the objects compile. Only the
# goals that install (DEPS_GOALS) wait: `make bepipe-lua` only builds (the Dockerfile, luarocks).
DEPS_GOALS = all unit test bench demo sanitize fuzz-build fuzz alloc-fail-build alloc-fail valgrind
deps_first = $(if $(filter $(DEPS_GOALS),$(or $(MAKECMDGOALS),all)),$(1))
deps:
	@$(call install_missing,$(DEB_BUILD))

# Node runs the emulator (`make demo`, the cloud tests): Debian's nodejs only when the machine
# has no node (a Node installed another way makes Debian's packages conflict with it).
deps-demo: deps
	@$(call install_missing,$(DEB_DEMO))
	@command -v node >/dev/null 2>&1 || { $(call install_missing,nodejs); }

# npm installs the emulator's conformance clients from their lockfile (npm ci), before any suite
# runs: the unit suite's protobuf differential and the emulator's gRPC port need them; Debian's
# npm (with its nodejs 18) only when the machine has none, as above.
deps-test: deps-demo
	@$(call install_missing,$(DEB_TEST))
	@command -v npm >/dev/null 2>&1 || { $(call install_missing,npm); }
	@c=tests/emulator/conformance; if [ ! -d $$c/node_modules ] || \
	    [ $$c/package-lock.json -nt $$c/node_modules/.package-lock.json ]; then \
	    echo "  NPM     $$c (npm ci)"; \
	    (cd $$c && npm ci --no-audit --no-fund --loglevel=error) || exit 1; fi

bepipe-lua: $(BUILD)/libbepipe.a $(BUILD)/main.o
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BUILD)/main.o -Wl,-E -Wl,--whole-archive $(BUILD)/libbepipe.a \
	    -Wl,--no-whole-archive $(BP_LDLIBS) $(LDLIBS)

$(BUILD)/libbepipe.a: $(LIB_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/%.o: runtime/%.c | $(BUILD) $(call deps_first,deps)
	@echo "  CC      $<"
	$(Q)$(CC) $(BP_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto | $(BUILD) $(call deps_first,deps)
	@echo "  PROTOC  $<"
	$(Q)mkdir -p $(BUILD)/proto && protoc-c --proto_path=proto --c_out=$(BUILD)/proto $<

$(BUILD)/%.pb-c.o: $(BUILD)/proto/%.pb-c.c $(PROTO_HDRS)
	@echo "  CC      $<"
	$(Q)$(CC) $(BP_CFLAGS) $(CFLAGS) -I$(BUILD)/proto -c -o $@ $<

.PRECIOUS: $(BUILD)/proto/%.pb-c.c
$(filter $(BUILD)/proto_%.o,$(LIB_OBJS)): $(PROTO_HDRS)
$(filter $(BUILD)/proto_%.o,$(LIB_OBJS)): BP_CFLAGS += -I$(BUILD)/proto

$(BUILD)/%.o: runtime/%.cpp | $(BUILD) $(call deps_first,deps)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(BP_CXXFLAGS) $(CXXFLAGS) -c -o $@ $<

$(BUILD) $(BUILD)/unit:
	$(Q)mkdir -p $@

# C unit tests: each links libbepipe.a and cmocka.
$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libbepipe.a | $(BUILD)/unit $(call deps_first,deps-test)
	@echo "  CC      $<"
	$(Q)$(CC) $(BP_CFLAGS) $(CFLAGS) -Iruntime -DSRC_ROOT='"$(CURDIR)"' -o $@ $< -Wl,-E -Wl,--whole-archive \
	    $(BUILD)/libbepipe.a -Wl,--no-whole-archive $(BP_LDLIBS) -lcmocka $(LDFLAGS)

# An LD_PRELOAD shim that steps the wall clock mid-run, for the clock-step tests.
$(BUILD)/clockshift.so: tests/tools/clockshift.c | $(BUILD)
	@echo "  CC      $<"
	$(Q)$(CC) -O2 -Wall -Wextra -fPIC -shared $(CFLAGS) -o $@ $< -ldl

unit: $(UNIT_BINS) $(BUILD)/clockshift.so

# The same runtime and unit tests built with AddressSanitizer + UndefinedBehaviorSanitizer.
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# (C++: the vptr check needs the C++ UBSan runtime, which a C link does not bring)
sanitize: deps-test
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan CC=clang CXX=clang++ \
	    CFLAGS="$(SAN_FLAGS) -O1" CXXFLAGS="$(SAN_FLAGS) -fno-sanitize=vptr -O1" \
	    LDFLAGS="$(SAN_FLAGS)" build/asan/bepipe-lua build/asan/unit-all

build/asan/bepipe-lua: $(BUILD)/libbepipe.a $(BUILD)/main.o
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BUILD)/main.o -Wl,-E -Wl,--whole-archive $(BUILD)/libbepipe.a \
	    -Wl,--no-whole-archive $(BP_LDLIBS)

build/asan/unit-all: $(UNIT_BINS)
	$(Q)touch $@

# libFuzzer targets (tests/fuzz, one per parser) on a runtime built for them under ASan+UBSan.
# `make fuzz` runs each FUZZ_SECONDS; `make test` runs them briefly (tests/fuzz/run).
FUZZ_SECONDS ?= 300
FUZZ_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g
FUZZ_SRCS = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS = $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
# this one defines runtime symbols of its own (a stand-in rt), so it links the archive member by
# member rather than whole
FUZZ_PARTIAL = build/fuzz/fuzz_ndjson
fuzz-build: deps-test
	$(Q)$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang CXX=clang++ \
	    CFLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -O1" \
	    CXXFLAGS="$(FUZZ_FLAGS) -fno-sanitize=vptr -fsanitize=fuzzer-no-link -O1" build/fuzz/libbepipe.a
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BINS)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_host.h build/fuzz/libbepipe.a
	@echo "  FUZZ    $@"
	$(Q)clang $(BP_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -O1 -Iruntime -DSRC_ROOT='"$(CURDIR)"' \
	    -o $@ $< -Wl,-E $(if $(filter $@,$(FUZZ_PARTIAL)),,-Wl,--whole-archive) \
	    build/fuzz/libbepipe.a -Wl,--no-whole-archive $(BP_LDLIBS)

fuzz: fuzz-build
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run

# The unit tests again, on the sanitizer build, with the runtime's malloc/calloc/realloc renamed
# to an allocation-failure shim (tests/alloc_fail/shim.c): BP_ALLOC_FAIL_AT=N fails the runtime's
# N-th allocation (not the test's own, nor a shared library's); tests/alloc_fail/run sweeps N.
ALLOC_BINS = $(UNIT_SRCS:tests/unit/%.c=build/alloc-fail/%)
alloc-fail-build: sanitize
	$(Q)mkdir -p build/alloc-fail
	$(Q)for f in libbepipe.a main.o; do objcopy --redefine-sym malloc=bp_af_malloc \
	    --redefine-sym calloc=bp_af_calloc --redefine-sym realloc=bp_af_realloc \
	    build/asan/$$f build/alloc-fail/$$f || exit 1; done
	$(Q)$(MAKE) --no-print-directory $(ALLOC_BINS) build/alloc-fail/bepipe-lua

build/alloc-fail/bepipe-lua: build/alloc-fail/main.o build/alloc-fail/libbepipe.a tests/alloc_fail/shim.c
	@echo "  LD      $@"
	$(Q)clang $(BP_CFLAGS) $(SAN_FLAGS) -O1 -o $@ build/alloc-fail/main.o tests/alloc_fail/shim.c \
	    -Wl,-E -Wl,--whole-archive build/alloc-fail/libbepipe.a -Wl,--no-whole-archive \
	    $(BP_LDLIBS) $(SAN_FLAGS)

build/alloc-fail/%: tests/unit/%.c tests/alloc_fail/shim.c build/alloc-fail/libbepipe.a
	@echo "  CC      $@"
	$(Q)clang $(BP_CFLAGS) $(SAN_FLAGS) -O1 -Iruntime -DSRC_ROOT='"$(CURDIR)"' -o $@ $< \
	    tests/alloc_fail/shim.c -Wl,-E -Wl,--whole-archive build/alloc-fail/libbepipe.a \
	    -Wl,--no-whole-archive $(BP_LDLIBS) -lcmocka $(SAN_FLAGS)

alloc-fail: alloc-fail-build
	$(Q)tests/alloc_fail/run

# Memcheck over the unit tests and a local run of the binary (not part of `make test`: slow).
# Only definite leaks count: a child that _exits on purpose (the watchdog's hard limit) leaves
# its thread's stack "possibly lost".
valgrind: deps-test all unit
	@command -v valgrind >/dev/null || { $(call install_missing,valgrind); }
	$(Q)for t in $(UNIT_BINS); do echo "  VALGRIND $$t"; \
	    valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 $$t \
	        >/dev/null || exit 1; done
	$(Q)mkdir -p build/valgrind && luajit tests/tools/gen_events.lua --count 2000 --seed 3 \
	    > build/valgrind/events.ndjson && rm -rf build/valgrind/out && echo "  VALGRIND bepipe-lua" && \
	    valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 \
	    --log-file=build/valgrind/memcheck.log \
	    ./bepipe-lua scripts/pipeline.lua --input build/valgrind/events.ndjson \
	    --local-out build/valgrind/out 2>/dev/null || { cat build/valgrind/memcheck.log; exit 1; }
	@echo "valgrind: no errors, no leaks"

test: deps-test all unit sanitize fuzz-build alloc-fail-build
	$(Q)tests/run-all

bench: deps-test all
	$(Q)tests/bench/run
	$(Q)tests/bench/e2e
	$(Q)tests/bench/e2e --compression --throughput-only --spread 0
	$(Q)tests/bench/e2e --compression --throughput-only --spread 0 --lateness live
	$(Q)tests/bench/e2e --method --spread 0 --events 50000 --seconds 10

demo: deps-demo all
	$(Q)tests/tools/demo

# The local emulator of Google's APIs on its own, for trying things by hand (see
# tests/emulator/README.md): the seed's topic, subscription, dataset + tables and bucket.
EMULATOR_PORT ?= 8085
EMULATOR_DATA ?= build/emulator-data
emulator: deps-demo
	tests/emulator/emulator --port $(EMULATOR_PORT) --data $(EMULATOR_DATA) --project re-case \
	    --ddl ddl --dataset backend_events_data --topic backend-events-topic \
	    --subscription backend-events-topic-sub:backend-events-topic --bucket backend_events_data

# Install layout (PREFIX, DESTDIR as usual; luarocks passes its rock's folders instead):
#   BINDIR/bepipe-lua, DATADIR/lua/bepipe/ (the library), DATADIR/scripts/ (the shipped pipeline
#   and event scripts), DATADIR/ddl/, MANDIR/man1/bepipe-lua.1. The binary finds DATADIR/lua from
#   its own folder (../share/bepipe-lua/lua), so it runs from a DESTDIR or a moved tree too.
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/bepipe-lua
MANDIR ?= $(PREFIX)/share/man
.PHONY: uninstall
install: bepipe-lua
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/lua/bepipe $(DESTDIR)$(DATADIR)/ddl \
	    $(DESTDIR)$(DATADIR)/scripts/events $(DESTDIR)$(MANDIR)/man1
	install -m 755 bepipe-lua $(DESTDIR)$(BINDIR)/bepipe-lua
	cp -R scripts/bepipe/. $(DESTDIR)$(DATADIR)/lua/bepipe/
	install -m 644 scripts/pipeline.lua $(DESTDIR)$(DATADIR)/scripts/
	cp -R scripts/events/. $(DESTDIR)$(DATADIR)/scripts/events/
	install -m 644 ddl/*.sql $(DESTDIR)$(DATADIR)/ddl/
	install -m 644 doc/bepipe-lua.1 $(DESTDIR)$(MANDIR)/man1/bepipe-lua.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/bepipe-lua $(DESTDIR)$(MANDIR)/man1/bepipe-lua.1
	rm -rf $(DESTDIR)$(DATADIR)/lua $(DESTDIR)$(DATADIR)/scripts $(DESTDIR)$(DATADIR)/ddl
	-rmdir $(DESTDIR)$(DATADIR)

clean:
	rm -rf build bepipe-lua

-include $(wildcard $(BUILD)/*.d $(BUILD)/unit/*.d)
