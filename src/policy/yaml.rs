//! The YAML subset of the NoPorts policy file (noports.md §9.8), parsed by hand: block mappings
//! and block sequences by indentation, plain / single-quoted / double-quoted scalars, `# comments`,
//! empty values (null) and the empty flow forms `[]` and `{}`, plus one-line flow sequences of
//! scalars (`[a, "b"]`). Anything else (anchors, aliases, tags, block scalars, flow mappings,
//! mappings inside sequences, multi-line scalars, tabs in indentation, several documents) is
//! rejected with the line it is on. Sans-IO: text in, tree or error out; never panics.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fmt;

/// Largest policy file we read (bounds memory; real files are a few KiB).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Deepest nesting accepted (the documented format needs 5 levels).
const MAX_DEPTH: usize = 16;

/// A parsed node and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub line: usize,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An empty value (`key:` with nothing after it, `~` or `null`).
    Null,
    /// A scalar, quotes removed.
    Scalar(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with unique keys, in file order: (key, key's line, value).
    Map(Vec<(String, usize, Node)>),
}

/// A parse error: the line (1-based; 0 for the whole file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, YamlError> {
    Err(YamlError {
        line,
        message: message.into(),
    })
}

/// One significant line: its number, indentation and content without comment or trailing space.
struct Line {
    no: usize,
    indent: usize,
    text: String,
}

/// Parses `text` into a tree. An empty document is `Kind::Null`.
///
/// # Errors
/// The first construct outside the subset, or a structural error, with its line.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return err(0, format!("file is larger than {MAX_FILE_BYTES} bytes"));
    }
    let lines = significant_lines(text)?;
    let Some(first) = lines.first() else {
        return Ok(Node {
            line: 1,
            kind: Kind::Null,
        });
    };
    if first.indent != 0 {
        return err(first.no, "the document must start at column 1");
    }
    let mut p = Parser { lines, pos: 0 };
    let node = p.block(0, 0)?;
    if let Some(l) = p.lines.get(p.pos) {
        return err(l.no, "unexpected content (check the indentation)");
    }
    Ok(node)
}

fn significant_lines(text: &str) -> Result<Vec<Line>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let body = strip_comment(raw);
        let body = body.trim_end();
        if body.trim().is_empty() {
            continue;
        }
        let indent = body.len() - body.trim_start_matches(' ').len();
        let rest = body.get(indent..).unwrap_or("");
        if rest.starts_with('\t') {
            return err(no, "tabs are not allowed in indentation");
        }
        if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
            if out.is_empty() && rest == "---" {
                continue; // one leading document marker is harmless
            }
            return err(no, "only one YAML document is supported");
        }
        if rest.starts_with('%') {
            return err(no, "YAML directives are not supported");
        }
        out.push(Line {
            no,
            indent,
            text: rest.to_string(),
        });
    }
    Ok(out)
}

/// Removes a `#` comment that starts the line or follows whitespace, outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => return line.get(..i).unwrap_or(line),
            None => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    line
}

struct Parser {
    lines: Vec<Line>,
    pos: usize,
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

impl Parser {
    /// A block node whose lines are indented by exactly `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Result<Node, YamlError> {
        let Some(l) = self.lines.get(self.pos) else {
            return err(0, "unexpected end of file");
        };
        if depth > MAX_DEPTH {
            return err(l.no, "nesting is too deep");
        }
        if is_seq_item(&l.text) {
            self.seq(indent, depth)
        } else {
            self.map(indent, depth)
        }
    }

