//! The `--arx`/`--drx` filters: a small backtracking regular-expression matcher with Dart's
//! `RegExp` syntax, matched against the whole name (the official tools match anywhere:
//! docs/compatibility.md). It covers what app and device filters use — literals, `.`,
//! classes (`[a-z_]`, `[^0-9]`, `\d \w \s` and their negations), anchors, groups with `|`, and
//! the quantifiers `* + ? {m} {m,} {m,n}` (lazy with a trailing `?`) — in a few KiB, where a
//! full regex crate costs the router build about 20 KiB. A step budget bounds hostile patterns.

const MAX_STEPS: u32 = 200_000;

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Start,
    End,
    Alt(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, Option<u32>, bool),
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern(Vec<Node>);

impl Pattern {
    /// # Errors
    /// The pattern is malformed; the message names where.
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut p = Parser { chars, pos: 0 };
        let alts = p.alternatives()?;
        if p.pos != p.chars.len() {
            return Err(format!("unmatched ')' at position {}", p.pos));
        }
        Ok(Pattern(vec![Node::Alt(alts)]))
    }

    /// Whether the pattern matches the whole of `text`, as if written `^(?:…)$`: what the
    /// enrollment filters use, so `router` never selects `router-backup` (docs/compatibility.md).
    pub fn is_full_match(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let len = text.len();
        let mut steps = 0u32;
        let mut m = Matcher {
            text: &text,
            steps: &mut steps,
        };
        m.seq(&self.0, 0, &mut |end| end == len)
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternatives(&mut self) -> Result<Vec<Vec<Node>>, String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, String> {
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

    fn atom(&mut self) -> Result<Node, String> {
        let at = self.pos;
        let c = self.peek().ok_or("unexpected end")?;
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                // `(?:` is a plain group here too.
                if self.chars.get(self.pos..self.pos + 2) == Some(&['?', ':']) {
                    self.pos += 2;
                }
                let alts = self.alternatives()?;
                if self.peek() != Some(')') {
                    return Err(format!("unclosed '(' at position {at}"));
                }
                self.pos += 1;
                Node::Alt(alts)
            }
            '[' => self.class(at)?,
            '\\' => self.escape()?,
            '*' | '+' | '?' => {
                return Err(format!("nothing to repeat at position {at}"));
            }
            c => Node::Char(c),
        })
    }

    fn escape(&mut self) -> Result<Node, String> {
        let c = self.peek().ok_or("pattern ends with '\\'")?;
        self.pos += 1;
        let class = |ranges: &[(char, char)], neg| Node::Class(ranges.to_vec(), neg);
        Ok(match c {
            'd' => class(DIGIT, false),
            'D' => class(DIGIT, true),
            'w' => class(WORD, false),
            'W' => class(WORD, true),
            's' => class(SPACE, false),
            'S' => class(SPACE, true),
            'n' => Node::Char('\n'),
            't' => Node::Char('\t'),
            c => Node::Char(c),
        })
    }

    fn class(&mut self, at: usize) -> Result<Node, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self
                .peek()
                .ok_or(format!("unclosed '[' at position {at}"))?;
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                let e = self.peek().ok_or("pattern ends with '\\'")?;
                self.pos += 1;
                match e {
                    'd' => {
                        ranges.extend_from_slice(DIGIT);
                        continue;
                    }
                    'w' => {
                        ranges.extend_from_slice(WORD);
                        continue;
                    }
                    's' => {
                        ranges.extend_from_slice(SPACE);
                        continue;
                    }
                    e => e,
                }
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                let hi = self.chars[self.pos + 1];
                self.pos += 2;
                if hi < lo {
                    return Err(format!("bad range {lo}-{hi} in '[' at position {at}"));
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Node::Class(ranges, negated))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            // braces() consumes the quantifier itself.
            Some('{') => match self.braces() {
                Some(b) => return self.finish_quantifier(atom, b.0, b.1),
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
    ) -> Result<Node, String> {
        if matches!(atom, Node::Start | Node::End) {
            return Err("an anchor cannot be repeated".into());
        }
        let lazy = self.peek() == Some('?');
        if lazy {
            self.pos += 1;
        }
        Ok(Node::Repeat(Box::new(atom), min, max, !lazy))
    }

    /// `{m}`, `{m,}`, `{m,n}`; consumes it on success. Not a quantifier: a literal `{`.
    fn braces(&mut self) -> Option<(u32, Option<u32>)> {
        let rest: String = self.chars.get(self.pos + 1..)?.iter().collect();
        let end = rest.find('}')?;
        let body = &rest[..end];
        let (lo, hi) = match body.split_once(',') {
            None => {
                let n = body.parse().ok()?;
                (n, Some(n))
            }
            Some((a, "")) => (a.parse().ok()?, None),
            Some((a, b)) => (a.parse().ok()?, Some(b.parse().ok()?)),
        };
        if hi.is_some_and(|h| h < lo) || lo > 1000 {
            return None;
        }
        self.pos += end + 2;
        Some((lo, hi))
    }
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\r')];

