//! Our negotiated data-plane suite "nps1": X25519 ephemeral agreement bound to the signed
//! session exchange, HKDF-SHA-256 keys per direction, ChaCha20-Poly1305 records with counter
//! nonces and deterministic rekeying. The byte format is specified in docs/suite-v1.md; this
//! file is the sans-IO part (key schedule, record sealing and opening, frame codec).
//!
//! Official peers never see any of this: it is only used when both signed messages carry
//! `"suite":"nps1"` and the two public keys.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::fmt;

use crate::crypto::aead::{EphemeralSecret, Opener, Sealer};
use crate::crypto::hash::hkdf_sha256;
use crate::crypto::CryptoError;

/// The value of the `suite` member that selects this suite.
pub const SUITE_NAME: &str = "nps1";
/// Most data bytes one record carries (docs/suite-v1.md §3).
pub const MAX_DATA: usize = 32 * 1024;
/// Frame header inside the plaintext: type (1) + stream id (4).
pub const FRAME_HEADER: usize = 5;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Largest ciphertext (frame + tag) a peer may announce; larger lengths are a protocol error.
pub const MAX_RECORD: usize = MAX_DATA + FRAME_HEADER + TAG_LEN;
/// Records per key before both sides switch to the next key (docs/suite-v1.md §4). Far below
/// the 2^64 nonce space; also keeps each key well inside ChaCha20-Poly1305's usage limits.
pub const REKEY_AFTER: u64 = 1 << 32;

const INFO_C2D: &[u8] = b"nps1 client->daemon";
const INFO_D2C: &[u8] = b"nps1 daemon->client";
const INFO_REKEY: &[u8] = b"nps1 rekey";

/// Which end of the tunnel we are; it decides which derived key seals and which opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that runs the local listener (npt, sshnp).
    Client,
    /// The device side (sshnpd).
    Daemon,
}

/// The two per-direction record keys of one session.
#[derive(Clone)]
pub struct SuiteKeys {
    send: [u8; 32],
    recv: [u8; 32],
    rekey_after: u64,
}

impl fmt::Debug for SuiteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SuiteKeys(***)")
    }
}

impl Drop for SuiteKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.send.zeroize();
        self.recv.zeroize();
    }
}

impl SuiteKeys {
    /// Builds keys directly (tests, and the counterpart of [`derive`] with known keys).
    pub fn from_raw(send: [u8; 32], recv: [u8; 32]) -> Self {
        SuiteKeys {
            send,
            recv,
            rekey_after: REKEY_AFTER,
        }
    }

    /// The keys the peer holds: our send key is its receive key.
    pub fn mirrored(&self) -> Self {
        SuiteKeys {
            send: self.recv,
            recv: self.send,
            rekey_after: self.rekey_after,
        }
    }

    /// Overrides the rekey interval (records per key); tests use a tiny value to exercise rekeying.
    #[doc(hidden)]
    pub fn with_rekey_interval(mut self, records: u64) -> Self {
        self.rekey_after = records.max(1);
        self
    }

    pub(crate) fn split(&self) -> (RecordSealer, RecordOpener) {
        (
            RecordSealer {
                sealer: Sealer::new(self.send),
                key: self.send,
                count: 0,
                rekey_after: self.rekey_after,
            },
            RecordOpener {
                opener: Opener::new(self.recv),
                key: self.recv,
                count: 0,
                rekey_after: self.rekey_after,
            },
        )
    }
}

/// Derives the session's record keys from our ephemeral secret and the peer's public key.
///
/// Both public keys travel inside signed messages (`clientSuitePK` in the npt/ssh request,
/// `daemonSuitePK` in the session response), so an active relay cannot substitute its own.
///
/// # Errors
/// `CryptoError::BadKey` if the agreement yields the all-zero secret (a low-order peer key).
pub fn derive(
    role: Role,
    my_secret: EphemeralSecret,
    peer_pub: &[u8; 32],
    session_id: &str,
) -> Result<SuiteKeys, CryptoError> {
    let my_pub = my_secret.public_bytes();
    let shared = zeroize::Zeroizing::new(my_secret.agree(peer_pub)?);
    let (client_pk, daemon_pk) = match role {
        Role::Client => (my_pub, *peer_pub),
        Role::Daemon => (*peer_pub, my_pub),
    };
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(&client_pk);
    salt[32..].copy_from_slice(&daemon_pk);
    let mut c2d = [0u8; 32];
    let mut d2c = [0u8; 32];
    hkdf_sha256(&salt, &shared[..], &info(INFO_C2D, session_id), &mut c2d)?;
    hkdf_sha256(&salt, &shared[..], &info(INFO_D2C, session_id), &mut d2c)?;
    Ok(match role {
        Role::Client => SuiteKeys::from_raw(c2d, d2c),
        Role::Daemon => SuiteKeys::from_raw(d2c, c2d),
    })
}

fn info(label: &[u8], session_id: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + 1 + session_id.len());
    v.extend_from_slice(label);
    v.push(0);
    v.extend_from_slice(session_id.as_bytes());
    v
}

fn next_key(key: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
    let mut out = [0u8; 32];
    hkdf_sha256(&[], key, INFO_REKEY, &mut out)?;
    Ok(out)
}

