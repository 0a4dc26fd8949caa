//! The official data-plane cipher (AES-256-CTR) of noports behind non-generic functions.
//!
//! Why a crate of its own: the RustCrypto ciphers are generic, and generic code is compiled in
//! the crate that instantiates it, at that crate's optimisation level. The noports binary is
//! built at `opt-level = "z"` (size), so `Ctr128BE<Aes256>` instantiated there ran at a quarter
//! of the speed it has here, whatever `opt-level` the `aes` and `ctr` crates had.
//! Here every instantiation happens in this crate, which the root `Cargo.toml` builds at
//! `opt-level = 3`; the entry points are `#[inline(never)]` so callers cannot pull them back
//! into size-optimised code. Only pure byte functions live here: no I/O, no allocation.
#![no_std]
#![forbid(unsafe_code)]

use aes::cipher::{KeyIvInit, StreamCipher};

/// AES-256 in CTR mode with a full 128-bit big-endian counter (AES-NI when the CPU has it,
/// detected at run time by the `aes` crate).
pub struct Aes256Ctr(ctr::Ctr128BE<aes::Aes256>);

impl Aes256Ctr {
    /// A keystream starting at counter block `iv`.
    #[inline(never)]
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Aes256Ctr(ctr::Ctr128BE::new(key.into(), iv.into()))
    }

    /// XORs the next `data.len()` keystream bytes into `data`.
    ///
    /// Cannot panic: the 128-bit counter only runs out after 2^128 blocks.
    #[inline(never)]
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}
