//! The one regular-expression engine: `at_activate`'s `--arx`/`--drx` filters (matched against
//! the whole name) and the atserver's `scan`, `notify:list` and `monitor` regexes (matched
//! anywhere, atprotocol.md §7.5, §7.9). Dart `RegExp` syntax as far as those use it: literals,
//! `.`, classes (`[a-z_]`, `[^0-9]`, `\d \w \s` and their negations), anchors, groups with `|`
//! and `(?:`, and the quantifiers `* + ? {m} {m,} {m,n}` (a trailing lazy `?` is accepted; it
//! cannot change whether a pattern matches). A few KiB, where a regex crate costs the router
//! build about 20 KiB.
//!
//! # Security
//! Patterns come from peers (a remote atSign's `scan`), so the work is bounded: the pattern is
//! compiled to at most [`MAX_INSTS`] instructions and groups nest at most [`MAX_DEPTH`] deep,
//! and matching runs the instructions as a set of states over the text (Thompson's
//! construction) with no recursion and no backtracking: at most instructions × characters
//! steps, whatever the pattern.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]
use std::fmt;

/// Longest pattern taken, in bytes.
const MAX_PATTERN: usize = 16 * 1024;
/// Most instructions a pattern compiles to (counted repetitions are copied out).
const MAX_INSTS: usize = 10_000;
/// Deepest nesting of groups.
const MAX_DEPTH: u32 = 64;
/// Largest `m` in `{m}`, `{m,}`, `{m,n}`; a larger one is a literal `{`, as it was.
const MAX_REPEAT_MIN: u32 = 1000;

/// Why a pattern was refused; positions count characters from 0.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum RegexError {
    UnmatchedClose(usize),
    UnclosedGroup(usize),
    NothingToRepeat(usize),
    UnclosedClass(usize),
    BadRange(char, char, usize),
    UnexpectedEnd,
    TrailingBackslash,
    RepeatedAnchor,
    /// Groups nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Longer than [`MAX_PATTERN`] or more than [`MAX_INSTS`] instructions.
    TooLarge,
}

impl fmt::Display for RegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write per part, not a format per variant: this is in the router build.
        let (what, at) = match *self {
            RegexError::UnmatchedClose(at) => ("unmatched ')'", Some(at)),
            RegexError::UnclosedGroup(at) => ("unclosed '('", Some(at)),
            RegexError::NothingToRepeat(at) => ("nothing to repeat", Some(at)),
            RegexError::UnclosedClass(at) => ("unclosed '['", Some(at)),
            RegexError::BadRange(lo, hi, at) => {
                write!(f, "bad range {lo}-{hi}")?;
                (" in '['", Some(at))
            }
            RegexError::UnexpectedEnd => ("unexpected end", None),
            RegexError::TrailingBackslash => ("pattern ends with '\\'", None),
            RegexError::RepeatedAnchor => ("an anchor cannot be repeated", None),
            RegexError::TooDeep => ("groups nested too deeply", None),
            RegexError::TooLarge => ("pattern too large", None),
        };
        f.write_str(what)?;
        match at {
            Some(at) => write!(f, " at position {at}"),
            None => Ok(()),
        }
    }
}

/// The parsed pattern; classes live in [`Parser::classes`] and are named by index.
enum Node {
    Char(char),
    Any,
    Class(u32),
    Start,
    End,
    Alt(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, Option<u32>),
}

/// One instruction; jump targets are indices into [`Pattern::prog`].
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug))]
enum Inst {
    Char(char),
    Any,
    Class(u32),
    Start,
    End,
    Split(u32, u32),
    Jmp(u32),
    Match,
}

#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
struct Class {
    ranges: Vec<(char, char)>,
    negated: bool,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// A compiled pattern.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub struct Pattern {
    prog: Vec<Inst>,
    classes: Vec<Class>,
}

