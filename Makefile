# noports-rs: build, test, demo, static build and packaging.
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl

comma := ,

.PHONY: all build release static static-full packages test test-router-all test-apk-tools demo bench fuzz-build clean size

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Static x86_64 router binary (router feature set: atserver left out), built like every router
# arch by scripts/router-build.sh (pinned nightly + build-std, zig as linker; installs them).
# Budget: 1,835,008 B.
ROUTER_X86_64 := target/router/x86_64-unknown-linux-musl/release/noports
check_router_budget = @ls -l $(ROUTER_X86_64); \
	  [ $$(wc -c < $(ROUTER_X86_64)) -le 1835008 ] || { echo "$(ROUTER_X86_64) is over the 1,835,008 B budget"; exit 1; }

static:
	./scripts/router-build.sh x86_64 >/dev/null
	$(check_router_budget)

# Static musl binaries, .ipk and .apk for x86_64, aarch64_cortex-a53, arm_cortex-a7_neon-vfpv4,
# mipsel_24kc and mips_24kc into dist/, with the size table.
packages:
	./scripts/packages.sh

# Static x86_64 build with the atserver applet included (stable toolchain, musl-gcc).
# ring compiles C: cc-rs is pointed at musl-gcc (Debian: apt-get install musl-tools) here only;
# exported for every target it would override the zig compiler router-build.sh sets up.
static-full: export CC_x86_64_unknown_linux_musl ?= musl-gcc
static-full:
	$(CARGO) build --release --target $(MUSL_TARGET)
	@ls -l target/$(MUSL_TARGET)/release/noports

# The full test suite: unit tests, known-answer vectors, and end-to-end tests that run the real
# binary over loopback.
# The router builds the qemu tests must run (tests/qemu_router.rs): x86_64 (natively, and held to
# its size budget, as `make static` builds it), one little-endian 64-bit and one MIPS arch;
# `make test-router-all` builds and runs all five.
TEST_ROUTER_ARCHES := x86_64,aarch64_cortex-a53,mipsel_24kc
# The test files whose tests that need a tool are #[ignore]d (so a plain `cargo test` says it left
# them out): scripts/test-deps.sh installs the tools, and the second run below runs exactly those
# tests, which fail if a tool is still missing. The benchmarks (platform_bench, tunnel_bench)
# are ignored too and are not among them: scripts/bench.sh runs them.
TEST_NEEDS_TOOLS := e2e_dropbear install luci_browser msrv
# tests/qemu_router.rs names each test after its OpenWrt arch, '-' written '_'.
router_tests = $(subst -,_,$(subst $(comma), ,$(1)))

# Every run goes on when an earlier one failed (as --no-fail-fast does inside one run), and the
# target fails if any did.
test:
	./scripts/test-deps.sh
	./scripts/router-build.sh $(subst $(comma), ,$(TEST_ROUTER_ARCHES)) >/dev/null
	$(check_router_budget)
	$(CARGO) build
	rc=0; \
	$(CARGO) test --no-fail-fast -- --test-threads=2 || rc=1; \
	$(CARGO) test --no-fail-fast $(TEST_NEEDS_TOOLS:%=--test %) -- --ignored --test-threads=2 || rc=1; \
	$(CARGO) test --no-fail-fast --test qemu_router -- --ignored --exact --test-threads=2 \
	  $(call router_tests,$(TEST_ROUTER_ARCHES)) || rc=1; \
	exit $$rc

# All five router builds (x86_64, aarch64_cortex-a53, arm_cortex-a7_neon-vfpv4, mipsel_24kc,
# mips_24kc) checked and run, the foreign ones under qemu, each serving a session.
test-router-all:
	./scripts/test-deps.sh
	./scripts/router-build.sh >/dev/null
	$(CARGO) test --no-fail-fast --test qemu_router -- --ignored --test-threads=2

# The .apk checked with a real apk-tools 3 (tests/packaging.rs): Debian packages none, so
# `make test` cannot install it; name one you built: make test-apk-tools NOPORTS_APK_TOOL=/path/to/apk
test-apk-tools:
	@[ -n "$(NOPORTS_APK_TOOL)" ] || { echo "set NOPORTS_APK_TOOL=/path/to/apk (apk-tools 3)"; exit 1; }
	NOPORTS_APK_TOOL=$(NOPORTS_APK_TOOL) $(CARGO) test --test packaging apk_with_real_apk_tools -- --ignored --exact

demo:
	$(CARGO) build --release
	$(CARGO) run --release --example demo -- target/release/noports

# Throughput, latency, set-up and start-up against direct TCP and rathole (installed from
# crates.io with its noise feature when missing), measured in the same run; ends with one
# `bench: ...` summary line (scripts/bench.sh).
bench:
	./scripts/bench.sh

clean:
	$(CARGO) clean

# cargo-fuzz targets (nightly): envelope, json, response_line, notification, relay_auth, atkeys,
# atserver_verb, nps1_record, nps1_mux, policy.
fuzz-build:
	cd fuzz && cargo +nightly fuzz build -O -s $${FUZZ_SANITIZER:-none}

# Every fuzz target for FUZZ_SECONDS each (default 60; FUZZ_RUNS=N stops a target after N
# executions), one worker each, on the pinned nightly (cargo-fuzz installed if missing); prints
# executions and crashes per target. Not part of `make test`.
.PHONY: fuzz soak
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)

# Soak and faults (not part of CI): 1,000 sessions in a row and 200 at once through atserver,
# srvd and sshnpd with their descriptors and RSS printed before and after, plus the kill -9 and
# damaged-store runs. `make test` runs the same file with 4 + 4 sessions.
SOAK_SESSIONS ?= 1000
SOAK_CONCURRENT ?= 200
# Notifications of a burst live 60 s and are swept every 60 s: memory may take that long to return.
SOAK_SETTLE_SECS ?= 150
soak:
	$(CARGO) build
	NOPORTS_TEST_ATSERVER_ARGS="--max-connections 2000" SOAK_SESSIONS=$(SOAK_SESSIONS) SOAK_CONCURRENT=$(SOAK_CONCURRENT) SOAK_SETTLE_SECS=$(SOAK_SETTLE_SECS) $(CARGO) test --test faults -- --nocapture --test-threads=1

# OpenWrt .ipk (x86_64) from the static router build, without the SDK: make static && make ipk
.PHONY: ipk
ipk:
	./scripts/ipk.sh --bin target/router/x86_64-unknown-linux-musl/release/noports
