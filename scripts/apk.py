#!/usr/bin/env python3
"""Build an OpenWrt 25.x .apk (apk-tools v3 "ADB" package) of noports, without the SDK.

    scripts/apk.py --bin PATH --arch ARCH --out DIR [--release N] [--compression deflate|none]

Prints the package path and "size: N bytes (installed: M bytes)".
Output file: DIR/noports-<version>_<arch>.apk, e.g. noports-0.1.0-r1_mipsel_24kc.apk
(the SDK writes <name>-<version>.apk; the arch suffix keeps builds for several
OpenWrt arches apart in one directory; apk itself does not read the file name).

The payload comes from scripts/stage.sh (shared with scripts/ipk.sh), with the applet
symlinks as real symlink entries, plus what OpenWrt's package-pack.mk adds for apk:
/lib/apk/packages/noports.list, .conffiles and .conffiles_static. The maintainer
scripts are the ones the SDK generates (post-install, post-upgrade, pre-deinstall).

The layout of the file is described in docs/openwrt.md ("The .apk we write"). The
output is deterministic: every time stamp is SOURCE_DATE_EPOCH (default: the last
commit's time), every owner is root:root. Python 3 standard library only.
"""

import argparse
import hashlib
import os
import stat
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- ADB constants (apk-tools src/adb.h, src/apk_adb.h) -----------------------------
ADB_MAGIC = b"ADB."
SCHEMA_PACKAGE = 0x676B6370  # "pckg"

T_SPECIAL = 0x0
T_INT = 0x1
T_INT32 = 0x2
T_INT64 = 0x3
T_BLOB8 = 0x8
T_BLOB16 = 0x9
T_BLOB32 = 0xA
T_ARRAY = 0xD
T_OBJECT = 0xE
NULL = 0

BLOCK_ADB = 0
BLOCK_DATA = 2
BLOCK_ALIGN = 8
BLOCK_MAX_LEN = 0x3FFFFFFF - 4  # larger payloads would need an extended block header

# slot numbers (1-based; slot 0 of every object/array holds the slot count)
PI = dict(name=1, version=2, hashes=3, description=4, arch=5, license=6, origin=7,
          maintainer=8, url=9, repo_commit=10, build_time=11, installed_size=12,
          file_size=13, provider_priority=14, depends=15, provides=16, replaces=17,
          install_if=18, recommends=19, layer=20, tags=21)
PI_MAX = 22
ACL_MODE, ACL_USER, ACL_GROUP, ACL_XATTRS, ACL_MAX = 1, 2, 3, 4, 5
FI_NAME, FI_ACL, FI_SIZE, FI_MTIME, FI_HASH, FI_TARGET, FI_MAX = 1, 2, 3, 4, 5, 6, 7
DI_NAME, DI_ACL, DI_FILES, DI_MAX = 1, 2, 3, 4
SCRIPTS = {"trigger": 1, "pre-install": 2, "post-install": 3, "pre-deinstall": 4,
           "post-deinstall": 5, "pre-upgrade": 6, "post-upgrade": 7}
SCRIPTS_MAX = 8
PKG_INFO, PKG_PATHS, PKG_SCRIPTS, PKG_TRIGGERS, PKG_REPLACES_PRIO, PKG_MAX = 1, 2, 3, 4, 5, 6
DEP_NAME, DEP_VERSION, DEP_MATCH, DEP_MAX = 1, 2, 3, 4

UID_LEN = 20  # pkginfo.hashes: a 20-byte unique id, not a verified digest


class ApkError(Exception):
    pass


def val(kind, x):
    if not 0 <= x <= 0x0FFFFFFF:
        raise ApkError("ADB value or offset out of range: %d" % x)
    return (kind << 28) | x