impl Pattern {
    /// # Errors
    /// The pattern is malformed or too large; the error names where.
    pub fn new(pattern: &str) -> Result<Pattern, RegexError> {
        if pattern.len() > MAX_PATTERN {
            return Err(RegexError::TooLarge);
        }
        let mut p = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            depth: 0,
            classes: Vec::new(),
        };
        let alts = p.alternatives()?;
        if p.pos != p.chars.len() {
            return Err(RegexError::UnmatchedClose(p.pos));
        }
        let mut c = Compiler {
            prog: Vec::new(),
            work: 0,
        };
        c.node(&Node::Alt(alts))?;
        c.emit(Inst::Match)?;
        Ok(Pattern {
            prog: c.prog,
            classes: p.classes,
        })
    }

    /// Whether the pattern matches the whole of `text`, as if written `^(?:…)$`: what the
    /// enrollment filters use, so `router` never selects `router-backup` (docs/compatibility.md).
    pub fn is_full_match(&self, text: &str) -> bool {
        self.run(text, true)
    }

    /// Whether the pattern matches anywhere in `text` (the atServer's `scan`, `monitor`).
    #[cfg_attr(not(feature = "atserver"), allow(dead_code))]
    pub fn is_match(&self, text: &str) -> bool {
        self.run(text, false)
    }

    /// Runs all threads in step over `text`. `whole`: start at 0 only and accept at the end
    /// only; otherwise a thread starts at every position and any match ends the run.
    fn run(&self, text: &str, whole: bool) -> bool {
        let text: Vec<char> = text.chars().collect();
        let mut sim = Sim {
            pat: self,
            seen: vec![usize::MAX; self.prog.len()],
            stack: Vec::new(),
            end: text.len(),
        };
        let mut now: Vec<u32> = Vec::new();
        let mut next: Vec<u32> = Vec::new();
        let mut at = 0;
        loop {
            if !whole || at == 0 {
                sim.add(&mut now, at, 0);
            }
            let c = text.get(at).copied();
            for &pc in &now {
                let ok = match (self.prog.get(pc as usize), c) {
                    (Some(Inst::Match), _) if !whole || c.is_none() => return true,
                    (Some(Inst::Char(x)), Some(c)) => *x == c,
                    (Some(Inst::Any), Some(c)) => c != '\n',
                    (Some(Inst::Class(i)), Some(c)) => self
                        .classes
                        .get(*i as usize)
                        .is_some_and(|cl| cl.contains(c)),
                    _ => false,
                };
                if ok {
                    sim.add(&mut next, at + 1, pc + 1);
                }
            }
            if c.is_none() || (whole && next.is_empty()) {
                return false;
            }
            std::mem::swap(&mut now, &mut next);
            next.clear();
            at += 1;
        }
    }
}

/// The state of one [`Pattern::run`].
struct Sim<'a> {
    pat: &'a Pattern,
    /// The step at which each instruction last joined a list: each joins once per step.
    seen: Vec<usize>,
    stack: Vec<u32>,
    /// Length of the text in characters, for `$`.
    end: usize,
}

