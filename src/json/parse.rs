//! The strict parser (noports.md §2.2) and its errors.
use std::collections::HashSet;
use std::fmt;

use super::{Object, Value, MAX_DEPTH, MAX_INPUT_LEN};

/// What was wrong with a JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The input is longer than [`MAX_INPUT_LEN`].
    TooLarge,
    /// Arrays/objects nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The input ended in the middle of a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue the expected token.
    UnexpectedChar,
    /// An object has the same key twice (the JSON would not survive re-serialization).
    DuplicateKey,
    /// A number with a fraction or exponent; NoPorts payloads use integers only.
    Float,
    /// An integer outside the signed 64-bit range.
    IntegerOverflow,
    /// A number with a leading zero, a lone `-`, or no digits.
    BadNumber,
    /// An unknown backslash escape or malformed `\uXXXX`.
    BadEscape,
    /// A `\uXXXX` surrogate that is not part of a valid pair.
    BadSurrogate,
    /// An unescaped control character (U+0000–U+001F) inside a string.
    ControlChar,
    /// Non-whitespace after the top-level value.
    TrailingData,
    /// The top-level value is not an object where one is required.
    NotAnObject,
}

/// A JSON parse failure: what was wrong and the byte offset where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong.
    pub kind: JsonErrorKind,
    /// Byte offset into the input.
    pub offset: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            JsonErrorKind::TooLarge => "input larger than 64 KiB",
            JsonErrorKind::TooDeep => "nesting deeper than 32 levels",
            JsonErrorKind::UnexpectedEnd => "unexpected end of input",
            JsonErrorKind::UnexpectedChar => "unexpected character",
            JsonErrorKind::DuplicateKey => "duplicate object key",
            JsonErrorKind::Float => "non-integer number",
            JsonErrorKind::IntegerOverflow => "integer out of range",
            JsonErrorKind::BadNumber => "malformed number",
            JsonErrorKind::BadEscape => "invalid escape sequence",
            JsonErrorKind::BadSurrogate => "unpaired surrogate escape",
            JsonErrorKind::ControlChar => "unescaped control character in string",
            JsonErrorKind::TrailingData => "trailing data after JSON value",
            JsonErrorKind::NotAnObject => "expected a JSON object",
        };
        write!(f, "json: {what} at byte {}", self.offset)
    }
}

impl std::error::Error for JsonError {}

/// Parses one JSON value, strictly.
///
/// # Errors
/// [`JsonError`] naming the problem and its byte offset: input over [`MAX_INPUT_LEN`],
/// nesting over [`MAX_DEPTH`], duplicate keys, floats/exponents, out-of-range integers,
/// malformed strings or escapes, truncation, and trailing non-whitespace.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut p = Parser::new(text)?;
    let v = p.value(0)?;
    p.finish()?;
    Ok(v)
}

/// Parses a JSON object and also returns the byte range of each top-level member's value
/// within `text`, in member order. Used to verify a signature over the raw payload text as
/// well as over its re-serialization (noports.md §2.2, consequence 2).
///
/// # Errors
/// As [`parse`], plus [`JsonErrorKind::NotAnObject`].
pub(crate) fn parse_object_with_spans(
    text: &str,
) -> Result<(Object, Vec<std::ops::Range<usize>>), JsonError> {
    let mut p = Parser::new(text)?;
    p.skip_ws();
    if p.peek() != Some(b'{') {
        // Report a malformed text as such; a well-formed non-object as NotAnObject.
        parse(text)?;
        return Err(JsonError {
            kind: JsonErrorKind::NotAnObject,
            offset: 0,
        });
    }
    let mut spans = Vec::new();
    let obj = p.object(0, Some(&mut spans))?;
    p.finish()?;
    Ok((obj, spans))
}

