//! The signed envelope of noports.md §2: `{"payload":{…},"signature":"<b64>",
//! "hashingAlgo":"sha256","signingAlgo":"rsa2048"}`.
//!
//! The signed bytes are the canonical serialization (§2.2) of `payload`. Signing serializes
//! the payload once and embeds exactly those bytes; verifying re-serializes the parsed payload
//! in received order, as the Dart and C verifiers do, and also accepts a signature over the
//! raw payload text (more lenient, never less compatible; §2.2 consequence 2).
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

use crate::crypto::rsa::{HashAlgo, RsaPrivateKey, RsaPublicKey};
use crate::crypto::{b64, CryptoError};
use crate::json::{self, JsonError, Object, Value};

/// `hashingAlgo` the reference signers always write (noports.md §2.1).
pub const HASHING_ALGO_SHA256: &str = "sha256";
/// `signingAlgo` the reference signers always write (noports.md §2.1).
pub const SIGNING_ALGO_RSA2048: &str = "rsa2048";

/// The `signingAlgo` names Dart verifiers accept (noports.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgo {
    /// `ecc_secp256r1`: parses, but cannot verify against an RSA key.
    EccSecp256r1,
    /// `rsa2048`.
    Rsa2048,
    /// `rsa4096`.
    Rsa4096,
}

impl SigningAlgo {
    /// Parses a `signingAlgo` name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ecc_secp256r1" => Some(SigningAlgo::EccSecp256r1),
            "rsa2048" => Some(SigningAlgo::Rsa2048),
            "rsa4096" => Some(SigningAlgo::Rsa4096),
            _ => None,
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgo::EccSecp256r1 => "ecc_secp256r1",
            SigningAlgo::Rsa2048 => "rsa2048",
            SigningAlgo::Rsa4096 => "rsa4096",
        }
    }
}

/// Parses a `hashingAlgo` name: `sha256` or `sha512` (the Dart verifiers' set, noports.md
/// §2.1; `md5` parses there but never verifies, so we reject it up front).
pub fn hash_algo_from_name(name: &str) -> Option<HashAlgo> {
    match name {
        "sha256" => Some(HashAlgo::Sha256),
        "sha512" => Some(HashAlgo::Sha512),
        _ => None,
    }
}