    /// The value after `key:` on line `no`: inline, a nested block, an indentless sequence, or
    /// null.
    fn value_after(
        &mut self,
        rest: &str,
        no: usize,
        indent: usize,
        depth: usize,
        in_seq: bool,
    ) -> Result<Node, YamlError> {
        if !rest.is_empty() {
            return inline_value(rest, no);
        }
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => {
                let ind = next.indent;
                self.block(ind, depth + 1)
            }
            // `key:` followed by `- item` at the key's own indentation (common YAML style).
            Some(next) if !in_seq && next.indent == indent && is_seq_item(&next.text) => {
                self.seq(indent, depth + 1)
            }
            _ => Ok(Node {
                line: no,
                kind: Kind::Null,
            }),
        }
    }

    fn map(&mut self, indent: usize, depth: usize) -> Result<Node, YamlError> {
        let start = self.lines.get(self.pos).map(|l| l.no).unwrap_or(0);
        let mut entries: Vec<(String, usize, Node)> = Vec::new();
        while let Some(l) = self.lines.get(self.pos) {
            if l.indent < indent {
                break;
            }
            if l.indent > indent {
                return err(l.no, "unexpected indentation");
            }
            if is_seq_item(&l.text) {
                // An indentless sequence ends the mapping that owned it; anything else is stray.
                break;
            }
            let (no, text) = (l.no, l.text.clone());
            let (key, rest) = split_key(&text, no)?;
            if entries.iter().any(|(k, _, _)| *k == key) {
                return err(no, format!("duplicate key \"{key}\""));
            }
            self.pos += 1;
            let value = self.value_after(rest.trim(), no, indent, depth, false)?;
            entries.push((key, no, value));
        }
        Ok(Node {
            line: start,
            kind: Kind::Map(entries),
        })
    }

    fn seq(&mut self, indent: usize, depth: usize) -> Result<Node, YamlError> {
        let start = self.lines.get(self.pos).map(|l| l.no).unwrap_or(0);
        let mut items = Vec::new();
        while let Some(l) = self.lines.get(self.pos) {
            if l.indent != indent || !is_seq_item(&l.text) {
                if l.indent > indent {
                    return err(l.no, "unexpected indentation");
                }
                break;
            }
            let (no, text) = (l.no, l.text.clone());
            let rest = text.get(1..).unwrap_or("").trim();
            if is_seq_item(rest) {
                return err(no, "nested sequences on one line are not supported");
            }
            if !rest.is_empty()
                && !rest.starts_with(['"', '\'', '[', '{'])
                && find_colon(rest).is_some()
            {
                return err(no, "mappings inside a sequence are not supported");
            }
            self.pos += 1;
            let item = if rest.is_empty() {
                match self.lines.get(self.pos) {
                    Some(next) if next.indent > indent => {
                        return err(next.no, "nested blocks inside a sequence are not supported")
                    }
                    _ => Node {
                        line: no,
                        kind: Kind::Null,
                    },
                }
            } else {
                self.value_after(rest, no, indent, depth, true)?
            };
            items.push(item);
        }
        Ok(Node {
            line: start,
            kind: Kind::Seq(items),
        })
    }
}

/// Position of the `:` that ends a plain key: followed by a space or the end of the text.
fn find_colon(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    (0..b.len()).find(|&i| b.get(i) == Some(&b':') && matches!(b.get(i + 1), None | Some(b' ')))
}

/// `key: rest` -> (key, rest). Keys are plain or quoted scalars.
fn split_key(text: &str, no: usize) -> Result<(String, &str), YamlError> {
    if text.starts_with(['"', '\'']) {
        let (key, after) = quoted(text, no)?;
        let Some(rest) = after.trim_start().strip_prefix(':') else {
            return err(no, "expected ':' after the quoted key");
        };
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return err(no, "expected a space after ':'");
        }
        return Ok((key, rest));
    }
    if text.starts_with(['?', '&', '*', '!', '[', '{', '|', '>']) {
        return err(no, format!("unsupported YAML syntax \"{text}\""));
    }
    let Some(i) = find_colon(text) else {
        return err(no, format!("expected \"key:\" but found \"{text}\""));
    };
    let key = text.get(..i).unwrap_or("").trim_end();
    let rest = text.get(i + 1..).unwrap_or("");
    if key.is_empty() {
        return err(no, "empty key");
    }
    Ok((key.to_string(), rest))
}

