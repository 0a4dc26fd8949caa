//! AES-256-CTR with a full 128-bit big-endian counter (atprotocol.md §9.4, noports.md §5.2).
use super::CryptoError;

pub const ZERO_IV: [u8; 16] = [0u8; 16];

/// PKCS#7-pad then CTR-encrypt (atProtocol values, atKeys fields).
pub fn encrypt_padded(key: &[u8; 32], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> { todo!() }
/// CTR-decrypt then strictly remove PKCS#7 padding.
pub fn decrypt_padded(key: &[u8; 32], iv: &[u8; 16], cipher: &[u8]) -> Result<Vec<u8>, CryptoError> { todo!() }

/// Base64-in/base64-out convenience used all over the atProtocol:
/// `encrypt_b64(key, iv, "text")` = b64(encrypt_padded(key, iv, utf8(text))).
pub fn encrypt_b64(key: &[u8; 32], iv: &[u8; 16], plain: &str) -> String { todo!() }
/// Inverse of `encrypt_b64`; the plaintext must be UTF-8.
pub fn decrypt_b64(key: &[u8; 32], iv: &[u8; 16], cipher_b64: &str) -> Result<String, CryptoError> { todo!() }

/// Streaming keystream (no padding) for the official data plane: one per direction.
/// Keystream position carries across calls, so chunk boundaries do not matter.
pub struct CtrStream { /* helper fills */ }
impl CtrStream {
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self { todo!() }
    /// XOR the keystream into `data` in place.
    pub fn apply(&mut self, data: &mut [u8]) { todo!() }
}