impl Sim<'_> {
    /// Adds `pc` and what it reaches without reading a character (at position `at`) to
    /// `list`; only reading instructions and `Match` are kept. `at` also stamps `seen`.
    fn add(&mut self, list: &mut Vec<u32>, at: usize, pc: u32) {
        let step = at;
        self.stack.push(pc);
        while let Some(pc) = self.stack.pop() {
            let Some(seen) = self.seen.get_mut(pc as usize) else {
                continue;
            };
            if *seen == step {
                continue;
            }
            *seen = step;
            match self.pat.prog.get(pc as usize) {
                Some(Inst::Jmp(to)) => self.stack.push(*to),
                Some(Inst::Split(a, b)) => {
                    self.stack.push(*b);
                    self.stack.push(*a);
                }
                Some(Inst::Start) if at == 0 => self.stack.push(pc + 1),
                Some(Inst::End) if at == self.end => self.stack.push(pc + 1),
                Some(Inst::Start | Inst::End) | None => {}
                Some(_) => list.push(pc),
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: u32,
    classes: Vec<Class>,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn alternatives(&mut self) -> Result<Vec<Vec<Node>>, RegexError> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, RegexError> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            seq.push(self.quantified(atom)?);
        }
        Ok(seq)
    }

    fn atom(&mut self) -> Result<Node, RegexError> {
        let at = self.pos;
        let c = self.peek().ok_or(RegexError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                // `(?:` is a plain group here too.
                if self.peek() == Some('?') && self.peek_at(1) == Some(':') {
                    self.pos += 2;
                }
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(RegexError::TooDeep);
                }
                let alts = self.alternatives()?;
                self.depth -= 1;
                if self.peek() != Some(')') {
                    return Err(RegexError::UnclosedGroup(at));
                }
                self.pos += 1;
                Node::Alt(alts)
            }
            '[' => self.class(at)?,
            '\\' => self.escape()?,
            '*' | '+' | '?' => return Err(RegexError::NothingToRepeat(at)),
            c => Node::Char(c),
        })
    }

    fn add_class(&mut self, ranges: Vec<(char, char)>, negated: bool) -> Node {
        // At most one class per pattern character, so the index fits (MAX_PATTERN).
        let i = u32::try_from(self.classes.len()).unwrap_or(u32::MAX);
        self.classes.push(Class { ranges, negated });
        Node::Class(i)
    }

    fn escape(&mut self) -> Result<Node, RegexError> {
        let c = self.peek().ok_or(RegexError::TrailingBackslash)?;
        self.pos += 1;
        Ok(match c {
            'd' => self.add_class(DIGIT.to_vec(), false),
            'D' => self.add_class(DIGIT.to_vec(), true),
            'w' => self.add_class(WORD.to_vec(), false),
            'W' => self.add_class(WORD.to_vec(), true),
            's' => self.add_class(SPACE.to_vec(), false),
            'S' => self.add_class(SPACE.to_vec(), true),
            'n' => Node::Char('\n'),
            't' => Node::Char('\t'),
            c => Node::Char(c),
        })
    }

    fn class(&mut self, at: usize) -> Result<Node, RegexError> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or(RegexError::UnclosedClass(at))?;
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                let e = self.peek().ok_or(RegexError::TrailingBackslash)?;
                self.pos += 1;
                let named = match e {
                    'd' => DIGIT,
                    'w' => WORD,
                    's' => SPACE,
                    _ => &[],
                };
                if !named.is_empty() {
                    ranges.extend_from_slice(named);
                    continue;
                }
                e
            } else {
                c
            };
            match (self.peek(), self.peek_at(1)) {
                (Some('-'), Some(hi)) if hi != ']' => {
                    self.pos += 2;
                    if hi < lo {
                        return Err(RegexError::BadRange(lo, hi, at));
                    }
                    ranges.push((lo, hi));
                }
                _ => ranges.push((lo, lo)),
            }
        }
        Ok(self.add_class(ranges, negated))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, RegexError> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            // braces() consumes the quantifier itself.
            Some('{') => match self.braces() {
                Some((min, max)) => return self.finish_quantifier(atom, min, max),
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        self.pos += 1;
        self.finish_quantifier(atom, min, max)
    }

    fn finish_quantifier(
        &mut self,
        atom: Node,
        min: u32,
        max: Option<u32>,
    ) -> Result<Node, RegexError> {
        if matches!(atom, Node::Start | Node::End) {
            return Err(RegexError::RepeatedAnchor);
        }
        // Lazy or greedy: the same set of matches.
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        Ok(Node::Repeat(Box::new(atom), min, max))
    }

    /// `{m}`, `{m,}`, `{m,n}`; consumes it on success. Not a quantifier: a literal `{`. Looks
    /// at most 32 characters ahead, so a pattern of many `{` costs linear time.
    fn braces(&mut self) -> Option<(u32, Option<u32>)> {
        let rest = self.chars.get(self.pos + 1..)?;
        let len = rest.iter().take(33).position(|&c| c == '}')?;
        let body: String = rest.get(..len)?.iter().collect();
        let (lo, hi) = match body.split_once(',') {
            None => {
                let n = body.parse().ok()?;
                (n, Some(n))
            }
            Some((a, "")) => (a.parse().ok()?, None),
            Some((a, b)) => (a.parse().ok()?, Some(b.parse().ok()?)),
        };
        if hi.is_some_and(|h| h < lo) || lo > MAX_REPEAT_MIN {
            return None;
        }
        self.pos += len + 2;
        Some((lo, hi))
    }
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\r')];

