//! The one JSON module of the crate, shared by at/, noports/ and every applet.
//!
//! - The model here, [`Value`] and [`Object`], is order-preserving: signed NoPorts payloads are
//!   verified by re-serializing the received object in received order (noports.md §2.2).
//! - [`parse`] (`parse.rs`) is the strict parser for peer input: integers only (no fractions or
//!   exponents), no duplicate keys, at most [`MAX_DEPTH`] levels and [`MAX_INPUT_LEN`] bytes.
//! - The canonical writer (`write.rs`) is byte-exact: no whitespace, insertion order, `"` and
//!   `\` escaped, control characters as `\b \t \n \f \r` or lowercase `\u00xx`, `/` and
//!   non-ASCII emitted raw. [`ObjectWriter`] streams an object straight into a string with the
//!   same escaping (the atserver's replies).
//! - [`untyped`]: accessors over miniserde's untyped value, for JSON that needs neither the
//!   signer's bytes nor strictness (atserver `enroll:` bodies, stored records). Fixed shapes
//!   are decoded with `miniserde::Deserialize` where they are used.
//!
//! Pure functions over strings: no I/O, no logging, never a panic on peer input.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::cast_possible_truncation
    )
)]

mod parse;
pub mod untyped;
mod write;

pub(crate) use parse::parse_object_with_spans;
pub use parse::{parse, JsonError, JsonErrorKind};
pub use write::{str_array, str_map, write_str, ObjectWriter};

/// Largest input [`parse`] accepts, in bytes. Every NoPorts JSON value (envelopes, relay
/// requests, ping replies, RPC messages) is well under a few KiB; the cap bounds the memory a
/// peer can make us allocate.
pub const MAX_INPUT_LEN: usize = 64 * 1024;

/// Deepest nesting of arrays and objects [`parse`] accepts. NoPorts uses at most 3 levels
/// (envelope → payload → supportedFeatures); the cap bounds parser recursion.
pub const MAX_DEPTH: usize = 32;

/// A JSON value. Numbers are integers only: NoPorts never signs floats (noports.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer in plain decimal.
    Int(i64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Value>),
    /// An object with members in insertion order.
    Object(Object),
}

/// A JSON object: members in insertion order, keys unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Object(Vec<(String, Value)>);

impl Object {
    /// Creates an empty object.
    pub fn new() -> Self {
        Object(Vec::new())
    }

    /// Appends a member and returns the object (builder style). See [`Object::push`].
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.push(key, value);
        self
    }

    /// Appends a member at the end. If `key` is already present its value is replaced in
    /// place instead, so an `Object` never holds duplicate keys (which verifiers reject).
    pub fn push(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// Returns the value of member `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Returns member `key` if it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Returns member `key` if it is an integer.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    /// Returns member `key` if it is a boolean.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }

    /// Returns member `key` if it is an object.
    pub fn get_object(&self, key: &str) -> Option<&Object> {
        self.get(key).and_then(Value::as_object)
    }

    /// Returns member `key` if it is an array.
    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key).and_then(Value::as_array)
    }

    /// Returns whether member `key` is present (with any value, `null` included).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Iterates over the members in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `text` as a JSON object. See [`parse`].
    ///
    /// # Errors
    /// Any [`parse`] error, or [`JsonErrorKind::NotAnObject`] at offset 0.
    pub fn parse(text: &str) -> Result<Object, JsonError> {
        match parse(text)? {
            Value::Object(o) => Ok(o),
            _ => Err(JsonError {
                kind: JsonErrorKind::NotAnObject,
                offset: 0,
            }),
        }
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Value {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The object, if this is an object.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Str(s.clone())
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i64::from(i))
    }
}
impl From<u16> for Value {
    fn from(i: u16) -> Self {
        Value::Int(i64::from(i))
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Int(i64::from(i))
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}
impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` becomes `null`, as Dart emits absent optional fields (noports.md §2.2).
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_replaces_in_place() {
        let mut o = Object::new().with("a", 1i64).with("b", 2i64);
        o.push("a", 3i64);
        assert_eq!(o.to_json(), r#"{"a":3,"b":2}"#);
    }
}
