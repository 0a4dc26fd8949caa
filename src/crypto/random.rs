//! CSPRNG helpers (getrandom).
use super::CryptoError;

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Errors
/// [`CryptoError::KeyGen`] when the OS refuses to provide randomness.
pub fn try_fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|_| CryptoError::KeyGen)
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// Only if the OS has no usable randomness source (getrandom(2) failing after boot, which Linux
/// never does once the pool is initialised). Continuing with predictable keys, IVs or nonces
/// would be worse than stopping, so this is the one deliberate panic of the crypto module; use
/// [`try_fill`] where an error can be handled.
pub fn fill(buf: &mut [u8]) {
    if let Err(err) = getrandom::getrandom(buf) {
        panic!("operating system randomness unavailable: {err}");
    }
}

/// `N` bytes from the CSPRNG (see [`fill`] for the failure mode).
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}

/// Lower-case RFC 4122 UUID v4 text, e.g. `5c3e8a6d-9d3e-4f52-8a8c-111111111111`.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = bytes();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10xx (RFC 4122)
    let h = super::hash::hex(&b);
    let mut out = String::with_capacity(36);
    for (i, c) in h.chars().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// `n` characters from `alphabet` chosen uniformly.
///
/// Each byte of `alphabet` is one character (use ASCII). Rejection sampling removes modulo bias.
/// An empty alphabet yields an empty string.
pub fn string_from(alphabet: &[u8], n: usize) -> String {
    let len = alphabet.len() as u64;
    if len == 0 || len > u64::from(u32::MAX) {
        return String::new();
    }
    // Largest multiple of `len` that fits in the 2^32 sample space.
    let zone = (1u64 << 32) / len * len;
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let sample = u64::from(u32::from_be_bytes(bytes::<4>()));
        if sample < zone {
            let idx = usize::try_from(sample % len).unwrap_or(0);
            if let Some(&c) = alphabet.get(idx) {
                out.push(char::from(c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        for _ in 0..50 {
            let u = uuid_v4();
            assert_eq!(u.len(), 36);
            let parts: Vec<&str> = u.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(u
                .chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
            assert!(parts[2].starts_with('4'));
            assert!(matches!(
                parts[3].chars().next(),
                Some('8' | '9' | 'a' | 'b')
            ));
        }
        assert_ne!(uuid_v4(), uuid_v4());
    }

    #[test]
    fn string_from_alphabet() {
        let s = string_from(b"abc", 200);
        assert_eq!(s.len(), 200);
        assert!(s.chars().all(|c| "abc".contains(c)));
        assert!(s.contains('a') && s.contains('b') && s.contains('c'));
        assert_eq!(string_from(b"", 5), "");
        assert_eq!(string_from(b"xyz", 0), "");
    }

    #[test]
    fn bytes_differ() {
        assert_ne!(bytes::<32>(), bytes::<32>());
    }
}