/// The sending half of the record layer for one direction.
pub(crate) struct RecordSealer {
    sealer: Sealer,
    key: [u8; 32],
    count: u64,
    rekey_after: u64,
}

impl RecordSealer {
    /// Seals `frame` (type + stream + body) in place and writes the 2-byte length header into
    /// `header`. The header is the AAD, so a relay that edits lengths is detected.
    pub(crate) fn seal(&mut self, frame: &mut Vec<u8>) -> Result<[u8; 2], CryptoError> {
        if self.count == self.rekey_after {
            self.key = next_key(&self.key)?;
            self.sealer = Sealer::new(self.key);
            self.count = 0;
        }
        let len =
            u16::try_from(frame.len() + TAG_LEN).map_err(|_| CryptoError::Length("record"))?;
        let header = len.to_be_bytes();
        self.sealer.seal(&header, frame)?;
        self.count += 1;
        Ok(header)
    }
}

impl Drop for RecordSealer {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
    }
}

/// The receiving half of the record layer for one direction.
pub(crate) struct RecordOpener {
    opener: Opener,
    key: [u8; 32],
    count: u64,
    rekey_after: u64,
}

impl RecordOpener {
    /// Checks a length header before the body is read: `Some(len)` if acceptable.
    pub(crate) fn body_len(header: [u8; 2]) -> Option<usize> {
        let len = usize::from(u16::from_be_bytes(header));
        (FRAME_HEADER + TAG_LEN..=MAX_RECORD)
            .contains(&len)
            .then_some(len)
    }

    /// Verifies and decrypts one record body in place (the tag is removed).
    pub(crate) fn open(&mut self, header: [u8; 2], body: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.count == self.rekey_after {
            self.key = next_key(&self.key)?;
            self.opener = Opener::new(self.key);
            self.count = 0;
        }
        self.opener.open(&header, body)?;
        self.count += 1;
        Ok(())
    }
}

impl Drop for RecordOpener {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
    }
}

/// Frame types inside a record (docs/suite-v1.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameType {
    Open = 1,
    Data = 2,
    Fin = 3,
    Reset = 4,
    Window = 5,
    Close = 6,
}

impl FrameType {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => FrameType::Open,
            2 => FrameType::Data,
            3 => FrameType::Fin,
            4 => FrameType::Reset,
            5 => FrameType::Window,
            6 => FrameType::Close,
            _ => return None,
        })
    }
}

/// Why a decrypted frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the 5-byte frame header.
    Short,
    /// Unknown frame type byte.
    UnknownType(u8),
    /// A body where none is allowed, or a malformed WINDOW body.
    BadBody(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Short => write!(f, "frame shorter than its header"),
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            FrameError::BadBody(what) => write!(f, "malformed {what} frame"),
        }
    }
}

/// Writes a frame header (type, stream id) at the start of an empty buffer.
pub(crate) fn put_header(buf: &mut Vec<u8>, ty: FrameType, stream: u32) {
    buf.clear();
    buf.push(ty as u8);
    buf.extend_from_slice(&stream.to_be_bytes());
}

/// Splits a decrypted frame into (type, stream id, body).
pub(crate) fn parse_frame(frame: &[u8]) -> Result<(FrameType, u32, &[u8]), FrameError> {
    let (head, body) = frame
        .split_first_chunk::<FRAME_HEADER>()
        .ok_or(FrameError::Short)?;
    let [t, a, b, c, d] = *head;
    let ty = FrameType::from_u8(t).ok_or(FrameError::UnknownType(t))?;
    let stream = u32::from_be_bytes([a, b, c, d]);
    match ty {
        FrameType::Data => {}
        FrameType::Window if body.len() != 4 => return Err(FrameError::BadBody("WINDOW")),
        FrameType::Window => {}
        _ if !body.is_empty() => return Err(FrameError::BadBody("control")),
        _ => {}
    }
    Ok((ty, stream, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_malformed() {
        let mut f = Vec::new();
        put_header(&mut f, FrameType::Window, 7);
        f.extend_from_slice(&100u32.to_be_bytes());
        let (ty, id, body) = parse_frame(&f).unwrap();
        assert_eq!(
            (ty, id, body),
            (FrameType::Window, 7, &100u32.to_be_bytes()[..])
        );
        let cases: &[(&[u8], FrameError)] = &[
            (&[2, 0, 0], FrameError::Short),
            (&[9, 0, 0, 0, 1], FrameError::UnknownType(9)),
            (&[5, 0, 0, 0, 1, 1], FrameError::BadBody("WINDOW")),
            (&[3, 0, 0, 0, 1, 0], FrameError::BadBody("control")),
        ];
        for (input, want) in cases {
            assert_eq!(parse_frame(input).unwrap_err(), *want);
        }
    }

    #[test]
    fn length_header_bounds() {
        assert_eq!(RecordOpener::body_len([0, 20]), None);
        assert_eq!(RecordOpener::body_len([0, 21]), Some(21));
        assert_eq!(RecordOpener::body_len(u16::MAX.to_be_bytes()), None);
    }
}
