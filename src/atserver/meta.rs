//! Key metadata (atprotocol.md §6): the wire fragment in its fixed order (§6.2), the JSON form
//! (§6.3) and the activity rules (§6.4). Also the clock and date formatting the server uses.
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json::ObjectWriter;

/// Milliseconds since the Unix epoch, UTC.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS.mmmZ` (§6.3), as the Dart server prints UTC dates.
pub(crate) fn format_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// The kind of value a wire metadata field carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `\d+`
    Unsigned,
    /// `-?\d+`, ≥ −1 (ttr)
    Signed,
    /// `true|false`
    Bool,
    /// `[^:@\s]+`
    Text,
}

/// The wire metadata fields in the only order the server grammar accepts (§6.2).
pub(crate) const FIELDS: [(&str, Kind); 16] = [
    ("ttl", Kind::Unsigned),
    ("ttb", Kind::Unsigned),
    ("ttr", Kind::Signed),
    ("ccd", Kind::Bool),
    ("dataSignature", Kind::Text),
    ("sharedKeyStatus", Kind::Text),
    ("isBinary", Kind::Bool),
    ("isEncrypted", Kind::Bool),
    ("sharedKeyEnc", Kind::Text),
    ("pubKeyCS", Kind::Text),
    ("encoding", Kind::Text),
    ("encKeyName", Kind::Text),
    ("encAlgo", Kind::Text),
    ("ivNonce", Kind::Text),
    ("skeEncKeyName", Kind::Text),
    ("skeEncAlgo", Kind::Text),
];

pub(crate) const TTL: usize = 0;
pub(crate) const TTB: usize = 1;
pub(crate) const TTR: usize = 2;
pub(crate) const CCD: usize = 3;
pub(crate) const IS_ENCRYPTED: usize = 7;
pub(crate) const SHARED_KEY_ENC: usize = 8;
pub(crate) const ENC_KEY_NAME: usize = 11;
pub(crate) const ENC_ALGO: usize = 12;
pub(crate) const IV_NONCE: usize = 13;
pub(crate) const SKE_ENC_KEY_NAME: usize = 14;
pub(crate) const SKE_ENC_ALGO: usize = 15;

/// Fields named in a request: `Some(None)` is an explicit `null` (clear), `Some(Some(v))` a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MetaPatch(pub [Option<Option<String>>; 16]);

impl MetaPatch {
    /// Parses as many `:<name>:<value>` fragments as `s` starts with, in the fixed order, and
    /// returns the patch and the unparsed rest (which starts with `:` or is empty).
    ///
    /// # Errors
    /// The name of a field whose value does not match its pattern.
    pub(crate) fn parse_prefix(mut s: &str) -> Result<(MetaPatch, &str), &'static str> {
        let mut patch = MetaPatch::default();
        for (i, (name, kind)) in FIELDS.iter().enumerate() {
            let Some(after) = strip_field(s, name) else {
                continue;
            };
            let end = after.find([':', ' ']).unwrap_or(after.len());
            let (value, rest) = after.split_at(end);
            patch.0[i] = Some(validate(value, *kind).map_err(|()| *name)?);
            s = rest;
        }
        Ok((patch, s))
    }

    /// The value given for field `i` (not cleared, not absent).
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i)?.as_ref()?.as_deref()
    }
}

/// `s` without a leading `:<name>:` (name matched case-insensitively).
fn strip_field<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(':')?;
    let head = rest.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    rest.get(name.len()..)?.strip_prefix(':')
}

fn validate(v: &str, kind: Kind) -> Result<Option<String>, ()> {
    if v.eq_ignore_ascii_case("null") && kind != Kind::Bool {
        return Ok(None);
    }
    let ok = match kind {
        Kind::Unsigned => {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<i64>().is_ok()
        }
        Kind::Signed => v.parse::<i64>().map(|n| n >= -1).unwrap_or(false),
        Kind::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        Kind::Text => {
            !v.is_empty() && !v.contains(|c: char| c == ':' || c == '@' || c.is_whitespace())
        }
    };
    if !ok {
        return Err(());
    }
    Ok(Some(if kind == Kind::Bool {
        v.to_ascii_lowercase()
    } else {
        v.to_string()
    }))
}

