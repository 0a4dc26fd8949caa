//! Multi-mode control messages (noports.md §5.4): `connect:<K>:<IV>\n` and
//! `connect:no:encrypt\n`, written by the client on the (decrypted) control stream, one per
//! tunnelled TCP connection.
//!
//! [`ControlDecoder`] is the "robust receiver" of §5.4: it buffers decrypted bytes across
//! reads, splits on `\n`, and also splits back-to-back `connect:` messages written without a
//! newline by older clients. It does no I/O and no decryption.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::cast_possible_truncation
    )
)]

use std::collections::VecDeque;
use std::fmt;

use crate::crypto::b64;

/// Most bytes of an unfinished control message the decoder buffers. A real message is at
/// most 78 bytes (`connect:` + 44 + `:` + 24 + `\n`, §5.4); 4 KiB matches the C srv's read
/// size and bounds what the peer can make us hold.
pub const MAX_CONTROL_BUFFER: usize = 4 * 1024;

/// Length of a 32-byte key in padded base64 (§5.4).
const KEY_B64_LEN: usize = 44;
/// Length of a 16-byte IV in padded base64 (§5.4).
const IV_B64_LEN: usize = 24;

const PREFIX: &str = "connect:";

/// Longest unterminated buffer checked for a whole message: `connect:` + 44 + `:` + 24, plus
/// room for whitespace around it.
const MAX_TAIL: usize = 8 + KEY_B64_LEN + 1 + IV_B64_LEN + 64;

/// One control message (noports.md §5.4).
#[derive(Clone, PartialEq, Eq)]
pub enum ControlMsg {
    /// `connect:<K>:<IV>`: open a data connection encrypted with this fresh key and IV.
    Connect {
        /// Base64 of the 32-byte AES-256 key.
        key_b64: String,
        /// Base64 of the 16-byte initial counter block.
        iv_b64: String,
    },
    /// `connect:no:encrypt`: open a plaintext data connection.
    ConnectNoEncrypt,
    /// `heartbeat:<n>`: an official npt's keep-alive (every 5 minutes, `n` from 1), sent when
    /// the ping reply lists `controlChannelHeartbeats`; nothing answers it
    /// (docs/protocol-notes.md, control protocol 1.5 §2).
    Heartbeat(u64),
}

impl fmt::Debug for ControlMsg {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlMsg::Connect { .. } => f.write_str("Connect { key_b64: ***, iv_b64: *** }"),
            ControlMsg::ConnectNoEncrypt => f.write_str("ConnectNoEncrypt"),
            ControlMsg::Heartbeat(n) => write!(f, "Heartbeat({n})"),
        }
    }
}

impl ControlMsg {
    /// A `connect` message for raw key and IV bytes.
    pub fn connect(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        ControlMsg::Connect {
            key_b64: b64::encode(key),
            iv_b64: b64::encode(iv),
        }
    }

    /// A `connect` message for base64 key and IV, checked to decode to 32 and 16 bytes (so
    /// neither can contain `:` or `\n`).
    ///
    /// # Errors
    /// [`ControlError::BadKey`] or [`ControlError::BadIv`].
    pub fn connect_b64(key_b64: &str, iv_b64: &str) -> Result<Self, ControlError> {
        check_b64(key_b64, 32).ok_or(ControlError::BadKey)?;
        check_b64(iv_b64, 16).ok_or(ControlError::BadIv)?;
        Ok(ControlMsg::Connect {
            key_b64: key_b64.to_owned(),
            iv_b64: iv_b64.to_owned(),
        })
    }

    /// Appends the wire form, including the trailing `\n`, to `out`. Write it as one write.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_line().as_bytes());
    }

    /// The wire form, including the trailing `\n`.
    pub fn to_line(&self) -> String {
        match self {
            ControlMsg::Connect { key_b64, iv_b64 } => format!("{PREFIX}{key_b64}:{iv_b64}\n"),
            ControlMsg::ConnectNoEncrypt => format!("{PREFIX}no:encrypt\n"),
            ControlMsg::Heartbeat(n) => format!("heartbeat:{n}\n"),
        }
    }
}

fn check_b64(text: &str, len: usize) -> Option<Vec<u8>> {
    b64::decode(text).ok().filter(|v| v.len() == len)
}

/// Why a control message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlError {
    /// More than [`MAX_CONTROL_BUFFER`] bytes without a complete message. The decoder is
    /// poisoned and yields nothing more; close the control socket.
    TooLong,
    /// The message is not UTF-8 text (e.g. decrypted with the wrong key).
    NotText,
    /// The line does not start with `connect:`.
    UnknownRequest,
    /// `connect:` is not followed by exactly two `:`-separated fields.
    Malformed,
    /// The key is not base64 of 32 bytes.
    BadKey,
    /// The IV is not base64 of 16 bytes.
    BadIv,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlError::TooLong => "control message too long",
            ControlError::NotText => "control message is not text",
            ControlError::UnknownRequest => "unknown request on control socket",
            ControlError::Malformed => "malformed connect request",
            ControlError::BadKey => "connect request key is not base64 of 32 bytes",
            ControlError::BadIv => "connect request iv is not base64 of 16 bytes",
        })
    }
}

