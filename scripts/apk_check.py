#!/usr/bin/env python3
"""Parse an apk-tools v3 package (.apk, "ADB" format) and check it, independently of
scripts/apk.py (it shares no code with the writer).

    scripts/apk_check.py PACKAGE.apk [--json] [--extract DIR]

Checks: the compression wrapper (ADBd raw deflate, ADBc, or plain ADB.), the file
header and the "pckg" schema, block framing (8-byte alignment, zero padding, block
order ADB, SIG*, DATA*), every value reference (type, bounds, alignment), the package
schema (pkginfo, paths, files, ACLs, scripts), name/version/arch syntax, sorted and
unique directory and file names, symlink targets, one DATA block per non-empty
regular file in path/file order whose length and sha256 match the ADB, the
unique id in pkginfo.hashes, installed-size, and OpenWrt's
/lib/apk/packages/<name>.list, .conffiles and .conffiles_static.

Exit status 0 and "OK: ..." when everything holds; 1 and the first problem otherwise.
--json prints the decoded package (info, scripts, every entry with mode, owner, size,
sha256 or symlink target). --extract writes the payload under DIR.
"""

import hashlib
import json
import os
import re
import struct
import sys
import zlib


class Bad(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Bad(msg)


def u32(b, off):
    need(off + 4 <= len(b), "truncated at offset %d" % off)
    return struct.unpack_from("<I", b, off)[0]


# --- container --------------------------------------------------------------------------

def unwrap(raw):
    need(len(raw) >= 8, "file too short (%d bytes)" % len(raw))
    magic = raw[:4]
    if magic == b"ADB.":
        return raw, "none"
    if magic in (b"ADBd", b"ADBc"):
        body = raw[4:]
        how = "deflate"
        if magic == b"ADBc":
            need(len(body) >= 2, "ADBc without compression spec")
            alg, level = body[0], body[1]
            need(alg == 1, "ADBc compression algorithm %d not supported (only 1 = deflate)" % alg)
            how = "deflate level %d" % level
            body = body[2:]
        d = zlib.decompressobj(-15)
        try:
            out = d.decompress(body) + d.flush()
        except zlib.error as e:
            raise Bad("deflate stream is corrupt: %s" % e)
        need(d.eof, "deflate stream is truncated")
        need(not d.unused_data, "%d bytes after the end of the deflate stream" % len(d.unused_data))
        return out, how
    raise Bad("not an apk v3 package: magic %r" % magic)


def blocks(stream):
    need(stream[:4] == b"ADB.", "decompressed stream does not start with ADB.")
    schema = u32(stream, 4)
    need(schema == 0x676B6370, "schema 0x%08x is not 'pckg' (0x676b6370)" % schema)
    off = 8
    out = []
    while off < len(stream):
        need(off % 8 == 0, "block at %d not 8-byte aligned" % off)
        word = u32(stream, off)
        kind = word >> 30
        need(kind != 3, "extended (64-bit) block at %d not expected in a package" % off)
        raw = word & 0x3FFFFFFF
        need(raw >= 4, "block at %d has size %d" % (off, raw))
        end = off + raw
        padded = off + ((raw + 7) & ~7)
        need(padded <= len(stream), "block at %d runs past the end" % off)
        need(stream[end:padded] == b"\0" * (padded - end), "non-zero padding after block at %d" % off)
        out.append((kind, off, stream[off + 4:end]))
        off = padded
    need(out, "no blocks")
    kinds = [k for k, _, _ in out]
    need(kinds[0] == 0, "first block is not an ADB block")
    state = 0
    for k in kinds[1:]:
        need(k in (1, 2), "unexpected block type %d" % k)
        if k == 1:
            need(state == 0, "SIG block after a DATA block")
        else:
            state = 1
    return out


# --- ADB values ---------------------------------------------------------------------------

class Adb:
    def __init__(self, b):
        need(len(b) >= 8, "ADB block shorter than its header")
        need(b[0] == 0, "ADB compat version %d (expected 0)" % b[0])
        self.b = b
        self.root = u32(b, 4)

    def type(self, v):
        return v >> 28

    def at(self, v, size, align):
        off = v & 0x0FFFFFFF
        need(off >= 8, "value 0x%08x points into the ADB header" % v)
        need(off % align == 0, "value 0x%08x misaligned (needs %d)" % (v, align))
        need(off + size <= len(self.b), "value 0x%08x points past the ADB block" % v)
        return off

    def int(self, v, what):
        t = self.type(v)
        if t == 0x1:
            return v & 0x0FFFFFFF
        if t == 0x2:
            return u32(self.b, self.at(v, 4, 4))
        if t == 0x3:
            return struct.unpack_from("<Q", self.b, self.at(v, 8, 4))[0]
        raise Bad("%s: expected an integer, got type 0x%x" % (what, t))

    def blob(self, v, what, allow_null=False):
        if v == 0 and allow_null:
            return None
        t = self.type(v)
        width = {0x8: 1, 0x9: 2, 0xA: 4}.get(t)
        need(width is not None, "%s: expected a blob, got 0x%08x" % (what, v))
        off = self.at(v, width, width)
        n = int.from_bytes(self.b[off:off + width], "little")
        need(n > 0, "%s: zero-length blob (apk writes NULL instead)" % what)
        need(off + width + n <= len(self.b), "%s: blob runs past the ADB block" % what)
        return bytes(self.b[off + width:off + width + n])

    def str(self, v, what, allow_null=False):
        b = self.blob(v, what, allow_null)
        if b is None:
            return None
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise Bad("%s: not UTF-8" % what)

    def slots(self, v, what, max_slots, allow_null=True):
        """Returns the list of slot values 1..n-1 (object or array)."""
        if v == 0 and allow_null:
            return []
        t = self.type(v)
        need(t in (0xD, 0xE), "%s: expected an object/array, got 0x%08x" % (what, v))
        off = self.at(v, 4, 4)
        n = u32(self.b, off)
        need(n >= 2, "%s: object with %d slots (empty ones are stored as NULL)" % (what, n))
        if max_slots is not None:
            need(n <= max_slots, "%s: %d slots, schema has %d" % (what, n, max_slots))
        self.at(v, 4 * n, 4)
        vals = list(struct.unpack_from("<%dI" % (n - 1), self.b, off + 4))
        need(vals[-1] != 0, "%s: trailing NULL slot" % what)
        return vals


def field(slots, i):
    return slots[i - 1] if i - 1 < len(slots) else 0


PI_FIELDS = ["name", "version", "hashes", "description", "arch", "license", "origin",
             "maintainer", "url", "repo-commit", "build-time", "installed-size", "file-size",
             "provider-priority", "depends", "provides", "replaces", "install-if",
             "recommends", "layer", "tags"]
SCRIPT_NAMES = ["trigger", "pre-install", "post-install", "pre-deinstall", "post-deinstall",
                "pre-upgrade", "post-upgrade"]
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*[a-z]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*(~[0-9a-f]+)?(-r[0-9]+)?$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.-]*$")
ARCH_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def deps(adb, v, what):
    out = []
    for i, d in enumerate(adb.slots(v, what, 33), 1):
        s = adb.slots(d, "%s[%d]" % (what, i), 4, allow_null=False)
        name = adb.str(field(s, 1), what + " name")
        ver = adb.str(field(s, 2), what + " version", allow_null=True)
        match = adb.int(field(s, 3), what + " match") if field(s, 3) else None
        need(NAME_RE.match(name.lstrip("!")), "%s: bad name %r" % (what, name))
        if ver is not None:
            need(VERSION_RE.match(ver), "%s: bad version %r" % (what, ver))
        m = 1 if match is None else match
        ops = {1: "=", 2: "<", 4: ">", 3: "<=", 5: ">=", 7: "", 9: "~"}
        need(m & 15 in ops, "%s: unknown match %d" % (what, m))
        txt = ("!" if m & 16 else "") + name
        if ver is not None:
            txt += ops[m & 15] + ver
        out.append(txt)
    need(out == sorted(out, key=lambda x: re.split(r"[<>=~]", x.lstrip("!"))[0].encode()),
         "%s: not sorted by name" % what)
    return out


