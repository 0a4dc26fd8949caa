//! The expensive RSA operations of noports behind non-generic functions: key generation (prime
//! search) and the private-key operations (sign, decrypt).
//!
//! Key generation is what made `npt` (one ephemeral key per run) and the atserver (three keys
//! per new atSign) slow: seconds per key at `opt-level = "z"`. What fixed it is here: 64-bit
//! bignum digits (the `rsa` crate's default, lost with `default-features = false`) and a prime
//! search that sieves candidates by the odd primes below 2^15 and runs Baillie-PSW plus four
//! Miller-Rabin rounds, instead of dividing by the primes up to 53 and running twenty rounds.
//! Like `noports-hotcipher`, every generic instantiation happens in this crate, so its
//! `opt-level` can be raised in the root `Cargo.toml` on its own; measured, that bought little
//! here for its size (see the root `Cargo.toml`), so it stays at the default.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use num_bigint_dig::prime::{probably_prime, probably_prime_miller_rabin};
use rand_core::{OsRng, RngCore};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Encrypt, Pkcs1v15Sign, RsaPrivateKey};

/// Candidates divisible by an odd prime below this are struck out by a sieve, without a
/// modular exponentiation (the `rsa` crate's own search only divides by the primes up to 53,
/// so it tests about two and a half times as many candidates).
const SIEVE_LIMIT: u32 = 1 << 15;
/// Even offsets sieved from one random start before drawing a new one (the average gap
/// between 1024-bit primes is about 710).
const SEARCH_SPAN: usize = 1 << 14;
/// Miller-Rabin rounds with random bases on a candidate that passed base 2, followed by the
/// Lucas test (together Baillie-PSW plus four rounds; FIPS 186-5 table B.1 asks for fewer for
/// the 1024-bit primes of an RSA-2048 key). The `rsa` crate runs twenty.
const EXTRA_ROUNDS: usize = 4;

/// The odd primes below [`SIEVE_LIMIT`] (about 3,500).
fn small_primes() -> &'static [u32] {
    static PRIMES: OnceLock<Vec<u32>> = OnceLock::new();
    PRIMES.get_or_init(|| {
        let n = SIEVE_LIMIT as usize;
        let mut composite = vec![false; n];
        let mut out = Vec::new();
        for i in (3..n).step_by(2) {
            if composite[i] {
                continue;
            }
            out.push(i as u32);
            for j in (i * i..n).step_by(2 * i) {
                composite[j] = true;
            }
        }
        out
    })
}

/// A random prime of exactly `bits` bits (at least 16) whose two top bits are set, so that
/// the product of two has exactly twice as many: a random odd start, then the first candidate
/// after it that no small prime divides and that passes the tests.
fn random_prime(bits: usize) -> BigUint {
    let primes = small_primes();
    let len = bits.div_ceil(8);
    let top = bits - (len - 1) * 8; // bits used in the first byte, 1..=8
    let mut bytes = vec![0u8; len];
    // struck[i]: start + 2i has a small factor
    let mut struck = vec![false; SEARCH_SPAN / 2];
    loop {
        OsRng.fill_bytes(&mut bytes);
        bytes[0] &= ((1u16 << top) - 1) as u8;
        if top >= 2 {
            bytes[0] |= 3 << (top - 2);
        } else {
            bytes[0] |= 1;
            bytes[1] |= 0x80;
        }
        bytes[len - 1] |= 1;
        struck.iter_mut().for_each(|s| *s = false);
        for &p in primes {
            let p = p as usize;
            let r = bytes.iter().fold(0, |r, &b| (r * 256 + b as usize) % p);
            // The first even offset d with start + d divisible by p, then every 2p.
            let mut d = (p - r) % p;
            if d % 2 == 1 {
                d += p;
            }
            for i in (d / 2..struck.len()).step_by(p) {
                struck[i] = true;
            }
        }
        let start = BigUint::from_bytes_be(&bytes);
        for (i, _) in struck.iter().enumerate().filter(|(_, s)| !**s) {
            let candidate = &start + BigUint::from(2 * i as u64);
            if candidate.bits() != bits {
                break;
            }
            if probably_prime_miller_rabin(&candidate, 1, true)
                && probably_prime(&candidate, EXTRA_ROUNDS)
            {
                return candidate;
            }
        }
    }
}

/// A new two-prime key of `bits` bits (at least 512) with public exponent `exp`, from the OS
/// random source.
///
/// # Errors
/// What the `rsa` crate reports on an invalid size or exponent.
#[inline(never)]
pub fn generate(bits: usize, exp: u64) -> rsa::Result<RsaPrivateKey> {
    if bits < 512 {
        return Err(rsa::Error::InvalidModulus);
    }
    let e = BigUint::from(exp);
    if e < BigUint::from(3u32) || exp % 2 == 0 {
        return Err(rsa::Error::InvalidExponent);
    }
    loop {
        let p = random_prime(bits / 2);
        let q = random_prime(bits - bits / 2);
        // Fails when e divides p-1 or q-1 (about once in 30,000 keys for 65537) or p == q:
        // draw again.
        match RsaPrivateKey::from_p_q(p, q, e.clone()) {
            Ok(key) if key.n().bits() == bits => return Ok(key),
            _ => continue,
        }
    }
}

/// RSASSA-PKCS1-v1_5 signature of `digest` (already hashed as `scheme` says), with blinding.
///
/// # Errors
/// What the `rsa` crate reports.
#[inline(never)]
pub fn sign(key: &RsaPrivateKey, scheme: Pkcs1v15Sign, digest: &[u8]) -> rsa::Result<Vec<u8>> {
    key.sign_with_rng(&mut OsRng, scheme, digest)
}

/// RSAES-PKCS1-v1_5 decryption, with blinding.
///
/// # Errors
/// What the `rsa` crate reports (wrong length, wrong key, bad padding).
#[inline(never)]
pub fn decrypt(key: &RsaPrivateKey, cipher: &[u8]) -> rsa::Result<Vec<u8>> {
    key.decrypt_blinded(&mut OsRng, Pkcs1v15Encrypt, cipher)
}
