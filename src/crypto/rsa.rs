//! RSA-2048: PKCS#1 v1.5 signatures (SHA-256/512) and encryption; SPKI / PKCS#8 base64 encodings
//! (atprotocol.md §9.1–§9.3).
use super::CryptoError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo { Sha256, Sha512 }

#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey { /* helper fills */ }
pub struct RsaPrivateKey { /* helper fills */ }

impl RsaPublicKey {
    /// From base64 DER SubjectPublicKeyInfo (392 characters for RSA-2048).
    pub fn from_spki_b64(b64: &str) -> Result<Self, CryptoError> { todo!() }
    pub fn to_spki_b64(&self) -> String { todo!() }
    /// RSASSA-PKCS1-v1_5 verify; false on any failure.
    pub fn verify(&self, hash: HashAlgo, msg: &[u8], sig: &[u8]) -> bool { todo!() }
    /// RSAES-PKCS1-v1_5 encrypt (random padding).
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, CryptoError> { todo!() }
}

impl RsaPrivateKey {
    /// New RSA-2048 key, e = 65537.
    pub fn generate() -> Result<Self, CryptoError> { todo!() }
    /// From base64 DER PKCS#8 PrivateKeyInfo.
    pub fn from_pkcs8_b64(b64: &str) -> Result<Self, CryptoError> { todo!() }
    pub fn to_pkcs8_b64(&self) -> String { todo!() }
    pub fn public_key(&self) -> RsaPublicKey { todo!() }
    /// RSASSA-PKCS1-v1_5 sign (deterministic).
    pub fn sign(&self, hash: HashAlgo, msg: &[u8]) -> Result<Vec<u8>, CryptoError> { todo!() }
    /// RSAES-PKCS1-v1_5 decrypt.
    pub fn decrypt(&self, cipher: &[u8]) -> Result<Vec<u8>, CryptoError> { todo!() }
}
