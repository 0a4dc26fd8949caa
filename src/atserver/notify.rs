//! Notifications (atprotocol.md §8): the stored record, its monitor JSON (live and replay
//! variants, §8.3), the per-atSign notification store and monitor subscriptions.
use std::collections::{BTreeMap, HashMap};

use super::meta::{
    format_date, ENC_ALGO, ENC_KEY_NAME, FIELDS, IV_NONCE, SHARED_KEY_ENC, SKE_ENC_ALGO,
    SKE_ENC_KEY_NAME,
};
use crate::at::regex::Pattern;
use crate::json::ObjectWriter;

/// Default notification lifetime when no `ttln` is sent: the shipped `expiryInMins: 15` (§8.4).
pub(crate) const DEFAULT_TTLN_MS: i64 = 15 * 60 * 1000;
/// Stored notifications kept per atSign; the oldest go first.
const MAX_STORED: usize = 50_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sent,
    Received,
    SelfNote,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Queued,
    Delivered,
    Errored,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Delivered => "delivered",
            Status::Errored => "errored",
        }
    }
    fn parse(s: &str) -> Status {
        match s {
            "delivered" => Status::Delivered,
            "errored" => Status::Errored,
            _ => Status::Queued,
        }
    }
}

/// One stored notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notification {
    pub id: String,
    pub from: String,
    pub to: String,
    /// Full notification key, e.g. `@bob:ping.mydev.sshnp@alice`.
    pub key: String,
    pub value: Option<String>,
    pub delete: bool,
    pub epoch: i64,
    pub text: bool,
    pub is_encrypted: bool,
    /// Key metadata as sent (§6.2 field order).
    pub meta: [Option<String>; 16],
    pub kind: Kind,
    pub status: Status,
    pub expires_at: i64,
}

impl Notification {
    /// The `notification: {…}` JSON; `replay` selects the §8.3 replay metadata variant.
    pub(crate) fn to_json(&self, replay: bool) -> String {
        let m = |i: usize| self.meta.get(i).and_then(|v| v.as_deref());
        let mut meta = ObjectWriter::new()
            .opt_str("encKeyName", m(ENC_KEY_NAME))
            .opt_str("encAlgo", m(ENC_ALGO))
            .opt_str("ivNonce", m(IV_NONCE))
            .opt_str("skeEncKeyName", m(SKE_ENC_KEY_NAME))
            .opt_str("skeEncAlgo", m(SKE_ENC_ALGO));
        if replay {
            meta = meta
                .str("availableAt", "null")
                .str("expiresAt", &format_date(self.expires_at));
        } else {
            meta = meta.opt_str("sharedKeyEnc", m(SHARED_KEY_ENC));
        }
        ObjectWriter::new()
            .str("id", &self.id)
            .str("from", &self.from)
            .str("to", &self.to)
            .str("key", &self.key)
            .opt_str("value", self.value.as_deref())
            .str("operation", if self.delete { "delete" } else { "update" })
            .int("epochMillis", self.epoch)
            .str(
                "messageType",
                if self.text {
                    "MessageType.text"
                } else {
                    "MessageType.key"
                },
            )
            .bool("isEncrypted", self.is_encrypted)
            .raw("metadata", &meta.end())
            .end()
    }

    /// `notify:fetch` JSON (§7.8), values stringified.
    pub(crate) fn to_fetch_json(&self) -> String {
        let kind = match self.kind {
            Kind::Sent => "NotificationType.sent",
            Kind::Received => "NotificationType.received",
            Kind::SelfNote => "NotificationType.self",
        };
        ObjectWriter::new()
            .str("id", &self.id)
            .str("fromAtSign", &self.from)
            .str("notificationDateTime", &format_date(self.epoch))
            .str("toAtSign", &self.to)
            .str("notification", &self.key)
            .str("type", kind)
            .str(
                "opType",
                if self.delete {
                    "OperationType.delete"
                } else {
                    "OperationType.update"
                },
            )
            .str(
                "messageType",
                if self.text {
                    "MessageType.text"
                } else {
                    "MessageType.key"
                },
            )
            .str("priority", "NotificationPriority.low")
            .str(
                "notificationStatus",
                &format!("NotificationStatus.{}", self.status.as_str()),
            )
            .str("retryCount", "0")
            .str("strategy", "all")
            .str("notifier", "SYSTEM")
            .str("expiresAt", &format_date(self.expires_at))
            .some_str("atValue", self.value.as_deref())
            .end()
    }

    /// Log items (`name=value`).
    pub(crate) fn to_log(&self) -> Vec<String> {
        let mut v = vec![
            "N".to_string(),
            format!("id={}", self.id),
            format!("from={}", self.from),
            format!("to={}", self.to),
            format!("key={}", self.key),
            format!("op={}", if self.delete { "delete" } else { "update" }),
            format!("epoch={}", self.epoch),
            format!("mt={}", if self.text { "text" } else { "key" }),
            format!("enc={}", self.is_encrypted),
            format!(
                "kind={}",
                match self.kind {
                    Kind::Sent => "sent",
                    Kind::Received => "received",
                    Kind::SelfNote => "self",
                }
            ),
            format!("status={}", self.status.as_str()),
            format!("exp={}", self.expires_at),
        ];
        if let Some(val) = &self.value {
            v.push(format!("value={val}"));
        }
        for (i, (name, _)) in FIELDS.iter().enumerate() {
            if let Some(x) = self.meta.get(i).and_then(|m| m.as_deref()) {
                v.push(format!("m.{name}={x}"));
            }
        }
        v
    }

