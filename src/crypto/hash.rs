//! Hashes: SHA-256/512, MD5 (pubKeyCS only), hex helpers, HKDF-SHA-256.
use super::CryptoError;

pub fn sha256(data: &[u8]) -> [u8; 32] { todo!() }
pub fn sha512(data: &[u8]) -> [u8; 64] { todo!() }
/// Lower-case hex of SHA-512 (CRAM digest, atprotocol.md §4.3).
pub fn sha512_hex(data: &[u8]) -> String { todo!() }
/// Lower-case hex MD5 (pubKeyCS, atprotocol.md §9.5).
pub fn md5_hex(data: &[u8]) -> String { todo!() }
pub fn hex(bytes: &[u8]) -> String { todo!() }
/// HKDF-SHA-256 expand into `out` (extract with `salt`, expand with `info`).
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), CryptoError> { todo!() }
/// Constant-time equality.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool { todo!() }