/// Stored metadata of a key: the wire fields plus server-maintained ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub fields: [Option<String>; 16],
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub available_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub refresh_at: Option<i64>,
    pub version: i64,
}

impl Meta {
    /// Metadata for a key being created or replaced now by `by`, starting from `old` (omitted
    /// fields keep their previous values, §6.4).
    pub(crate) fn updated(old: Option<&Meta>, patch: &MetaPatch, by: &str, now: i64) -> Meta {
        let mut m = match old {
            Some(o) => Meta {
                version: o.version + 1,
                updated_at: now,
                ..o.clone()
            },
            None => Meta {
                created_by: by.to_string(),
                created_at: now,
                updated_at: now,
                ..Meta::default()
            },
        };
        for (slot, p) in m.fields.iter_mut().zip(patch.0.iter()) {
            if let Some(v) = p {
                *slot = v.clone();
            }
        }
        m.recompute(now);
        m
    }

    /// Recomputes availableAt / expiresAt / refreshAt from ttb / ttl / ttr at `now`.
    pub(crate) fn recompute(&mut self, now: i64) {
        let ttb = self.int(TTB).filter(|n| *n > 0);
        let ttl = self.int(TTL).filter(|n| *n > 0);
        let ttr = self.int(TTR).filter(|n| *n > 0);
        self.available_at = ttb.map(|b| now.saturating_add(b));
        self.expires_at = ttl.map(|l| now.saturating_add(l).saturating_add(ttb.unwrap_or(0)));
        // The reference server counts ttr in seconds (§6.1, §15.3).
        self.refresh_at = ttr.map(|r| now.saturating_add(r.saturating_mul(1000)));
    }

    /// Field `i` as an integer.
    pub(crate) fn int(&self, i: usize) -> Option<i64> {
        self.fields.get(i)?.as_deref()?.parse().ok()
    }

