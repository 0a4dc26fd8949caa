//! Accessors over miniserde's untyped [`Value`](miniserde::json::Value), for JSON read without
//! the strict parser: members looked up by name, numbers also accepted as floats with no
//! fraction or as strings (`enroll:` bodies, `clientConfig`, stored enrollment records).
use miniserde::json::{self, Number, Value};

/// Parses a JSON object; `None` for anything else.
pub fn parse_object(text: &str) -> Option<json::Object> {
    match json::from_str::<Value>(text).ok()? {
        Value::Object(o) => Some(o),
        _ => None,
    }
}

/// The string member `k`, if present and a string.
pub fn get_str<'a>(o: &'a json::Object, k: &str) -> Option<&'a str> {
    match o.get(k)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The member `k` as text when it is a string, number or boolean (`None` for null/absent).
#[allow(clippy::cast_possible_truncation)] // whole and under 2^53: exact
pub fn get_scalar(o: &json::Object, k: &str) -> Option<String> {
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
pub fn get_obj<'a>(o: &'a json::Object, k: &str) -> Option<&'a json::Object> {
    match o.get(k)? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The integer member `k`, if present and an integer.
#[allow(clippy::cast_possible_truncation)] // whole and under 2^53: exact
pub fn get_int(o: &json::Object, k: &str) -> Option<i64> {
    match o.get(k)? {
        Value::Number(Number::U64(n)) => i64::try_from(*n).ok(),
        Value::Number(Number::I64(n)) => Some(*n),
        Value::Number(Number::F64(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The object member `k` as (name, string value) pairs; non-string values are skipped.
pub fn get_str_map(o: &json::Object, k: &str) -> Option<Vec<(String, String)>> {
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
pub fn get_str_list(o: &json::Object, k: &str) -> Option<Vec<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::ObjectWriter;

    #[test]
    fn object_roundtrip() {
        let s = ObjectWriter::new()
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
