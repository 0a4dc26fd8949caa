//! RSA-2048: PKCS#1 v1.5 signatures (SHA-256/512) and encryption; SPKI / PKCS#8 base64 encodings
//! (atprotocol.md §9.1–§9.3).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::{b64, CryptoError};
use rand_core::OsRng;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{Pkcs1v15Encrypt, Pkcs1v15Sign};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use zeroize::Zeroizing;

/// Modulus size of every key we generate, and the minimum we accept (atprotocol.md §9.1).
pub const KEY_BITS: usize = 2048;

/// Public exponent of generated keys (atprotocol.md §9.1: the Dart side assumes it).
const PUBLIC_EXPONENT: u64 = 65537;

/// The digest inside a PKCS#1 v1.5 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// SHA-256: PKAM default, pol, data signatures.
    Sha256,
    /// SHA-512: PKAM with `hashingAlgo:sha512`.
    Sha512,
}

impl HashAlgo {
    /// The atProtocol name (`hashingAlgo:` value): `sha256` or `sha512`.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }

    /// Parses an atProtocol `hashingAlgo:` value (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("sha256") {
            Some(HashAlgo::Sha256)
        } else if name.eq_ignore_ascii_case("sha512") {
            Some(HashAlgo::Sha512)
        } else {
            None
        }
    }

    /// The padding scheme and the digest of `msg` under this algorithm.
    fn scheme_and_digest(self, msg: &[u8]) -> (Pkcs1v15Sign, Vec<u8>) {
        match self {
            HashAlgo::Sha256 => (Pkcs1v15Sign::new::<Sha256>(), Sha256::digest(msg).to_vec()),
            HashAlgo::Sha512 => (Pkcs1v15Sign::new::<Sha512>(), Sha512::digest(msg).to_vec()),
        }
    }
}

/// An RSA public key (at least 2048 bits) together with its canonical SPKI base64 text.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    key: rsa::RsaPublicKey,
    /// Base64 of the DER SubjectPublicKeyInfo, computed once at construction so that
    /// [`RsaPublicKey::to_spki_b64`] cannot fail.
    spki_b64: String,
}

/// An RSA private key (two primes, at least 2048 bits); its memory is zeroized on drop.
#[derive(Clone)]
pub struct RsaPrivateKey {
    key: rsa::RsaPrivateKey,
    public: RsaPublicKey,
}

fn check_size(n_bits: usize) -> Result<(), CryptoError> {
    if n_bits < KEY_BITS {
        return Err(CryptoError::BadKey("rsa modulus shorter than 2048 bits"));
    }
    Ok(())
}

impl RsaPublicKey {
    fn from_inner(key: rsa::RsaPublicKey) -> Result<Self, CryptoError> {
        check_size(key.n().bits())?;
        let der = key
            .to_public_key_der()
            .map_err(|_| CryptoError::BadKey("rsa public key not encodable"))?;
        Ok(RsaPublicKey {
            spki_b64: b64::encode(der.as_bytes()),
            key,
        })
    }

    /// From base64 DER SubjectPublicKeyInfo (392 characters for RSA-2048).
    ///
    /// # Errors
    /// [`CryptoError::Base64`] on bad base64; [`CryptoError::BadKey`] when the DER is malformed,
    /// has trailing bytes, is not rsaEncryption, or the modulus is under 2048 bits.
    pub fn from_spki_b64(b64: &str) -> Result<Self, CryptoError> {
        let der = b64::decode(b64)?;
        let key = rsa::RsaPublicKey::from_public_key_der(&der)
            .map_err(|_| CryptoError::BadKey("not an rsa SubjectPublicKeyInfo"))?;
        Self::from_inner(key)
    }

    /// Base64 DER SubjectPublicKeyInfo (what `public:publickey@<atSign>` holds).
    pub fn to_spki_b64(&self) -> String {
        self.spki_b64.clone()
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bits()
    }

    /// RSASSA-PKCS1-v1_5 verify; false on any failure.
    pub fn verify(&self, hash: HashAlgo, msg: &[u8], sig: &[u8]) -> bool {
        let (scheme, digest) = hash.scheme_and_digest(msg);
        self.key.verify(scheme, &digest, sig).is_ok()
    }

    /// RSAES-PKCS1-v1_5 encrypt (random padding).
    ///
    /// # Errors
    /// [`CryptoError::Length`] when `plain` exceeds the key size minus 11 bytes (245 for RSA-2048).
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key
            .encrypt(&mut OsRng, Pkcs1v15Encrypt, plain)
            .map_err(|_| CryptoError::Length("rsa plaintext too long"))
    }
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RsaPublicKey").field(&self.spki_b64).finish()
    }
}

impl RsaPrivateKey {
    fn from_inner(key: rsa::RsaPrivateKey) -> Result<Self, CryptoError> {
        check_size(key.n().bits())?;
        // Multi-prime keys cannot be written back as PKCS#8 by the rsa crate (nor read by the
        // other SDKs); refusing them here is what makes `to_pkcs8_b64` infallible.
        if key.primes().len() != 2 {
            return Err(CryptoError::BadKey("rsa key must have two primes"));
        }
        key.to_pkcs8_der()
            .map_err(|_| CryptoError::BadKey("rsa private key not encodable"))?;
        let public = RsaPublicKey::from_inner(key.to_public_key())?;
        Ok(RsaPrivateKey { key, public })
    }