impl std::error::Error for ControlError {}

/// Sans-IO control-stream decoder. Feed it decrypted bytes as they arrive; take messages with
/// [`ControlDecoder::next`]. A malformed message yields one error and decoding continues with
/// the next; only [`ControlError::TooLong`] is final.
///
/// # Cancel safety
/// All state lives in the decoder, so a cancelled read loses nothing.
#[derive(Default)]
pub struct ControlDecoder {
    buf: Vec<u8>,
    ready: VecDeque<Result<ControlMsg, ControlError>>,
    poisoned: bool,
}

impl fmt::Debug for ControlDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlDecoder")
            .field("buffered", &self.buf.len())
            .field("ready", &self.ready.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl ControlDecoder {
    /// Creates an empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the decoder gave up after [`ControlError::TooLong`].
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Number of buffered bytes not yet part of a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends decrypted bytes. Complete messages are decoded immediately, so the buffer never
    /// holds more than about [`MAX_CONTROL_BUFFER`] bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(MAX_CONTROL_BUFFER) {
            if self.poisoned {
                return;
            }
            let fresh = self.buf.len();
            self.buf.extend_from_slice(chunk);
            self.drain(fresh);
            if self.buf.len() > MAX_CONTROL_BUFFER {
                self.buf = Vec::new();
                self.poisoned = true;
                self.ready.push_back(Err(ControlError::TooLong));
            }
        }
    }

    /// Returns the next decoded message or error, or `None` if more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<ControlMsg, ControlError>> {
        self.ready.pop_front()
    }

    /// Decodes every complete message in the buffer; `buf[fresh..]` just arrived.
    ///
    /// Only the fresh bytes are searched, so a peer that sends its bytes one at a time costs
    /// work in proportion to what it sends, not to the square of what is buffered (what
    /// came before was already searched and holds no newline and at most one `connect:`).
    fn drain(&mut self, mut fresh: usize) {
        // Newline-terminated lines first, decoded in place and removed in one go.
        let mut consumed = 0;
        let mut from = fresh;
        while let Some(n) = self
            .buf
            .get(from..)
            .and_then(|b| b.iter().position(|&c| c == b'\n'))
        {
            let end = from + n;
            decode_line(
                self.buf.get(consumed..end).unwrap_or_default(),
                &mut self.ready,
            );
            consumed = end + 1;
            from = consumed;
        }
        // Whitespace before a message means nothing: dropping it keeps a flood of it from
        // filling the buffer, and a message starts at index 0 from here on.
        consumed += self
            .buf
            .get(consumed..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.buf.drain(..consumed);
        fresh = fresh.saturating_sub(consumed);
        // No newline in what is left: take complete messages an older client wrote without
        // one. Everything before the last `connect:` is complete; the last one is complete
        // once it has the full shape.
        let from = fresh.saturating_sub(PREFIX.len() - 1);
        let last = self
            .buf
            .get(from..)
            .and_then(|b| rfind(b, PREFIX.as_bytes()))
            .map(|i| from + i);
        if let Some(last) = last.filter(|&i| i > 0) {
            decode_line(self.buf.get(..last).unwrap_or_default(), &mut self.ready);
            self.buf.drain(..last);
        }
        if is_complete_tail(&self.buf) {
            decode_line(&self.buf, &mut self.ready);
            self.buf.clear();
        }
    }
}

/// Decodes one line, which may hold several back-to-back `connect:` messages, into `ready`.
fn decode_line(line: &[u8], ready: &mut VecDeque<Result<ControlMsg, ControlError>>) {
    let Ok(text) = std::str::from_utf8(line) else {
        ready.push_back(Err(ControlError::NotText));
        return;
    };
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    if let Some(n) = text.strip_prefix("heartbeat:") {
        ready.push_back(
            n.parse()
                .map(ControlMsg::Heartbeat)
                .map_err(|_| ControlError::Malformed),
        );
        return;
    }
    let mut parts = text.split(PREFIX);
    if parts.next().is_some_and(|before| !before.trim().is_empty()) {
        ready.push_back(Err(ControlError::UnknownRequest));
        return;
    }
    for frag in parts {
        let frag = frag.trim();
        // As the Dart daemon: every non-empty fragment is one request.
        if !frag.is_empty() {
            ready.push_back(decode_fields(frag));
        }
    }
}

/// Decodes the part after `connect:`.
fn decode_fields(frag: &str) -> Result<ControlMsg, ControlError> {
    let (k, iv) = frag.split_once(':').ok_or(ControlError::Malformed)?;
    if iv.contains(':') {
        return Err(ControlError::Malformed);
    }
    if k == "no" && iv == "encrypt" {
        return Ok(ControlMsg::ConnectNoEncrypt);
    }
    ControlMsg::connect_b64(k, iv)
}

