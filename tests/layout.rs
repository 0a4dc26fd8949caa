//! The module map of docs/architecture.md and style.md §(b), checked on the source text of
//! src/**/*.rs (no parser crate: comments, string and char literals are blanked, then `use`
//! trees and `crate::`/`super::`/`self::` paths are read; test code counts, except for length):
//!
//! - applets (daemon, client, relay, activate, atserver, policy) never name each other;
//! - no layer names a higher one: {runtime, crypto, json} < at < noports < tunnel < applets <
//!   main.rs/lib.rs; runtime/, crypto/ and json/ name none of each other; atserver/ never names
//!   noports/ or the tunnel; noports/ (sans-IO) never names the tunnel or at/'s connections;
//! - no two files import each other in a loop (the file-level graph has no cycle);
//! - no function outside tests and fuzz entries is longer than [`MAX_FN_LINES`].
//!
//! Each check is a function over an in-memory tree, so the fixtures at the end prove that every
//! check passes on a clean tree and fails on each planted fault.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The longest function allowed outside `#[cfg(test)]` code and `fuzz.rs` files, counted from
/// the `fn` line to the closing brace: past it a function has stopped reading as one step
/// (style.md §(i), handshakes as state machines).
const MAX_FN_LINES: usize = 120;

/// The applet directories: each is a program of its own and names no other (style.md §(b)).
const APPLETS: &[&str] = &[
    "daemon", "client", "relay", "activate", "atserver", "policy",
];

/// The bottom layer: mechanisms and pure functions with no protocol knowledge.
const BASE: &[&str] = &["runtime", "crypto", "json"];

/// (from, to) pairs inside [`BASE`] that may name each other. None do today; a pair added here
/// must not close a loop.
const BASE_ALLOWED: &[(&str, &str)] = &[];

/// The parts of at/ that open connections, which sans-IO noports/ must not name: modules
/// (`at::conn`, ...) and the client types re-exported at `at::` (`AtClient`, `Monitor`).
const AT_CONNECTION_MODULES: &[&str] = &["conn", "proxy", "client", "https"];
const AT_CONNECTION_TYPES: &[&str] = &["AtClient", "Monitor"];

/// One source file: its path from the package root ("src/at/conn.rs") and its text.
struct Source {
    path: String,
    text: String,
}

/// The files under src/ of this package.
fn load_tree() -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&p).unwrap();
                out.push(Source { path: rel, text });
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join("src"), root, &mut out);
    assert!(out.len() > 10, "src/ has only {} .rs files", out.len());
    out
}

// ---------------------------------------------------------------------------------------------
// Text: comments and literals blanked, `#[cfg(test)]` items removed.

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The text with comments, string, byte-string, raw-string and char literals replaced by
/// spaces (newlines kept, so line numbers hold) and non-ASCII replaced by spaces, so brace
/// matching and path scans see only code. Lifetimes (`'a`) are kept.
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let prev_ident = |i: usize| i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
            continue;
        }
        if ch == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Raw strings: r"…", r#"…"#, br#"…"# (not raw identifiers such as r#type).
        if (ch == 'r' || (ch == 'b' && next == Some('r'))) && !prev_ident(i) {
            let start = if ch == 'b' { i + 2 } else { i + 1 };
            let hashes = c[start..].iter().take_while(|&&h| h == '#').count();
            if c.get(start + hashes) == Some(&'"') {
                let mut j = start + hashes + 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"'
                        && c[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&h| h == '#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                for &x in &c[i..j.min(c.len())] {
                    blank(&mut out, x);
                }
                i = j;
                continue;
            }
        }
        if ch == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
            continue;
        }
        if ch == '\'' {
            // A char literal ('x', '\n', '\u{1F600}', '\''), or a lifetime ('a), which is code.
            let end = if next == Some('\\') {
                (i + 3..c.len()).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                out.push('\'');
                for &x in &c[i + 1..end] {
                    blank(&mut out, x);
                }
                out.push('\'');
                i = end + 1;
                continue;
            }
        }
        out.push(if ch.is_ascii() { ch } else { ' ' });
        i += 1;
    }
    out
}

