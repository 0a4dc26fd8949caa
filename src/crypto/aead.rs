//! Primitives of our data-plane suite: X25519 ephemeral agreement, HKDF-SHA-256 and
//! ChaCha20-Poly1305 or AES-256-GCM records with counter nonces (docs/suite-v1.md).
//!
//! HKDF lives in [`super::hash::hkdf_sha256`]; this file holds the agreement and the record
//! sealing. Each direction of a connection has its own key and so its own nonce sequence.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::secret::Secret;
use super::CryptoError;
use ring::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

/// Length of the tag appended to every record (Poly1305 and GCM alike).
pub const TAG_LEN: usize = 16;

/// The AEAD of a session's records. Both are ring's assembly (already linked for TLS), so
/// their speed does not depend on our size-optimised build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    /// ChaCha20-Poly1305 (RFC 8439): the default, fast on every CPU.
    ChaCha20Poly1305,
    /// AES-256-GCM: about four times faster where the CPU has AES and carry-less multiply
    /// instructions (x86_64 AES-NI + PCLMULQDQ, aarch64 AES + PMULL), much slower elsewhere.
    Aes256Gcm,
}

impl Aead {
    /// The name used on the wire (member `suiteAead`, docs/suite-v1.md §1).
    pub fn name(self) -> &'static str {
        match self {
            Aead::ChaCha20Poly1305 => "chacha20-poly1305",
            Aead::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The faster AEAD on this CPU: AES-256-GCM when the kernel lists AES and carry-less
    /// multiply instructions (`aes` with `pclmulqdq` on x86, `pmull` on arm), else
    /// ChaCha20-Poly1305. `NOPORTS_AEAD=chacha20-poly1305` keeps ChaCha20-Poly1305 (to compare,
    /// or to test the fallback). Read once per process: /proc/cpuinfo is slow on big machines.
    pub fn fastest_here() -> Aead {
        static FASTEST: std::sync::OnceLock<Aead> = std::sync::OnceLock::new();
        *FASTEST.get_or_init(|| {
            let chacha = Aead::ChaCha20Poly1305;
            if std::env::var_os("NOPORTS_AEAD").is_some_and(|v| v == chacha.name()) {
                return chacha;
            }
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            match cpuinfo
                .lines()
                .find(|l| l.starts_with("flags") || l.starts_with("Features"))
            {
                Some(flags) if has_aes_and_clmul(flags) => Aead::Aes256Gcm,
                _ => chacha,
            }
        })
    }

    fn algorithm(self) -> &'static Algorithm {
        match self {
            Aead::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Aead::Aes256Gcm => &AES_256_GCM,
        }
    }
}

/// Whether a cpuinfo flags line names both AES rounds and carry-less multiplication.
fn has_aes_and_clmul(flags: &str) -> bool {
    let (mut aes, mut clmul) = (false, false);
    for w in flags.split_ascii_whitespace() {
        aes |= w == "aes";
        clmul |= w == "pclmulqdq" || w == "pmull";
    }
    aes && clmul
}

/// An ephemeral X25519 secret, used once (ring's agreement, already linked for TLS; its
/// private key cannot be copied out and is erased on drop).
pub struct EphemeralSecret {
    secret: ring::agreement::EphemeralPrivateKey,
    public: [u8; 32],
}

impl EphemeralSecret {
    /// A fresh secret from the OS CSPRNG.
    ///
    /// # Errors
    /// [`CryptoError::KeyGen`] when the OS gives no randomness.
    pub fn generate() -> Result<Self, CryptoError> {
        let rng = ring::rand::SystemRandom::new();
        let secret = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng)
            .map_err(|_| CryptoError::KeyGen)?;
        let public = secret
            .compute_public_key()
            .map_err(|_| CryptoError::KeyGen)?
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::BadKey("x25519 public key length"))?;
        Ok(EphemeralSecret { secret, public })
    }

    /// Our public value, to send to the peer.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public
    }

    /// Diffie-Hellman; errors on an all-zero (non-contributory) shared secret.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] when the peer sent a low-order point, which would make the shared
    /// secret all zeros regardless of our secret (ring refuses that result).
    pub fn agree(self, peer_public: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
        let peer = ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, peer_public);
        ring::agreement::agree_ephemeral(self.secret, &peer, |shared| <[u8; 32]>::try_from(shared))
            .map_err(|_| CryptoError::BadKey("x25519 low-order public key"))?
            .map_err(|_| CryptoError::BadKey("x25519 shared secret length"))
    }
}

impl std::fmt::Debug for EphemeralSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EphemeralSecret(***)")
    }
}

/// The 96-bit nonce for record `counter`: 32 zero bits then the counter, big-endian.
fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    let (_, tail) = n.split_at_mut(4);
    tail.copy_from_slice(&counter.to_be_bytes());
    n
}

/// Why the nonce sequence ended: reusing a nonce under one key would break either AEAD.
const EXHAUSTED: CryptoError = CryptoError::Length("aead record counter exhausted");

/// AEAD, key and next record number of one direction.
struct Direction {
    aead: Aead,
    key: Secret<[u8; 32]>,
    counter: u64,
}

impl Direction {
    fn new(aead: Aead, key: [u8; 32]) -> Self {
        let mut key = key;
        let d = Direction {
            aead,
            key: Secret::new(key),
            counter: 0,
        };
        zeroize::Zeroize::zeroize(&mut key);
        d
    }