/// Whether `buf` (no newline, at most one `connect:` after leading whitespace) already holds a
/// whole message: `connect:no:encrypt`, or `connect:` + 44 + `:` + 24 characters.
fn is_complete_tail(buf: &[u8]) -> bool {
    // A whole message is at most 77 characters; allow some whitespace around it. Anything
    // longer waits for its newline or the next `connect:`, and costs no scan per byte.
    if buf.len() > MAX_TAIL {
        return false;
    }
    let Ok(text) = std::str::from_utf8(buf) else {
        return false;
    };
    let Some(rest) = text.trim().strip_prefix(PREFIX) else {
        return false;
    };
    if rest == "no:encrypt" {
        return true;
    }
    matches!(rest.split_once(':'), Some((k, iv)) if k.len() == KEY_B64_LEN && iv.len() == IV_B64_LEN)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_encrypt_variants() {
        let mut d = ControlDecoder::new();
        d.feed(b"connect:no:encrypt\nconnect:no:encryptconnect:no:encrypt");
        for _ in 0..3 {
            assert_eq!(d.next(), Some(Ok(ControlMsg::ConnectNoEncrypt)));
        }
        assert_eq!(d.next(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn split_across_feeds() {
        let mut d = ControlDecoder::new();
        d.feed(b"conn");
        assert_eq!(d.next(), None);
        d.feed(b"ect:no:enc");
        assert_eq!(d.next(), None);
        d.feed(b"rypt\n");
        assert_eq!(d.next(), Some(Ok(ControlMsg::ConnectNoEncrypt)));
    }

    /// An official npt's heartbeats are messages of their own, between and beside connects.
    #[test]
    fn heartbeats_are_read_and_connects_around_them_still_are() {
        let mut d = ControlDecoder::new();
        d.feed(b"heartbeat:1\nconnect:no:encrypt\nheartbeat:2\nheartbeat:x\n");
        assert_eq!(d.next(), Some(Ok(ControlMsg::Heartbeat(1))));
        assert_eq!(d.next(), Some(Ok(ControlMsg::ConnectNoEncrypt)));
        assert_eq!(d.next(), Some(Ok(ControlMsg::Heartbeat(2))));
        assert_eq!(d.next(), Some(Err(ControlError::Malformed)));
        assert_eq!(d.next(), None);
    }

    #[test]
    fn unknown_and_malformed() {
        let mut d = ControlDecoder::new();
        d.feed(b"hello\nconnect:a\nconnect:a:b:c\n\n  \n");
        assert_eq!(d.next(), Some(Err(ControlError::UnknownRequest)));
        assert_eq!(d.next(), Some(Err(ControlError::Malformed)));
        assert_eq!(d.next(), Some(Err(ControlError::Malformed)));
        assert_eq!(d.next(), None);
    }

    /// Whatever the pieces the stream arrives in, the same messages come out, in order.
    #[test]
    fn any_split_gives_the_same_messages() {
        let key = "A".repeat(KEY_B64_LEN - 1) + "=";
        let iv = "A".repeat(IV_B64_LEN - 2) + "==";
        let stream = [
            format!("  connect:no:encrypt\nhello\n\n \tconnect:{key}:{iv}connect:no:encrypt\n")
                .as_bytes(),
            b"connect:a:b:c\n\xff\n",
            format!("connect:{key}:{iv}\r\n   \nconnect:no:encrypt").as_bytes(),
        ]
        .concat();
        let all = |piece: usize| {
            let mut d = ControlDecoder::new();
            let mut out = Vec::new();
            for chunk in stream.chunks(piece) {
                d.feed(chunk);
                out.extend(std::iter::from_fn(|| d.next()));
            }
            (out, d.buffered())
        };
        let (whole, left) = all(stream.len());
        assert_eq!(whole.len(), 8, "{whole:?}");
        assert!(whole
            .iter()
            .all(|m| !matches!(m, Err(ControlError::BadKey | ControlError::BadIv))));
        assert_eq!(left, 0);
        for piece in 1..stream.len() {
            assert_eq!(all(piece), (whole.clone(), 0), "pieces of {piece}");
        }
    }

    /// A peer sending one byte at a time: a long unterminated line and a whitespace flood
    /// are both handled, and whitespace is not buffered.
    #[test]
    fn byte_at_a_time() {
        let mut d = ControlDecoder::new();
        for _ in 0..3 * MAX_CONTROL_BUFFER {
            d.feed(b" ");
        }
        assert_eq!(d.buffered(), 0);
        for _ in 0..MAX_CONTROL_BUFFER {
            d.feed(b"x");
        }
        assert_eq!(d.next(), None);
        d.feed(b"x");
        assert_eq!(d.next(), Some(Err(ControlError::TooLong)));
    }

    #[test]
    fn oversize_poisons() {
        let mut d = ControlDecoder::new();
        d.feed(&[b'x'; MAX_CONTROL_BUFFER + 1]);
        assert_eq!(d.next(), Some(Err(ControlError::TooLong)));
        d.feed(b"connect:no:encrypt\n");
        assert_eq!(d.next(), None);
        assert!(d.is_poisoned());
    }
}
