//! Monitor notifications (atprotocol.md §8.3) and their metadata.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::atsign::AtSign;
use super::error::AtError;

/// A notification as received, value already decrypted when it was encrypted.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: String,
    /// The authenticated sender (set by the recipient's atServer, not parsed from the key).
    pub from: AtSign,
    pub to: AtSign,
    /// The full key as received, e.g. `@relay:dev1.request_ports.sshrvd@client`.
    pub key: String,
    pub value: Option<String>,
    pub operation: String,
    pub epoch_millis: i64,
    /// From a sealed monitor ([`super::AtClient::monitor_sealed`]): `value` is still the
    /// ciphertext, to be opened with [`super::AtClient::unseal`] once the sender is trusted.
    pub sealed: Option<Sealed>,
    /// Whether the value came encrypted for us with the sender's shared key. Only such values
    /// are the sender's word: an atServer on the way can write a clear value under any sender's
    /// name, so a value that matters is taken only when this is true.
    pub encrypted: bool,
}

/// What opening a sealed value needs (the notification metadata).
#[derive(Debug, Clone, Default)]
pub struct Sealed {
    pub iv: Option<String>,
    pub shared_key_enc: Option<String>,
}

impl Notification {
    /// The key without the `@to:` prefix and the `@from` suffix: `dev1.request_ports.sshrvd`.
    pub fn key_name(&self) -> &str {
        let k = self.key.as_str();
        let k = k
            .strip_prefix(self.to.as_str())
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or(k);
        let k = k.strip_prefix("public:").unwrap_or(k);
        k.strip_suffix(self.from.as_str()).unwrap_or(k)
    }
}

#[allow(non_snake_case)]
mod wire {
    use miniserde::Deserialize;
    #[derive(Deserialize)]
    pub(crate) struct RawMeta {
        pub ivNonce: Option<String>,
        pub sharedKeyEnc: Option<String>,
    }

    #[derive(Deserialize)]
    pub(crate) struct RawNotification {
        pub id: String,
        pub from: String,
        pub to: String,
        pub key: String,
        pub value: Option<String>,
        pub operation: Option<String>,
        pub epochMillis: Option<i64>,
        pub isEncrypted: Option<bool>,
        pub metadata: Option<RawMeta>,
    }
}
pub(crate) use wire::RawNotification;

impl RawNotification {
    pub fn parse(json: &str) -> Result<RawNotification, AtError> {
        miniserde::json::from_str(json).map_err(|_| {
            let shown: String = json.chars().take(120).collect();
            AtError::Malformed(format!("notification is not the expected JSON: {shown}"))
        })
    }
}

/// Parse a monitor line's JSON far enough to route it; returns the notification id.
/// Public for the fuzz targets: hostile input must give an error, never a panic.
pub fn parse_notification_id(json: &str) -> Result<String, AtError> {
    RawNotification::parse(json).map(|n| n.id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_live_and_stats_notifications() {
        let live = r#"{"id":"0f6","from":"@bob","to":"@alice","key":"@alice:ssh_request.router1.sshnp@bob","value":"hTq=","operation":"update","epochMillis":1729764001234,"messageType":"MessageType.key","isEncrypted":true,"metadata":{"encKeyName":null,"encAlgo":null,"ivNonce":"3q==","skeEncKeyName":null,"skeEncAlgo":null,"sharedKeyEnc":"Lk=="}}"#;
        let n = RawNotification::parse(live).unwrap();
        assert_eq!(n.id, "0f6");
        assert_eq!(n.metadata.unwrap().ivNonce.as_deref(), Some("3q=="));
        let stats = r#"{"id":"-1","from":"@alice","to":"@alice","key":"statsNotification.@alice","value":"17","operation":"update","epochMillis":1729764000000,"messageType":"MessageType.key","isEncrypted":false,"metadata":null}"#;
        assert!(RawNotification::parse(stats).unwrap().metadata.is_none());
        assert!(RawNotification::parse("{").is_err());
        assert!(RawNotification::parse("[]").is_err());
    }

    #[test]
    fn key_name_strips_both_ends() {
        let n = Notification {
            id: "1".into(),
            from: AtSign::parse("@client").unwrap(),
            to: AtSign::parse("@relay").unwrap(),
            key: "@relay:dev1.request_ports.sshrvd@client".into(),
            value: None,
            operation: "update".into(),
            epoch_millis: 0,
            sealed: None,
            encrypted: false,
        };
        assert_eq!(n.key_name(), "dev1.request_ports.sshrvd");
    }
}