    /// The cipher for one record. Rebuilt per record so the only long-lived key copy is the
    /// zeroizing `Secret`: a key copy for ChaCha20-Poly1305, and for AES-256-GCM a key schedule
    /// and GHASH table, well under a microsecond with AES instructions against ~5 µs of
    /// sealing a full record.
    fn cipher(&self) -> Result<LessSafeKey, CryptoError> {
        // Only fails for a key of the wrong length, and ours is always 32 bytes.
        UnboundKey::new(self.aead.algorithm(), self.key.expose())
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::BadKey("aead key"))
    }

    /// The nonce for the next record, or an error once the counter would wrap.
    fn next_nonce(&self) -> Result<[u8; 12], CryptoError> {
        // The last value is never used, so `counter + 1` below cannot overflow.
        if self.counter == u64::MAX {
            return Err(EXHAUSTED);
        }
        Ok(nonce(self.counter))
    }

    fn advance(&mut self) {
        self.counter = self.counter.saturating_add(1);
    }
}

/// One direction of AEAD records: 96-bit nonce = 32-bit zero || 64-bit counter.
pub struct Sealer {
    dir: Direction,
}

/// The receiving side of one direction; must see records in the order they were sealed.
pub struct Opener {
    dir: Direction,
}

impl Sealer {
    /// Starts at record 0 with `key` (zeroized on drop).
    pub fn new(aead: Aead, key: [u8; 32]) -> Self {
        Sealer {
            dir: Direction::new(aead, key),
        }
    }

    /// Encrypt `buf` in place and append the 16-byte tag; `aad` is authenticated.
    ///
    /// # Errors
    /// [`CryptoError::Length`] when the record counter is exhausted (2^64 − 1 records) or the
    /// record is too long for the AEAD (64 GiB); `buf` is unchanged then.
    pub fn seal(&mut self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let nonce = self.dir.next_nonce()?;
        let tag = self
            .dir
            .cipher()?
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Length("aead record too long"))?;
        buf.extend_from_slice(tag.as_ref());
        self.dir.advance();
        Ok(())
    }

    /// Number of records sealed so far, i.e. the counter of the next record.
    pub fn counter(&self) -> u64 {
        self.dir.counter
    }

    /// The AEAD these records use.
    pub fn aead(&self) -> Aead {
        self.dir.aead
    }
}

impl Opener {
    /// Starts at record 0 with `key` (zeroized on drop).
    pub fn new(aead: Aead, key: [u8; 32]) -> Self {
        Opener {
            dir: Direction::new(aead, key),
        }
    }

    /// Verify and decrypt in place, truncating the tag; `Tampered` on failure.
    ///
    /// A failed record does not advance the counter; callers should treat it as fatal for the
    /// connection.
    ///
    /// # Errors
    /// [`CryptoError::Tampered`] when the tag does not verify (modified, reordered, replayed or
    /// truncated record, or a wrong key), [`CryptoError::Length`] when the counter is exhausted.
    pub fn open(&mut self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let nonce = self.dir.next_nonce()?;
        let Some(body_len) = buf.len().checked_sub(TAG_LEN) else {
            return Err(CryptoError::Tampered);
        };
        self.dir
            .cipher()?
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Tampered)?;
        buf.truncate(body_len);
        self.dir.advance();
        Ok(())
    }

    /// Number of records opened so far, i.e. the counter of the next record.
    pub fn counter(&self) -> u64 {
        self.dir.counter
    }

    /// The AEAD these records use.
    pub fn aead(&self) -> Aead {
        self.dir.aead
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer {{ key: ***, counter: {} }}", self.dir.counter)
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener {{ key: ***, counter: {} }}", self.dir.counter)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aes_needs_both_instructions() {
        assert!(has_aes_and_clmul("flags\t\t: fpu sse2 pclmulqdq aes avx"));
        assert!(has_aes_and_clmul("Features\t: fp asimd aes pmull sha1"));
        assert!(!has_aes_and_clmul("flags\t\t: fpu sse2 pclmulqdq avx"));
        assert!(!has_aes_and_clmul("Features\t: half thumb vfpv4 neon aes"));
        assert!(!has_aes_and_clmul("flags : aesni pclmul"));
    }

    #[test]
    fn nonce_layout() {
        let n = nonce(0x0102_0304_0506_0708);
        assert_eq!(n.as_slice(), &[0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn counter_refuses_to_wrap() {
        let mut s = Sealer::new(Aead::ChaCha20Poly1305, [1; 32]);
        let mut o = Opener::new(Aead::ChaCha20Poly1305, [1; 32]);
        s.dir.counter = u64::MAX - 1;
        o.dir.counter = u64::MAX - 1;
        let mut buf = b"last".to_vec();
        assert_eq!(s.seal(b"", &mut buf), Ok(()));
        assert_eq!(o.open(b"", &mut buf), Ok(()));
        assert_eq!(buf, b"last");
        assert_eq!(s.counter(), u64::MAX);
        let mut buf = b"one too many".to_vec();
        assert_eq!(s.seal(b"", &mut buf), Err(EXHAUSTED));
        assert_eq!(buf, b"one too many");
        assert_eq!(o.open(b"", &mut vec![0; 32]), Err(EXHAUSTED));
    }

    #[test]
    fn short_record_is_tampered() {
        let mut o = Opener::new(Aead::ChaCha20Poly1305, [1; 32]);
        assert_eq!(o.open(b"", &mut vec![0; 15]), Err(CryptoError::Tampered));
        assert_eq!(o.open(b"", &mut Vec::new()), Err(CryptoError::Tampered));
        assert_eq!(o.counter(), 0);
    }

    #[test]
    fn low_order_point_rejected() {
        let e = EphemeralSecret::generate().unwrap();
        assert!(matches!(e.agree(&[0u8; 32]), Err(CryptoError::BadKey(_))));
        let mut one = [0u8; 32];
        one[0] = 1;
        let e = EphemeralSecret::generate().unwrap();
        assert!(matches!(e.agree(&one), Err(CryptoError::BadKey(_))));
    }
}
