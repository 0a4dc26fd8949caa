//! Our negotiated data-plane suite "nps1": X25519 ephemeral agreement bound to the signed
//! session exchange, HKDF-SHA-256 keys per direction, ChaCha20-Poly1305 (or, negotiated,
//! AES-256-GCM) records with counter nonces and deterministic rekeying. The byte format is
//! specified in docs/suite-v1.md; this file is the sans-IO part (key schedule, record sealing
//! and opening, frame codec).
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

pub use crate::crypto::aead::Aead;
use crate::crypto::aead::{EphemeralSecret, Opener, Sealer};
use crate::crypto::hash::hkdf_sha256;
use crate::crypto::CryptoError;

/// The value of the `suite` member that selects this suite.
pub const SUITE_NAME: &str = "nps1";
/// Most data bytes one record carries (docs/suite-v1.md §3).
pub const MAX_DATA: usize = 32 * 1024;
/// Frame header inside the plaintext: type (1) + stream id (4).
pub const FRAME_HEADER: usize = 5;
/// Tag length (Poly1305 and GCM alike).
pub const TAG_LEN: usize = 16;
/// Largest ciphertext (frame + tag) a peer may announce; larger lengths are a protocol error.
pub const MAX_RECORD: usize = MAX_DATA + FRAME_HEADER + TAG_LEN;
/// Records per key before both sides switch to the next key (docs/suite-v1.md §4). Far below
/// the 2^64 nonce space; also keeps each key well inside ChaCha20-Poly1305's usage limits.
pub const REKEY_AFTER: u64 = 1 << 32;
/// The same for AES-256-GCM: 2^23 records of up to 32 KiB (256 GiB) per key, inside the
/// limit TLS 1.3 sets for AES-GCM keys (RFC 8446 §5.5: 2^24.5 records of 16 KiB).
pub const REKEY_AFTER_AES: u64 = 1 << 23;

const INFO_C2D: &[u8] = b"nps1 client->daemon";
const INFO_D2C: &[u8] = b"nps1 daemon->client";
// AES-256-GCM sessions derive other keys, so no key ever serves both AEADs.
const INFO_AES_C2D: &[u8] = b"nps1 aes-256-gcm client->daemon";
const INFO_AES_D2C: &[u8] = b"nps1 aes-256-gcm daemon->client";
const INFO_REKEY: &[u8] = b"nps1 rekey";

/// Which end of the tunnel we are; it decides which derived key seals and which opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that runs the local listener (npt, sshnp).
    Client,
    /// The device side (sshnpd).
    Daemon,
}

/// The two per-direction record keys of one session, and their AEAD.
#[derive(Clone)]
pub struct SuiteKeys {
    aead: Aead,
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
    /// Builds ChaCha20-Poly1305 keys directly (tests, and the counterpart of [`derive`] with
    /// known keys).
    pub fn from_raw(send: [u8; 32], recv: [u8; 32]) -> Self {
        SuiteKeys {
            aead: Aead::ChaCha20Poly1305,
            send,
            recv,
            rekey_after: REKEY_AFTER,
        }
    }

    /// The same keys used with `aead`, at that AEAD's rekey interval.
    pub fn with_aead(mut self, aead: Aead) -> Self {
        self.aead = aead;
        self.rekey_after = match aead {
            Aead::ChaCha20Poly1305 => REKEY_AFTER,
            Aead::Aes256Gcm => REKEY_AFTER_AES,
        };
        self
    }

    /// The AEAD of the records.
    pub fn aead(&self) -> Aead {
        self.aead
    }

    /// The keys the peer holds: our send key is its receive key.
    pub fn mirrored(&self) -> Self {
        SuiteKeys {
            aead: self.aead,
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
                sealer: Sealer::new(self.aead, self.send),
                key: self.send,
                count: 0,
                rekey_after: self.rekey_after,
            },
            RecordOpener {
                opener: Opener::new(self.aead, self.recv),
                key: self.recv,
                count: 0,
                rekey_after: self.rekey_after,
            },
        )
    }
}

