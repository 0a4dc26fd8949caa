//! AES-256-CTR with a full 128-bit big-endian counter (atprotocol.md §9.4, noports.md §5.2).
//!
//! Two uses: atProtocol values and atKeys fields are PKCS#7-padded *before* CTR
//! ("AES/SIC/PKCS7Padding", §9.4), while the official NoPorts data plane is a bare keystream
//! ([`CtrStream`], noports.md §5.2). Both use `Ctr128BE`: the whole IV is one 128-bit counter with
//! carry through all 16 bytes (§14.1 vector D); a 64-bit counter would not interoperate.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::CryptoError;
use noports_hotcipher::Aes256Ctr;
use zeroize::Zeroizing;

/// AES block size, and so the PKCS#7 block size.
const BLOCK: usize = 16;

/// The legacy all-zero IV (atKeys fields, values without `ivNonce`; atprotocol.md §9.4).
pub const ZERO_IV: [u8; 16] = [0u8; 16];

/// The keystream lives in `noports-hotcipher`, compiled for speed (see its crate docs).
fn cipher(key: &[u8; 32], iv: &[u8; 16]) -> Aes256Ctr {
    Aes256Ctr::new(key, iv)
}

/// PKCS#7-pad then CTR-encrypt (atProtocol values, atKeys fields).
///
/// The output is 1–16 bytes longer than `plain` and a multiple of 16 bytes long.
pub fn encrypt_padded(key: &[u8; 32], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    let pad = BLOCK - plain.len() % BLOCK; // 1..=16
    let mut out = Vec::with_capacity(plain.len() + pad);
    out.extend_from_slice(plain);
    // `pad` is at most 16, so the cast cannot truncate.
    out.resize(plain.len() + pad, pad as u8);
    cipher(key, iv).apply(&mut out);
    out
}

/// CTR-decrypt then strictly remove PKCS#7 padding.
///
/// Unlike the C SDK (atprotocol.md §9.4) this never stops at a NUL byte and checks every pad byte.
///
/// # Errors
/// [`CryptoError::Decrypt`]`("padding")` when the length is not a positive multiple of 16 or the
/// padding is malformed (usually a wrong key or IV).
pub fn decrypt_padded(
    key: &[u8; 32],
    iv: &[u8; 16],
    cipher_text: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if cipher_text.is_empty() || !cipher_text.len().is_multiple_of(BLOCK) {
        return Err(CryptoError::Decrypt("padding"));
    }
    let mut plain = Zeroizing::new(cipher_text.to_vec());
    cipher(key, iv).apply(&mut plain);
    let unpadded = unpad(&plain)?;
    Ok(unpadded.to_vec())
}

/// Strips PKCS#7 padding from a whole number of blocks.
fn unpad(data: &[u8]) -> Result<&[u8], CryptoError> {
    const BAD: CryptoError = CryptoError::Decrypt("padding");
    let &last = data.last().ok_or(BAD)?;
    let pad = usize::from(last);
    if pad == 0 || pad > BLOCK || pad > data.len() {
        return Err(BAD);
    }
    let (body, padding) = data.split_at(data.len() - pad);
    // Not constant time: padding errors are not an oracle here, there is no MAC to protect.
    if padding.iter().any(|&b| b != last) {
        return Err(BAD);
    }
    Ok(body)
}

/// Base64-in/base64-out convenience used all over the atProtocol:
/// `encrypt_b64(key, iv, "text")` = b64(encrypt_padded(key, iv, utf8(text))).
pub fn encrypt_b64(key: &[u8; 32], iv: &[u8; 16], plain: &str) -> String {
    super::b64::encode(&encrypt_padded(key, iv, plain.as_bytes()))
}

/// Inverse of `encrypt_b64`; the plaintext must be UTF-8.
///
/// # Errors
/// [`CryptoError::Base64`] on bad base64, [`CryptoError::Decrypt`] on bad padding
/// (`"padding"`) or non-UTF-8 plaintext (`"utf-8"`).
pub fn decrypt_b64(key: &[u8; 32], iv: &[u8; 16], cipher_b64: &str) -> Result<String, CryptoError> {
    let cipher_text = super::b64::decode(cipher_b64)?;
    let plain = decrypt_padded(key, iv, &cipher_text)?;
    String::from_utf8(plain).map_err(|e| {
        // Wipe the rejected plaintext before dropping it.
        drop(Zeroizing::new(e.into_bytes()));
        CryptoError::Decrypt("utf-8")
    })
}

/// Streaming keystream (no padding) for the official data plane: one per direction.
/// Keystream position carries across calls, so chunk boundaries do not matter.
pub struct CtrStream {
    cipher: Aes256Ctr,
}

impl CtrStream {
    /// Starts a keystream at counter block `iv` (noports.md §5.2: each direction starts at offset 0).
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        CtrStream {
            cipher: cipher(key, iv),
        }
    }

    /// XOR the keystream into `data` in place.
    pub fn apply(&mut self, data: &mut [u8]) {
        // Cannot panic: the 128-bit counter only returns to the IV after ~2^128 blocks.
        self.cipher.apply(data);
    }
}

impl std::fmt::Debug for CtrStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CtrStream(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [0x42; 32];

    #[test]
    fn padding_lengths() {
        for len in 0..50usize {
            let plain = vec![0xa5u8; len];
            let ct = encrypt_padded(&KEY, &ZERO_IV, &plain);
            assert_eq!(ct.len() % 16, 0);
            assert!(ct.len() > len && ct.len() <= len + 16);
            assert_eq!(decrypt_padded(&KEY, &ZERO_IV, &ct), Ok(plain));
        }
    }

    #[test]
    fn unpad_cases() {
        let bad = Err(CryptoError::Decrypt("padding"));
        let mut block = [0u8; 16];
        assert_eq!(unpad(&block), bad); // pad byte 0
        block[15] = 17;
        assert_eq!(unpad(&block), bad); // pad byte > 16
        block[15] = 2;
        assert_eq!(unpad(&block), bad); // block[14] != 2
        block[14] = 2;
        assert_eq!(unpad(&block), Ok(&[0u8; 14][..]));
        assert_eq!(unpad(&[16u8; 16]), Ok(&[][..]));
        assert_eq!(unpad(&[]), bad);
    }

    #[test]
    fn decrypt_rejects_bad_lengths() {
        let bad = Err(CryptoError::Decrypt("padding"));
        assert_eq!(decrypt_padded(&KEY, &ZERO_IV, &[]), bad);
        assert_eq!(decrypt_padded(&KEY, &ZERO_IV, &[0u8; 15]), bad);
        assert_eq!(decrypt_padded(&KEY, &ZERO_IV, &[0u8; 17]), bad);
    }

    #[test]
    fn stream_chunking_is_irrelevant() {
        let mut whole = [0u8; 100];
        CtrStream::new(&KEY, &[0xff; 16]).apply(&mut whole);
        let mut parts = [0u8; 100];
        let mut s = CtrStream::new(&KEY, &[0xff; 16]);
        for chunk in parts.chunks_mut(7) {
            s.apply(chunk);
        }
        assert_eq!(whole, parts);
    }
}