    /// Field `i` as text.
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        self.fields.get(i)?.as_deref()
    }

    /// Field `i` is the word `true`.
    pub(crate) fn flag(&self, i: usize) -> bool {
        self.get(i) == Some("true")
    }

    /// Active: availableAt ≤ now ≤ expiresAt (§6.4).
    pub(crate) fn is_active(&self, now: i64) -> bool {
        self.available_at.is_none_or(|a| a <= now) && self.expires_at.is_none_or(|e| now <= e)
    }

    /// Past its expiry.
    pub(crate) fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| now > e)
    }

    /// The JSON object of §6.3 (null-valued fields removed).
    pub(crate) fn to_json(&self) -> String {
        let mut o = ObjectWriter::new()
            .str("createdBy", &self.created_by)
            .str("updatedBy", &self.created_by)
            .str("createdAt", &format_date(self.created_at))
            .str("updatedAt", &format_date(self.updated_at));
        if let Some(a) = self.available_at {
            o = o.str("availableAt", &format_date(a));
        }
        if let Some(e) = self.expires_at {
            o = o.str("expiresAt", &format_date(e));
        }
        if let Some(r) = self.refresh_at {
            o = o.str("refreshAt", &format_date(r));
        }
        o = o.str("status", "active").int("version", self.version);
        for (i, (name, kind)) in FIELDS.iter().enumerate() {
            let v = self.get(i);
            match kind {
                Kind::Unsigned | Kind::Signed => {
                    if let Some(n) = self.int(i) {
                        o = o.int(name, n);
                    }
                }
                Kind::Bool => {
                    if v.is_some() || i == 6 || i == IS_ENCRYPTED {
                        o = o.bool(name, v == Some("true"));
                    }
                }
                Kind::Text => o = o.some_str(name, v),
            }
        }
        o.end()
    }

    /// Serialises for the persistence log: `name=value` items.
    pub(crate) fn to_log_items(&self) -> Vec<String> {
        let mut items = vec![
            format!("createdBy={}", self.created_by),
            format!("createdAt={}", self.created_at),
            format!("updatedAt={}", self.updated_at),
            format!("version={}", self.version),
        ];
        for (name, v) in [
            ("availableAt", self.available_at),
            ("expiresAt", self.expires_at),
            ("refreshAt", self.refresh_at),
        ] {
            if let Some(v) = v {
                items.push(format!("{name}={v}"));
            }
        }
        for (i, (name, _)) in FIELDS.iter().enumerate() {
            if let Some(v) = self.get(i) {
                items.push(format!("{name}={v}"));
            }
        }
        items
    }

    /// Inverse of [`Meta::to_log_items`]; unknown items are ignored.
    pub(crate) fn from_log_items<'a>(items: impl Iterator<Item = &'a str>) -> Meta {
        let mut m = Meta::default();
        for item in items {
            let Some((k, v)) = item.split_once('=') else {
                continue;
            };
            let n = v.parse::<i64>().ok();
            match k {
                "createdBy" => m.created_by = v.to_string(),
                "createdAt" => m.created_at = n.unwrap_or(0),
                "updatedAt" => m.updated_at = n.unwrap_or(0),
                "version" => m.version = n.unwrap_or(0),
                "availableAt" => m.available_at = n,
                "expiresAt" => m.expires_at = n,
                "refreshAt" => m.refresh_at = n,
                _ => {
                    if let Some(i) = FIELDS.iter().position(|(name, _)| *name == k) {
                        m.fields[i] = Some(v.to_string());
                    }
                }
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_date(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(format_date(1_708_199_652_037), "2024-02-17 19:54:12.037Z");
    }

    #[test]
    fn parse_in_order() {
        let (p, rest) =
            MetaPatch::parse_prefix(":ttl:30000:isEncrypted:true:ivNonce:AAEC+/==:@bob:x@alice v")
                .unwrap();
        assert_eq!(p.get(TTL), Some("30000"));
        assert_eq!(p.get(IS_ENCRYPTED), Some("true"));
        assert_eq!(p.get(IV_NONCE), Some("AAEC+/=="));
        assert_eq!(rest, ":@bob:x@alice v");
    }

    #[test]
    fn wrong_order_leaves_rest() {
        // isEncrypted before ttl: ttl is not consumed, so the key parser sees ":ttl:..." and fails.
        let (_, rest) =
            MetaPatch::parse_prefix(":isEncrypted:true:ttl:30000:@bob:x@alice v").unwrap();
        assert_eq!(rest, ":ttl:30000:@bob:x@alice v");
    }

    #[test]
    fn bad_values() {
        assert_eq!(MetaPatch::parse_prefix(":ttl:-5:x@a v"), Err("ttl"));
        assert_eq!(MetaPatch::parse_prefix(":ttr:-2:x@a v"), Err("ttr"));
        assert_eq!(MetaPatch::parse_prefix(":ccd:yes:x@a v"), Err("ccd"));
        let (p, _) = MetaPatch::parse_prefix(":ttl:null:x@a v").unwrap();
        assert_eq!(p.0[TTL], Some(None));
    }

    #[test]
    fn activity() {
        let p = MetaPatch::parse_prefix(":ttl:100:ttb:50").unwrap().0;
        let m = Meta::updated(None, &p, "@a", 1000);
        assert!(!m.is_active(1049));
        assert!(m.is_active(1050));
        assert!(m.is_active(1150));
        assert!(!m.is_active(1151));
        let back = Meta::from_log_items(m.to_log_items().iter().map(String::as_str));
        assert_eq!(back, m);
    }
}