/// An inline value: a quoted or plain scalar, `[]`, `{}`, or a flow sequence of scalars.
fn inline_value(rest: &str, no: usize) -> Result<Node, YamlError> {
    let kind = if rest == "{}" {
        Kind::Map(Vec::new())
    } else if let Some(inner) = rest.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return err(no, "a flow sequence must end on the same line with ']'");
        };
        Kind::Seq(flow_items(inner, no)?)
    } else {
        scalar(rest, no)?
    };
    Ok(Node { line: no, kind })
}

fn flow_items(inner: &str, no: usize) -> Result<Vec<Node>, YamlError> {
    let mut items = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (kind, after) = if rest.starts_with(['"', '\'']) {
            let (s, after) = quoted(rest, no)?;
            (Kind::Scalar(s), after.trim_start())
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let item = rest.get(..end).unwrap_or("").trim();
            if item.is_empty() {
                return err(no, "empty item in a flow sequence");
            }
            if item.contains(['[', ']', '{', '}']) {
                return err(no, "nested flow collections are not supported");
            }
            (scalar(item, no)?, rest.get(end..).unwrap_or(""))
        };
        items.push(Node { line: no, kind });
        rest = match after.strip_prefix(',') {
            Some(r) => {
                let r = r.trim_start();
                if r.is_empty() {
                    return err(no, "trailing ',' in a flow sequence");
                }
                r
            }
            None if after.is_empty() => "",
            None => return err(no, format!("unexpected \"{after}\" in a flow sequence")),
        };
    }
    Ok(items)
}

/// A whole-value scalar (nothing may follow a closing quote).
fn scalar(text: &str, no: usize) -> Result<Kind, YamlError> {
    if text.starts_with(['"', '\'']) {
        let (s, after) = quoted(text, no)?;
        if !after.trim().is_empty() {
            return err(
                no,
                format!("unexpected \"{}\" after a quoted value", after.trim()),
            );
        }
        return Ok(Kind::Scalar(s));
    }
    if text.starts_with(['&', '*', '!', '|', '>', '{', '`', '%']) {
        return err(no, format!("unsupported YAML syntax \"{text}\""));
    }
    if find_colon(text).is_some() {
        return err(
            no,
            format!("\"{text}\" looks like a nested mapping; put it on its own line or quote it"),
        );
    }
    if text == "~" || text == "null" {
        return Ok(Kind::Null);
    }
    Ok(Kind::Scalar(text.to_string()))
}

