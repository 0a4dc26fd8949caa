//! Relay (srvd) messages: the session request N3 and response N4 (noports.md §4.1) and the
//! socket authentication line (§4.3).
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

use std::fmt;

use super::envelope::{self, EnvelopeError};
use crate::crypto::rsa::{RsaPrivateKey, RsaPublicKey};
use crate::json::{JsonError, Object, Value};

/// Longest auth line the relay buffers before giving up, in bytes, excluding the `\n`.
/// A real line is about 560 bytes (noports.md §4.3: three short strings plus a 344-character
/// signature); the cap bounds what an unauthenticated peer can make the relay hold.
pub const MAX_AUTH_LINE_LEN: usize = 8 * 1024;

/// Longest N4 response text we parse, in bytes (noports.md §4.1: host, two ports, a nonce).
pub const MAX_RESPONSE_LEN: usize = 4 * 1024;

/// Why a relay request or response was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMsgError {
    /// The request is not valid JSON.
    Json(JsonError),
    /// The request JSON is not an object.
    NotAnObject,
    /// A required member or field is absent; names it.
    Missing(&'static str),
    /// A member has the wrong JSON type; names it.
    WrongType(&'static str),
    /// A field has an invalid value (empty host, bad port); names it.
    BadValue(&'static str),
    /// The text exceeds [`MAX_RESPONSE_LEN`].
    TooLong,
}

impl fmt::Display for RelayMsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayMsgError::Json(e) => write!(f, "relay message: {e}"),
            RelayMsgError::NotAnObject => f.write_str("relay request: not a JSON object"),
            RelayMsgError::Missing(m) => write!(f, "relay message: missing {m}"),
            RelayMsgError::WrongType(m) => write!(f, "relay message: {m} has the wrong type"),
            RelayMsgError::BadValue(m) => write!(f, "relay message: invalid {m}"),
            RelayMsgError::TooLong => f.write_str("relay message: too long"),
        }
    }
}

impl std::error::Error for RelayMsgError {}

/// Relay session request N3 (noports.md §1.3 step 4, §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    /// The client's session id.
    pub session_id: String,
    /// The client atSign; connects to portA.
    pub atsign_a: String,
    /// The device atSign; connects to portB.
    pub atsign_b: String,
    /// Require an auth line on A sockets.
    pub authenticate_socket_a: bool,
    /// Require an auth line on B sockets.
    pub authenticate_socket_b: bool,
    /// The client's nonce.
    pub client_nonce: String,
    /// Members beyond the six of the spec, in received order (e.g. our negotiation field).
    /// Appended after the spec members when built; official relays ignore them.
    pub extra: Object,
}

const REQUEST_MEMBERS: [&str; 6] = [
    "sessionId",
    "atSignA",
    "atSignB",
    "authenticateSocketA",
    "authenticateSocketB",
    "clientNonce",
];

impl RelayRequest {
    /// Builds the request object, members in the spec's order, then [`RelayRequest::extra`].
    pub fn to_object(&self) -> Object {
        let mut o = Object::new()
            .with("sessionId", self.session_id.as_str())
            .with("atSignA", self.atsign_a.as_str())
            .with("atSignB", self.atsign_b.as_str())
            .with("authenticateSocketA", self.authenticate_socket_a)
            .with("authenticateSocketB", self.authenticate_socket_b)
            .with("clientNonce", self.client_nonce.as_str());
        for (k, v) in self.extra.iter() {
            if !REQUEST_MEMBERS.contains(&k) {
                o.push(k, v.clone());
            }
        }
        o
    }

    /// The data-plane suite the client announced with the extra member `suite` (ours:
    /// `"nps1"`, whose sessions use exactly one socket pair). Official clients never send it
    /// and official relays ignore it.
    pub fn suite(&self) -> Option<&str> {
        self.extra.get_str("suite")
    }

    /// The request as compact JSON text (the N3 notification value).
    pub fn to_json(&self) -> String {
        self.to_object().to_json()
    }

