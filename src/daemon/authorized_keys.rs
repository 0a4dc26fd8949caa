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

/// Longest accepted key blob (an RSA-16384 key is about 2 KiB).
const MAX_BLOB: usize = 4096;

/// Reads SSH wire `string`s (u32 length + bytes).
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn string(&mut self, what: &str) -> Result<&'a [u8], String> {
        let (len, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("public key data ends before its {what}"))?;
        let n = u32::from_be_bytes(*len) as usize;
        let body = rest
            .get(..n)
            .ok_or_else(|| format!("public key data is truncated in its {what}"))?;
        self.0 = rest.get(n..).unwrap_or_default();
        Ok(body)
    }

    fn done(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("public key data has trailing bytes".into())
        }
    }
}

/// Bits of an SSH `mpint` (big-endian, two's complement; positive values only).
fn mpint_bits(m: &[u8]) -> Result<usize, String> {
    if m.first().is_some_and(|b| b & 0x80 != 0) {
        return Err("public key has a negative number".into());
    }
    let m = match m.iter().position(|b| *b != 0) {
        Some(i) => m.get(i..).unwrap_or_default(),
        None => return Ok(0),
    };
    let lead = m.first().copied().unwrap_or(0);
    Ok(m.len() * 8 - lead.leading_zeros() as usize)
}

/// Decodes the key blob the way sshd will and checks it is one well-formed key of `key_type`:
/// the embedded type matches, every field is present with a sane size, nothing follows.
fn check_blob(key_type: &str, raw: &[u8]) -> Result<(), String> {
    let mut w = Wire(raw);
    let wire_type = if key_type.starts_with("rsa-sha2-") {
        "ssh-rsa"
    } else {
        key_type
    };
    if w.string("type")? != wire_type.as_bytes() {
        return Err("public key data does not match its type".into());
    }
    match wire_type {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            if w.string("key")?.len() != 32 {
                return Err("ed25519 public key is not 32 bytes".into());
            }
        }
        "ssh-rsa" => {
            let e = w.string("exponent")?;
            let n = w.string("modulus")?;
            let (e_bits, n_bits) = (mpint_bits(e)?, mpint_bits(n)?);
            if !(2..=64).contains(&e_bits) || e.last().is_some_and(|b| b & 1 == 0) {
                return Err("RSA public exponent is not a small odd number".into());
            }
            if !(1024..=16384).contains(&n_bits) {
                return Err(format!(
                    "RSA modulus of {n_bits} bits (1024 to 16384 accepted)"
                ));
            }
        }
        t => {
            // ecdsa-sha2-<curve> and sk-ecdsa-sha2-nistp256@openssh.com
            let curve = t
                .trim_start_matches("sk-")
                .trim_start_matches("ecdsa-sha2-")
                .trim_end_matches("@openssh.com");
            let point_len = match curve {
                "nistp256" => 65,
                "nistp384" => 97,
                "nistp521" => 133,
                _ => return Err(format!("unsupported curve in {t}")),
            };
            if w.string("curve")? != curve.as_bytes() {
                return Err("ecdsa curve does not match the key type".into());
            }
            let q = w.string("point")?;
            if q.len() != point_len || q.first() != Some(&4) {
                return Err("ecdsa public point is malformed".into());
            }
        }
    }
    if wire_type.starts_with("sk-") {
        w.string("application")?;
    }
    w.done()
}

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
        if raw.len() > MAX_BLOB {
            return Err("public key data is too long".into());
        }
        check_blob(key_type, &raw)?;
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
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
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

    fn wire(fields: &[&[u8]]) -> String {
        let mut raw = Vec::new();
        for f in fields {
            raw.extend_from_slice(&(f.len() as u32).to_be_bytes());
            raw.extend_from_slice(f);
        }
        crate::crypto::b64::encode(&raw)
    }

    #[test]
    fn key_data_is_decoded_and_checked() {
        // No key data after the type, short or long ed25519 keys, trailing bytes, corruption.
        for bad in [
            wire(&[b"ssh-ed25519"]),
            wire(&[b"ssh-ed25519", &[7u8; 31]]),
            wire(&[b"ssh-ed25519", &[7u8; 33]]),
            wire(&[b"ssh-ed25519", &[7u8; 32], b"x"]),
        ] {
            assert!(
                PublicKeyLine::parse(&format!("ssh-ed25519 {bad}")).is_err(),
                "{bad}"
            );
        }
        let mut corrupt = crate::crypto::b64::decode(&ed25519_blob()).unwrap();
        corrupt.truncate(20);
        let corrupt = crate::crypto::b64::encode(&corrupt);
        assert!(PublicKeyLine::parse(&format!("ssh-ed25519 {corrupt}")).is_err());
        // RSA: a real 2048-bit key passes, a tiny modulus or an even exponent does not.
        let rsa = crate::crypto::rsa::RsaPrivateKey::generate().unwrap();
        let spki = crate::crypto::b64::decode(&rsa.public_key().to_spki_b64()).unwrap();
        // The modulus is the 257-byte INTEGER inside the SPKI (0x00 + 256 bytes).
        let pos = spki
            .windows(4)
            .position(|w| w == [0x02, 0x82, 0x01, 0x01])
            .unwrap();
        let n = &spki[pos + 4..pos + 4 + 257];
        let good = wire(&[b"ssh-rsa", &[1, 0, 1], n]);
        assert!(PublicKeyLine::parse(&format!("ssh-rsa {good}")).is_ok());
        assert!(PublicKeyLine::parse(&format!("rsa-sha2-512 {good}")).is_ok());
        for bad in [
            wire(&[b"ssh-rsa", &[1, 0, 1], &[0x00, 0xc3, 0x11]]),
            wire(&[b"ssh-rsa", &[1, 0, 0], n]),
            wire(&[b"ssh-rsa", &[1, 0, 1]]),
            wire(&[b"ssh-rsa", &[1, 0, 1], n, b"extra"]),
        ] {
            assert!(
                PublicKeyLine::parse(&format!("ssh-rsa {bad}")).is_err(),
                "{bad}"
            );
        }
        // ECDSA: curve and point length must match the type.
        let mut q = vec![4u8];
        q.extend_from_slice(&[9u8; 64]);
        let p256 = wire(&[b"ecdsa-sha2-nistp256", b"nistp256", &q]);
        assert!(PublicKeyLine::parse(&format!("ecdsa-sha2-nistp256 {p256}")).is_ok());
        let wrong_curve = wire(&[b"ecdsa-sha2-nistp256", b"nistp384", &q]);
        assert!(PublicKeyLine::parse(&format!("ecdsa-sha2-nistp256 {wrong_curve}")).is_err());
        let short = wire(&[b"ecdsa-sha2-nistp256", b"nistp256", &q[..40]]);
        assert!(PublicKeyLine::parse(&format!("ecdsa-sha2-nistp256 {short}")).is_err());
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
