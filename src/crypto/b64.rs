//! Standard base64 (RFC 4648, `=` padded, no line breaks) — atprotocol.md §9.5.
use super::CryptoError;

pub fn encode(bytes: &[u8]) -> String {
    todo!("crypto helper")
}

/// Strict decode: rejects whitespace, missing padding and non-alphabet bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    todo!("crypto helper")
}