class AdbWriter:
    """Append-only ADB value store. Starts with the 8-byte ADB header
    {u8 compat 0, u8 version 0, u16 reserved, u32 root}. Identical values are
    stored once (apk mkpkg does the same), except the unique-id blob."""

    def __init__(self):
        self.buf = bytearray(8)
        self.seen = {}

    def _raw(self, data, align):
        pad = (-len(self.buf)) % align
        self.buf += b"\0" * pad
        off = len(self.buf)
        self.buf += data
        return off

    def _data(self, data, align, cache=True):
        data = bytes(data)
        if cache:
            off = self.seen.get(data)
            if off is not None and off % align == 0:
                return off
        off = self._raw(data, align)
        if cache:
            self.seen[data] = off
        return off

    def blob(self, b, cache=True):
        b = b.encode() if isinstance(b, str) else bytes(b)
        n = len(b)
        if n == 0:
            return NULL
        if n <= 0xFF:
            return val(T_BLOB8, self._data(struct.pack("<B", n) + b, 1, cache))
        if n <= 0xFFFF:
            return val(T_BLOB16, self._data(struct.pack("<H", n) + b, 2, cache))
        return val(T_BLOB32, self._data(struct.pack("<I", n) + b, 4, cache))

    def int(self, x):
        if x < 0:
            raise ApkError("negative integer %d" % x)
        if x >= 1 << 32:
            return val(T_INT64, self._data(struct.pack("<Q", x), 4))
        if x >= 1 << 28:
            return val(T_INT32, self._data(struct.pack("<I", x), 4))
        return val(T_INT, x)

    def obj(self, slots, kind=T_OBJECT):
        """slots: values for slots 1..n; trailing NULLs are dropped; an empty
        object/array is NULL."""
        slots = list(slots)
        while slots and slots[-1] == NULL:
            slots.pop()
        if not slots:
            return NULL
        words = [len(slots) + 1] + slots
        return val(kind, self._data(struct.pack("<%dI" % len(words), *words), 4))

    def set_root(self, v):
        struct.pack_into("<I", self.buf, 4, v)


def object_slots(fields, size):
    """fields: {slot: value} -> list for slots 1..size-1."""
    out = [NULL] * (size - 1)
    for k, v in fields.items():
        out[k - 1] = v
    return out


# --- package metadata -----------------------------------------------------------------

def read_info(path):
    info = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            k, sep, v = line.partition("=")
            if not sep:
                raise ApkError("%s: bad line %r" % (path, line))
            info[k] = v
    for k in ("name", "version", "description", "license", "url", "maintainer",
              "origin", "depends", "provides", "applets", "source_date_epoch"):
        if k not in info:
            raise ApkError("%s: %s missing" % (path, k))
    return info


def valid_version(v):
    # number{.number}...-rN is all we produce; apk's grammar is wider
    main, sep, rel = v.partition("-r")
    parts = main.split(".")
    return (sep == "-r" and rel.isdigit() and all(p.isdigit() for p in parts)
            and len(parts) >= 1)


def valid_arch(a):
    return bool(a) and all(c.isalnum() or c in "_-" for c in a)


def sdk_scripts(pkg):
    """The scripts OpenWrt's package-pack.mk generates for an apk of a package
    without its own postinst/prerm/preinst/postrm."""
    post_install = (
        "#!/bin/sh\n"
        '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
        "[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
        ". ${IPKG_INSTROOT}/lib/functions.sh\n"
        'export root="${IPKG_INSTROOT}"\n'
        'export pkgname="%s"\n'
        "add_group_and_user\n"
        "default_postinst\n" % pkg
    )
    body = "".join(l + "\n" for l in post_install.splitlines() if not l.lstrip().startswith("#!"))
    post_upgrade = "#!/bin/sh\nexport PKG_UPGRADE=1\n" + body
    pre_deinstall = (
        "#!/bin/sh\n"
        "[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
        ". ${IPKG_INSTROOT}/lib/functions.sh\n"
        'export root="${IPKG_INSTROOT}"\n'
        'export pkgname="%s"\n'
        "default_prerm\n" % pkg
    )
    return {"post-install": post_install, "post-upgrade": post_upgrade,
            "pre-deinstall": pre_deinstall}


def add_apk_metadata(root, pkg, conffiles):
    """/lib/apk/packages/<pkg>.list (every file and symlink, sorted, written before
    the .list itself exists), .conffiles (the SDK list as is) and .conffiles_static
    ("<path> <sha256>" for each conffile that is a file in the package)."""
    listing = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                listing.append("/" + os.path.relpath(p, root))
    listing.sort(key=lambda s: s.encode())
    meta = os.path.join(root, "lib/apk/packages")
    os.makedirs(meta, exist_ok=True)
    os.chmod(meta, 0o755)
    os.chmod(os.path.join(root, "lib/apk"), 0o755)
    out = {}
    out[pkg + ".list"] = "".join(l + "\n" for l in listing)
    out[pkg + ".conffiles"] = conffiles
    static = ""
    for line in conffiles.splitlines():
        p = os.path.join(root, line.lstrip("/"))
        if line and os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as f:
                static += "%s %s\n" % (line, hashlib.sha256(f.read()).hexdigest())
    if static:
        out[pkg + ".conffiles_static"] = static
    for name, text in out.items():
        p = os.path.join(meta, name)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(p, 0o644)


