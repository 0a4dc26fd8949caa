//! The canonical writer (noports.md §2.2): [`Value`]/[`Object`] serialization, the string
//! escaper every JSON text of the crate goes through, and a streaming object writer.
use std::fmt;

use super::{Object, Value};

impl Object {
    /// Appends the canonical serialization (noports.md §2.2) to `out`.
    pub fn write(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(k, out);
            out.push(':');
            v.write(out);
        }
        out.push('}');
    }

    /// Returns the canonical serialization (noports.md §2.2).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

impl Value {
    /// Appends the canonical serialization (noports.md §2.2) to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Int(i) => {
                use std::fmt::Write;
                // Writing to a String cannot fail.
                let _ = write!(out, "{i}");
            }
            Value::Str(s) => write_str(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Value::Object(o) => o.write(out),
        }
    }

    /// Returns the canonical serialization (noports.md §2.2).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// Appends `s` as a canonical JSON string literal (noports.md §2.2).
pub fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                use std::fmt::Write;
                // Lowercase hex, as Dart and cJSON emit; writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
/// An insertion-ordered JSON object written straight into a string, escaped as [`write_str`]
/// does; for replies that are never parsed back here (the atserver's). Members are appended
/// as given: the caller keeps keys unique.
#[derive(Default)]
pub struct ObjectWriter {
    buf: String,
}

impl ObjectWriter {
    /// Starts an empty object.
    pub fn new() -> ObjectWriter {
        ObjectWriter {
            buf: String::from("{"),
        }
    }
    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        write_str(k, &mut self.buf);
        self.buf.push(':');
    }
    /// Adds a string member.
    #[must_use]
    pub fn str(mut self, k: &str, v: &str) -> ObjectWriter {
        self.key(k);
        write_str(v, &mut self.buf);
        self
    }
    /// Adds a string member, or `null`.
    #[must_use]
    pub fn opt_str(mut self, k: &str, v: Option<&str>) -> ObjectWriter {
        self.key(k);
        match v {
            Some(v) => write_str(v, &mut self.buf),
            None => self.buf.push_str("null"),
        }
        self
    }
    /// Adds a string member only when present.
    #[must_use]
    pub fn some_str(self, k: &str, v: Option<&str>) -> ObjectWriter {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }
    /// Adds a member whose value is already JSON text.
    #[must_use]
    pub fn raw(mut self, k: &str, v: &str) -> ObjectWriter {
        self.key(k);
        self.buf.push_str(v);
        self
    }
    /// Adds an integer member.
    #[must_use]
    pub fn int(self, k: &str, v: i64) -> ObjectWriter {
        self.raw(k, &v.to_string())
    }
    /// Adds a boolean member.
    #[must_use]
    pub fn bool(self, k: &str, v: bool) -> ObjectWriter {
        self.raw(k, if v { "true" } else { "false" })
    }
    /// Finishes the object.
    pub fn end(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// Writes (name, value) string pairs as a JSON object.
pub fn str_map(pairs: &[(String, String)]) -> String {
    let mut o = ObjectWriter::new();
    for (k, v) in pairs {
        o = o.str(k, v);
    }
    o.end()
}

/// Writes strings as a JSON array.
pub fn str_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(s, &mut out);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_canonical_escapes() {
        let v = Value::from("a\"b\\c/d\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}é😀");
        assert_eq!(
            v.to_json(),
            "\"a\\\"b\\\\c/d\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}é😀\""
        );
    }

    #[test]
    fn escapes_control_and_quotes() {
        let mut s = String::new();
        write_str("a\"b\\c\nd\u{1}", &mut s);
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
    }
}
