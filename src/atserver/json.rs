//! Minimal JSON helpers: a string escaper and an insertion-ordered object writer for server
//! replies, plus typed accessors over miniserde's `Value` for the JSON the server receives
//! (`enroll:` bodies, `clientConfig`, stored enrollment records).
use miniserde::json::{self, Number, Value};

/// Appends `s` as a quoted JSON string.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Returns `s` as a quoted JSON string.
#[cfg(test)]
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

/// An insertion-ordered JSON object under construction.
#[derive(Default)]
pub(crate) struct Obj {
    buf: String,
}

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj {
            buf: String::from("{"),
        }
    }
    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        push_str(&mut self.buf, k);
        self.buf.push(':');
    }
    /// Adds a string member.
    pub(crate) fn str(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        push_str(&mut self.buf, v);
        self
    }
    /// Adds a string member, or `null`.
    pub(crate) fn opt_str(mut self, k: &str, v: Option<&str>) -> Obj {
        self.key(k);
        match v {
            Some(v) => push_str(&mut self.buf, v),
            None => self.buf.push_str("null"),
        }
        self
    }
    /// Adds a string member only when present.
    pub(crate) fn some_str(self, k: &str, v: Option<&str>) -> Obj {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }
    /// Adds a member whose value is already JSON text.
    pub(crate) fn raw(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        self.buf.push_str(v);
        self
    }
    /// Adds an integer member.
    pub(crate) fn int(self, k: &str, v: i64) -> Obj {
        self.raw(k, &v.to_string())
    }
    /// Adds a boolean member.
    pub(crate) fn bool(self, k: &str, v: bool) -> Obj {
        self.raw(k, if v { "true" } else { "false" })
    }
    /// Finishes the object.
    pub(crate) fn end(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// Parses a JSON object; `None` for anything else.
pub(crate) fn parse_object(text: &str) -> Option<json::Object> {
    match json::from_str::<Value>(text).ok()? {
        Value::Object(o) => Some(o),
        _ => None,
    }
}

/// The string member `k`, if present and a string.
pub(crate) fn get_str<'a>(o: &'a json::Object, k: &str) -> Option<&'a str> {
    match o.get(k)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The member `k` as text when it is a string, number or boolean (`None` for null/absent).
pub(crate) fn get_scalar(o: &json::Object, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(Number::U64(n)) => Some(n.to_string()),
        Value::Number(Number::I64(n)) => Some(n.to_string()),
        Value::Number(Number::F64(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Some((*f as i64).to_string())
        }
        _ => None,
    }
}

/// The object member `k`.
pub(crate) fn get_obj<'a>(o: &'a json::Object, k: &str) -> Option<&'a json::Object> {
    match o.get(k)? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The integer member `k`, if present and an integer.
pub(crate) fn get_int(o: &json::Object, k: &str) -> Option<i64> {
    match o.get(k)? {
        Value::Number(Number::U64(n)) => i64::try_from(*n).ok(),
        Value::Number(Number::I64(n)) => Some(*n),
        Value::Number(Number::F64(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The object member `k` as (name, string value) pairs; non-string values are skipped.
pub(crate) fn get_str_map(o: &json::Object, k: &str) -> Option<Vec<(String, String)>> {
    match o.get(k)? {
        Value::Object(m) => Some(
            m.iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The array member `k` as strings.
pub(crate) fn get_str_list(o: &json::Object, k: &str) -> Option<Vec<String>> {
    match o.get(k)? {
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Writes (name, value) string pairs as a JSON object.
pub(crate) fn str_map(pairs: &[(String, String)]) -> String {
    let mut o = Obj::new();
    for (k, v) in pairs {
        o = o.str(k, v);
    }
    o.end()
}

/// Writes strings as a JSON array.
pub(crate) fn str_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, s);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_and_quotes() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn object_roundtrip() {
        let s = Obj::new()
            .str("a", "x")
            .int("n", -3)
            .bool("b", true)
            .opt_str("z", None)
            .end();
        assert_eq!(s, r#"{"a":"x","n":-3,"b":true,"z":null}"#);
        let o = parse_object(&s).unwrap();
        assert_eq!(get_str(&o, "a"), Some("x"));
        assert_eq!(get_int(&o, "n"), Some(-3));
        assert!(parse_object("[1]").is_none());
        assert!(parse_object("{").is_none());
    }
}