/// The position after the run of ASCII whitespace starting at `i`.
fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The position just past the bracket that closes the one at `open` (`{`, `(` or `[`), on
/// stripped text; the end of the text when unbalanced.
fn matching(s: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, &b) in s.iter().enumerate().skip(open) {
        match b {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// Where the item starting at `i` ends: after its `;` or after its `{…}` body, whichever comes
/// first outside parentheses and brackets (`[u8; 4]` in a signature is not an end).
fn item_end(s: &[u8], mut i: usize) -> (usize, bool) {
    while i < s.len() {
        match s[i] {
            b'(' | b'[' => i = matching(s, i),
            b';' => return (i + 1, false),
            b'{' => return (matching(s, i), true),
            _ => i += 1,
        }
    }
    (s.len(), false)
}

/// Matches `#[cfg(test)]` (whitespace allowed between tokens) at `i`; returns its end.
fn cfg_test_at(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for tok in ["#", "[", "cfg", "(", "test", ")", "]"] {
        j = skip_ws(s, j);
        if !s[j..].starts_with(tok.as_bytes()) {
            return None;
        }
        j += tok.len();
    }
    Some(j)
}

/// `s` with every `#[cfg(test)]` item blanked, and the names of `#[cfg(test)] mod x;`
/// declarations (whose files are test code too).
fn without_tests(s: &str) -> (String, Vec<String>) {
    let mut b = s.as_bytes().to_vec();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let Some(after) = (b[i] == b'#').then(|| cfg_test_at(&b, i)).flatten() else {
            i += 1;
            continue;
        };
        // Further attributes of the same item.
        let mut j = skip_ws(&b, after);
        while b.get(j) == Some(&b'#') {
            let open = (j..b.len()).find(|&k| b[k] == b'[').unwrap_or(b.len());
            j = skip_ws(&b, matching(&b, open));
        }
        let (end, _) = item_end(&b, j);
        let item = String::from_utf8_lossy(&b[j..end]).into_owned();
        let words: Vec<&str> = item
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if item.trim_end().ends_with(';') {
            if let Some(k) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(k + 1) {
                    test_mods.push(name.to_string());
                }
            }
        }
        for x in &mut b[i..end] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
        i = end;
    }
    (String::from_utf8(b).unwrap(), test_mods)
}