    /// Inverse of [`Notification::to_log`] (fields after the `N`).
    pub(crate) fn from_log(items: &[String]) -> Option<Notification> {
        let mut n = Notification {
            id: String::new(),
            from: String::new(),
            to: String::new(),
            key: String::new(),
            value: None,
            delete: false,
            epoch: 0,
            text: false,
            is_encrypted: false,
            meta: Default::default(),
            kind: Kind::Received,
            status: Status::Queued,
            expires_at: 0,
        };
        for it in items {
            let (k, v) = it.split_once('=')?;
            match k {
                "id" => n.id = v.to_string(),
                "from" => n.from = v.to_string(),
                "to" => n.to = v.to_string(),
                "key" => n.key = v.to_string(),
                "value" => n.value = Some(v.to_string()),
                "op" => n.delete = v == "delete",
                "epoch" => n.epoch = v.parse().ok()?,
                "mt" => n.text = v == "text",
                "enc" => n.is_encrypted = v == "true",
                "kind" => {
                    n.kind = match v {
                        "sent" => Kind::Sent,
                        "self" => Kind::SelfNote,
                        _ => Kind::Received,
                    }
                }
                "status" => n.status = Status::parse(v),
                "exp" => n.expires_at = v.parse().ok()?,
                _ => {
                    if let Some(name) = k.strip_prefix("m.") {
                        if let Some(i) = FIELDS.iter().position(|(f, _)| *f == name) {
                            n.meta[i] = Some(v.to_string());
                        }
                    }
                }
            }
        }
        (!n.id.is_empty()).then_some(n)
    }
}

/// The notifications of one atSign, in storage order.
#[derive(Default)]
pub(crate) struct NoteStore {
    by_seq: BTreeMap<u64, Notification>,
    seq_of: HashMap<(bool, String), u64>,
    next: u64,
}

impl NoteStore {
    fn slot(n: &Notification) -> (bool, String) {
        (n.kind == Kind::Sent, n.id.clone())
    }

    /// Inserts or replaces (same id and direction) a notification at the end.
    pub(crate) fn put(&mut self, n: Notification) {
        let slot = Self::slot(&n);
        if let Some(old) = self.seq_of.remove(&slot) {
            self.by_seq.remove(&old);
        }
        self.next += 1;
        self.seq_of.insert(slot, self.next);
        self.by_seq.insert(self.next, n);
        while self.by_seq.len() > MAX_STORED {
            let Some((_, first)) = self.by_seq.pop_first() else {
                break;
            };
            self.seq_of.remove(&Self::slot(&first));
        }
    }

    /// Finds a notification by id, preferring sent ones (what `notify:status` asks about).
    pub(crate) fn get(&self, id: &str) -> Option<&Notification> {
        [true, false].iter().find_map(|sent| {
            self.seq_of
                .get(&(*sent, id.to_string()))
                .and_then(|s| self.by_seq.get(s))
        })
    }

    pub(crate) fn set_status(&mut self, id: &str, status: Status) {
        if let Some(s) = self.seq_of.get(&(true, id.to_string())) {
            if let Some(n) = self.by_seq.get_mut(s) {
                n.status = status;
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let mut any = false;
        for sent in [true, false] {
            if let Some(s) = self.seq_of.remove(&(sent, id.to_string())) {
                self.by_seq.remove(&s);
                any = true;
            }
        }
        any
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Notification> {
        self.by_seq.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Drops expired notifications.
    pub(crate) fn sweep(&mut self, now: i64) {
        let dead: Vec<(u64, (bool, String))> = self
            .by_seq
            .iter()
            .filter(|(_, n)| n.expires_at < now)
            .map(|(s, n)| (*s, Self::slot(n)))
            .collect();
        for (s, slot) in dead {
            self.by_seq.remove(&s);
            self.seq_of.remove(&slot);
        }
    }
}

/// Does a monitor with `regex` want this notification (key or sender without `@`, §7.9)?
pub(crate) fn monitor_matches(re: &Pattern, n: &Notification) -> bool {
    re.is_match(&n.key) || re.is_match(n.from.trim_start_matches('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        let mut meta: [Option<String>; 16] = Default::default();
        meta[IV_NONCE] = Some("AAEC".into());
        Notification {
            id: "n1".into(),
            from: "@alice".into(),
            to: "@bob".into(),
            key: "@bob:ping.sshnp@alice".into(),
            value: Some("x\ty".into()),
            delete: false,
            epoch: 5,
            text: false,
            is_encrypted: true,
            meta,
            kind: Kind::Received,
            status: Status::Delivered,
            expires_at: 100,
        }
    }

    #[test]
    fn json_and_log() {
        let n = sample();
        let j = n.to_json(false);
        assert!(j.starts_with(r#"{"id":"n1","from":"@alice","to":"@bob","key":"@bob:ping.sshnp@alice","value":"x\ty","operation":"update","epochMillis":5,"#));
        assert!(j.contains(r#""ivNonce":"AAEC""#));
        assert!(j.contains(r#""sharedKeyEnc":null"#));
        assert!(!n.to_json(true).contains("sharedKeyEnc"));
        let back = Notification::from_log(&n.to_log()[1..]).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn store_overwrite_and_sweep() {
        let mut s = NoteStore::default();
        s.put(sample());
        s.put(sample());
        assert_eq!(s.iter().count(), 1);
        s.sweep(101);
        assert!(s.get("n1").is_none());
    }
}
