#!/usr/bin/env bash
# Install what the end-to-end tests use besides Rust: OpenSSH (a real sshd and ssh for the sshnp
# tests), dropbear (OpenWrt's sshd, tests/e2e_dropbear.rs), qemu-user-static (the router
# builds run under it, tests/qemu_router.rs), Debian's chromium (the LuCI views run in it
# headless, tests/luci_browser.rs) and systemd's systemd-analyze (tests/install.rs verifies the
# units with it).
# Debian/Ubuntu; as root, or through sudo when available. Does nothing if present.
# The cross toolchain for the router builds is scripts/router-build.sh's business.
set -euo pipefail
# The toolchain of Cargo.toml's rust-version (the MSRV), from rustup: tests/msrv.rs builds with it.
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
if [ -n "$msrv" ] && command -v rustup >/dev/null 2>&1 &&
	! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$msrv" --profile minimal >&2
fi
need=()
{ [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; } || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v qemu-mipsel-static >/dev/null 2>&1 || need+=(qemu-user-static)
[ -x /usr/sbin/dropbear ] || need+=(dropbear-bin)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "the tests need: ${need[*]} (apt-get install them as root)" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq "${need[@]}"
