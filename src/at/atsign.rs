//! AtSign: a validated, canonical (lower-case, leading `@`) atSign. The one atSign grammar:
//! the clients and the atserver applet both parse with it.
use std::fmt;

use super::error::AtError;

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

impl From<AtSign> for String {
    fn from(a: AtSign) -> String {
        a.0
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

    /// The one grammar, for clients and the atserver alike: 1–55 characters after
    /// lower-casing, ASCII letters, digits, `-` and `_`, or non-ASCII that is neither space nor
    /// control (emoji). Every ASCII character is checked in the middle of a name.
    #[test]
    fn one_grammar_for_every_ascii_character() {
        for b in 0u8..128 {
            let c = char::from(b);
            let ok = c.is_ascii_alphanumeric() || c == '-' || c == '_';
            assert_eq!(AtSign::parse(&format!("a{c}b")).is_ok(), ok, "{c:?}");
        }
        assert_eq!(AtSign::parse("@Ünïcødé🙂").unwrap().as_str(), "@ünïcødé🙂");
        for spaced in ["a\u{a0}b", "a\u{2028}b", "a\u{85}b", "a\u{3000}b"] {
            assert!(AtSign::parse(spaced).is_err(), "{spaced:?}");
        }
        assert!(AtSign::parse(&"x".repeat(55)).is_ok());
        assert!(AtSign::parse(&"x".repeat(56)).is_err());
        assert!(AtSign::parse("@@a").is_err() && AtSign::parse("a@").is_err());
    }
}