struct Compiler {
    prog: Vec<Inst>,
    /// Nodes compiled, copies included: bounds the time an empty group repeated many times
    /// takes, which adds no instructions.
    work: usize,
}

impl Compiler {
    fn pc(&self) -> u32 {
        // prog.len() <= MAX_INSTS.
        u32::try_from(self.prog.len()).unwrap_or(u32::MAX)
    }

    fn emit(&mut self, inst: Inst) -> Result<u32, RegexError> {
        if self.prog.len() >= MAX_INSTS {
            return Err(RegexError::TooLarge);
        }
        self.prog.push(inst);
        Ok(self.pc() - 1)
    }

    fn patch(&mut self, at: u32, inst: Inst) {
        if let Some(slot) = self.prog.get_mut(at as usize) {
            *slot = inst;
        }
    }

    fn node(&mut self, node: &Node) -> Result<(), RegexError> {
        self.work += 1;
        if self.work > 4 * MAX_INSTS {
            return Err(RegexError::TooLarge);
        }
        match node {
            Node::Char(c) => self.emit(Inst::Char(*c)).map(drop),
            Node::Any => self.emit(Inst::Any).map(drop),
            Node::Class(i) => self.emit(Inst::Class(*i)).map(drop),
            Node::Start => self.emit(Inst::Start).map(drop),
            Node::End => self.emit(Inst::End).map(drop),
            Node::Alt(alts) => self.alt(alts),
            Node::Repeat(inner, min, max) => self.repeat(inner, *min, *max),
        }
    }

    /// `Split(a1, next); a1; Jmp(end); next: Split(a2, …) …`.
    fn alt(&mut self, alts: &[Vec<Node>]) -> Result<(), RegexError> {
        let mut jumps = Vec::new();
        let (last, init) = alts.split_last().ok_or(RegexError::UnexpectedEnd)?;
        for alt in init {
            let split = self.emit(Inst::Split(0, 0))?;
            self.seq(alt)?;
            jumps.push(self.emit(Inst::Jmp(0))?);
            let next = self.pc();
            self.patch(split, Inst::Split(split + 1, next));
        }
        self.seq(last)?;
        let end = self.pc();
        for j in jumps {
            self.patch(j, Inst::Jmp(end));
        }
        Ok(())
    }

    fn seq(&mut self, nodes: &[Node]) -> Result<(), RegexError> {
        nodes.iter().try_for_each(|n| self.node(n))
    }

