#!/usr/bin/env bash
# Static router builds of noports (router feature set: atserver left out), one per Rust triple,
# for the OpenWrt arch labels given (default: all five priority-1 arches).
#
#   scripts/router-build.sh [--deps-only] [OPENWRT_ARCH ...]
#
# Prints "<openwrt arch> <path of the stripped binary>" per arch on stdout.
# Everything comes from the package registries: a pinned nightly with rust-src (rustup), and zig
# plus cargo-zigbuild (PyPI) as cross C compiler and linker with the musl it ships (soft-float
# for MIPS). std is rebuilt for each target (-Zbuild-std) so that the tier-3 MIPS targets and
# armv7 build at all, and so that every router binary gets the size flags below.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

NIGHTLY="${NOPORTS_NIGHTLY:-nightly-2026-05-19}"
OUT_DIR="${CARGO_TARGET_DIR:-$ROOT/target/router}"

triple_of() {
	case "$1" in
	x86_64) echo x86_64-unknown-linux-musl ;;
	aarch64_cortex-a53 | aarch64_cortex-a72 | aarch64_cortex-a76 | aarch64_generic) echo aarch64-unknown-linux-musl ;;
	arm_cortex-a7_neon-vfpv4 | arm_cortex-a9_vfpv3-d16 | arm_cortex-a15_neon-vfpv4) echo armv7-unknown-linux-musleabihf ;;
	mipsel_24kc | mipsel_74kc) echo mipsel-unknown-linux-musl ;;
	mips_24kc) echo mips-unknown-linux-musl ;;
	*) echo "router-build.sh: unknown OpenWrt arch '$1'" >&2; return 2 ;;
	esac
}

deps() {
	# pip puts console scripts (cargo-zigbuild, python-zig) in the interpreter's scripts
	# directory, which need not be on PATH (pyenv only adds shims after a rehash).
	local scripts
	scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
	[ -n "$scripts" ] && export PATH="$scripts:$PATH"
	local need_pip=()
	command -v cargo-zigbuild >/dev/null 2>&1 || need_pip+=(cargo-zigbuild)
	{ command -v python-zig >/dev/null 2>&1 || command -v zig >/dev/null 2>&1; } || need_pip+=(ziglang)
	if [ ${#need_pip[@]} -gt 0 ]; then
		echo "router-build.sh: installing ${need_pip[*]} from PyPI" >&2
		# A Debian system python refuses global installs (PEP 668): fall back to the user's.
		python3 -m pip install -q "${need_pip[@]}" >&2 ||
			python3 -m pip install -q --user --break-system-packages "${need_pip[@]}" >&2
		export PATH="$HOME/.local/bin:$PATH"
	fi
	if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1 ||
		! rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -q '^rust-src'; then
		echo "router-build.sh: installing $NIGHTLY with rust-src" >&2
		rustup toolchain install "$NIGHTLY" --profile minimal -c rust-src >&2
	fi
}

deps
[ "${1:-}" = --deps-only ] && exit 0
[ $# -gt 0 ] || set -- x86_64 aarch64_cortex-a53 arm_cortex-a7_neon-vfpv4 mipsel_24kc mips_24kc

# Size flags, all of them safe for a static binary that aborts on panic:
# - crt-static: MIPS and some musl specs default to dynamic; link-self-contained=no: zig
#   supplies musl's start files (with build-std the Rust-shipped crt1.o is absent);
# - relocation-model=static: no PIE, nothing to relocate in a static binary;
# - no unwind tables and panic=immediate-abort: panics abort without formatting a message;
# - location-detail=none: no file/line strings for panics that cannot print anyway;
# - fmt-debug=shallow: derived Debug prints only the type or variant name (18 KB on x86_64);
#   no log line or message formats a derived-Debug value with fields (strings, numbers,
#   durations and std's own types keep their full Debug);
# - linker-messages allowed: with build-std the linker notes the absent rustlib/<triple>/lib.
RUSTFLAGS_ROUTER="-C target-feature=+crt-static -C link-self-contained=no -C relocation-model=static \
-C force-unwind-tables=no -Zlocation-detail=none -Zunstable-options -Cpanic=immediate-abort -Zfmt-debug=shallow -A linker-messages"

for arch in "$@"; do
	triple="$(triple_of "$arch")"
	echo "router-build.sh: $arch ($triple)" >&2
	RUSTFLAGS="$RUSTFLAGS_ROUTER" CARGO_TARGET_DIR="$OUT_DIR" \
		cargo "+$NIGHTLY" zigbuild --release --no-default-features --target "$triple" \
		-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size >&2
	echo "$arch $OUT_DIR/$triple/release/noports"
done
