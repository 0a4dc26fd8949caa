//! What may go into a command verbatim: keys and key names must not change its shape.
use crate::at::AtError;

/// Full keys (`public:x@a`, `@b:x@a`, `x@a`) go into commands verbatim: no whitespace or
/// control characters, which would end the command or start another.
pub(super) fn check_full_key(key: &str) -> Result<(), AtError> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AtError::Invalid(format!("invalid key {key:?}")));
    }
    Ok(())
}

/// Key names go into commands verbatim: refuse anything that would change the command's shape.
pub(super) fn check_key_name(name: &str) -> Result<(), AtError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == ':' || c == '@' || c.is_whitespace() || c.is_control())
    {
        return Err(AtError::Invalid(format!("invalid key name {name:?}")));
    }
    Ok(())
}