/// Derives the session's record keys for `aead` from our ephemeral secret and the peer's
/// public key; `binding` is the session's binding string when both ends agreed on one
/// ([`binding`], docs/suite-v1.md §2).
///
/// Both public keys travel inside signed messages (`clientSuitePK` in the npt/ssh request,
/// `daemonSuitePK` in the session response), so an active relay cannot substitute its own.
///
/// # Errors
/// `CryptoError::BadKey` if the agreement yields the all-zero secret (a low-order peer key);
/// `CryptoError::Length` for a binding string holding a NUL byte.
pub fn derive(
    role: Role,
    my_secret: EphemeralSecret,
    peer_pub: &[u8; 32],
    session_id: &str,
    binding: Option<&str>,
    aead: Aead,
) -> Result<SuiteKeys, CryptoError> {
    let my_pub = my_secret.public_bytes();
    let shared = zeroize::Zeroizing::new(my_secret.agree(peer_pub)?);
    derive_from_shared(role, &shared, &my_pub, peer_pub, session_id, binding, aead)
}

/// The version of the binding the request offers (`"suiteBinding":"v1"`).
pub const BINDING_VERSION: &str = "v1";

/// The binding string of a session: `v1 <client atSign> <daemon atSign> <target>`, where the
/// target is `requestedHost:requestedPort` for npt and `sshd` for sshnp. The daemon signs it
/// in its answer and both ends put it into the key derivation, so keys made for one client,
/// device or target never open another's records. None of the parts holds a space.
pub fn binding(client: &str, daemon: &str, target: &str) -> String {
    format!("{BINDING_VERSION} {client} {daemon} {target}")
}

/// The key schedule after the X25519 agreement (docs/suite-v1.md §2).
fn derive_from_shared(
    role: Role,
    shared: &[u8; 32],
    my_pub: &[u8; 32],
    peer_pub: &[u8; 32],
    session_id: &str,
    binding: Option<&str>,
    aead: Aead,
) -> Result<SuiteKeys, CryptoError> {
    if binding.is_some_and(|b| b.contains('\0')) {
        return Err(CryptoError::Length("binding"));
    }
    let (client_pk, daemon_pk) = match role {
        Role::Client => (my_pub, peer_pub),
        Role::Daemon => (peer_pub, my_pub),
    };
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(client_pk);
    salt[32..].copy_from_slice(daemon_pk);
    let mut c2d = [0u8; 32];
    let mut d2c = [0u8; 32];
    let (label_c2d, label_d2c) = match aead {
        Aead::ChaCha20Poly1305 => (INFO_C2D, INFO_D2C),
        Aead::Aes256Gcm => (INFO_AES_C2D, INFO_AES_D2C),
    };
    hkdf_sha256(
        &salt,
        shared,
        &info(label_c2d, session_id, binding),
        &mut c2d,
    )?;
    hkdf_sha256(
        &salt,
        shared,
        &info(label_d2c, session_id, binding),
        &mut d2c,
    )?;
    let keys = match role {
        Role::Client => SuiteKeys::from_raw(c2d, d2c),
        Role::Daemon => SuiteKeys::from_raw(d2c, c2d),
    };
    // The arrays are Copy: from_raw took copies, and these would stay on the stack.
    zeroize::Zeroize::zeroize(&mut c2d);
    zeroize::Zeroize::zeroize(&mut d2c);
    Ok(keys.with_aead(aead))
}

/// `label || 0x00 || sid`, then `|| 0x00 || binding` when there is one.
fn info(label: &[u8], session_id: &str, binding: Option<&str>) -> Vec<u8> {
    let mut v =
        Vec::with_capacity(label.len() + 2 + session_id.len() + binding.map_or(0, str::len));
    v.extend_from_slice(label);
    v.push(0);
    v.extend_from_slice(session_id.as_bytes());
    if let Some(b) = binding {
        v.push(0);
        v.extend_from_slice(b.as_bytes());
    }
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
            self.sealer = Sealer::new(self.sealer.aead(), self.key);
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
            self.opener = Opener::new(self.opener.aead(), self.key);
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
        // docs/suite-v1.md §5: 1 to 32,768 bytes (the record length caps the top); an empty
        // one would be a record that costs the receiver work and carries nothing.
        FrameType::Data if body.is_empty() => return Err(FrameError::BadBody("DATA")),
        FrameType::Data => {}
        FrameType::Window if body.len() != 4 => return Err(FrameError::BadBody("WINDOW")),
        FrameType::Window => {}
        _ if !body.is_empty() => return Err(FrameError::BadBody("control")),
        _ => {}
    }
    Ok((ty, stream, body))
}