    /// New RSA-2048 key, e = 65537.
    ///
    /// Slow (tens to hundreds of milliseconds); async callers should run it off the executor.
    ///
    /// # Errors
    /// [`CryptoError::KeyGen`] if generation fails (no randomness).
    pub fn generate() -> Result<Self, CryptoError> {
        let key =
            noports_hotrsa::generate(KEY_BITS, PUBLIC_EXPONENT).map_err(|_| CryptoError::KeyGen)?;
        Self::from_inner(key).map_err(|_| CryptoError::KeyGen)
    }

    /// `n` new keys, each generated on a thread of its own: the prime search is CPU-bound and
    /// its duration varies widely from key to key, so the slowest key sets the pace, not the sum.
    /// A thread that cannot be started is replaced by generating on the caller's thread.
    ///
    /// # Errors
    /// [`CryptoError::KeyGen`] if any generation fails.
    pub fn generate_many(n: usize) -> Result<Vec<Self>, CryptoError> {
        std::thread::scope(|s| {
            let jobs: Vec<_> = (0..n)
                .map(|_| std::thread::Builder::new().spawn_scoped(s, Self::generate))
                .collect();
            jobs.into_iter()
                .map(|job| match job {
                    Ok(handle) => handle.join().unwrap_or(Err(CryptoError::KeyGen)),
                    Err(_) => Self::generate(),
                })
                .collect()
        })
    }

    /// From base64 DER PKCS#8 PrivateKeyInfo.
    ///
    /// A bare PKCS#1 `RSAPrivateKey` is also accepted for reading (never written).
    ///
    /// # Errors
    /// [`CryptoError::Base64`] on bad base64; [`CryptoError::BadKey`] when the DER is malformed,
    /// not rsaEncryption, inconsistent, multi-prime or under 2048 bits.
    pub fn from_pkcs8_b64(b64: &str) -> Result<Self, CryptoError> {
        let der = Zeroizing::new(b64::decode(b64)?);
        let key = match rsa::RsaPrivateKey::from_pkcs8_der(&der) {
            Ok(key) => key,
            Err(_) => rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|_| CryptoError::BadKey("not an rsa PKCS#8 private key"))?,
        };
        Self::from_inner(key)
    }

    /// Base64 DER PKCS#8 PrivateKeyInfo (never PKCS#1 or PEM, atprotocol.md §9.1).
    pub fn to_pkcs8_b64(&self) -> String {
        match self.key.to_pkcs8_der() {
            Ok(doc) => b64::encode(doc.as_bytes()),
            // Unreachable: `from_inner` encoded this very key successfully and encoding is
            // deterministic. An empty string fails every later parse rather than panicking.
            Err(_) => String::new(),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> RsaPublicKey {
        self.public.clone()
    }

    /// RSASSA-PKCS1-v1_5 sign (deterministic).
    ///
    /// Uses RSA blinding internally; the signature itself does not depend on the randomness.
    ///
    /// # Errors
    /// [`CryptoError::Sign`] if the rsa crate refuses (not expected for a validated key).
    pub fn sign(&self, hash: HashAlgo, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (scheme, digest) = hash.scheme_and_digest(msg);
        noports_hotrsa::sign(&self.key, scheme, &digest).map_err(|_| CryptoError::Sign)
    }

    /// RSAES-PKCS1-v1_5 decrypt.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`]`("rsa")` on a wrong-length ciphertext, a wrong key or bad padding.
    pub fn decrypt(&self, cipher: &[u8]) -> Result<Vec<u8>, CryptoError> {
        noports_hotrsa::decrypt(&self.key, cipher).map_err(|_| CryptoError::Decrypt("rsa"))
    }
}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaPrivateKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_algo_names() {
        assert_eq!(HashAlgo::from_name("SHA512"), Some(HashAlgo::Sha512));
        assert_eq!(HashAlgo::from_name("sha256"), Some(HashAlgo::Sha256));
        assert_eq!(HashAlgo::from_name("md5"), None);
        assert_eq!(HashAlgo::Sha512.as_str(), "sha512");
    }

    #[test]
    fn garbage_keys_are_rejected() {
        assert_eq!(
            RsaPublicKey::from_spki_b64("not base64!").err(),
            Some(CryptoError::Base64)
        );
        assert!(matches!(
            RsaPublicKey::from_spki_b64("QUJD"),
            Err(CryptoError::BadKey(_))
        ));
        assert!(matches!(
            RsaPrivateKey::from_pkcs8_b64("QUJD"),
            Err(CryptoError::BadKey(_))
        ));
        assert!(matches!(
            RsaPrivateKey::from_pkcs8_b64(""),
            Err(CryptoError::BadKey(_))
        ));
    }
}
