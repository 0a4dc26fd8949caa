#!/usr/bin/env bash
# Router packages for the priority-1 OpenWrt arches: a static binary per arch
# (scripts/router-build.sh), then one .ipk (scripts/ipk.sh) and one .apk (scripts/apk.py) each,
# into dist/. Ends with the size table (binary, .ipk, .apk) and checks the size budget.
#
#   scripts/packages.sh [OPENWRT_ARCH ...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DIST="${DIST:-$ROOT/dist}"
# Budgets: the x86_64 router binary, and the official C daemon's .ipk on mipsel_24kc.
BIN_BUDGET=1835008
IPK_BUDGET_MIPSEL=966410

[ $# -gt 0 ] || set -- x86_64 aarch64_cortex-a53 arm_cortex-a7_neon-vfpv4 mipsel_24kc mips_24kc
mkdir -p "$DIST"
builds="$(scripts/router-build.sh "$@")"

table="| OpenWrt arch | binary (B) | .ipk (B) | .apk (B) |
|---|---:|---:|---:|"
fail=0
while read -r arch bin; do
	rm -f "$DIST"/noports_*_"$arch".ipk "$DIST"/noports-*_"$arch".apk
	# The first line each prints is the package's path (no `| head`: SIGPIPE under pipefail).
	ipk="$(scripts/ipk.sh --bin "$bin" --arch "$arch" --out "$DIST")"
	ipk="${ipk%%$'\n'*}"
	apk="$(python3 scripts/apk.py --bin "$bin" --arch "$arch" --out "$DIST")"
	apk="${apk%%$'\n'*}"
	b=$(wc -c <"$bin"); i=$(wc -c <"$ipk"); a=$(wc -c <"$apk")
	table="$table
| $arch | $b | $i | $a |"
	if [ "$arch" = x86_64 ] && [ "$b" -gt $BIN_BUDGET ]; then
		echo "packages.sh: x86_64 binary $b B is over the budget of $BIN_BUDGET B" >&2; fail=1
	fi
	if [ "$arch" = mipsel_24kc ] && [ "$i" -gt $IPK_BUDGET_MIPSEL ]; then
		echo "packages.sh: mipsel_24kc .ipk $i B is over the budget of $IPK_BUDGET_MIPSEL B" >&2; fail=1
	fi
done <<<"$builds"
echo "$table"
ls -1 "$DIST"
exit $fail