    /// Reads a request from a parsed object, with the type checks of §4.1 (all six members
    /// required; strings and booleans as specified). Extra members are kept in `extra`.
    ///
    /// # Errors
    /// `Missing` / `WrongType` naming the member.
    pub fn from_object(o: &Object) -> Result<Self, RelayMsgError> {
        let s = |name: &'static str| match o.get(name) {
            None => Err(RelayMsgError::Missing(name)),
            Some(Value::Str(v)) => Ok(v.clone()),
            Some(_) => Err(RelayMsgError::WrongType(name)),
        };
        let b = |name: &'static str| match o.get(name) {
            None => Err(RelayMsgError::Missing(name)),
            Some(Value::Bool(v)) => Ok(*v),
            Some(_) => Err(RelayMsgError::WrongType(name)),
        };
        let mut extra = Object::new();
        for (k, v) in o.iter() {
            if !REQUEST_MEMBERS.contains(&k) {
                extra.push(k, v.clone());
            }
        }
        Ok(RelayRequest {
            session_id: s("sessionId")?,
            atsign_a: s("atSignA")?,
            atsign_b: s("atSignB")?,
            authenticate_socket_a: b("authenticateSocketA")?,
            authenticate_socket_b: b("authenticateSocketB")?,
            client_nonce: s("clientNonce")?,
            extra,
        })
    }

    /// Parses the N3 notification value.
    ///
    /// # Errors
    /// `Json` / `NotAnObject` for malformed text, else as [`RelayRequest::from_object`].
    pub fn parse(text: &str) -> Result<Self, RelayMsgError> {
        match crate::json::parse(text).map_err(RelayMsgError::Json)? {
            Value::Object(o) => Self::from_object(&o),
            _ => Err(RelayMsgError::NotAnObject),
        }
    }
}

/// Relay response N4: `host,portA,portB,rvdNonce` (noports.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayResponse {
    /// The relay's `--ip` value verbatim (address or host name).
    pub host: String,
    /// The client's port.
    pub port_a: u16,
    /// The daemon's port.
    pub port_b: u16,
    /// The relay nonce; `None` when absent or the legacy literal `null` (§1.6).
    pub rvd_nonce: Option<String>,
}

impl RelayResponse {
    /// Builds the response text; a `None` nonce is written as the legacy literal `null`.
    pub fn to_text(&self) -> String {
        format!(
            "{},{},{},{}",
            self.host,
            self.port_a,
            self.port_b,
            self.rvd_nonce.as_deref().unwrap_or("null")
        )
    }

    /// Parses the response text. Fields 1–3 are required, field 4 is optional and is
    /// everything after the third comma (the nonce is opaque). Surrounding whitespace of the
    /// whole value is ignored.
    ///
    /// # Errors
    /// `TooLong`; `Missing("host"|"portA"|"portB")`; `BadValue` for an empty or
    /// space-containing host or a port that is not a decimal integer in 1..=65535.
    pub fn parse(text: &str) -> Result<Self, RelayMsgError> {
        if text.len() > MAX_RESPONSE_LEN {
            return Err(RelayMsgError::TooLong);
        }
        let mut fields = text.trim().splitn(4, ',');
        let host = fields.next().unwrap_or("");
        if host.is_empty() {
            return Err(RelayMsgError::Missing("host"));
        }
        if host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(RelayMsgError::BadValue("host"));
        }
        let port_a = parse_port(fields.next(), "portA")?;
        let port_b = parse_port(fields.next(), "portB")?;
        let rvd_nonce = match fields.next() {
            None | Some("null") => None,
            Some(n) => Some(n.to_owned()),
        };
        Ok(RelayResponse {
            host: host.to_owned(),
            port_a,
            port_b,
            rvd_nonce,
        })
    }
}

fn parse_port(field: Option<&str>, name: &'static str) -> Result<u16, RelayMsgError> {
    let f = field.ok_or(RelayMsgError::Missing(name))?;
    if f.is_empty() || f.len() > 5 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RelayMsgError::BadValue(name));
    }
    match f.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(RelayMsgError::BadValue(name)),
    }
}

