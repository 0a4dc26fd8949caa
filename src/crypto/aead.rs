//! Primitives of our data-plane suite: X25519 ephemeral agreement, HKDF-SHA-256 and
//! ChaCha20-Poly1305 records with counter nonces (docs/suite-v1.md).
use super::CryptoError;

/// An ephemeral X25519 secret (zeroized on drop).
pub struct EphemeralSecret { /* helper fills */ }
impl EphemeralSecret {
    pub fn generate() -> Self { todo!() }
    pub fn public_bytes(&self) -> [u8; 32] { todo!() }
    /// Diffie-Hellman; errors on an all-zero (non-contributory) shared secret.
    pub fn agree(self, peer_public: &[u8; 32]) -> Result<[u8; 32], CryptoError> { todo!() }
}

/// One direction of ChaCha20-Poly1305 records: 96-bit nonce = 32-bit zero || 64-bit counter.
pub struct Sealer { /* helper fills */ }
pub struct Opener { /* helper fills */ }
impl Sealer {
    pub fn new(key: [u8; 32]) -> Self { todo!() }
    /// Encrypt `buf` in place and append the 16-byte tag; `aad` is authenticated.
    pub fn seal(&mut self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> { todo!() }
    pub fn counter(&self) -> u64 { todo!() }
}
impl Opener {
    pub fn new(key: [u8; 32]) -> Self { todo!() }
    /// Verify and decrypt in place, truncating the tag; `Tampered` on failure.
    pub fn open(&mut self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> { todo!() }
}
