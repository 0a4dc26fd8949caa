//! Typed builders for the atProtocol requests that onboarding and enrollment send
//! (atprotocol.md §4, §7.11–§7.12, §11). Each returns the command line without its `\n`; text
//! that is not ours (ids a server sent, key material) is refused when it holds a line break,
//! which would smuggle in a second command. JSON parameters go through `json/`, which escapes.
use std::time::Duration;

use super::atsign::AtSign;
use super::error::AtError;
use crate::json::{Object, Value};

/// `delete:privatekey:at_secret`: drops the CRAM secret once the first enrollment holds keys.
pub const DELETE_CRAM_SECRET: &str = "delete:privatekey:at_secret";

/// Refuses a line with a line break in it. Built with `concat`, not `format!`: these
/// builders are in the router build, where each format costs code.
fn one_line(line: String) -> Result<String, AtError> {
    if line.contains(['\n', '\r']) {
        return Err(AtError::Invalid("command contains a line break".into()));
    }
    Ok(line)
}

/// `from:@alice`: asks for the login challenge (§4.1).
pub fn from(atsign: &AtSign) -> String {
    ["from:", atsign.as_str()].concat()
}

/// `pkam:<sig>`, or its APKAM form naming the enrollment (§4.2).
///
/// # Errors
/// A line break in the signature or the enrollment id.
pub fn pkam(signature_b64: &str, enrollment_id: Option<&str>) -> Result<String, AtError> {
    one_line(match enrollment_id {
        Some(id) => [
            "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:",
            id,
            ":",
            signature_b64,
        ]
        .concat(),
        None => ["pkam:", signature_b64].concat(),
    })
}

/// `cram:<sha512 hex>` (§11.2).
pub fn cram(digest_hex: &str) -> Result<String, AtError> {
    one_line(["cram:", digest_hex].concat())
}

/// `lookup:publickey@alice`: the atSign's public encryption key.
pub fn lookup_public_key(atsign: &AtSign) -> String {
    ["lookup:publickey", atsign.as_str()].concat()
}

/// `update:isEncrypted:false:public:publickey@alice <spki>`: publishes the encryption key.
pub fn update_public_key(atsign: &AtSign, spki_b64: &str) -> Result<String, AtError> {
    one_line(
        [
            "update:isEncrypted:false:public:publickey",
            atsign.as_str(),
            " ",
            spki_b64,
        ]
        .concat(),
    )
}

/// `keys:get:keyName:<id>.<name>.__manage@alice`: a key the approver left for enrollment `id`.
pub fn keys_get(enrollment_id: &str, name: &str, atsign: &AtSign) -> Result<String, AtError> {
    one_line(
        [
            "keys:get:keyName:",
            enrollment_id,
            ".",
            name,
            ".__manage",
            atsign.as_str(),
        ]
        .concat(),
    )
}

/// The `enroll:` operations that carry a JSON body (§7.11).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EnrollOp {
    Request,
    Fetch,
    Approve,
    Deny,
    Revoke,
    Unrevoke,
    Delete,
}

impl EnrollOp {
    /// The operation's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollOp::Request => "request",
            EnrollOp::Fetch => "fetch",
            EnrollOp::Approve => "approve",
            EnrollOp::Deny => "deny",
            EnrollOp::Revoke => "revoke",
            EnrollOp::Unrevoke => "unrevoke",
            EnrollOp::Delete => "delete",
        }
    }
}

/// `enroll:<op>:<json>`.
pub fn enroll(op: EnrollOp, body: &Object) -> String {
    ["enroll:", op.as_str(), ":", &body.to_json()].concat()
}

/// `enroll:list`, or only the records in `status` (`enroll:list:{"enrollmentStatusFilter":[…]}`).
pub fn enroll_list(status: Option<&str>) -> String {
    match status {
        Some(s) => {
            let filter = Value::Array(vec![Value::Str(s.to_string())]);
            let body = Object::new().with("enrollmentStatusFilter", filter);
            ["enroll:list:", &body.to_json()].concat()
        }
        None => "enroll:list".to_string(),
    }
}

