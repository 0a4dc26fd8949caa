#!/bin/sh
# Build an OpenWrt .ipk of noports from a static binary, without the SDK.
#
#   scripts/ipk.sh [--bin PATH] [--arch ARCH] [--out DIR] [--release N]
#
# Environment equivalents: NOPORTS_BIN, IPK_ARCH, IPK_OUT, PKG_RELEASE,
# SOURCE_DATE_EPOCH. Defaults: the static musl build
# target/router/x86_64-unknown-linux-musl/release/noports, arch x86_64, out target/ipk.
#
# Format (as opkg-lede reads it; docs in docs/openwrt.md): a gzip-compressed
# tar holding ./debian-binary ("2.0\n"), ./data.tar.gz and ./control.tar.gz,
# in that order; inner tars gzip, numeric owner 0:0, entries prefixed './'.
# The payload and the metadata come from scripts/stage.sh (shared with
# scripts/apk.py). Only tar, gzip, coreutils (and strip when present) are used.
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${NOPORTS_BIN:-$ROOT/target/router/x86_64-unknown-linux-musl/release/noports}"
ARCH="${IPK_ARCH:-x86_64}"
OUT="${IPK_OUT:-$ROOT/target/ipk}"
RELEASE="${PKG_RELEASE:-1}"

while [ $# -gt 0 ]; do
	case "$1" in
		--bin) BIN="$2"; shift 2 ;;
		--arch) ARCH="$2"; shift 2 ;;
		--out) OUT="$2"; shift 2 ;;
		--release) RELEASE="$2"; shift 2 ;;
		-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
		*) echo "ipk.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

[ -f "$BIN" ] || { echo "ipk.sh: $BIN not found (run 'make static' or pass --bin)" >&2; exit 1; }
case "$RELEASE" in ''|*[!0-9]*) echo "ipk.sh: release must be a number" >&2; exit 2 ;; esac

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# --- data: the install root and the metadata come from stage.sh ----------
sh "$ROOT/scripts/stage.sh" --bin "$BIN" --dest "$WORK/stage" --release "$RELEASE"
info() { sed -n "s/^$1=//p" "$WORK/stage/info"; }
PKG="$(info name)"
VERSION="$(info version)"
APPLETS="$(info applets)"
SOURCE_DATE_EPOCH="$(info source_date_epoch)"
DATA="$WORK/stage/root"
CTRL="$WORK/control"
mkdir -p "$CTRL"

TAR="tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime=@$SOURCE_DATE_EPOCH"
(cd "$DATA" && $TAR -cf "$WORK/data.tar" .)
INSTALLED_SIZE="$(wc -c < "$WORK/data.tar" | tr -d ' ')"
gzip -n -9 -c "$WORK/data.tar" > "$WORK/data.tar.gz"

# --- control ------------------------------------------------------------
cat > "$CTRL/control" <<CONTROL
Package: $PKG
Version: $VERSION
Depends: $(info depends)
Conflicts: $(info conflicts)
Provides: $(info provides)
Source: $(info origin)
SourceName: $PKG
License: $(info license)
Section: $(info section)
SourceDateEpoch: $SOURCE_DATE_EPOCH
URL: $(info url)
Maintainer: $(info maintainer)
Architecture: $ARCH
Installed-Size: $INSTALLED_SIZE
Description: $(info description)
CONTROL

# conffiles: only the entries that are files in the package (as ipkg-build)
while read -r f; do
	if [ -f "$DATA$f" ]; then printf '%s\n' "$f"; fi
done < "$WORK/stage/conffiles" > "$CTRL/conffiles"

# postinst: the applet symlinks (also during an image build), then the
# SDK's generic part (default_postinst: enable + start /etc/init.d/sshnpd).
cat > "$CTRL/postinst" <<POSTINST
#!/bin/sh
for a in $APPLETS; do
	l="\${IPKG_INSTROOT}/usr/bin/\$a"
	if [ -L "\$l" ] || [ ! -e "\$l" ]; then
		rm -f "\$l"
		ln -s noports "\$l"
	fi
done
[ "\${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s "\${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "\${IPKG_INSTROOT}/lib/functions.sh"
default_postinst \$0 \$@
POSTINST

# prerm: the SDK's generic part (default_prerm: stop + disable), then the
# symlinks that still point at noports.
cat > "$CTRL/prerm" <<PRERM
#!/bin/sh
rc=0
if [ -s "\${IPKG_INSTROOT}/lib/functions.sh" ]; then
	. "\${IPKG_INSTROOT}/lib/functions.sh"
	default_prerm \$0 \$@
	rc=\$?
fi
for a in $APPLETS; do
	l="\${IPKG_INSTROOT}/usr/bin/\$a"
	[ -L "\$l" ] && [ "\$(readlink "\$l")" = noports ] && rm -f "\$l"
done
exit \$rc
PRERM
chmod 0644 "$CTRL/control" "$CTRL/conffiles"
chmod 0755 "$CTRL/postinst" "$CTRL/prerm"
(cd "$CTRL" && $TAR -cf - . | gzip -n -9 > "$WORK/control.tar.gz")

# --- outer --------------------------------------------------------------
printf '2.0\n' > "$WORK/debian-binary"
chmod 0644 "$WORK/debian-binary" "$WORK/data.tar.gz" "$WORK/control.tar.gz"
mkdir -p "$OUT"
IPK="$(cd "$OUT" && pwd)/${PKG}_${VERSION}_${ARCH}.ipk"
(cd "$WORK" && tar --format=gnu --numeric-owner --owner=0 --group=0 --mtime=@"$SOURCE_DATE_EPOCH" \
	-cf - ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -n -9 > "$IPK")
SIZE="$(wc -c < "$IPK" | tr -d ' ')"
echo "$IPK"
echo "size: $SIZE bytes (installed: $INSTALLED_SIZE bytes)"
