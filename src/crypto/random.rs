//! CSPRNG helpers (getrandom).
pub fn fill(buf: &mut [u8]) { todo!() }
pub fn bytes<const N: usize>() -> [u8; N] { todo!() }
/// Lower-case RFC 4122 UUID v4 text, e.g. `5c3e8a6d-9d3e-4f52-8a8c-111111111111`.
pub fn uuid_v4() -> String { todo!() }
/// `n` characters from `alphabet` chosen uniformly.
pub fn string_from(alphabet: &[u8], n: usize) -> String { todo!() }