    /// `min` copies, then either a loop or `max - min` optional copies.
    fn repeat(&mut self, inner: &Node, min: u32, max: Option<u32>) -> Result<(), RegexError> {
        for _ in 0..min {
            self.node(inner)?;
        }
        match max {
            None => {
                let split = self.emit(Inst::Split(0, 0))?;
                self.node(inner)?;
                self.emit(Inst::Jmp(split))?;
                let out = self.pc();
                self.patch(split, Inst::Split(split + 1, out));
            }
            Some(max) => {
                let mut splits = Vec::new();
                for _ in min..max {
                    splits.push(self.emit(Inst::Split(0, 0))?);
                    self.node(inner)?;
                }
                let out = self.pc();
                for s in splits {
                    self.patch(s, Inst::Split(s + 1, out));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::{Pattern, RegexError};

    /// Dart's unanchored `hasMatch`, written as a whole-name match.
    fn m(p: &str, t: &str) -> bool {
        Pattern::new(&format!(".*({p}).*"))
            .unwrap()
            .is_full_match(t)
    }

    #[test]
    fn like_dart_has_match() {
        assert!(m("noports", "noports"));
        assert!(m("port", "noports"), "unanchored");
        assert!(!m("^port", "noports"));
        assert!(m("^router.*$", "router7"));
        assert!(!m("^router$", "router7"));
        assert!(m("^(sshnpd|npt)$", "npt"));
        assert!(!m("^(sshnpd|npt)$", "nptx"));
        assert!(m("dev[0-9]+", "mydev42"));
        assert!(!m("dev[0-9]+", "device"));
        assert!(m("^[^_]+$", "abc"));
        assert!(!m("^[^_]+$", "a_c"));
        assert!(m(r"^\w+-\d{2}$", "rpi-04"));
        assert!(!m(r"^\w+-\d{2}$", "rpi-4"));
        assert!(m("^a{2,3}$", "aaa") && !m("^a{2,3}$", "aaaa"));
        assert!(m("^(ab)*c$", "ababc") && m("^(ab)*c$", "c") && !m("^(ab)*c$", "abac"));
        assert!(m("^a.*?b$", "axxb"));
        assert!(m(".*", "") && m("", "x"));
        assert!(m(r"a\.b", "a.b") && !m(r"a\.b", "axb"));
        assert!(m("^(a|ab)c$", "abc"), "backtracks into a group");
        assert!(m("x{", "x{"), "a brace that is no quantifier is literal");
    }

    /// The attack: `--drx router` must not also select the stranger's `router-backup`.
    #[test]
    fn full_match_selects_the_whole_name_only() {
        let f = |p: &str, t: &str| Pattern::new(p).unwrap().is_full_match(t);
        assert!(f("router", "router"));
        assert!(!f("router", "router-backup"));
        assert!(!f("router", "my-router"));
        assert!(!f("noports", "noports2"));
        assert!(
            f("router.*", "router-backup"),
            "a pattern can still ask for more"
        );
        assert!(f("^router$", "router") && f("(a|ab)", "ab") && !f("a|ab", "abc"));
        assert!(f("", "") && !f("", "x"));
    }

    /// What the atServer's monitor, scan and notify:list filters are sent: by our clients
    /// (client/session.rs, client/list.rs, daemon/, policy/), by the tests and by the Dart SDK.
    #[test]
    fn search_anywhere_as_the_atserver_does() {
        let s = |p: &str, t: &str| Pattern::new(p).unwrap().is_match(t);
        assert!(s("sshnp@|sshrvd@", "@bob:ping.mydev.sshnp@alice"));
        assert!(s("sshnp@|sshrvd@", "x.sshrvd@relay"));
        assert!(!s("sshnp@|sshrvd@", "public:location.sshnp"));
        assert!(s(r".*\.sshnp@", "@bob:ping.sshnp@alice"));
        assert!(s(
            r".*\.new\.enrollments\.__manage",
            "e1.new.enrollments.__manage@a"
        ));
        assert!(s(
            r"auth_checks\.__rpcs\.sshnp@",
            "@p:auth_checks.__rpcs.sshnp@d"
        ));
        assert!(s(
            r"(auth_checks\.__rpcs|policy)\.sshnp@",
            "@p:policy.sshnp@d"
        ));
        let name = "[a-z0-9_][a-z0-9_-]{1,35}";
        assert!(s(
            &format!(r"device_info\.{name}\.sshnp"),
            "@c:device_info.rpi-4.sshnp@d"
        ));
        assert!(!s(
            &format!(r"device_info\.{name}\.sshnp"),
            "@c:device_info.R.sshnp@d"
        ));
        let session = r"heartbeat\.dev\.sshnp@|0f1e\.(dev\.sshnp|sshrvd)@";
        assert!(s(session, "@c:0f1e.sshrvd@r") && s(session, "@c:heartbeat.dev.sshnp@d"));
        assert!(!s(session, "@c:9999.sshrvd@r"));
        assert!(s(".*location.*", "public:location.sshnp@alice"));
        assert!(s(".*", "") && s("", "anything") && s("", ""));
        assert!(s("^public:", "public:x") && !s("^public:", "x.public:y"));
        assert!(s("sshnp$", "a.sshnp") && !s("sshnp$", "a.sshnp@b"));
        assert!(!s("a.b", "a\nb"), "'.' stops at a line break");
        assert!(s("é+", "caféé"), "characters, not bytes");
    }

    #[test]
    fn malformed_and_hostile_patterns() {
        for (bad, e) in [
            ("(", RegexError::UnclosedGroup(0)),
            ("a)", RegexError::UnmatchedClose(1)),
            ("[a", RegexError::UnclosedClass(0)),
            ("*a", RegexError::NothingToRepeat(0)),
            ("a**", RegexError::NothingToRepeat(2)),
            ("\\", RegexError::TrailingBackslash),
            ("[z-a]", RegexError::BadRange('z', 'a', 0)),
            ("^*", RegexError::RepeatedAnchor),
        ] {
            assert_eq!(Pattern::new(bad).unwrap_err(), e, "{bad}");
        }
        // Catastrophic backtracking cannot happen: the states are run as a set.
        let t = std::time::Instant::now();
        let p = Pattern::new("^(a*)*b$").unwrap();
        assert!(!p.is_full_match(&"a".repeat(10_000)));
        assert!(!p.is_match(&"a".repeat(10_000)));
        let p = Pattern::new("(a|aa)+(b|a*)*c").unwrap();
        assert!(!p.is_match(&"a".repeat(5_000)));
        assert!(p.is_match(&format!("{}c", "a".repeat(5_000))));
        // A long text does not deepen the stack.
        assert!(Pattern::new(".*")
            .unwrap()
            .is_full_match(&"x".repeat(1_000_000)));
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
        // Size and nesting are capped before any work is done.
        assert_eq!(
            Pattern::new("(a{1000}){1000}").unwrap_err(),
            RegexError::TooLarge
        );
        assert_eq!(
            Pattern::new("((){1000}){1000}").unwrap_err(),
            RegexError::TooLarge
        );
        assert_eq!(
            Pattern::new("a{0,4000000000}").unwrap_err(),
            RegexError::TooLarge
        );
        assert_eq!(
            Pattern::new(&"(".repeat(100_000)).unwrap_err(),
            RegexError::TooLarge
        );
        assert_eq!(
            Pattern::new(&format!("{}{}", "(".repeat(65), ")".repeat(65))).unwrap_err(),
            RegexError::TooDeep
        );
        assert!(Pattern::new(&format!("{}a{}", "(".repeat(64), ")".repeat(64))).is_ok());
        assert!(Pattern::new(&"{".repeat(5_000))
            .unwrap()
            .is_match(&"{".repeat(5_000)));
    }

    /// Seeded random patterns and texts over the syntax's characters: no panic, bounded time.
    #[test]
    fn random_patterns_never_panic() {
        let alphabet: Vec<char> = "ab.*+?|()[]^$\\{},-0123dws".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3_000 {
            let len = (next() % 24) as usize;
            let p: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if let Ok(re) = Pattern::new(&p) {
                let t: String = (0..(next() % 40))
                    .map(|_| ['a', 'b', '{'][(next() % 3) as usize])
                    .collect();
                let _ = (re.is_match(&t), re.is_full_match(&t));
            }
        }
    }
}