/// The auth payload `{"sessionId","clientNonce","rvdNonce"}`, exactly these members in this
/// order (noports.md §4.3).
pub fn auth_payload(session_id: &str, client_nonce: &str, rvd_nonce: &str) -> Object {
    Object::new()
        .with("sessionId", session_id)
        .with("clientNonce", client_nonce)
        .with("rvdNonce", rvd_nonce)
}

/// Builds the signed auth line, including its trailing `\n` (noports.md §4.3).
///
/// # Errors
/// [`EnvelopeError::Sign`] if signing fails.
pub fn auth_line(
    session_id: &str,
    client_nonce: &str,
    rvd_nonce: &str,
    key: &RsaPrivateKey,
) -> Result<String, EnvelopeError> {
    let mut line = envelope::sign(&auth_payload(session_id, client_nonce, rvd_nonce), key)?;
    line.push('\n');
    Ok(line)
}

/// Why the relay rejected an auth line (each destroys the socket without a reply, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLineError {
    /// No `\n` within [`MAX_AUTH_LINE_LEN`] bytes.
    TooLong,
    /// The line is not UTF-8 text.
    NotText,
    /// The line is not a well-formed envelope (check 1 and 2 of §4.3).
    Malformed(EnvelopeError),
    /// `payload.rvdNonce` is absent or differs from this session's (check 3).
    NonceMismatch,
    /// The signature over the expected payload does not verify with this side's key
    /// (check 4): wrong session, wrong client nonce, wrong signer, or forged.
    BadSignature,
}

impl fmt::Display for AuthLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthLineError::TooLong => write!(f, "auth line longer than {MAX_AUTH_LINE_LEN} bytes"),
            AuthLineError::NotText => f.write_str("auth line is not UTF-8 text"),
            AuthLineError::Malformed(e) => write!(f, "auth line malformed: {e}"),
            AuthLineError::NonceMismatch => f.write_str("auth line rvdNonce mismatch"),
            AuthLineError::BadSignature => f.write_str("auth line signature does not verify"),
        }
    }
}

impl std::error::Error for AuthLineError {}

/// Splits a complete auth line off the front of `buf`: `Ok(Some((line, rest)))` where `line`
/// excludes the `\n` and `rest` is every byte after it (forwarded to the peer once paired,
/// §4.3); `Ok(None)` when more bytes are needed.
///
/// # Errors
/// [`AuthLineError::TooLong`] when no `\n` occurs within [`MAX_AUTH_LINE_LEN`] bytes;
/// [`AuthLineError::NotText`] when the line is not UTF-8.
pub fn take_auth_line(buf: &[u8]) -> Result<Option<(&str, &[u8])>, AuthLineError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(n) if n > MAX_AUTH_LINE_LEN => Err(AuthLineError::TooLong),
        Some(n) => {
            let (line, rest) = buf.split_at_checked(n).ok_or(AuthLineError::TooLong)?;
            let rest = rest.get(1..).unwrap_or(&[]);
            let line = std::str::from_utf8(line).map_err(|_| AuthLineError::NotText)?;
            Ok(Some((line, rest)))
        }
        None if buf.len() > MAX_AUTH_LINE_LEN => Err(AuthLineError::TooLong),
        None => Ok(None),
    }
}

/// The `payload.rvdNonce` of an auth line, read without verifying anything: a single-port
/// relay finds the session by it before checking the line with [`verify_auth_line`] (check 3
/// of §4.3 already requires the member, and each session's nonce is fresh and unique).
///
/// # Errors
/// `TooLong`, `Malformed` for a line that is no envelope, `NonceMismatch` when the payload has
/// no string `rvdNonce`.
pub fn auth_line_rvd_nonce(line: &str) -> Result<String, AuthLineError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.len() > MAX_AUTH_LINE_LEN {
        return Err(AuthLineError::TooLong);
    }
    let env = envelope::parse(line).map_err(AuthLineError::Malformed)?;
    env.payload
        .get_str("rvdNonce")
        .map(str::to_owned)
        .ok_or(AuthLineError::NonceMismatch)
}

