//! NoPorts names: device names (noports.md §6.5) and the notification key names of §1.2.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

/// The official error text for a bad device name.
pub const DEVICE_NAME_ERROR: &str =
    "Device name must be alphanumeric snake case, max length 36. First char must be _, a-z, or 0-9.";

/// Snakify (lower-case, each whitespace run -> `_`) then require
/// `[a-z0-9_][a-z0-9_-]{1,35}`. Returns the canonical name.
pub fn validate_device_name(raw: &str) -> Result<String, String> {
    let mut name = String::with_capacity(raw.len());
    let mut in_space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            if !in_space {
                name.push('_');
            }
            in_space = true;
        } else {
            name.extend(c.to_lowercase());
            in_space = false;
        }
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    let len = name.chars().count();
    if first_ok && rest_ok && (2..=36).contains(&len) {
        Ok(name)
    } else {
        Err(DEVICE_NAME_ERROR.to_string())
    }
}

/// Session id check: the official clients send a lower-case UUID; we accept any
/// `[A-Za-z0-9_-]{1,64}`, which keeps it safe inside key names and file names.
pub fn valid_session_id(sid: &str) -> bool {
    (1..=64).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(validate_device_name("My Router").unwrap(), "my_router");
        assert_eq!(validate_device_name("rpi-4").unwrap(), "rpi-4");
        assert!(validate_device_name("a").is_err());
        assert!(validate_device_name("-abc").is_err());
        assert!(validate_device_name("a.b").is_err());
        assert!(validate_device_name(&"x".repeat(37)).is_err());
        assert!(validate_device_name("dev:1").is_err());
    }

    #[test]
    fn session_ids() {
        assert!(valid_session_id("5c3e8a6d-9d3e-4f52-8a8c-111111111111"));
        assert!(!valid_session_id(""));
        assert!(!valid_session_id("a:b"));
        assert!(!valid_session_id("a.b"));
    }
}