/// The 1-based line of byte `pos`.
fn line_of(s: &str, pos: usize) -> usize {
    s.as_bytes()[..pos].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The identifier starting at `i`, if any.
fn ident_at(s: &[u8], i: usize) -> Option<&str> {
    let end = (i..s.len()).find(|&j| !is_ident(s[j])).unwrap_or(s.len());
    (end > i && !s[i].is_ascii_digit()).then(|| std::str::from_utf8(&s[i..end]).unwrap())
}

/// True when the word `w` stands at `i` on its own (not part of a longer identifier).
fn word_at(s: &[u8], i: usize, w: &str) -> bool {
    s[i..].starts_with(w.as_bytes())
        && (i == 0 || !is_ident(s[i - 1]))
        && s.get(i + w.len()).is_none_or(|&b| !is_ident(b))
}

// ---------------------------------------------------------------------------------------------
// Files, modules and the paths they mention.

/// A file's module path: src/a/b.rs and src/a/b/mod.rs are ["a", "b"]; lib.rs and main.rs [].
fn module_of(path: &str) -> Vec<String> {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    if matches!(parts.last().map(String::as_str), Some("mod")) {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// One file, ready for the checks.
struct File {
    path: String,
    module: Vec<String>,
    /// Stripped text: what the dependency checks read, test code included (an applet's tests
    /// must not reach into another applet either).
    code: String,
    /// Stripped text without `#[cfg(test)]` items: what the length check reads.
    live: String,
    /// Declared by `#[cfg(test)] mod x;` (or under such a file): test code as a whole.
    test_only: bool,
    /// The original lines, for messages.
    lines: Vec<String>,
    /// Inline `mod x { … }` blocks: (byte range of the body, name).
    inline: Vec<(std::ops::Range<usize>, String)>,
}

impl File {
    /// The module that the code at `pos` is in (inline modules included).
    fn module_at(&self, pos: usize) -> Vec<String> {
        let mut m = self.module.clone();
        for (range, name) in &self.inline {
            if range.contains(&pos) {
                m.push(name.clone());
            }
        }
        m
    }

    fn is_main(&self) -> bool {
        self.path == "src/main.rs"
    }
}

/// The tree's files.
struct Tree {
    files: Vec<File>,
    /// Module path → index in `files` (lib.rs for []; main.rs is not a module of the library).
    by_module: BTreeMap<Vec<String>, usize>,
    /// Every module path: files' and inline ones.
    modules: BTreeSet<Vec<String>>,
}

fn prepare(sources: &[Source]) -> Tree {
    let mut files = Vec::new();
    let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
    for s in sources {
        let code = strip(&s.text);
        let (live, test_mods) = without_tests(&code);
        let module = module_of(&s.path);
        for m in test_mods {
            let mut p = module.clone();
            p.push(m);
            test_only.insert(p);
        }
        let b = code.as_bytes();
        let mut inline = Vec::new();
        for i in 0..b.len() {
            if !word_at(b, i, "mod") {
                continue;
            }
            let n = skip_ws(b, i + 3);
            let Some(name) = ident_at(b, n) else { continue };
            let open = skip_ws(b, n + name.len());
            if b.get(open) == Some(&b'{') {
                inline.push((open..matching(b, open), name.to_string()));
            }
        }
        files.push(File {
            path: s.path.clone(),
            module,
            lines: s.text.lines().map(String::from).collect(),
            code,
            live,
            test_only: false,
            inline,
        });
    }
    // Test-only files and everything under them.
    for f in &mut files {
        f.test_only = test_only.iter().any(|t| f.module.starts_with(t));
    }
    let mut by_module = BTreeMap::new();
    let mut modules = BTreeSet::new();
    for (k, f) in files.iter().enumerate() {
        if !f.is_main() {
            by_module.insert(f.module.clone(), k);
        }
        modules.insert(f.module.clone());
        for (range, _) in &f.inline {
            modules.insert(f.module_at(range.start));
        }
    }
    Tree {
        files,
        by_module,
        modules,
    }
}

/// One crate path a file names: where, the code that names it, and the absolute path
/// (modules, then maybe an item: ["at", "conn", "connect"]).
struct Mention {
    line: usize,
    code: String,
    target: Vec<String>,
}

/// The paths of a `use` tree (`a::{b, c::{self, d as e}, f::*}` → a::b, a::c, a::c::d, a::f).
fn use_paths(tree: &str) -> Vec<Vec<String>> {
    let mut toks: Vec<String> = Vec::new();
    let b = tree.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"::") {
            toks.push("::".into());
            i += 2;
        } else if let Some(w) = ident_at(b, i) {
            toks.push(w.into());
            i += w.len();
        } else {
            toks.push((b[i] as char).to_string());
            i += 1;
        }
    }
    fn tree_at(toks: &[String], i: &mut usize, mut path: Vec<String>, out: &mut Vec<Vec<String>>) {
        if toks.get(*i).map(String::as_str) == Some("::") {
            // `use ::name` is an extern crate.
            path.push("::".into());
            *i += 1;
        }
        loop {
            match toks.get(*i).map(String::as_str) {
                Some("{") => {
                    *i += 1;
                    while *i < toks.len() && toks[*i] != "}" {
                        let before = *i;
                        tree_at(toks, i, path.clone(), out);
                        // A token this reader does not know: step over it rather than spin.
                        if *i == before {
                            *i += 1;
                        }
                        if toks.get(*i).map(String::as_str) == Some(",") {
                            *i += 1;
                        }
                    }
                    *i += 1;
                    return;
                }
                Some("*") => {
                    *i += 1;
                    out.push(path);
                    return;
                }
                Some(w) if w.bytes().all(is_ident) => {
                    *i += 1;
                    // `{self, …}` names the prefix itself; a leading `self` is the module.
                    if w != "self" || path.is_empty() {
                        path.push(w.to_string());
                    }
                    match toks.get(*i).map(String::as_str) {
                        Some("::") => *i += 1,
                        Some("as") => {
                            *i += 2;
                            out.push(path);
                            return;
                        }
                        _ => {
                            out.push(path);
                            return;
                        }
                    }
                }
                _ => return,
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    tree_at(&toks, &mut i, Vec::new(), &mut out);
    out
}

impl Tree {
    /// The absolute module path `path` names from module `ctx`, or None for other crates
    /// (std::, argh::, …) and names this scan cannot place.
    fn resolve(&self, f: &File, ctx: &[String], path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?.as_str();
        let (mut base, mut rest) = match first {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (ctx.to_vec(), &path[1..]),
            "super" => (ctx.to_vec(), path),
            // main.rs is a crate of its own that names the library by its name.
            "noports" if f.is_main() => (Vec::new(), &path[1..]),
            "::" => return None,
            _ => {
                let mut child = ctx.to_vec();
                child.push(first.to_string());
                if !self.modules.contains(&child) {
                    return None;
                }
                (ctx.to_vec(), path)
            }
        };
        while rest.first().map(String::as_str) == Some("super") {
            base.pop()?;
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines the module (or item) at absolute path `target`: the longest
    /// prefix that is a file's module. A name re-exported by a mod.rs resolves to the mod.rs.
    fn file_of(&self, target: &[String]) -> usize {
        (0..=target.len())
            .rev()
            .find_map(|n| self.by_module.get(&target[..n]).copied())
            .expect("the tree has src/lib.rs, the module []")
    }

    /// Every crate path file `f` names in code: its `use` trees, and `crate::`, `super::` and
    /// `self::` paths elsewhere.
    fn mentions(&self, f: &File) -> Vec<Mention> {
        let b = f.code.as_bytes();
        let mut out = Vec::new();
        let mut used = vec![false; b.len()];
        for i in 0..b.len() {
            // `use` is a keyword: it only starts a use declaration (or `use<…>` bounds).
            if !word_at(b, i, "use") || !b.get(i + 3).is_some_and(u8::is_ascii_whitespace) {
                continue;
            }
            let end = (i..b.len()).find(|&j| b[j] == b';').unwrap_or(b.len());
            let tree = &f.code[i + 3..end];
            let code = f.code[i..=end.min(b.len() - 1)]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let ctx = f.module_at(i);
            for p in use_paths(tree) {
                if let Some(target) = self.resolve(f, &ctx, &p) {
                    out.push(Mention {
                        line: line_of(&f.code, i),
                        code: code.clone(),
                        target,
                    });
                }
            }
            used[i..end].iter_mut().for_each(|u| *u = true);
        }
        let mut i = 0;
        while i < b.len() {
            let start = i;
            let head = ["crate", "super", "self"]
                .into_iter()
                .find(|w| !used[i] && word_at(b, i, w) && b[i + w.len()..].starts_with(b"::"));
            // `$crate::` in macros is the same crate; `a::self::b` is not a path start.
            let preceded = start > 0 && (b[start - 1] == b'$' || b[start - 1] == b':');
            let Some(_) = head.filter(|_| !preceded) else {
                i += 1;
                continue;
            };
            let mut path = Vec::new();
            let mut j = i;
            while let Some(w) = ident_at(b, j) {
                path.push(w.to_string());
                j += w.len();
                if !b[j..].starts_with(b"::") {
                    break;
                }
                j += 2;
            }
            let line = line_of(&f.code, start);
            if let Some(target) = self.resolve(f, &f.module_at(start), &path) {
                out.push(Mention {
                    line,
                    code: f.lines.get(line - 1).map_or("", |l| l.trim()).to_string(),
                    target,
                });
            }
            i = j.max(i + 1);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Layers.

/// A layer: its rank (low to high) and name (the module, or "tunnel", or "main").
#[derive(Clone, PartialEq, Eq, Debug)]
struct Layer {
    rank: u8,
    name: String,
}

/// The layer of an absolute module path.
fn layer_of(module: &[String]) -> Layer {
    let first = module.first().map(String::as_str).unwrap_or("");
    let (rank, name) = match first {
        f if BASE.contains(&f) => (0, f),
        "at" => (1, "at"),
        "noports" => (2, "noports"),
        "tunnel" => (3, "tunnel"),
        f if APPLETS.contains(&f) => (4, f),
        // lib.rs, main.rs and items of the crate root.
        _ => (5, "main"),
    };
    Layer {
        rank,
        name: name.to_string(),
    }
}

fn layer_of_file(f: &File) -> Layer {
    if f.is_main() {
        return layer_of(&[]);
    }
    layer_of(&f.module)
}

fn describe(f: &File, m: &Mention) -> String {
    format!("{}:{}: {}", f.path, m.line, m.code)
}

/// Check a: an applet file naming another applet's path.
fn cross_applet(sources: &[Source]) -> Vec<String> {
    let tree = prepare(sources);
    let mut problems = BTreeSet::new();
    for f in &tree.files {
        let from = layer_of_file(f);
        if from.rank != 4 {
            continue;
        }
        for m in tree.mentions(f) {
            let to = layer_of(&m.target);
            if to.rank == 4 && to.name != from.name {
                problems.insert(format!(
                    "{}  ({} names the {} applet)",
                    describe(f, &m),
                    from.name,
                    to.name
                ));
            }
        }
    }
    problems.into_iter().collect()
}

/// Why `from` may not name `target` (of layer `to`), if it may not; applet-to-applet is
/// [`cross_applet`]'s.
fn upward_reason(from: &Layer, to: &Layer, target: &[String]) -> Option<String> {
    if to.rank > from.rank {
        return Some(format!("{} is below {}", from.name, to.name));
    }
    if from.rank == 0 && to.rank == 0 && from.name != to.name {
        let allowed = BASE_ALLOWED
            .iter()
            .any(|&(a, b)| a == from.name && b == to.name);
        return (!allowed)
            .then(|| format!("{} may not name {} (BASE_ALLOWED)", from.name, to.name));
    }
    if from.name == "atserver" && (to.name == "noports" || to.name == "tunnel") {
        return Some(format!("atserver uses at/ and json/, never {}", to.name));
    }
    if from.name == "noports" && target.first().map(String::as_str) == Some("at") {
        let module = target.get(1).map(String::as_str).unwrap_or("");
        let names_type = target
            .iter()
            .any(|s| AT_CONNECTION_TYPES.contains(&s.as_str()));
        if AT_CONNECTION_MODULES.contains(&module) || names_type {
            return Some("noports is sans-IO: no at/ connections".into());
        }
    }
    None
}

/// Check b: a lower layer naming a higher one, and the extra rules on base, atserver, noports.
fn upward(sources: &[Source]) -> Vec<String> {
    let tree = prepare(sources);
    let mut problems = BTreeSet::new();
    for f in &tree.files {
        let from = layer_of_file(f);
        for m in tree.mentions(f) {
            let to = layer_of(&m.target);
            if let Some(why) = upward_reason(&from, &to, &m.target) {
                problems.insert(format!("{}  ({why})", describe(f, &m)));
            }
        }
    }
    problems.into_iter().collect()
}

/// Check c: loops in the file-level import graph. A module file's edges into its own subtree
/// (its `mod` lines and `pub use child::X` re-exports) are wiring, not imports: without that
/// rule every re-export would make a circle with the child's `use super::…`.
fn cycles(sources: &[Source]) -> Vec<String> {
    let tree = prepare(sources);
    let n = tree.files.len();
    // edges[a][b] = the first mention that makes a → b.
    let mut edges: Vec<BTreeMap<usize, String>> = vec![BTreeMap::new(); n];
    for (a, f) in tree.files.iter().enumerate() {
        if f.is_main() {
            continue;
        }
        for m in tree.mentions(f) {
            let b = tree.file_of(&m.target);
            let to = &tree.files[b].module;
            if b == a || to.starts_with(&f.module) {
                continue;
            }
            edges[a]
                .entry(b)
                .or_insert_with(|| format!("{}:{}: {}", f.path, m.line, m.code));
        }
    }
    // Tarjan's strongly connected components, iteratively.
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut components: Vec<Vec<usize>> = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>)> =
            vec![(root, edges[root].keys().copied().collect())];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((v, pending)) = work.last_mut() {
            let v = *v;
            if let Some(w) = pending.pop() {
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, edges[w].keys().copied().collect()));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                low[*parent] = low[*parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    components.push(comp);
                }
            }
        }
    }
    let mut problems: Vec<String> = components
        .into_iter()
        .map(|comp| {
            let members: BTreeSet<usize> = comp.iter().copied().collect();
            let mut names: Vec<&str> = comp.iter().map(|&k| tree.files[k].path.as_str()).collect();
            names.sort();
            let mut text = format!("circle: {}", names.join(" <-> "));
            for &a in &members {
                for (b, why) in &edges[a] {
                    if members.contains(b) {
                        text.push_str(&format!(
                            "\n    {} -> {}: {why}",
                            tree.files[a].path, tree.files[*b].path
                        ));
                    }
                }
            }
            text
        })
        .collect();
    problems.sort();
    problems
}

/// Check d: functions longer than [`MAX_FN_LINES`], outside `#[cfg(test)]` code and fuzz.rs.
fn long_functions(sources: &[Source]) -> Vec<String> {
    let tree = prepare(sources);
    let mut problems = Vec::new();
    for f in &tree.files {
        if f.path.ends_with("/fuzz.rs") || f.test_only {
            continue;
        }
        let b = f.live.as_bytes();
        for i in 0..b.len() {
            if !word_at(b, i, "fn") {
                continue;
            }
            // `fn(u8) -> u8` is a type, not a definition.
            let n = skip_ws(b, i + 2);
            let Some(name) = ident_at(b, n) else { continue };
            let (end, has_body) = item_end(b, n + name.len());
            if !has_body {
                continue;
            }
            let lines = line_of(&f.live, end - 1) - line_of(&f.live, i) + 1;
            if lines > MAX_FN_LINES {
                problems.push(format!(
                    "{}:{}: fn {name}: {lines} lines (at most {MAX_FN_LINES})",
                    f.path,
                    line_of(&f.live, i)
                ));
            }
        }
    }
    problems
}

fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} found\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The checks on src/.

#[test]
fn applets_never_name_each_other() {
    report(
        "applet files naming another applet (move the shared code down, style.md §(b))",
        &cross_applet(&load_tree()),
    );
}

#[test]
fn no_layer_names_a_higher_one() {
    report(
        "paths naming a higher layer (runtime/crypto/json < at < noports < tunnel < applets < main)",
        &upward(&load_tree()),
    );
}

#[test]
fn no_two_files_import_each_other_in_a_loop() {
    report(
        "circles in the file-level import graph",
        &cycles(&load_tree()),
    );
}

#[test]
fn no_function_is_longer_than_the_cap() {
    report(
        &format!("functions over {MAX_FN_LINES} lines (split into steps, style.md §(i))"),
        &long_functions(&load_tree()),
    );
}

// ---------------------------------------------------------------------------------------------
// The checks on fixture trees: each passes on a clean tree and fails on its planted fault.

fn fixture(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(p, t)| Source {
            path: p.to_string(),
            text: t.to_string(),
        })
        .collect()
}

/// A small tree shaped like src/ after the data plane moved to src/tunnel/, with the wiring
/// and test code that must not count: re-exports from mod.rs, `use super::*` in tests, a
/// test-only file, paths in comments and strings, a fuzz entry, an inline module.
fn clean() -> Vec<(&'static str, String)> {
    let long_test_body = "        let x = 1;\n".repeat(150);
    vec![
        ("src/lib.rs", "pub mod runtime;\npub mod crypto;\npub mod json;\npub mod at;\npub mod noports;\npub mod tunnel;\npub mod daemon;\npub mod client;\n".into()),
        ("src/main.rs", "use noports::{daemon, client};\nfn main() { daemon::main(); client::main(); }\n".into()),
        ("src/runtime/mod.rs", "mod time;\npub use time::timeout;\npub fn spawn() {}\n".into()),
        ("src/runtime/time.rs", "use super::spawn;\npub fn timeout() { spawn() }\n".into()),
        ("src/crypto/mod.rs", "pub mod rsa;\n".into()),
        ("src/crypto/rsa.rs", "// crate::at::conn is only named in this comment\npub fn sign() -> &'static str { \"crate::daemon::x\" }\n".into()),
        ("src/json/mod.rs", "pub struct Value;\n".into()),
        ("src/at/mod.rs", "pub mod conn;\nmod atsign;\npub use atsign::AtSign;\npub use conn::AtClient;\n".into()),
        ("src/at/atsign.rs", "pub struct AtSign;\nmod wire { use super::AtSign; }\n".into()),
        ("src/at/conn.rs", "use crate::crypto::rsa;\nuse crate::runtime::{self, timeout};\nuse super::AtSign;\npub struct AtClient(AtSign);\nfn f() { rsa::sign(); runtime::spawn(); timeout(); }\n".into()),
        ("src/noports/mod.rs", "pub mod envelope;\npub use crate::json;\n".into()),
        ("src/noports/envelope.rs", "use crate::at::AtSign;\nuse crate::json::Value;\nuse crate::crypto::rsa::sign;\n".into()),
        ("src/tunnel/mod.rs", "mod mux;\npub use mux::run;\nuse crate::at::conn::AtClient;\n".into()),
        ("src/tunnel/mux.rs", "use super::super::noports::envelope;\npub fn run() {}\nmod fuzz;\n".into()),
        ("src/tunnel/mux/fuzz.rs", format!("pub fn fuzz_mux() {{\n{long_test_body}}}\n")),
        ("src/daemon/mod.rs", "mod dispatch;\nmod policy;\npub fn main() { dispatch::run() }\n".into()),
        ("src/daemon/dispatch.rs", format!("use super::policy::decide;\nuse crate::tunnel;\npub fn run() {{ decide(); tunnel::run(); }}\n#[cfg(test)]\nmod tests {{\n    use super::*;\n    use crate::daemon::policy::decide;\n    #[test]\n    fn long() {{\n{long_test_body}    }}\n}}\n")),
        ("src/daemon/policy.rs", "pub fn decide() { let _c = '{'; let _s = r#\"}\"#; }\n#[cfg(test)]\nmod tests;\n".into()),
        ("src/daemon/policy/tests.rs", "use super::*;\nuse crate::daemon::dispatch::run;\n".into()),
        ("src/client/mod.rs", "pub mod npt;\npub fn main() {}\n".into()),
        ("src/client/npt.rs", "use crate::noports::envelope;\nuse crate::at::{AtClient, AtSign};\nfn f<'a>(x: &'a [u8; 4]) -> &'a u8 { &x[0] }\n".into()),
    ]
}

/// The clean tree with file `path` replaced (or added) with `text`.
fn planted(path: &'static str, text: &str) -> Vec<Source> {
    let mut files = clean();
    match files.iter_mut().find(|(p, _)| *p == path) {
        Some(f) => f.1 = text.to_string(),
        None => files.push((path, text.to_string())),
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    fixture(&refs)
}

fn clean_sources() -> Vec<Source> {
    planted("src/lib.rs", &clean()[0].1)
}

#[test]
fn fixture_clean_tree_passes_every_check() {
    let t = clean_sources();
    report("cross_applet", &cross_applet(&t));
    report("upward", &upward(&t));
    report("cycles", &cycles(&t));
    report("long_functions", &long_functions(&t));
}

#[test]
fn fixture_cross_applet_import_fails() {
    let t = planted(
        "src/client/npt.rs",
        "use crate::at::AtSign;\nuse crate::daemon::{self as d};\n",
    );
    let p = cross_applet(&t);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("src/client/npt.rs:2: use crate::daemon::{self as d};"),
        "{p:#?}"
    );
    // Through super:: as well.
    let t = planted(
        "src/client/npt.rs",
        "fn f() { super::super::daemon::main() }\n",
    );
    assert_eq!(cross_applet(&t).len(), 1);
    // In an applet's tests too, inline or in a file of their own.
    let t = planted(
        "src/client/npt.rs",
        "#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::daemon::main;\n}\n",
    );
    assert_eq!(cross_applet(&t).len(), 1);
    let t = planted(
        "src/daemon/policy/tests.rs",
        "use super::*;\nuse crate::client::npt;\n",
    );
    let p = cross_applet(&t);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with("src/daemon/policy/tests.rs:2:"), "{p:#?}");
}

#[test]
fn fixture_upward_imports_fail() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "src/at/conn.rs",
            "use crate::noports::envelope;\n",
            "at is below noports",
        ),
        (
            "src/runtime/time.rs",
            "fn f() { crate::crypto::rsa::sign() }\n",
            "runtime may not name crypto",
        ),
        (
            "src/json/mod.rs",
            "use crate::runtime::spawn;\n",
            "json may not name runtime",
        ),
        (
            "src/noports/envelope.rs",
            "use crate::tunnel::run;\n",
            "noports is below tunnel",
        ),
        (
            "src/tunnel/mod.rs",
            "use crate::daemon::main;\n",
            "tunnel is below daemon",
        ),
        (
            "src/noports/envelope.rs",
            "use crate::at::conn::AtClient;\n",
            "no at/ connections",
        ),
        (
            "src/noports/envelope.rs",
            "use crate::at::{AtSign, AtClient};\n",
            "no at/ connections",
        ),
        (
            "src/atserver/mod.rs",
            "use crate::noports::envelope;\n",
            "never noports",
        ),
        (
            "src/atserver/mod.rs",
            "use crate::tunnel;\n",
            "never tunnel",
        ),
        (
            "src/daemon/policy.rs",
            "fn f() { crate::main_helper() }\n",
            "daemon is below main",
        ),
    ];
    for (path, text, why) in cases {
        let p = upward(&planted(path, text));
        assert_eq!(p.len(), 1, "{path}: {text}: {p:#?}");
        assert!(
            p[0].starts_with(&format!("{path}:")) && p[0].contains(why),
            "{p:#?}"
        );
    }
}