/// Checks an auth line as the relay does (noports.md §4.3), in order:
/// 1. it parses as an envelope with valid `hashingAlgo`/`signingAlgo` names,
/// 2. `payload` is an object,
/// 3. `payload.rvdNonce` equals `expected_rvd_nonce`,
/// 4. the signature verifies over the relay's **own** serialization of the three expected
///    values (never over what the peer sent) with this side's public key.
///
/// A single trailing `\n` (and `\r`) on `line` is ignored.
///
/// # Errors
/// The first failed check as an [`AuthLineError`].
pub fn verify_auth_line(
    line: &str,
    expected_session_id: &str,
    expected_client_nonce: &str,
    expected_rvd_nonce: &str,
    key: &RsaPublicKey,
) -> Result<(), AuthLineError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.len() > MAX_AUTH_LINE_LEN {
        return Err(AuthLineError::TooLong);
    }
    let env = envelope::parse(line).map_err(AuthLineError::Malformed)?;
    if env.payload.get_str("rvdNonce") != Some(expected_rvd_nonce) {
        return Err(AuthLineError::NonceMismatch);
    }
    let expected = auth_payload(
        expected_session_id,
        expected_client_nonce,
        expected_rvd_nonce,
    )
    .to_json();
    env.verify_message(key, expected.as_bytes())
        .map_err(|e| match e {
            EnvelopeError::BadSignature => AuthLineError::BadSignature,
            other => AuthLineError::Malformed(other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_line_keeps_rest() {
        assert_eq!(take_auth_line(b"abc"), Ok(None));
        assert_eq!(
            take_auth_line(b"abc\nSSH-2.0"),
            Ok(Some(("abc", &b"SSH-2.0"[..])))
        );
        assert_eq!(take_auth_line(b"abc\n"), Ok(Some(("abc", &b""[..]))));
        let long = vec![b'x'; MAX_AUTH_LINE_LEN + 1];
        assert_eq!(take_auth_line(&long), Err(AuthLineError::TooLong));
        assert_eq!(take_auth_line(b"\xff\n"), Err(AuthLineError::NotText));
    }

    #[test]
    fn suite_marking_is_an_extra_member() {
        let mut r = RelayRequest {
            session_id: "s".into(),
            atsign_a: "@a".into(),
            atsign_b: "@b".into(),
            authenticate_socket_a: true,
            authenticate_socket_b: true,
            client_nonce: "c".into(),
            extra: Object::new(),
        };
        assert_eq!(r.suite(), None);
        r.extra.push("suite", "nps1");
        let text = r.to_json();
        // The six spec members come first and unchanged; official relays ignore the rest.
        assert!(text.starts_with(r#"{"sessionId":"s","atSignA":"@a","atSignB":"@b","authenticateSocketA":true,"authenticateSocketB":true,"clientNonce":"c","#));
        assert!(text.ends_with(r#""suite":"nps1"}"#), "{text}");
        assert_eq!(RelayRequest::parse(&text).unwrap().suite(), Some("nps1"));
    }

    #[test]
    fn rvd_nonce_is_read_from_the_payload() {
        let key = crate::crypto::rsa::RsaPrivateKey::generate().unwrap();
        let line = auth_line("s", "c", "r-1", &key).unwrap();
        assert_eq!(auth_line_rvd_nonce(&line).as_deref(), Ok("r-1"));
        assert!(auth_line_rvd_nonce("garbage").is_err());
        assert!(auth_line_rvd_nonce(&"x".repeat(MAX_AUTH_LINE_LEN + 1)).is_err());
    }

    #[test]
    fn auth_payload_order() {
        assert_eq!(
            auth_payload("s", "c", "r").to_json(),
            r#"{"sessionId":"s","clientNonce":"c","rvdNonce":"r"}"#
        );
    }
}
