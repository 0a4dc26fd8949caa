#!/usr/bin/env bash
# Footprint of a binary: stripped size, and idle resident memory (VmRSS) of sshnpd and srvd
# connected to a self-hosted atServer on loopback.
#
# usage: scripts/footprint.sh [path/to/noports]   (default: the static musl build)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/router/x86_64-unknown-linux-musl/release/noports}
SERVER_BIN=${SERVER_BIN:-target/release/noports}   # any build with the atserver feature
[ -x "$BIN" ] || { echo "no binary at $BIN (make static)" >&2; exit 1; }
[ -x "$SERVER_BIN" ] || { echo "no atserver-capable binary at $SERVER_BIN (make release)" >&2; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
"$SERVER_BIN" atserver --dir "$dir/at" --bind 127.0.0.1 --root-port 0 --create @fp_client,@fp_device,@fp_relay >"$dir/atserver.out" 2>"$dir/atserver.err" &
pids+=($!)
for _ in $(seq 1 600); do grep -q '^ready ' "$dir/atserver.out" 2>/dev/null && break; sleep 0.1; done
root=$(sed -n 's/^ready root=\([^ ]*\) .*/\1/p' "$dir/atserver.out")
export NOPORTS_CA_FILE="$dir/at/ca.pem" HOME="$dir" USER=fp
"$BIN" sshnpd -a @fp_device -m @fp_client -d fp -k "$dir/at/keys/@fp_device_key.atKeys" --root-domain "$root" 2>"$dir/sshnpd.err" &
pids+=($!); daemon=$!
"$BIN" srvd -a @fp_relay -i 127.0.0.1 -k "$dir/at/keys/@fp_relay_key.atKeys" --root-domain "$root" 2>"$dir/srvd.err" &
pids+=($!); relay=$!
sleep 8
size=$(stat -c %s "$BIN")
echo "binary           $BIN: $size bytes ($(awk "BEGIN{printf \"%.2f\", $size/1048576}") MiB)"
echo "sshnpd idle RSS  $(awk '/VmRSS|RssAnon|RssFile/{printf "%s %s %s  ", $1, $2, $3}' /proc/$daemon/status)"
echo "srvd idle RSS    $(awk '/VmRSS|RssAnon|RssFile/{printf "%s %s %s  ", $1, $2, $3}' /proc/$relay/status)"
