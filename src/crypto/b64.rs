//! Standard base64 (RFC 4648, `=` padded, no line breaks) — atprotocol.md §9.5.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::CryptoError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Encodes `bytes` as standard, `=`-padded base64 without line breaks.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Strict decode: rejects whitespace, missing padding and non-alphabet bytes.
///
/// The `STANDARD` engine requires canonical padding and zero trailing bits, so every accepted
/// text is exactly what [`encode`] produces for the result.
///
/// # Errors
/// [`CryptoError::Base64`] on any deviation from canonical standard base64.
pub fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    STANDARD.decode(text).map_err(|_| CryptoError::Base64)
}

/// Decodes base64 that must yield exactly `N` bytes (AES keys, IVs).
///
/// # Errors
/// [`CryptoError::Base64`] on bad base64, [`CryptoError::Length`] on the wrong length.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], CryptoError> {
    let bytes = zeroize::Zeroizing::new(decode(text)?);
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| CryptoError::Length("decoded base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&data)), Ok(data));
        }
    }

    #[test]
    fn rejects_non_canonical() {
        for bad in [
            "QQ", "QQ=", "QR==", "QQ==\n", " QQ==", "QQ=\n=", "Q", "*AAA", "AA-_", "QUJD\r\n",
        ] {
            assert_eq!(decode(bad), Err(CryptoError::Base64), "{bad:?}");
        }
    }

    #[test]
    fn decode_array_checks_length() {
        assert_eq!(decode_array::<3>("QUJD"), Ok(*b"ABC"));
        assert_eq!(
            decode_array::<4>("QUJD"),
            Err(CryptoError::Length("decoded base64"))
        );
    }
}