/// A quoted scalar at the start of `text` -> (value, text after the closing quote).
fn quoted(text: &str, no: usize) -> Result<(String, &str), YamlError> {
    let mut chars = text.char_indices();
    let Some((_, q)) = chars.next() else {
        return err(no, "expected a quoted value");
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == q {
            if q == '\'' && text.get(i + 1..).is_some_and(|r| r.starts_with('\'')) {
                out.push('\'');
                chars.next();
                continue;
            }
            return Ok((out, text.get(i + 1..).unwrap_or("")));
        }
        if c == '\\' && q == '"' {
            let Some((_, e)) = chars.next() else { break };
            out.push(match e {
                '"' => '"',
                '\\' => '\\',
                '/' => '/',
                'n' => '\n',
                't' => '\t',
                _ => {
                    return err(
                        no,
                        format!("unsupported escape \"\\{e}\" in a quoted value"),
                    )
                }
            });
            continue;
        }
        out.push(c);
    }
    err(
        no,
        "unterminated quoted value (quoted values must end on the same line)",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn map(n: &Node) -> &[(String, usize, Node)] {
        match &n.kind {
            Kind::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn documented_shape() {
        let text = "# c\nuserGroups:\n  \"ssh\":\n    userAtSigns:\n      - \"@a\" # who\n      - '@b'\n    permissions:\n      daemonAtSigns: [\"@d\", '@e']\n      deviceNames:\n      deviceGroupNames:\n        g1:\n        - \"*:22\"\n";
        let root = parse(text).unwrap();
        let top = map(&root);
        assert_eq!(top[0].0, "userGroups");
        let groups = map(&top[0].2);
        assert_eq!(groups[0].0, "ssh");
        let g = map(&groups[0].2);
        assert_eq!(g[0].0, "userAtSigns");
        assert_eq!(
            g[0].2.kind,
            Kind::Seq(vec![
                Node {
                    line: 5,
                    kind: Kind::Scalar("@a".into())
                },
                Node {
                    line: 6,
                    kind: Kind::Scalar("@b".into())
                },
            ])
        );
        let perms = map(&g[1].2);
        assert_eq!(perms[1].2.kind, Kind::Null);
        let dg = map(&perms[2].2);
        assert_eq!(dg[0].0, "g1");
        assert!(matches!(&dg[0].2.kind, Kind::Seq(v) if v.len() == 1));
    }

    #[test]
    fn rejects_outside_the_subset_with_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("a:\n\t- x\n", 2, "tabs"),
            ("a: &x 1\n", 1, "unsupported"),
            ("a: *x\n", 1, "unsupported"),
            ("a: |\n  x\n", 1, "unsupported"),
            ("a: 1\na: 2\n", 2, "duplicate key"),
            ("a:\n  - x: 1\n", 2, "mappings inside a sequence"),
            ("a:\n  - \"x\n", 2, "unterminated"),
            ("a: [x, y\n", 1, "flow sequence"),
            ("a: {b: 1}\n", 1, "unsupported"),
            ("a:\n  b: 1\n    c: 2\n", 3, "indentation"),
            ("a: 1\n---\nb: 2\n", 2, "one YAML document"),
            ("just text\n", 1, "expected \"key:\""),
            ("a: b: c\n", 1, "nested mapping"),
            ("  a: 1\n", 1, "column 1"),
            ("a: \"x\" y\n", 1, "after a quoted value"),
            ("a: [x,]\n", 1, "trailing"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn comments_quotes_and_empties() {
        let root =
            parse("a: \"x # not a comment\" # comment\nb: 'it''s'\nc: []\nd: {}\ne: ~\n").unwrap();
        let m = map(&root);
        assert_eq!(m[0].2.kind, Kind::Scalar("x # not a comment".into()));
        assert_eq!(m[1].2.kind, Kind::Scalar("it's".into()));
        assert_eq!(m[2].2.kind, Kind::Seq(vec![]));
        assert_eq!(m[3].2.kind, Kind::Map(vec![]));
        assert_eq!(m[4].2.kind, Kind::Null);
        assert_eq!(parse("").unwrap().kind, Kind::Null);
        assert_eq!(parse("# only\n\n").unwrap().kind, Kind::Null);
    }

    /// Hostile input: every prefix and byte-mangled variant of a valid file parses or errs,
    /// never panics (the file is written by people; a half-saved file must not kill the service).
    #[test]
    fn no_panic_on_truncated_or_mangled_input() {
        let text = "userGroups:\n  \"g\":\n    userAtSigns: [\"@a\", '@b']\n    permissions:\n      deviceNames:\n        \"d\":\n          - \"localhost:22\"\n";
        for end in 0..=text.len() {
            if let Some(prefix) = text.get(..end) {
                let _ = parse(prefix);
            }
        }
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'\t', b'"', b'\'', b'-', b':', b'[', b'#', b' ', 0xff] {
                let mut v = bytes.to_vec();
                if let Some(slot) = v.get_mut(i) {
                    *slot = b;
                }
                let _ = parse(&String::from_utf8_lossy(&v));
            }
        }
        let deep: String = (0..40)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(parse(&deep).unwrap_err().message.contains("too deep"));
    }
}
