//! AtSign: a validated, canonical (lower-case, leading `@`) atSign.
use std::fmt;

use super::AtError;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtSign(String);

/// Characters the reference `fixAtSign` refuses (atprotocol.md §5.1).
const FORBIDDEN: &str = "!*'`();:&=+$,/?#[]{}@\\\"<>|^%~";

impl AtSign {
    /// Accepts `@alice` or `alice` (any case); trims surrounding whitespace.
    pub fn parse(text: &str) -> Result<AtSign, AtError> {
        let t = text.trim();
        let name = t.strip_prefix('@').unwrap_or(t);
        let name = name.to_lowercase();
        let n = name.chars().count();
        if n == 0 || n > 55 {
            return Err(AtError::Invalid(format!(
                "\"{text}\" is not a valid atSign"
            )));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(c) || c == '.')
        {
            return Err(AtError::Invalid(format!(
                "\"{text}\" is not a valid atSign"
            )));
        }
        Ok(AtSign(format!("@{name}")))
    }

    /// With the leading `@`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Without the leading `@`.
    pub fn name(&self) -> &str {
        self.0.strip_prefix('@').unwrap_or(&self.0)
    }

    /// Parse a comma-separated list, trimming entries and skipping empty ones.
    pub fn parse_list(text: &str) -> Result<Vec<AtSign>, AtError> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(AtSign::parse)
            .collect()
    }
}

impl fmt::Display for AtSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AtSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(AtSign::parse("Alice").unwrap().as_str(), "@alice");
        assert_eq!(AtSign::parse(" @bob ").unwrap().name(), "bob");
        assert!(AtSign::parse("").is_err());
        assert!(AtSign::parse("@").is_err());
        assert!(AtSign::parse("a b").is_err());
        assert!(AtSign::parse("a:b").is_err());
        assert!(AtSign::parse("a\nb").is_err());
        assert_eq!(AtSign::parse_list(" @a, b ,").unwrap().len(), 2);
    }
}