# --- the package ------------------------------------------------------------------------

def sorted_names(path):
    return sorted(os.listdir(path), key=os.fsencode)


def build_adb(root, info, arch, epoch):
    """Returns (adb bytes, [(path_idx, file_idx, abs path, size)] for DATA blocks,
    installed size). Value order follows apk mkpkg so the two can be compared."""
    w = AdbWriter()

    # pkginfo fields, in slot order
    pi = {}
    pi[PI["name"]] = w.blob(info["name"])
    pi[PI["version"]] = w.blob(info["version"])
    pi[PI["description"]] = w.blob(info["description"])
    pi[PI["arch"]] = w.blob(arch)
    pi[PI["license"]] = w.blob(info["license"])
    pi[PI["origin"]] = w.blob(info["origin"])
    pi[PI["maintainer"]] = w.blob(info["maintainer"])
    pi[PI["url"]] = w.blob(info["url"])
    pi[PI["build_time"]] = w.int(epoch)

    def deps(words):
        objs = []
        for word in words.split():
            name, eq, ver = word.partition("=")
            if any(c in name for c in "<>~!") or not name:
                raise ApkError("unsupported dependency %r" % word)
            fields = {DEP_NAME: w.blob(name)}
            if eq:
                if not valid_version(ver):
                    raise ApkError("bad version in %r" % word)
                fields[DEP_VERSION] = w.blob(ver)
            objs.append((name.encode(), ver, w.obj(object_slots(fields, DEP_MAX))))
        # apk sorts dependency arrays by name and drops duplicates
        objs.sort(key=lambda o: (o[0], o[1]))
        uniq = []
        for o in objs:
            if not uniq or uniq[-1] != o[2]:
                uniq.append(o[2])
        return w.obj(uniq)

    pi[PI["depends"]] = deps(info["depends"])
    # like the SDK: a package without an ABI version provides name=version
    provides = " ".join("%s=%s" % (p, info["version"]) for p in info["provides"].split())
    pi[PI["provides"]] = deps(provides)

    # directories: the root first, then every directory path sorted bytewise
    dirs = []
    for d, subdirs, _ in os.walk(root):
        for s in subdirs:
            p = os.path.join(d, s)
            if os.path.islink(p):
                continue
            dirs.append(os.path.relpath(p, root))
    dirs.sort(key=os.fsencode)
    dirs = [""] + dirs

    def acl(mode):
        return w.obj(object_slots({ACL_MODE: w.int(mode), ACL_USER: w.blob("root"),
                                   ACL_GROUP: w.blob("root")}, ACL_MAX))

    paths = []
    data = []
    installed = 0
    for di, rel in enumerate(dirs, start=1):
        dpath = os.path.join(root, rel) if rel else root
        files = []
        for name in sorted_names(dpath):
            p = os.path.join(dpath, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                continue
            f = {FI_NAME: w.blob(name)}
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    f[FI_HASH] = w.blob(hashlib.sha256(fh.read()).digest())
                size = st.st_size
                installed += size
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(p).encode()
                f[FI_TARGET] = w.blob(struct.pack("<H", stat.S_IFLNK) + target)
                size = len(target)
            else:
                raise ApkError("%s: only files, symlinks and directories can be packaged" % p)
            f[FI_MTIME] = w.int(epoch)
            f[FI_SIZE] = w.int(size)
            f[FI_ACL] = acl(stat.S_IMODE(st.st_mode))
            files.append(w.obj(object_slots(f, FI_MAX)))
            if stat.S_ISREG(st.st_mode) and size > 0:
                data.append((di, len(files), p, size))
        dmode = stat.S_IMODE(os.lstat(dpath).st_mode)
        dobj = {DI_NAME: w.blob(rel), DI_ACL: acl(dmode), DI_FILES: w.obj(files)}
        paths.append(w.obj(object_slots(dobj, DI_MAX)))

    if installed == 0:
        installed = 1
    pi[PI["installed_size"]] = w.int(installed)
    pi[PI["hashes"]] = w.blob(b"\0" * UID_LEN, cache=False)
    uid_off = (pi[PI["hashes"]] & 0x0FFFFFFF) + 1

    pkg = {PKG_INFO: w.obj(object_slots(pi, PI_MAX)), PKG_PATHS: w.obj(paths)}
    scripts = sdk_scripts(info["name"])
    ordered = sorted(scripts.items(), key=lambda kv: SCRIPTS[kv[0]])
    pkg[PKG_SCRIPTS] = w.obj(object_slots(
        {SCRIPTS[k]: w.blob(v) for k, v in ordered}, SCRIPTS_MAX))
    w.set_root(w.obj(object_slots(pkg, PKG_MAX)))

    # unique id: the first 20 bytes of the sha256 of the ADB with the id zeroed
    uid = hashlib.sha256(bytes(w.buf)).digest()[:UID_LEN]
    w.buf[uid_off:uid_off + UID_LEN] = uid
    return bytes(w.buf), data, installed


def block(kind, payload_len):
    if payload_len > BLOCK_MAX_LEN:
        raise ApkError("block of %d bytes is too large for this writer" % payload_len)
    return struct.pack("<I", (kind << 30) + 4 + payload_len)


def padding(n):
    return b"\0" * ((-n) % BLOCK_ALIGN)


def write_package(out_path, adb, data, compression):
    stream = bytearray()
    stream += ADB_MAGIC + struct.pack("<I", SCHEMA_PACKAGE)
    stream += block(BLOCK_ADB, len(adb)) + adb + padding(4 + len(adb))
    for path_idx, file_idx, path, size in data:
        with open(path, "rb") as f:
            content = f.read()
        if len(content) != size:
            raise ApkError("%s changed while packaging" % path)
        stream += block(BLOCK_DATA, 8 + size) + struct.pack("<II", path_idx, file_idx)
        stream += content + padding(4 + 8 + size)
    if compression == "deflate":
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
        body = b"ADBd" + c.compress(bytes(stream)) + c.flush()
    else:
        body = bytes(stream)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(body)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out_path)
    return len(body)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Build the noports .apk (apk-tools v3) for OpenWrt 25.x")
    ap.add_argument("--bin", required=True, help="the static noports binary")
    ap.add_argument("--arch", required=True, help="OpenWrt package arch, e.g. mipsel_24kc")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--release", default=os.environ.get("PKG_RELEASE", "1"), help="package release number")
    ap.add_argument("--compression", choices=["deflate", "none"], default="deflate",
                    help="deflate (what apk mkpkg writes) or none (for inspection)")
    ap.add_argument("--keep-root", metavar="DIR",
                    help="also copy the staged install root to DIR (for comparisons)")
    a = ap.parse_args(argv)

    if not os.path.isfile(a.bin):
        raise ApkError("%s not found (run 'make static' or pass --bin)" % a.bin)
    if not a.release.isdigit():
        raise ApkError("release must be a number, not %r" % a.release)
    if not valid_arch(a.arch):
        raise ApkError("bad arch %r (letters, digits, '_' and '-' only)" % a.arch)

    with tempfile.TemporaryDirectory() as work:
        stage = os.path.join(work, "stage")
        r = subprocess.run(["sh", os.path.join(ROOT, "scripts/stage.sh"), "--bin", a.bin,
                            "--dest", stage, "--release", a.release, "--links"])
        if r.returncode != 0:
            raise ApkError("scripts/stage.sh failed (%d)" % r.returncode)
        info = read_info(os.path.join(stage, "info"))
        if not valid_version(info["version"]):
            raise ApkError("version %r is not X.Y.Z-rN" % info["version"])
        epoch = int(info["source_date_epoch"])
        root = os.path.join(stage, "root")
        with open(os.path.join(stage, "conffiles"), encoding="utf-8") as f:
            conffiles = f.read()
        add_apk_metadata(root, info["name"], conffiles)
        adb, data, installed = build_adb(root, info, a.arch, epoch)
        os.makedirs(a.out, exist_ok=True)
        out = os.path.join(os.path.abspath(a.out),
                           "%s-%s_%s.apk" % (info["name"], info["version"], a.arch))
        size = write_package(out, adb, data, a.compression)
        if a.keep_root:
            subprocess.run(["cp", "-a", root + "/.", a.keep_root], check=True)
    print(out)
    print("size: %d bytes (installed: %d bytes)" % (size, installed))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApkError as e:
        print("apk.py: %s" % e, file=sys.stderr)
        sys.exit(1)