def parse(path):
    raw = open(path, "rb").read()
    stream, compression = unwrap(raw)
    blks = blocks(stream)
    adb_bytes = blks[0][2]
    adb = Adb(adb_bytes)
    root = adb.slots(adb.root, "package", 6, allow_null=False)

    # pkginfo
    pi = adb.slots(field(root, 1), "info", 22, allow_null=False)
    info = {}
    for i, name in enumerate(PI_FIELDS, 1):
        v = field(pi, i)
        if v == 0:
            continue
        if name in ("build-time", "installed-size", "file-size", "provider-priority", "layer"):
            info[name] = adb.int(v, name)
        elif name in ("hashes", "repo-commit"):
            info[name] = adb.blob(v, name).hex()
        elif name in ("depends", "provides", "replaces", "install-if", "recommends"):
            info[name] = deps(adb, v, name)
        elif name == "tags":
            info[name] = [adb.str(t, "tag") for t in adb.slots(v, "tags", None)]
        else:
            info[name] = adb.str(v, name)
    for req in ("name", "version", "arch", "installed-size"):
        need(req in info, "pkginfo has no %s" % req)
    need(NAME_RE.match(info["name"]), "bad package name %r" % info["name"])
    need(VERSION_RE.match(info["version"]), "bad version %r" % info["version"])
    need(ARCH_RE.match(info["arch"]), "bad arch %r" % info["arch"])

    # the unique id: sha256 of the ADB block with the id zeroed, first 20 bytes
    if "hashes" in info:
        hv = field(pi, 3)
        off = (hv & 0x0FFFFFFF) + 1
        n = adb_bytes[off - 1]
        zeroed = bytearray(adb_bytes)
        zeroed[off:off + n] = b"\0" * n
        need(n == 20, "pkginfo.hashes is %d bytes, expected a 20-byte unique id" % n)
        need(hashlib.sha256(bytes(zeroed)).digest()[:n].hex() == info["hashes"],
             "pkginfo.hashes does not match the ADB block")

    def acl(v, what):
        s = adb.slots(v, what + " acl", 5, allow_null=False)
        mode = adb.int(field(s, 1), what + " mode")
        need(mode <= 0o7777, "%s: mode %o has file type bits" % (what, mode))
        user = adb.str(field(s, 2), what + " user", allow_null=True) or "root"
        group = adb.str(field(s, 3), what + " group", allow_null=True) or "root"
        xattrs = adb.slots(field(s, 4), what + " xattrs", None)
        return mode, user, group, len(xattrs)

    # paths and files
    entries = []
    expect_data = []
    dir_names = []
    for di, dv in enumerate(adb.slots(field(root, 2), "paths", None), 1):
        ds = adb.slots(dv, "paths[%d]" % di, 4, allow_null=False)
        dname = adb.str(field(ds, 1), "directory name", allow_null=True) or ""
        need(not dname.startswith("/") and not dname.endswith("/") and ".." not in dname.split("/"),
             "bad directory name %r" % dname)
        dir_names.append(dname)
        mode, user, group, nx = acl(field(ds, 2), "/" + dname)
        entries.append({"path": "/" + dname, "type": "dir", "mode": "%04o" % mode,
                        "owner": "%s:%s" % (user, group)})
        fnames = []
        for fi, fv in enumerate(adb.slots(field(ds, 3), "files of /" + dname, None), 1):
            fs = adb.slots(fv, "file", 7, allow_null=False)
            fname = adb.str(field(fs, 1), "file name")
            need("/" not in fname and fname not in (".", ".."), "bad file name %r" % fname)
            fnames.append(fname)
            p = ("/" + dname + "/" + fname) if dname else "/" + fname
            mode, user, group, nx = acl(field(fs, 2), p)
            size = adb.int(field(fs, 3), p + " size") if field(fs, 3) else 0
            mtime = adb.int(field(fs, 4), p + " mtime") if field(fs, 4) else 0
            h = adb.blob(field(fs, 5), p + " hash", allow_null=True)
            target = adb.blob(field(fs, 6), p + " target", allow_null=True)
            e = {"path": p, "mode": "%04o" % mode, "owner": "%s:%s" % (user, group),
                 "size": size, "mtime": mtime}
            if target is not None:
                need(len(target) >= 2, "%s: short target" % p)
                kind = struct.unpack_from("<H", target)[0]
                need(kind == 0o120000, "%s: target of type 0%o (only symlinks expected)" % (p, kind))
                e["type"] = "symlink"
                e["target"] = target[2:].decode("utf-8")
                need(e["target"] and size == len(target) - 2,
                     "%s: symlink size %d != target length" % (p, size))
            else:
                need(h is not None, "%s: regular file without hash" % p)
                need(len(h) == 32, "%s: hash of %d bytes (sha256 expected)" % (p, len(h)))
                e["type"] = "file"
                e["sha256"] = h.hex()
                if size > 0:
                    expect_data.append((di, fi, e))
                else:
                    need(h == hashlib.sha256(b"").digest(), "%s: empty file with wrong hash" % p)
            entries.append(e)
        need(fnames == sorted(set(fnames), key=str.encode), "/%s: file names not sorted/unique" % dname)
    need(dir_names == sorted(set(dir_names), key=str.encode), "directory names not sorted/unique")

    # DATA blocks
    data_blocks = [b for k, _, b in blks if k == 2]
    need(len(data_blocks) == len(expect_data),
         "%d DATA blocks for %d non-empty files" % (len(data_blocks), len(expect_data)))
    contents = {}
    for blk, (di, fi, e) in zip(data_blocks, expect_data):
        need(len(blk) >= 8, "DATA block without header")
        pi_, fi_ = struct.unpack_from("<II", blk)
        need((pi_, fi_) == (di, fi), "DATA block for path %d file %d, expected %d/%d (%s)"
             % (pi_, fi_, di, fi, e["path"]))
        content = bytes(blk[8:])
        need(len(content) == e["size"], "%s: %d bytes of data, size says %d" % (e["path"], len(content), e["size"]))
        need(hashlib.sha256(content).hexdigest() == e["sha256"], "%s: sha256 mismatch" % e["path"])
        contents[e["path"]] = content
    for e in entries:
        if e["type"] == "file" and e["size"] == 0:
            contents[e["path"]] = b""

    # apk-tools 3.0.x writes the sum of the file sizes (1 for an empty package); the
    # 2024 pre-releases rounded every file up to 4 KiB blocks
    files = [e["size"] for e in entries if e["type"] == "file"]
    exact = sum(files)
    blocks4k = sum((n + 4095) // 4096 * 4096 for n in files)
    need(info["installed-size"] in ((exact, blocks4k) if exact else (0, 1)),
         "installed-size %d, files add up to %d" % (info["installed-size"], exact))

    # scripts
    scripts = {}
    ss = adb.slots(field(root, 3), "scripts", 8)
    for i, v in enumerate(ss, 1):
        if v:
            scripts[SCRIPT_NAMES[i - 1]] = adb.str(v, SCRIPT_NAMES[i - 1])
    triggers = [adb.str(t, "trigger") for t in adb.slots(field(root, 4), "triggers", None)]

    # OpenWrt's /lib/apk/packages files
    name = info["name"]
    meta = "/lib/apk/packages/" + name
    listed = sorted((e["path"] for e in entries if e["type"] in ("file", "symlink")
                     and e["path"] not in (meta + ".list", meta + ".conffiles", meta + ".conffiles_static")),
                    key=str.encode)
    need(meta + ".list" in contents, "%s.list missing (default_postinst would not start services)" % meta)
    need(contents[meta + ".list"].decode() == "".join(p + "\n" for p in listed),
         "%s.list does not list exactly the package's files and symlinks" % meta)
    if meta + ".conffiles" in contents:
        conf = contents[meta + ".conffiles"].decode().split()
        static = contents.get(meta + ".conffiles_static", b"").decode().splitlines()
        want = []
        for c in conf:
            if c in contents:
                want.append("%s %s" % (c, hashlib.sha256(contents[c]).hexdigest()))
        need(static == want, "%s.conffiles_static does not match the conffiles' sha256" % meta)

    return {"compression": compression, "info": info, "scripts": scripts, "triggers": triggers,
            "entries": entries, "signatures": sum(1 for k, _, _ in blks if k == 1)}, contents


def extract(pkg, contents, dest):
    for e in pkg["entries"]:
        p = os.path.join(dest, e["path"].lstrip("/"))
        if e["type"] == "dir":
            os.makedirs(p, exist_ok=True)
        elif e["type"] == "symlink":
            os.symlink(e["target"], p)
        else:
            with open(p, "wb") as f:
                f.write(contents[e["path"]])
    for e in reversed(pkg["entries"]):
        if e["type"] != "symlink":
            os.chmod(os.path.join(dest, e["path"].lstrip("/")), int(e["mode"], 8))


def main(argv):
    args = list(argv)
    as_json = "--json" in args
    if as_json:
        args.remove("--json")
    dest = None
    if "--extract" in args:
        i = args.index("--extract")
        if i + 1 >= len(args):
            print("apk_check.py: --extract needs a directory", file=sys.stderr)
            return 2
        dest = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: scripts/apk_check.py PACKAGE.apk [--json] [--extract DIR]", file=sys.stderr)
        return 2
    try:
        pkg, contents = parse(args[0])
    except Bad as e:
        print("apk_check.py: %s: %s" % (args[0], e), file=sys.stderr)
        return 1
    except OSError as e:
        print("apk_check.py: %s" % e, file=sys.stderr)
        return 1
    if dest:
        extract(pkg, contents, dest)
    if as_json:
        print(json.dumps(pkg, indent=1, sort_keys=True))
    else:
        i = pkg["info"]
        print("OK: %s-%s %s, %d entries, %d scripts, compression %s" % (
            i["name"], i["version"], i["arch"], len(pkg["entries"]), len(pkg["scripts"]),
            pkg["compression"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