struct Matcher<'a> {
    text: &'a [char],
    steps: &'a mut u32,
}

impl Matcher<'_> {
    fn seq(&mut self, nodes: &[Node], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match nodes.split_first() {
            None => k(pos),
            Some((first, rest)) => self.node_then(first, rest, pos, k),
        }
    }

    fn node_then(
        &mut self,
        node: &Node,
        rest: &[Node],
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        *self.steps += 1;
        if *self.steps > MAX_STEPS {
            return false;
        }
        let text = self.text;
        let one = |pos: usize| -> Option<usize> {
            let c = *text.get(pos)?;
            let ok = match node {
                Node::Char(x) => c == *x,
                Node::Any => c != '\n',
                Node::Class(r, neg) => r.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg,
                _ => return None,
            };
            ok.then_some(pos + 1)
        };
        match node {
            Node::Char(_) | Node::Any | Node::Class(..) => match one(pos) {
                Some(p) => self.seq(rest, p, k),
                None => false,
            },
            Node::Start => pos == 0 && self.seq(rest, pos, k),
            Node::End => pos == text.len() && self.seq(rest, pos, k),
            Node::Alt(alts) => alts.iter().any(|alt| {
                let mut joined = alt.clone();
                joined.extend_from_slice(rest);
                self.seq(&joined, pos, k)
            }),
            Node::Repeat(inner, min, max, greedy) => {
                self.repeat(inner, *min, *max, *greedy, rest, pos, 0, k)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &mut self,
        inner: &Node,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        rest: &[Node],
        pos: usize,
        count: u32,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        *self.steps += 1;
        if *self.steps > MAX_STEPS {
            return false;
        }
        let can_more = max.is_none_or(|m| count < m);
        let can_stop = count >= min;
        // One more repetition, then the rest: expressed as a sequence [inner, Repeat(rest of
        // the count)] so that backtracking into `inner` works for groups too.
        let more = |m: &mut Self, k: &mut dyn FnMut(usize) -> bool| {
            if !can_more {
                return false;
            }
            let next = Node::Repeat(
                Box::new(inner.clone()),
                min.saturating_sub(count + 1),
                max.map(|x| x - count - 1),
                greedy,
            );
            let mut seq = vec![inner.clone(), next];
            seq.extend_from_slice(rest);
            // A repetition that consumed nothing would loop: require progress.
            let start = pos;
            m.seq_guarded(&seq, pos, start, k)
        };
        // Not identical branches: the order of the two tries is what greedy means.
        #[allow(clippy::if_same_then_else)]
        if greedy {
            more(self, k) || (can_stop && self.seq(rest, pos, k))
        } else {
            (can_stop && self.seq(rest, pos, k)) || more(self, k)
        }
    }

    /// [`Matcher::seq`] where the first node must consume at least one character.
    fn seq_guarded(
        &mut self,
        seq: &[Node],
        pos: usize,
        start: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        let Some((first, rest)) = seq.split_first() else {
            return k(pos);
        };
        // Match `first` alone, collecting where it can end, then continue from each end
        // that made progress.
        let mut ends = Vec::new();
        self.node_then(first, &[], pos, &mut |p| {
            ends.push(p);
            false
        });
        ends.into_iter()
            .filter(|&p| p > start)
            .any(|p| self.seq(rest, p, k))
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

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

    #[test]
    fn malformed_and_hostile_patterns() {
        for bad in ["(", "a)", "[a", "*a", "a**", "\\", "[z-a]", "^*"] {
            assert!(Pattern::new(bad).is_err(), "{bad}");
        }
        // Catastrophic backtracking is cut off by the step budget, not run for ages.
        let p = Pattern::new("^(a*)*b$").unwrap();
        let t = std::time::Instant::now();
        assert!(!p.is_full_match(&"a".repeat(40)));
        assert!(t.elapsed().as_secs() < 2);
    }
}