/// Seals frames as the peer holding `keys` sends them, record after record: for tests that
/// play a hostile peer (hidden; not an API). Type codes are docs/suite-v1.md §5's.
#[doc(hidden)]
pub struct FrameWriter {
    sealer: RecordSealer,
    frame: Vec<u8>,
}

impl FrameWriter {
    /// A writer for the side that holds `keys`.
    pub fn new(keys: &SuiteKeys) -> Self {
        FrameWriter {
            sealer: keys.split().0,
            frame: Vec::new(),
        }
    }

    /// Appends the sealed record of one frame (type code, stream id, body) to `out`.
    ///
    /// # Errors
    /// A type code that is no frame type, or a body too long for one record.
    pub fn push(
        &mut self,
        out: &mut Vec<u8>,
        ty: u8,
        id: u32,
        body: &[u8],
    ) -> Result<(), CryptoError> {
        let ty = FrameType::from_u8(ty).ok_or(CryptoError::Length("frame type"))?;
        put_header(&mut self.frame, ty, id);
        self.frame.extend_from_slice(body);
        let header = self.sealer.seal(&mut self.frame)?;
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.frame);
        Ok(())
    }
}

/// Fuzzing entry (hidden; not an API). Runs `data` through the receiving side of the record
/// layer as a stream: length header and bounds, then the frame parser on each body as it
/// would come out of the AEAD. Inputs starting with a zero byte also take the full crypto path
/// (kept to a sample: instrumented AEAD is slow): the first record is opened as hostile
/// ciphertext, and the rest of the input is sealed by a matching sender (rekeying every
/// record) in pieces of up to 64 bytes, which must open to the same bytes.
///
/// # Errors
/// A description of the broken round-trip property.
#[doc(hidden)]
pub fn fuzz_records(data: &[u8]) -> Result<usize, &'static str> {
    let mut parsed = 0;
    let mut rest = data;
    let mut first: Option<([u8; 2], &[u8])> = None;
    while let Some((h, tail)) = rest.split_first_chunk::<2>() {
        let Some(len) = RecordOpener::body_len(*h) else {
            break;
        };
        let Some(body) = tail.get(..len) else {
            break;
        };
        first.get_or_insert((*h, body));
        let plain = body.get(..len - TAG_LEN).unwrap_or_default();
        if parse_frame(plain).is_ok() {
            parsed += 1;
        }
        rest = tail.get(len..).unwrap_or_default();
    }
    let Some((0, crypto_input)) = data.split_first() else {
        return Ok(parsed);
    };
    let keys = SuiteKeys::from_raw([7; 32], [9; 32]).with_rekey_interval(1);
    let (mut sealer, mut hostile) = keys.split();
    let (_, mut opener) = keys.mirrored().split();
    if let Some((h, body)) = first {
        let mut b = body.to_vec();
        if hostile.open(h, &mut b).is_ok() {
            return Err("hostile ciphertext opened");
        }
    }
    for plain in crypto_input.chunks(64).take(4) {
        let mut rec = plain.to_vec();
        let header = sealer.seal(&mut rec).map_err(|_| "seal failed")?;
        if RecordOpener::body_len(header) != Some(rec.len()) {
            // The receiver refuses it before reading the body (a frame shorter than its header).
            if plain.len() >= FRAME_HEADER {
                return Err("a well-sized record was refused by its length");
            }
            break;
        }
        opener
            .open(header, &mut rec)
            .map_err(|_| "a sealed record did not open")?;
        if rec != plain {
            return Err("a record opened to different bytes");
        }
        if parse_frame(&rec).is_ok() {
            parsed += 1;
        }
    }
    Ok(parsed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
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
            (&[2, 0, 0, 0, 1], FrameError::BadBody("DATA")),
        ];
        assert!(
            parse_frame(&[2, 0, 0, 0, 1, 0x41]).is_ok(),
            "one byte of DATA is fine"
        );
        for (input, want) in cases {
            assert_eq!(parse_frame(input).unwrap_err(), *want);
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arr(s: &str) -> [u8; 32] {
        unhex(s).try_into().unwrap()
    }

    /// The §7 inputs: client and daemon public keys (RFC 7748 §6.1), their shared secret, and
    /// the session id.
    fn kat_inputs() -> ([u8; 32], [u8; 32], [u8; 32], &'static str) {
        (
            arr("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"),
            arr("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"),
            arr("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"),
            "5c3e8a6d-9d3e-4f52-8a8c-111111111111",
        )
    }

    /// The client's and the daemon's keys from the §7 inputs (RFC 7748 §6.1 key pairs).
    fn kat_keys(aead: Aead) -> (SuiteKeys, SuiteKeys) {
        let (client_pk, daemon_pk, shared, sid) = kat_inputs();
        let c = derive_from_shared(
            Role::Client,
            &shared,
            &client_pk,
            &daemon_pk,
            sid,
            None,
            aead,
        );
        let d = derive_from_shared(
            Role::Daemon,
            &shared,
            &daemon_pk,
            &client_pk,
            sid,
            None,
            aead,
        );
        (c.unwrap(), d.unwrap())
    }

    /// One sealed record (length header included) of a frame for stream 1.
    fn record(sealer: &mut RecordSealer, ty: FrameType, body: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        put_header(&mut f, ty, 1);
        f.extend_from_slice(body);
        let h = sealer.seal(&mut f).unwrap();
        [&h[..], &f].concat()
    }

    /// docs/suite-v1.md §7: RFC 7748 §6.1 key pairs, session id, the first two records, and
    /// the same second record after a rekey (computed independently with Python
    /// `cryptography`).
    #[test]
    fn known_answer_vector() {
        let (c, d) = kat_keys(Aead::ChaCha20Poly1305);
        assert_eq!(
            c.send,
            arr("f372482be2ea7a869e9088cf61ff458ec14aeab587db8ef5a9449c2a58ca99c8")
        );
        assert_eq!(
            c.recv,
            arr("d12638048c3cb0422f65e144b513a9a4671e43de1183a85a7f79933bd0352798")
        );
        assert_eq!((d.send, d.recv), (c.recv, c.send));
        let (mut sealer, _) = c.split();
        assert_eq!(
            record(&mut sealer, FrameType::Open, b""),
            unhex("0015b6f57f39939d1b78af20739961229075958b4fd1cb")
        );
        let data = unhex("001a9a33ed7243a56b82a55abe9f3ee316f107691e5d6c605e9bfd58");
        assert_eq!(record(&mut sealer, FrameType::Data, b"hello"), data);
        let (mut sealer, _) = c.clone().with_rekey_interval(1).split();
        record(&mut sealer, FrameType::Open, b"");
        let rekeyed = unhex("001a078c7fcfbfb326249be0cc9b6b39b853cc821b0bcc1794dec254");
        assert_eq!(record(&mut sealer, FrameType::Data, b"hello"), rekeyed);
        // The daemon opens both, and refuses a flipped bit or a replayed record.
        let (_, mut opener) = d.split();
        for (i, rec) in [
            unhex("0015b6f57f39939d1b78af20739961229075958b4fd1cb"),
            data.clone(),
        ]
        .iter()
        .enumerate()
        {
            let (h, body) = rec.split_at(2);
            let mut b = body.to_vec();
            opener.open([h[0], h[1]], &mut b).unwrap();
            assert_eq!(parse_frame(&b).unwrap().1, 1, "record {i}");
        }
        let (h, body) = data.split_at(2);
        let mut replay = body.to_vec();
        assert_eq!(
            opener.open([h[0], h[1]], &mut replay),
            Err(CryptoError::Tampered)
        );
        let (_, mut fresh) = d.split();
        let mut flipped = unhex("0015b6f57f39939d1b78af20739961229075958b4fd1cb")[2..].to_vec();
        flipped[3] ^= 1;
        assert_eq!(
            fresh.open([0x00, 0x15], &mut flipped),
            Err(CryptoError::Tampered)
        );
    }

    /// docs/suite-v1.md §7, with the binding `v1 @alice @bob 127.0.0.1:22` (computed with
    /// Python `cryptography`); any other client, daemon or target gives keys that open
    /// nothing of this session, and a binding holding a NUL byte is refused.
    #[test]
    fn known_answer_vector_bound_and_bindings_do_not_interoperate() {
        let (client_pk, daemon_pk, shared, sid) = kat_inputs();
        let aead = Aead::ChaCha20Poly1305;
        let keys = |role, b: &str| {
            let (mine, peer) = match role {
                Role::Client => (&client_pk, &daemon_pk),
                Role::Daemon => (&daemon_pk, &client_pk),
            };
            derive_from_shared(role, &shared, mine, peer, sid, Some(b), aead).unwrap()
        };
        let bound = binding("@alice", "@bob", "127.0.0.1:22");
        assert_eq!(bound, "v1 @alice @bob 127.0.0.1:22");
        let c = keys(Role::Client, &bound);
        assert_eq!(
            c.send,
            arr("3084e206d1c59d15763855e8f711ea916cf85c67fc20a69928c027331c1a3113")
        );
        assert_eq!(
            c.recv,
            arr("bd046f16dabad5f28c602b7bec1b7e3cea7c0c6a4d03df30584d15dc5fc08cef")
        );
        let (mut sealer, _) = c.split();
        let open = record(&mut sealer, FrameType::Open, b"");
        assert_eq!(
            open,
            unhex("00158f8c071066d6bca42183fdc90855274f0b4c4a2a6c")
        );
        let opens = |d: SuiteKeys| {
            let (_, mut opener) = d.split();
            let mut b = open[2..].to_vec();
            opener.open([open[0], open[1]], &mut b).is_ok()
        };
        assert!(opens(keys(Role::Daemon, &bound)));
        for other in [
            binding("@mallory", "@bob", "127.0.0.1:22"),
            binding("@alice", "@bob2", "127.0.0.1:22"),
            binding("@alice", "@bob", "127.0.0.1:23"),
        ] {
            assert!(!opens(keys(Role::Daemon, &other)), "{other}");
        }
        let (_, unbound) = kat_keys(aead);
        assert!(!opens(unbound), "bound and unbound keys differ");
        let nul = derive_from_shared(
            Role::Client,
            &shared,
            &client_pk,
            &daemon_pk,
            sid,
            Some("v1\0x"),
            aead,
        );
        assert!(nul.is_err());
    }

    /// docs/suite-v1.md §7, AES-256-GCM: the same inputs give other keys (their own labels),
    /// records under AES-256-GCM, and the rekey interval of §4 (also computed with Python
    /// `cryptography`).
    #[test]
    fn known_answer_vector_aes_256_gcm() {
        let aes = Aead::Aes256Gcm;
        let (c, d) = kat_keys(aes);
        assert_eq!(
            c.send,
            arr("7516277240182769ebc4a18ac903951d9c191d46dd2b57560343c4e449df696e")
        );
        assert_eq!(
            c.recv,
            arr("17157744dc022d66c13ba31c17844561ca216d6c071f06ed97198eb51795136d")
        );
        assert_eq!((d.send, d.recv, d.aead()), (c.recv, c.send, aes));
        assert_eq!(c.rekey_after, REKEY_AFTER_AES);
        let open = unhex("0015b85dde5b2858be73ff49fbcbd2b22e8ec5ed9fe4b4");
        let data = unhex("001ac32e246f7f54d85ee70c20b47e339ed243754890f569b54cb979");
        let (mut sealer, _) = c.split();
        assert_eq!(record(&mut sealer, FrameType::Open, b""), open);
        assert_eq!(record(&mut sealer, FrameType::Data, b"hello"), data);
        let (mut sealer, _) = c.clone().with_rekey_interval(1).split();
        record(&mut sealer, FrameType::Open, b"");
        let rekeyed = unhex("001a9ff54d413d8d47982e64abad252806839dc0e48acd9e62041962");
        assert_eq!(record(&mut sealer, FrameType::Data, b"hello"), rekeyed);
        // The daemon opens both; a ChaCha20-Poly1305 opener with the same keys refuses them.
        let (_, mut opener) = d.split();
        let (_, mut wrong) = d.clone().with_aead(Aead::ChaCha20Poly1305).split();
        for rec in [&open, &data] {
            let (h, body) = rec.split_at(2);
            let mut b = body.to_vec();
            assert_eq!(
                wrong.open([h[0], h[1]], &mut b.clone()),
                Err(CryptoError::Tampered)
            );
            opener.open([h[0], h[1]], &mut b).unwrap();
            assert_eq!(parse_frame(&b).unwrap().1, 1);
        }
    }

    #[test]
    fn length_header_bounds() {
        assert_eq!(RecordOpener::body_len([0, 20]), None);
        assert_eq!(RecordOpener::body_len([0, 21]), Some(21));
        assert_eq!(RecordOpener::body_len(u16::MAX.to_be_bytes()), None);
    }
}
