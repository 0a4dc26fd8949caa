#!/bin/sh
# Lay out the noports install root and the package metadata, once, for every
# package format (scripts/ipk.sh for opkg, scripts/apk.py for apk v3).
#
#   scripts/stage.sh --bin PATH --dest DIR [--release N] [--links]
#
# Writes:
#   DIR/root/    the files the package installs, with their final modes:
#                /usr/bin/noports (stripped when that makes it smaller),
#                /usr/bin/at_enroll.sh, /etc/init.d/sshnpd, /etc/config/sshnpd,
#                /lib/upgrade/keep.d/noports; with --links also the applet
#                symlinks /usr/bin/<applet> -> noports (the .apk ships them as
#                entries, the .ipk creates them in postinst).
#   DIR/info     package metadata, one "key=value" a line (no quoting):
#                name version description license url maintainer origin
#                section depends provides conflicts applets source_date_epoch
#   DIR/conffiles  the SDK's Package/noports/conffiles list (files and dirs)
#
# The version is <Cargo.toml version>-r<release>. SOURCE_DATE_EPOCH defaults to
# the last commit's time (0 outside git).
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN=""
DEST=""
RELEASE="${PKG_RELEASE:-1}"
LINKS=0

while [ $# -gt 0 ]; do
	case "$1" in
		--bin) [ $# -ge 2 ] || { echo "stage.sh: --bin needs a value" >&2; exit 2; }; BIN="$2"; shift 2 ;;
		--dest) [ $# -ge 2 ] || { echo "stage.sh: --dest needs a value" >&2; exit 2; }; DEST="$2"; shift 2 ;;
		--release) [ $# -ge 2 ] || { echo "stage.sh: --release needs a value" >&2; exit 2; }; RELEASE="$2"; shift 2 ;;
		--links) LINKS=1; shift ;;
		-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
		*) echo "stage.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

[ -n "$BIN" ] || { echo "stage.sh: --bin is required" >&2; exit 2; }
[ -n "$DEST" ] || { echo "stage.sh: --dest is required" >&2; exit 2; }
[ -f "$BIN" ] || { echo "stage.sh: $BIN not found (run 'make static' or pass --bin)" >&2; exit 1; }
case "$RELEASE" in ''|*[!0-9]*) echo "stage.sh: release must be a number" >&2; exit 2 ;; esac
if [ -e "$DEST/root" ] || [ -e "$DEST/info" ]; then
	echo "stage.sh: $DEST already holds a staged package" >&2
	exit 1
fi

PKG=noports
UPSTREAM="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
case "$UPSTREAM" in
	[0-9]*.[0-9]*.[0-9]*) ;;
	*) echo "stage.sh: no usable version in Cargo.toml ($UPSTREAM)" >&2; exit 1 ;;
esac
VERSION="$UPSTREAM-r$RELEASE"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)"
fi
case "$SOURCE_DATE_EPOCH" in ''|*[!0-9]*) echo "stage.sh: SOURCE_DATE_EPOCH must be a number" >&2; exit 2 ;; esac
FILES="$ROOT/openwrt/noports/files"
APPLETS="sshnpd at_activate npt sshnp srvd srv"

DATA="$DEST/root"
mkdir -p "$DATA/usr/bin" "$DATA/etc/init.d" "$DATA/etc/config" "$DATA/lib/upgrade/keep.d"

cp "$BIN" "$DATA/usr/bin/noports"
# strip (keep the result only when it is smaller: re-stripping an already
# stripped binary can grow it by a few bytes of alignment)
if command -v "${STRIP:-strip}" >/dev/null 2>&1 &&
	"${STRIP:-strip}" -o "$DEST/stripped" "$BIN" 2>/dev/null &&
	[ "$(wc -c < "$DEST/stripped")" -lt "$(wc -c < "$BIN")" ]; then
	cp "$DEST/stripped" "$DATA/usr/bin/noports"
fi
rm -f "$DEST/stripped"
cp "$FILES/at_enroll.sh" "$DATA/usr/bin/at_enroll.sh"
cp "$FILES/sshnpd.init" "$DATA/etc/init.d/sshnpd"
cp "$FILES/sshnpd.config" "$DATA/etc/config/sshnpd"
# conffiles entries that are not files go to keep.d (read by sysupgrade),
# as the SDK does
printf '/root/.atsign/\n' > "$DATA/lib/upgrade/keep.d/$PKG"
if [ "$LINKS" = 1 ]; then
	for a in $APPLETS; do ln -s noports "$DATA/usr/bin/$a"; done
fi
find "$DATA" -type d -exec chmod 0755 {} +
chmod 0755 "$DATA/usr/bin/noports" "$DATA/usr/bin/at_enroll.sh" "$DATA/etc/init.d/sshnpd"
chmod 0600 "$DATA/etc/config/sshnpd"
chmod 0644 "$DATA/lib/upgrade/keep.d/$PKG"

printf '/etc/config/sshnpd\n/root/.atsign/\n' > "$DEST/conffiles"

cat > "$DEST/info" <<INFO
name=$PKG
version=$VERSION
description=NoPorts (sshnpd, at_activate, npt, sshnp, srvd, srv) reimplemented in Rust as one static multicall binary. Uses /etc/config/sshnpd and /etc/init.d/sshnpd like csshnpd, which it replaces.
license=BSD-3-Clause
url=https://www.noports.com
maintainer=noports-rs developers
origin=feeds/noports/noports
section=net
depends=libc
provides=csshnpd
conflicts=csshnpd
applets=$APPLETS
source_date_epoch=$SOURCE_DATE_EPOCH
INFO
