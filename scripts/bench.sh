#!/bin/sh
# Speed of noports on loopback, every figure against a baseline measured in the same run:
# - tunnel throughput through the relay for the official suite (AES-256-CTR) and ours (nps1,
#   ChaCha20-Poly1305) against direct loopback TCP and rathole (TCP and Noise transports);
# - 1-byte round trips through an nps1 session against direct TCP and rathole's Noise
#   transport; new connections inside an established session; 50 parallel connections
#   (tests/tunnel_bench.rs, router feature set);
# - npt set-up (start to "listening"), atserver start-up with 3 new atSigns, sshnpd idle
#   memory, and one-way throughput and 1-byte round trips through npt, srvd and sshnpd against
#   rathole's server and client, with the real processes (tests/platform_bench.rs).
# Ends with one summary line:
#   bench: nps1_vs_rathole_noise=R relay_vs_direct=R setup_median_s=S newconn_median_ms=M rtt_vs_rathole=R
#
# usage: scripts/bench.sh [MiB per run, default 256] [runs, default 3]
# Builds with the release profile (as shipped). BENCH_FAST_BUILD=1 skips LTO for a quicker
# compile (numbers then run slightly low). RATHOLE=<path> picks the rathole binary; otherwise
# it is installed from crates.io (with its noise feature) when missing.
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
# (grep reads to the end: an early exit would kill rathole with SIGPIPE)
has_noise() { "$1" --genkey 2>/dev/null | grep 'Private Key' >/dev/null; }
if [ -z "${RATHOLE:-}" ]; then
    RATHOLE=$(command -v rathole 2>/dev/null || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rathole")
    if [ ! -x "$RATHOLE" ] || ! has_noise "$RATHOLE"; then
        echo "bench: installing rathole from crates.io (server, client, noise)" >&2
        cargo install --quiet --force rathole --no-default-features --features server,client,noise >&2
        RATHOLE="${CARGO_HOME:-$HOME/.cargo}/bin/rathole"
    fi
fi
export RATHOLE
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //') ($(nproc 2>/dev/null || echo ?) cores); rathole $("$RATHOLE" --version 2>/dev/null | sed -n 's/^Build Version: *//p')"
run() {
    out=$(cargo test --release --quiet "$@" -- --ignored --nocapture --test-threads 1 2>&1) || {
        printf '%s\n' "$out" >&2
        exit 1
    }
    printf '%s\n' "$out"
}
all=$(run --no-default-features --test tunnel_bench; run --test platform_bench)
printf '%s\n' "$all" | grep -E '^(one tunnel|one way|round trips|set-up|BENCH)' | sed 's/^BENCH //'
kv() { printf '%s\n' "$all" | sed -n "s/^KV $1=//p" | tail -1; }
# nps1 against rathole, throughput and round trips: the real processes (npt, srvd, sshnpd
# against rathole's server and client), as users run them; the in-process figures (all our
# ends on one executor) are printed above.
echo "bench: nps1_vs_rathole_noise=$(kv tput_processes_vs_rathole) relay_vs_direct=$(kv relay_vs_direct) setup_median_s=$(kv setup_median_s) newconn_median_ms=$(kv newconn_median_ms) rtt_vs_rathole=$(kv rtt_processes_vs_rathole)"
