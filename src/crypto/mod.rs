//! Pure cryptography over bytes: no I/O, no async, no logging.
//!
//! Everything the atProtocol and NoPorts wire formats need (atprotocol.md §9, noports.md §3, §5)
//! plus the primitives of our negotiated data-plane suite (docs/suite-v1.md).

pub mod aead;
pub mod aes_ctr;
pub mod b64;
pub mod hash;
pub mod random;
pub mod rsa;
pub mod secret;

use std::fmt;

/// Why a cryptographic operation failed. `&'static str` names what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// Input is not valid base64.
    Base64,
    /// A key could not be parsed (bad DER, wrong algorithm, wrong size...).
    BadKey(&'static str),
    /// Decryption or padding check failed.
    Decrypt(&'static str),
    /// Signature creation failed.
    Sign,
    /// Key generation failed.
    KeyGen,
    /// A length was out of range.
    Length(&'static str),
    /// AEAD authentication failed (tampering or wrong key).
    Tampered,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::Base64 => write!(f, "invalid base64"),
            CryptoError::BadKey(what) => write!(f, "invalid key: {what}"),
            CryptoError::Decrypt(what) => write!(f, "decryption failed: {what}"),
            CryptoError::Sign => write!(f, "signing failed"),
            CryptoError::KeyGen => write!(f, "key generation failed"),
            CryptoError::Length(what) => write!(f, "bad length: {what}"),
            CryptoError::Tampered => write!(f, "authentication tag mismatch"),
        }
    }
}

impl std::error::Error for CryptoError {}