/// Why an envelope could not be built, parsed or verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The text is not valid JSON (malformed input from the peer).
    Json(JsonError),
    /// The JSON is not an object.
    NotAnObject,
    /// A required member is absent; names the member.
    Missing(&'static str),
    /// A member has the wrong JSON type; names the member.
    WrongType(&'static str),
    /// `hashingAlgo` is not `sha256` or `sha512`.
    UnknownHashingAlgo,
    /// `signingAlgo` is not one of `ecc_secp256r1`, `rsa2048`, `rsa4096`.
    UnknownSigningAlgo,
    /// `signature` is not valid standard base64.
    BadSignatureEncoding,
    /// `signingAlgo` names an algorithm we cannot verify with an RSA key (`ecc_secp256r1`).
    UnsupportedSigningAlgo,
    /// The signature does not verify with the given key (forged, tampered, or wrong key).
    BadSignature,
    /// Creating the signature failed locally.
    Sign(CryptoError),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Json(e) => write!(f, "envelope: {e}"),
            EnvelopeError::NotAnObject => f.write_str("envelope: not a JSON object"),
            EnvelopeError::Missing(m) => write!(f, "envelope: missing member {m}"),
            EnvelopeError::WrongType(m) => write!(f, "envelope: member {m} has the wrong type"),
            EnvelopeError::UnknownHashingAlgo => f.write_str("envelope: unknown hashingAlgo"),
            EnvelopeError::UnknownSigningAlgo => f.write_str("envelope: unknown signingAlgo"),
            EnvelopeError::BadSignatureEncoding => {
                f.write_str("envelope: signature is not valid base64")
            }
            EnvelopeError::UnsupportedSigningAlgo => {
                f.write_str("envelope: signingAlgo cannot be verified with an RSA key")
            }
            EnvelopeError::BadSignature => f.write_str("envelope: signature does not verify"),
            EnvelopeError::Sign(e) => write!(f, "envelope: signing failed: {e}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

impl From<JsonError> for EnvelopeError {
    fn from(e: JsonError) -> Self {
        EnvelopeError::Json(e)
    }
}

/// Signs `payload` and returns the envelope text (noports.md §2.1, §2.2).
///
/// The signature is RSASSA-PKCS1-v1_5/SHA-256 over the canonical serialization of `payload`,
/// and the envelope embeds exactly those bytes, followed by `signature`, `hashingAlgo`
/// (`sha256`) and `signingAlgo` (`rsa2048`) in that order.
///
/// # Errors
/// [`EnvelopeError::Sign`] if the RSA operation fails.
pub fn sign(payload: &Object, key: &RsaPrivateKey) -> Result<String, EnvelopeError> {
    let canonical = payload.to_json();
    let sig = key
        .sign(HashAlgo::Sha256, canonical.as_bytes())
        .map_err(EnvelopeError::Sign)?;
    let mut out = String::with_capacity(canonical.len() + 420);
    out.push_str("{\"payload\":");
    out.push_str(&canonical);
    out.push_str(",\"signature\":");
    json::write_str(&b64::encode(&sig), &mut out);
    out.push_str(",\"hashingAlgo\":\"");
    out.push_str(HASHING_ALGO_SHA256);
    out.push_str("\",\"signingAlgo\":\"");
    out.push_str(SIGNING_ALGO_RSA2048);
    out.push_str("\"}");
    Ok(out)
}

/// A parsed, type-checked, not yet verified envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The payload object, members in received order.
    pub payload: Object,
    signature: Vec<u8>,
    hashing: HashAlgo,
    signing: SigningAlgo,
    /// The payload exactly as it appeared in the envelope text.
    raw_payload: String,
}

/// Parses an envelope and applies the type checks of noports.md §2.1.
///
/// Member order is irrelevant; unknown members are ignored.
///
/// # Errors
/// [`EnvelopeError::Json`] for malformed JSON; `NotAnObject`; `Missing`/`WrongType` naming
/// `payload` (must be an object) or `signature`/`hashingAlgo`/`signingAlgo` (must be strings);
/// `UnknownHashingAlgo`, `UnknownSigningAlgo`, `BadSignatureEncoding`.
pub fn parse(text: &str) -> Result<Envelope, EnvelopeError> {
    let (obj, spans) = json::parse_object_with_spans(text).map_err(|e| {
        if e.kind == json::JsonErrorKind::NotAnObject {
            EnvelopeError::NotAnObject
        } else {
            EnvelopeError::Json(e)
        }
    })?;

    let mut raw_payload = None;
    for ((key, _), span) in obj.iter().zip(spans) {
        if key == "payload" {
            raw_payload = text.get(span);
        }
    }

    let string = |name: &'static str| -> Result<&str, EnvelopeError> {
        match obj.get(name) {
            None => Err(EnvelopeError::Missing(name)),
            Some(Value::Str(s)) => Ok(s),
            Some(_) => Err(EnvelopeError::WrongType(name)),
        }
    };
    let payload = match obj.get("payload") {
        None => return Err(EnvelopeError::Missing("payload")),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(EnvelopeError::WrongType("payload")),
    };
    let signature = string("signature")?;
    let hashing =
        hash_algo_from_name(string("hashingAlgo")?).ok_or(EnvelopeError::UnknownHashingAlgo)?;
    let signing =
        SigningAlgo::from_name(string("signingAlgo")?).ok_or(EnvelopeError::UnknownSigningAlgo)?;
    let signature = b64::decode(signature).map_err(|_| EnvelopeError::BadSignatureEncoding)?;

    Ok(Envelope {
        raw_payload: raw_payload.map(str::to_owned).unwrap_or_default(),
        payload,
        signature,
        hashing,
        signing,
    })
}

impl Envelope {
    /// The decoded signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The `hashingAlgo` named by the envelope.
    pub fn hashing_algo(&self) -> HashAlgo {
        self.hashing
    }

    /// The `signingAlgo` named by the envelope.
    pub fn signing_algo(&self) -> SigningAlgo {
        self.signing
    }

    /// The payload text as it appeared inside the envelope.
    pub fn raw_payload(&self) -> &str {
        &self.raw_payload
    }

    /// Consumes the envelope and returns the payload.
    pub fn into_payload(self) -> Object {
        self.payload
    }

    /// Verifies the signature over the canonical re-serialization of the payload (what the
    /// Dart and C verifiers check), or failing that over the raw payload text.
    ///
    /// # Errors
    /// [`EnvelopeError::UnsupportedSigningAlgo`] for `ecc_secp256r1`;
    /// [`EnvelopeError::BadSignature`] when neither form verifies.
    pub fn verify(&self, key: &RsaPublicKey) -> Result<(), EnvelopeError> {
        let canonical = self.payload.to_json();
        let first = self.verify_message(key, canonical.as_bytes());
        if first.is_ok() || self.raw_payload.is_empty() || self.raw_payload == canonical {
            return first;
        }
        self.verify_message(key, self.raw_payload.as_bytes())
    }

    /// Verifies the envelope's signature over `message`, ignoring the payload. The relay uses
    /// this with its own serialization of the expected auth payload (noports.md §4.3).
    ///
    /// # Errors
    /// As [`Envelope::verify`].
    pub fn verify_message(&self, key: &RsaPublicKey, message: &[u8]) -> Result<(), EnvelopeError> {
        if self.signing == SigningAlgo::EccSecp256r1 {
            return Err(EnvelopeError::UnsupportedSigningAlgo);
        }
        if key.verify(self.hashing, message, &self.signature) {
            Ok(())
        } else {
            Err(EnvelopeError::BadSignature)
        }
    }
}

/// Parses and verifies an envelope in one step and returns its payload.
///
/// # Errors
/// Any [`parse`] or [`Envelope::verify`] error.
pub fn open(text: &str, key: &RsaPublicKey) -> Result<Object, EnvelopeError> {
    let env = parse(text)?;
    env.verify(key)?;
    Ok(env.into_payload())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(members: &str) -> String {
        format!("{{{members}}}")
    }

    #[test]
    fn parse_type_checks() {
        // b64::decode is a stub until crypto lands; only assert the checks that precede it.
        let cases: &[(String, EnvelopeError)] = &[
            (
                r#""signature":"x","hashingAlgo":"sha256","signingAlgo":"rsa2048""#.into(),
                EnvelopeError::Missing("payload"),
            ),
            (
                r#""payload":[],"signature":"x","hashingAlgo":"sha256","signingAlgo":"rsa2048""#
                    .into(),
                EnvelopeError::WrongType("payload"),
            ),
            (
                r#""payload":{},"signature":1,"hashingAlgo":"sha256","signingAlgo":"rsa2048""#
                    .into(),
                EnvelopeError::WrongType("signature"),
            ),
            (
                r#""payload":{},"signature":"x","hashingAlgo":"md5","signingAlgo":"rsa2048""#
                    .into(),
                EnvelopeError::UnknownHashingAlgo,
            ),
            (
                r#""payload":{},"signature":"x","hashingAlgo":"sha256","signingAlgo":"dsa""#.into(),
                EnvelopeError::UnknownSigningAlgo,
            ),
            (
                r#""payload":{},"signature":"x","signingAlgo":"rsa2048""#.into(),
                EnvelopeError::Missing("hashingAlgo"),
            ),
        ];
        for (members, want) in cases {
            assert_eq!(parse(&env(members)).err(), Some(*want), "{members}");
        }
        assert_eq!(parse("[]").err(), Some(EnvelopeError::NotAnObject));
    }
}
