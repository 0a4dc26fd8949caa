//! Safe edits of `~/.ssh/authorized_keys`: a request can add exactly one well-formed public key
//! line and never options or extra lines (noports.md §6.9–§6.10).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

/// Key types the official daemon accepts (prefix match in the reference; exact here).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A validated `<type> <base64>` public key (comment dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyLine {
    key_type: String,
    blob: String,
}

impl PublicKeyLine {
    /// Accepts `<type> <base64>[ <comment>]`. Rejects control characters (a newline would add
    /// a second line), options before the type, unknown types, and a blob that is not base64
    /// or does not start with the same type name (the SSH wire encoding repeats it).
    pub fn parse(text: &str) -> Result<PublicKeyLine, String> {
        if text.chars().any(|c| c.is_control()) {
            return Err("public key contains control characters".into());
        }
        let mut parts = text.split(' ').filter(|p| !p.is_empty());
        let key_type = parts.next().ok_or("public key is empty")?;
        let blob = parts.next().ok_or("public key has no key data")?;
        let comment: Vec<&str> = parts.collect();
        if !KEY_TYPES.contains(&key_type) {
            return Err(format!("unsupported public key type \"{key_type}\""));
        }
        if comment.iter().any(|c| c.contains('"') || c.contains(',')) {
            return Err("public key comment contains option characters".into());
        }
        let raw = crate::crypto::b64::decode(blob)
            .map_err(|_| "public key data is not base64".to_string())?;
        let (len_bytes, rest) = raw
            .split_first_chunk::<4>()
            .ok_or("public key data is too short")?;
        let n = u32::from_be_bytes(*len_bytes) as usize;
        let embedded = rest.get(..n).ok_or("public key data is truncated")?;
        let wire_type = if key_type.starts_with("rsa-sha2-") {
            "ssh-rsa"
        } else {
            key_type
        };
        if embedded != wire_type.as_bytes() {
            return Err("public key data does not match its type".into());
        }
        Ok(PublicKeyLine {
            key_type: key_type.to_string(),
            blob: blob.to_string(),
        })
    }

    /// `<type> <base64>` without comment.
    pub fn as_line(&self) -> String {
        format!("{} {}", self.key_type, self.blob)
    }

    pub fn blob(&self) -> &str {
        &self.blob
    }
}

/// Validate operator-supplied options (`-S`): one line, no control characters.
pub fn check_options(options: &str) -> Result<(), String> {
    if options.contains('\n') || options.contains('\r') {
        return Err("Detected newline characters in the ssh public key permissions which malforms the authorized_keys file.".into());
    }
    if options.chars().any(|c| c.is_control()) {
        return Err("ssh public key permissions contain control characters".into());
    }
    Ok(())
}

/// Append `key` (with operator `options` in front, if any) unless its key data is already
/// present. Writes a whole line, fixing a missing final newline first. Atomic replace keeps
/// the file's mode (0600 when created).
pub fn add_key(path: &Path, key: &PublicKeyLine, options: &str) -> Result<bool, String> {
    check_options(options)?;
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if existing
        .lines()
        .any(|l| l.split(' ').any(|f| f == key.blob()))
    {
        return Ok(false);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !options.trim().is_empty() {
        text.push_str(options.trim());
        text.push(' ');
    }
    text.push_str(&key.as_line());
    text.push('\n');
    crate::runtime::fs::write_atomic_0600(path, text.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ed25519_blob() -> String {
        let mut raw = Vec::new();
        raw.extend_from_slice(&11u32.to_be_bytes());
        raw.extend_from_slice(b"ssh-ed25519");
        raw.extend_from_slice(&32u32.to_be_bytes());
        raw.extend_from_slice(&[7u8; 32]);
        crate::crypto::b64::encode(&raw)
    }

    #[test]
    fn accepts_a_plain_key_and_drops_the_comment() {
        let k = PublicKeyLine::parse(&format!("ssh-ed25519 {} me@host", ed25519_blob())).unwrap();
        assert_eq!(k.as_line(), format!("ssh-ed25519 {}", ed25519_blob()));
    }

    #[test]
    fn refuses_injection() {
        let b = ed25519_blob();
        assert!(PublicKeyLine::parse(&format!("ssh-ed25519 {b}\nssh-ed25519 {b}")).is_err());
        assert!(PublicKeyLine::parse(&format!("command=\"sh\" ssh-ed25519 {b}")).is_err());
        assert!(
            PublicKeyLine::parse(&format!("ssh-rsa {b}")).is_err(),
            "type mismatch"
        );
        assert!(PublicKeyLine::parse("ssh-ed25519 !!!").is_err());
        assert!(PublicKeyLine::parse("ssh-ed25519").is_err());
        assert!(PublicKeyLine::parse("").is_err());
        assert!(PublicKeyLine::parse(&format!("ssh-ed25519 {b} x,command=\"y\"")).is_err());
        assert!(check_options("a\nb").is_err());
    }

    #[test]
    fn appends_once_as_a_whole_line() {
        let dir = std::env::temp_dir().join(format!("np-ak-{}", crate::crypto::random::uuid_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("authorized_keys");
        std::fs::write(&path, "ssh-ed25519 AAAAexisting").unwrap();
        let k = PublicKeyLine::parse(&format!("ssh-ed25519 {}", ed25519_blob())).unwrap();
        assert!(add_key(&path, &k, "").unwrap());
        assert!(!add_key(&path, &k, "").unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
