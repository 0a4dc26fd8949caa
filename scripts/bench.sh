#!/bin/sh
# Throughput of one NoPorts tunnel through the relay on loopback, for the official suite
# (AES-256-CTR) and ours (nps1, ChaCha20-Poly1305), each as a ratio against direct loopback
# TCP measured in the same run (tests/tunnel_bench.rs).
#
# usage: scripts/bench.sh [MiB per run, default 256] [runs, default 3]
# Builds with the release profile (opt-level "s", as shipped) and the router feature set. Set BENCH_FAST_BUILD=1 to skip
# LTO for a quicker compile (numbers then run slightly low). BENCH_OPT_LEVEL=3 overrides the
# opt-level (the ciphers run several times faster at 3 than at "s").
set -eu
cd "$(dirname "$0")/.."
export BENCH_MB="${1:-256}"
export BENCH_RUNS="${2:-3}"
if [ "${BENCH_FAST_BUILD:-0}" = 1 ]; then
    export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fi
if [ -n "${BENCH_OPT_LEVEL:-}" ]; then
    export CARGO_PROFILE_RELEASE_OPT_LEVEL="$BENCH_OPT_LEVEL"
fi
# rathole (crates.io) as the peer, when installed: `cargo install rathole --no-default-features
# --features server,client`.
if [ -z "${RATHOLE:-}" ] && command -v rathole >/dev/null 2>&1; then
    RATHOLE=$(command -v rathole)
fi
export RATHOLE="${RATHOLE:-}"
[ -n "$RATHOLE" ] || unset RATHOLE
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //') ($(nproc 2>/dev/null || echo ?) cores)"
out=$(cargo test --release --quiet --no-default-features --test tunnel_bench -- --ignored --nocapture --test-threads 1 2>&1) || {
    printf '%s\n' "$out" >&2
    exit 1
}
printf '%s\n' "$out" | grep -E '^(one tunnel|BENCH)' | sed 's/^BENCH //'