/// A semi-permanent passcode: 6 to 16 ASCII letters and digits (§7.12).
pub struct Spp<'a>(&'a str);

impl<'a> Spp<'a> {
    /// # Errors
    /// The passcode is too short, too long or not alphanumeric.
    pub fn parse(text: &'a str) -> Result<Spp<'a>, AtError> {
        if !(6..=16).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(AtError::Invalid(
                "SPP must be alphanumeric and 6 to 16 characters long".into(),
            ));
        }
        Ok(Spp(text))
    }
}

fn with_ttl(cmd: &str, ttl: Option<Duration>) -> String {
    match ttl {
        Some(t) => [cmd, ":ttl:", &t.as_millis().to_string()].concat(),
        None => cmd.to_string(),
    }
}

/// `otp:get[:ttl:<ms>]`: a one-time passcode for enrolling another device.
pub fn otp_get(ttl: Option<Duration>) -> String {
    with_ttl("otp:get", ttl)
}

/// `otp:put:<spp>[:ttl:<ms>]`: sets the semi-permanent passcode.
pub fn otp_put(spp: &Spp<'_>, ttl: Option<Duration>) -> String {
    with_ttl(&["otp:put:", spp.0].concat(), ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_verb() {
        let a = AtSign::parse("@alice").unwrap();
        assert_eq!(from(&a), "from:@alice");
        assert_eq!(pkam("c2ln", None).unwrap(), "pkam:c2ln");
        assert_eq!(
            pkam("c2ln", Some("e1")).unwrap(),
            "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:e1:c2ln"
        );
        assert_eq!(cram("ab").unwrap(), "cram:ab");
        assert_eq!(lookup_public_key(&a), "lookup:publickey@alice");
        assert_eq!(
            update_public_key(&a, "K").unwrap(),
            "update:isEncrypted:false:public:publickey@alice K"
        );
        assert_eq!(
            keys_get("e1", "default_self_enc_key", &a).unwrap(),
            "keys:get:keyName:e1.default_self_enc_key.__manage@alice"
        );
        let body = Object::new().with("enrollmentId", "e1");
        assert_eq!(
            enroll(EnrollOp::Unrevoke, &body),
            r#"enroll:unrevoke:{"enrollmentId":"e1"}"#
        );
        assert_eq!(enroll_list(None), "enroll:list");
        assert_eq!(
            enroll_list(Some("pending")),
            r#"enroll:list:{"enrollmentStatusFilter":["pending"]}"#
        );
        assert_eq!(otp_get(None), "otp:get");
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(otp_get(hour), "otp:get:ttl:3600000");
        let spp = Spp::parse("abc123").unwrap();
        assert_eq!(otp_put(&spp, hour), "otp:put:abc123:ttl:3600000");
    }

    /// The attack: an enrollment id (sent by the server) or a JSON value ending a line and
    /// starting a second command.
    #[test]
    fn refuses_line_breaks_and_bad_passcodes() {
        let a = AtSign::parse("@alice").unwrap();
        assert!(pkam("s", Some("e1\nscan")).is_err());
        assert!(pkam("s\r", None).is_err());
        assert!(keys_get("e1\n", "x", &a).is_err());
        assert!(update_public_key(&a, "K\ndelete:x").is_err());
        let body = Object::new().with("appName", "a\nscan");
        assert!(!enroll(EnrollOp::Request, &body).contains('\n'));
        assert!(!enroll_list(Some("x\"]}\nscan")).contains('\n'));
        for bad in ["abc12", "abcdefghijklmnopq", "abc 123", "abc12!", "ab\n123"] {
            assert!(Spp::parse(bad).is_err(), "{bad:?}");
        }
    }
}