#[test]
fn fixture_circles_fail() {
    // Two siblings through super::.
    let t = planted(
        "src/daemon/policy.rs",
        "use super::dispatch::run;\npub fn decide() {}\n",
    );
    let p = cycles(&t);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("circle: src/daemon/dispatch.rs <-> src/daemon/policy.rs"),
        "{p:#?}"
    );
    assert!(
        p[0].contains("src/daemon/policy.rs:1: use super::dispatch::run;"),
        "{p:#?}"
    );
    // Three files, one edge a path in code rather than a use.
    let mut t = planted(
        "src/at/atsign.rs",
        "pub struct AtSign;\nfn f() { crate::noports::envelope::x() }\n",
    );
    t.retain(|s| s.path != "src/at/conn.rs");
    t.push(Source {
        path: "src/at/conn.rs".into(),
        text: "use super::atsign::AtSign;\n".into(),
    });
    t.retain(|s| s.path != "src/noports/envelope.rs");
    t.push(Source {
        path: "src/noports/envelope.rs".into(),
        text: "use crate::at::conn;\n".into(),
    });
    let p = cycles(&t);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("circle: src/at/atsign.rs <-> src/at/conn.rs <-> src/noports/envelope.rs"),
        "{p:#?}"
    );
}

#[test]
fn fixture_long_function_fails() {
    let body = |n: usize| {
        format!(
            "pub fn decide() {{\n{}}}\n",
            "    let _ = \"}\";\n".repeat(n - 2)
        )
    };
    assert!(long_functions(&planted("src/daemon/policy.rs", &body(120))).is_empty());
    let p = long_functions(&planted("src/daemon/policy.rs", &body(121)));
    assert_eq!(
        p,
        ["src/daemon/policy.rs:1: fn decide: 121 lines (at most 120)"]
    );
}

#[test]
fn use_trees_expand() {
    let p = use_paths(" crate::a::{b, c::{self, d as e}, f::*, }");
    let want: Vec<Vec<String>> = [
        &["crate", "a", "b"][..],
        &["crate", "a", "c"],
        &["crate", "a", "c", "d"],
        &["crate", "a", "f"],
    ]
    .iter()
    .map(|v| v.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(p, want);
}
