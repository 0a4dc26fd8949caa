# noports-rs: build, test, demo, static build and packaging.
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
# ring compiles C: point cc-rs at musl-gcc (Debian: apt-get install musl-tools) unless set.
export CC_x86_64_unknown_linux_musl ?= musl-gcc

.PHONY: all build release static test demo bench fuzz-build clean size

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Static x86_64 musl binary (the router-style build; atserver left out like on OpenWrt).
static:
	$(CARGO) build --release --target $(MUSL_TARGET) --no-default-features
	@ls -l target/$(MUSL_TARGET)/release/noports

# Static build with the atserver applet included.
static-full:
	$(CARGO) build --release --target $(MUSL_TARGET)
	@ls -l target/$(MUSL_TARGET)/release/noports

# The full test suite: unit tests, known-answer vectors, and end-to-end tests that run the real
# binary over loopback.
test:
	./scripts/test-deps.sh
	$(CARGO) build
	$(CARGO) test --no-fail-fast -- --test-threads=2

demo:
	$(CARGO) build --release
	$(CARGO) run --release --example demo -- target/release/noports

# Tunnel throughput through the relay, both suites, as ratios against direct loopback TCP.
bench:
	./scripts/bench.sh

clean:
	$(CARGO) clean

# cargo-fuzz targets (nightly): envelope, json, response_line, notification.
fuzz-build:
	cd fuzz && cargo +nightly fuzz build

# OpenWrt .ipk (x86_64) from the static musl build, without the SDK: make static && make ipk
.PHONY: ipk
ipk:
	./scripts/ipk.sh