/// A cursor over the input bytes; every access is checked (style guide §c).
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, JsonError> {
        if text.len() > MAX_INPUT_LEN {
            return Err(JsonError {
                kind: JsonErrorKind::TooLarge,
                offset: MAX_INPUT_LEN,
            });
        }
        Ok(Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        })
    }

    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            kind,
            offset: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn finish(&mut self) -> Result<(), JsonError> {
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return Err(self.err(JsonErrorKind::TrailingData));
        }
        Ok(())
    }

    fn expect(&mut self, b: u8) -> Result<(), JsonError> {
        match self.peek() {
            Some(x) if x == b => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.err(JsonErrorKind::UnexpectedChar)),
            None => Err(self.err(JsonErrorKind::UnexpectedEnd)),
        }
    }

    fn literal(&mut self, word: &'static str, v: Value) -> Result<Value, JsonError> {
        for &b in word.as_bytes() {
            self.expect(b)?;
        }
        Ok(v)
    }

    /// Parses a value at nesting `depth` (0 for the top level).
    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.err(JsonErrorKind::UnexpectedEnd)),
            Some(b'{') => Ok(Value::Object(self.object(depth, None)?)),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err(JsonErrorKind::UnexpectedChar)),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, JsonError> {
        let d = depth + 1;
        if d > MAX_DEPTH {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        Ok(d)
    }

    fn object(
        &mut self,
        depth: usize,
        mut spans: Option<&mut Vec<std::ops::Range<usize>>>,
    ) -> Result<Object, JsonError> {
        let depth = self.enter(depth)?;
        self.expect(b'{')?;
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Object(members));
        }
        loop {
            self.skip_ws();
            let key_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(match self.peek() {
                    None => self.err(JsonErrorKind::UnexpectedEnd),
                    Some(_) => self.err(JsonErrorKind::UnexpectedChar),
                });
            }
            let key = self.string()?;
            if !seen.insert(key.clone()) {
                return Err(JsonError {
                    kind: JsonErrorKind::DuplicateKey,
                    offset: key_at,
                });
            }
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let start = self.pos;
            let v = self.value(depth)?;
            if let Some(s) = spans.as_deref_mut() {
                s.push(start..self.pos);
            }
            members.push((key, v));
            self.skip_ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b'}') => return Ok(Object(members)),
                Some(_) => {
                    self.pos -= 1;
                    return Err(self.err(JsonErrorKind::UnexpectedChar));
                }
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        let depth = self.enter(depth)?;
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b']') => return Ok(Value::Array(items)),
                Some(_) => {
                    self.pos -= 1;
                    return Err(self.err(JsonErrorKind::UnexpectedChar));
                }
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
            }
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits_at = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let ndigits = self.pos - digits_at;
        if ndigits == 0 {
            return Err(self.err(JsonErrorKind::BadNumber));
        }
        if ndigits > 1 && self.bytes.get(digits_at) == Some(&b'0') {
            return Err(JsonError {
                kind: JsonErrorKind::BadNumber,
                offset: digits_at,
            });
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.err(JsonErrorKind::Float));
        }
        let lexeme = self.text.get(start..self.pos).ok_or(JsonError {
            kind: JsonErrorKind::BadNumber,
            offset: start,
        })?;
        lexeme
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| JsonError {
                kind: JsonErrorKind::IntegerOverflow,
                offset: start,
            })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let at = self.pos;
            let b = self.bump().ok_or(self.err(JsonErrorKind::UnexpectedEnd))?;
            let d = char::from(b).to_digit(16).ok_or(JsonError {
                kind: JsonErrorKind::BadEscape,
                offset: at,
            })?;
            v = (v << 4) | d;
        }
        Ok(v)
    }

    /// Parses a string literal starting at the opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            // Copy the run of plain characters up to the next quote, backslash or control
            // character. Those are ASCII, so the run ends on a char boundary.
            let run_start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            let run = self.text.get(run_start..self.pos).ok_or(JsonError {
                kind: JsonErrorKind::UnexpectedChar,
                offset: run_start,
            })?;
            out.push_str(run);
            let esc_at = self.pos;
            match self.bump() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => return Ok(out),
                Some(b'\\') => {}
                Some(_) => {
                    return Err(JsonError {
                        kind: JsonErrorKind::ControlChar,
                        offset: esc_at,
                    })
                }
            }
            let c = match self.bump() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{08}',
                Some(b'f') => '\u{0c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => self.unicode_escape(esc_at)?,
                Some(_) => {
                    return Err(JsonError {
                        kind: JsonErrorKind::BadEscape,
                        offset: esc_at,
                    })
                }
            };
            out.push(c);
        }
    }

    /// Decodes the rest of a `\uXXXX` escape (the `\u` is consumed), including a following
    /// low surrogate escape when the first is a high surrogate.
    fn unicode_escape(&mut self, esc_at: usize) -> Result<char, JsonError> {
        let bad = JsonError {
            kind: JsonErrorKind::BadSurrogate,
            offset: esc_at,
        };
        let hi = self.hex4()?;
        let code = match hi {
            0xD800..=0xDBFF => {
                if self.bump() != Some(b'\\') || self.bump() != Some(b'u') {
                    return Err(bad);
                }
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(bad);
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(bad),
            c => c,
        };
        char::from_u32(code).ok_or(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_surrogates() {
        let v = parse(r#""\ud83d\ude00\u00e9""#).unwrap();
        assert_eq!(v, Value::from("😀é"));
        assert_eq!(v.to_json(), "\"😀é\"");
    }

    #[test]
    fn rejects_bad_input() {
        let cases: &[(&str, JsonErrorKind)] = &[
            ("", JsonErrorKind::UnexpectedEnd),
            ("{", JsonErrorKind::UnexpectedEnd),
            (r#"{"a":1,"a":2}"#, JsonErrorKind::DuplicateKey),
            ("1.5", JsonErrorKind::Float),
            ("1e3", JsonErrorKind::Float),
            ("01", JsonErrorKind::BadNumber),
            ("-", JsonErrorKind::BadNumber),
            ("99999999999999999999", JsonErrorKind::IntegerOverflow),
            ("{} x", JsonErrorKind::TrailingData),
            (r#""\ud800""#, JsonErrorKind::BadSurrogate),
            (r#""\udc00""#, JsonErrorKind::BadSurrogate),
            (r#""\x""#, JsonErrorKind::BadEscape),
            ("\"a\nb\"", JsonErrorKind::ControlChar),
            ("[1,]", JsonErrorKind::UnexpectedChar),
            ("{\"a\" 1}", JsonErrorKind::UnexpectedChar),
            ("tru", JsonErrorKind::UnexpectedEnd),
        ];
        for (text, kind) in cases {
            assert_eq!(parse(text).map_err(|e| e.kind), Err(*kind), "{text:?}");
        }
    }

    #[test]
    fn depth_limit() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            parse(&deep).map_err(|e| e.kind),
            Err(JsonErrorKind::TooDeep)
        );
    }

    #[test]
    fn spans_cover_raw_values() {
        let text = r#"{ "payload" : {"b":1, "a":"x"} , "n":null}"#;
        let (obj, spans) = parse_object_with_spans(text).unwrap();
        assert_eq!(obj.len(), 2);
        assert_eq!(&text[spans[0].clone()], r#"{"b":1, "a":"x"}"#);
        assert_eq!(&text[spans[1].clone()], "null");
    }
}
