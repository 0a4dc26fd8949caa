//! Logging in on an open connection: `from:` then `pkam:` (atprotocol.md §4.1–§4.2) or
//! `cram:` (§11.2). The client's login (`client/login.rs`) and `at_activate`'s onboarding and
//! enrollment polling both go through here, before or without an `AtClient`.
use std::time::Duration;

use super::atsign::AtSign;
use super::conn::Connection;
use super::error::AtError;
use super::verbs;
use crate::crypto::rsa::{HashAlgo, RsaPrivateKey};
use crate::crypto::{b64, hash};

/// What the server said to `pkam:`: its answer, or its refusal as sent (`AtError::Server`
/// with the code, e.g. AT0026 for an enrollment not yet approved), so that callers can tell
/// a refusal from a failure before it.
pub type PkamAnswer = Result<String, AtError>;

/// Signs the `from:` challenge with `key` and sends `pkam:` (APKAM when `enrollment_id` is
/// given).
///
/// # Errors
/// The outer error: `from:` failed or the challenge could not be signed.
pub async fn pkam(
    conn: &mut Connection,
    atsign: &AtSign,
    key: &RsaPrivateKey,
    enrollment_id: Option<&str>,
    deadline: Duration,
) -> Result<PkamAnswer, AtError> {
    let challenge = conn.request(&verbs::from(atsign), deadline).await?;
    let sig = b64::encode(&key.sign(HashAlgo::Sha256, challenge.as_bytes())?);
    let cmd = verbs::pkam(&sig, enrollment_id)?;
    Ok(conn.request(&cmd, deadline).await)
}

/// `from:` then `cram:` with the digest of `secret` and the challenge.
///
/// # Errors
/// The outer error: `from:` failed; the inner one: the server refused the digest.
pub async fn cram(
    conn: &mut Connection,
    atsign: &AtSign,
    secret: &str,
    deadline: Duration,
) -> Result<Result<String, AtError>, AtError> {
    let challenge = conn.request(&verbs::from(atsign), deadline).await?;
    let digest = hash::sha512_hex(format!("{secret}{challenge}").as_bytes());
    let cmd = verbs::cram(&digest)?;
    Ok(conn.request(&cmd, deadline).await)
}
