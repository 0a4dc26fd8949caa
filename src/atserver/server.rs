//! The hosted atSigns: per-atSign state (key store + notification store + log), monitor
//! subscriptions, live APKAM sessions, and the in-process hub that delivers notifications and
//! answers cross-atSign lookups between atSigns hosted by this process (atprotocol.md §8).
//!
//! The sender a recipient sees is the atSign of the *authenticated connection* that sent it —
//! the in-process equivalent of the §4.4 `pol` proof — never the owner written in the key.
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use async_channel::Sender;

use super::key::{is_uncommitted, AtKey, Vis};
use super::meta::{now_ms, Meta, CCD, TTR};
use super::notify::{monitor_matches, Kind, NoteStore, Notification, Status};
use super::store::{put_record, replay_key_record, KeyStore, Log, Record};
use crate::at::regex::Pattern;

/// Seconds from accept to authentication (atSign ports) or per directory request.
const AUTH_TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(10);
/// Unauthenticated connections per address (IPv4, IPv6 /64).
const MAX_UNAUTH_PER_SOURCE_DEFAULT: usize = 32;

/// What a key looks like right now (§6.4).
pub(crate) enum Found<'a> {
    Absent,
    Inactive,
    Active(&'a Record),
}

/// Mutable state of one atSign. Every change is logged before it is applied (on disk before it
/// is acknowledged: `store::durable`).
pub(crate) struct State {
    pub keys: KeyStore,
    pub notes: NoteStore,
    log: Log,
    /// Records in the log file, live or superseded.
    log_records: usize,
}

/// Compact when the log holds more than this many records and 4× the live ones.
const COMPACT_MIN_RECORDS: usize = 20_000;

/// Every live record, as a compacted log.
fn snapshot(keys: &KeyStore, notes: &NoteStore) -> Vec<Vec<String>> {
    let mut v = vec![vec!["C".to_string(), keys.last_commit().to_string()]];
    v.extend(keys.iter().map(|(k, r)| put_record(k, r)));
    v.extend(notes.iter().map(Notification::to_log));
    v
}

impl State {
    /// Replays `dir/log`, drops expired entries and compacts the log.
    ///
    /// # Errors
    /// I/O errors opening, reading or rewriting the log.
    pub(crate) fn open(dir: &Path) -> io::Result<State> {
        let (mut log, records) = Log::open(&dir.join("log"))?;
        let mut keys = KeyStore::default();
        let mut notes = NoteStore::default();
        for r in &records {
            if replay_key_record(&mut keys, r) {
                continue;
            }
            match r.first().map(String::as_str) {
                Some("N") => {
                    if let Some(n) = Notification::from_log(&r[1..]) {
                        notes.put(n);
                    }
                }
                Some("S") if r.len() >= 3 => notes.set_status(
                    &r[1],
                    if r[2] == "delivered" {
                        Status::Delivered
                    } else {
                        Status::Errored
                    },
                ),
                Some("R") if r.len() >= 2 => {
                    notes.remove(&r[1]);
                }
                _ => log::warn!("{}: skipping unreadable log record", dir.display()),
            }
        }
        let now = now_ms();
        keys.sweep(now);
        notes.sweep(now);
        let compact = snapshot(&keys, &notes);
        log.rewrite(&compact)?;
        Ok(State {
            keys,
            notes,
            log,
            log_records: compact.len(),
        })
    }

    /// Counts a log append and compacts the log when mostly superseded records remain.
    fn after_write(&mut self) {
        self.log_records += 1;
        let live = self.keys.len() + self.notes.len();
        if self.log_records > COMPACT_MIN_RECORDS && self.log_records > 4 * live {
            let compact = snapshot(&self.keys, &self.notes);
            match self.log.rewrite(&compact) {
                Ok(()) => self.log_records = compact.len(),
                Err(e) => log::warn!("log compaction failed (the old log stays): {e}"),
            }
        }
    }

    /// Looks a stored key up with the activity rules.
    pub(crate) fn find(&self, key: &str, now: i64) -> Found<'_> {
        match self.keys.get(key) {
            None => Found::Absent,
            Some(r) if r.meta.is_expired(now) => Found::Absent,
            Some(r) if !r.meta.is_active(now) => Found::Inactive,
            Some(r) => Found::Active(r),
        }
    }

    /// The value of an active key.
    pub(crate) fn value(&self, key: &str) -> Option<String> {
        match self.find(key, now_ms()) {
            Found::Active(r) => Some(r.value.clone()),
            _ => None,
        }
    }

    /// Stores `value` under `key` with `meta`; returns the commit id (−1 when uncommitted).
    ///
    /// # Errors
    /// The log write failed; nothing changed.
    pub(crate) fn put(&mut self, key: &str, value: String, meta: Meta) -> io::Result<i64> {
        let commit = if is_uncommitted(key) {
            -1
        } else {
            self.keys.next_commit()
        };
        let rec = Record {
            value,
            meta,
            commit,
        };
        self.log.append(&put_record(key, &rec))?;
        self.keys.insert(key.to_string(), rec);
        self.after_write();
        Ok(commit)
    }

    /// Stores a server-internal value with fresh metadata and an optional ttl.
    pub(crate) fn put_simple(
        &mut self,
        key: &str,
        value: &str,
        by: &str,
        ttl_ms: Option<i64>,
    ) -> io::Result<i64> {
        let now = now_ms();
        let mut meta = Meta::updated(
            self.keys.get(key).map(|r| &r.meta),
            &Default::default(),
            by,
            now,
        );
        meta.fields[super::meta::TTL] = ttl_ms.filter(|t| *t > 0).map(|t| t.to_string());
        meta.recompute(now);
        self.put(key, value.to_string(), meta)
    }

    /// Deletes `key`; returns the commit id (also when it did not exist).
    ///
    /// # Errors
    /// The log write failed; nothing changed.
    pub(crate) fn delete(&mut self, key: &str) -> io::Result<i64> {
        let commit = if is_uncommitted(key) {
            -1
        } else {
            self.keys.next_commit()
        };
        self.log
            .append(&["D".to_string(), commit.to_string(), key.to_string()])?;
        self.keys.remove(key, commit);
        self.after_write();
        Ok(commit)
    }

    /// Stores (or replaces) a notification.
    ///
    /// # Errors
    /// The log write failed.
    pub(crate) fn save_note(&mut self, n: Notification) -> io::Result<()> {
        self.log.append(&n.to_log())?;
        self.notes.put(n);
        self.after_write();
        Ok(())
    }

    /// Records the delivery outcome of a sent notification.
    pub(crate) fn set_note_status(&mut self, id: &str, status: Status) -> io::Result<()> {
        self.log.append(&["S", id, status.as_str()])?;
        self.notes.set_status(id, status);
        self.after_write();
        Ok(())
    }

    /// Removes a notification.
    pub(crate) fn remove_note(&mut self, id: &str) -> io::Result<()> {
        self.log.append(&["R", id])?;
        self.notes.remove(id);
        self.after_write();
        Ok(())
    }

    /// Drops expired keys and notifications from memory (the log forgets them at next start).
    pub(crate) fn sweep(&mut self) {
        let now = now_ms();
        self.keys.sweep(now);
        self.notes.sweep(now);
    }
}

/// A live `monitor` subscription.
pub(crate) struct Monitor {
    pub tx: Sender<Vec<u8>>,
    pub re: Pattern,
    pub self_notes: bool,
    /// Enrollment namespaces of an APKAM connection (read check, §11.7); `None` = full access.
    pub namespaces: Option<Vec<(String, String)>>,
}

/// One hosted atSign.
pub(crate) struct AtServer {
    /// `@alice`
    pub atsign: String,
    state: Mutex<State>,
    monitors: Mutex<Vec<Monitor>>,
    /// Outbound queues of APKAM-authenticated connections, by enrollment id (closed on revoke).
    sessions: Mutex<Vec<(String, Sender<Vec<u8>>)>>,
    /// Listener port, set once bound.
    pub port: std::sync::atomic::AtomicU16,
    /// Signed `pol` proofs we publish as `public:<session>` for 60 s (§4.4), in memory only.
    proofs: Mutex<HashMap<String, (String, i64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AtServer {
    /// Opens the atSign's state from `dir`.
    ///
    /// # Errors
    /// Replay errors from [`State::open`].
    pub(crate) fn open(atsign: &str, dir: &Path) -> io::Result<AtServer> {
        Ok(AtServer {
            atsign: atsign.to_string(),
            state: Mutex::new(State::open(dir)?),
            monitors: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            port: std::sync::atomic::AtomicU16::new(0),
            proofs: Mutex::new(HashMap::new()),
        })
    }

    /// Locks the state. Never hold the guard across an `.await` or while locking another atSign.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Publishes a signed proof `public:<session>` (session = `_<id>@me`) for 60 s.
    pub(crate) fn add_proof(&self, session: &str, signature_b64: String) {
        let now = now_ms();
        let mut p = lock(&self.proofs);
        p.retain(|_, (_, exp)| *exp >= now);
        p.insert(
            session.to_ascii_lowercase(),
            (signature_b64, now + super::peer::PROOF_TTL_MS),
        );
    }

    /// The published proof signature for `session`, while fresh.
    pub(crate) fn proof(&self, session: &str) -> Option<String> {
        let now = now_ms();
        lock(&self.proofs)
            .get(&session.to_ascii_lowercase())
            .filter(|(_, exp)| *exp >= now)
            .map(|(s, _)| s.clone())
    }

    /// Drops the monitors and APKAM sessions of connections that have ended (each holds a
    /// compiled regex and a queue), so a burst that is over does not stay in memory until the
    /// next notification for this atSign.
    pub(crate) fn forget_closed(&self) {
        lock(&self.monitors).retain(|m| !m.tx.is_closed());
        lock(&self.sessions).retain(|(_, t)| !t.is_closed());
    }

    /// Adds a monitor subscription.
    pub(crate) fn add_monitor(&self, m: Monitor) {
        let mut ms = lock(&self.monitors);
        ms.retain(|m| !m.tx.is_closed());
        ms.push(m);
    }

    /// Pushes a stored notification to every matching monitor (§8.3).
    pub(crate) fn push(&self, n: &Notification) {
        let line = format!("notification: {}\n", n.to_json(false)).into_bytes();
        let mut ms = lock(&self.monitors);
        ms.retain(|m| !m.tx.is_closed());
        for m in ms.iter() {
            if n.kind == Kind::SelfNote && !m.self_notes {
                continue;
            }
            if !monitor_matches(&m.re, n) {
                continue;
            }
            if let Some(ns) = &m.namespaces {
                let readable = AtKey::parse(&n.key)
                    .map(|k| super::scope::ns_allows(ns, &k, false, true))
                    .unwrap_or(false);
                if !readable {
                    continue;
                }
            }
            if m.tx.try_send(line.clone()).is_err() {
                log::warn!(
                    "{}: monitor queue full or closed, dropping the connection",
                    self.atsign
                );
                m.tx.close();
            }
        }
    }

    /// Remembers an APKAM connection so revocation can close it.
    pub(crate) fn add_session(&self, enrollment_id: &str, tx: Sender<Vec<u8>>) {
        let mut ss = lock(&self.sessions);
        ss.retain(|(_, t)| !t.is_closed());
        ss.push((enrollment_id.to_string(), tx));
    }

    /// Closes every live connection of an enrollment.
    pub(crate) fn close_sessions(&self, enrollment_id: &str) {
        for (id, tx) in lock(&self.sessions).iter() {
            if id == enrollment_id {
                tx.close();
            }
        }
    }

    /// Stores a received notification, applies the §7.7 caching side effects, and pushes it to
    /// monitors. `n.from` must already be the verified sender.
    pub(crate) fn receive(&self, n: Notification) -> io::Result<()> {
        {
            let mut st = self.state();
            if !n.text {
                if let Ok(k) = AtKey::parse(&n.key) {
                    if matches!(k.vis, Vis::Shared(_) | Vis::Public)
                        && k.owner.as_deref() == Some(n.from.as_str())
                    {
                        let cached = format!("cached:{}", k.stored());
                        let ttr = n.meta[TTR]
                            .as_deref()
                            .and_then(|t| t.parse::<i64>().ok())
                            .unwrap_or(0);
                        if n.delete {
                            let ccd = st.keys.get(&cached).is_some_and(|r| r.meta.flag(CCD));
                            if ccd {
                                st.delete(&cached)?;
                            }
                        } else if ttr != 0 {
                            if let Some(v) = &n.value {
                                let now = now_ms();
                                let mut patch = super::meta::MetaPatch::default();
                                for (p, m) in patch.0.iter_mut().zip(n.meta.iter()) {
                                    *p = m.clone().map(Some);
                                }
                                let meta = Meta::updated(
                                    st.keys.get(&cached).map(|r| &r.meta),
                                    &patch,
                                    &n.from,
                                    now,
                                );
                                st.put(&cached, v.clone(), meta)?;
                            }
                        }
                    }
                }
            }
            st.save_note(n.clone())?;
        }
        self.push(&n);
        Ok(())
    }
}

impl super::peer::LocalAtSign for AtServer {
    fn atsign(&self) -> &str {
        &self.atsign
    }
    fn signing_key(&self) -> Option<String> {
        self.state()
            .value(&format!("{0}:signing_privatekey{0}", self.atsign))
    }
    fn add_proof(&self, session: &str, signature_b64: String) {
        AtServer::add_proof(self, session, signature_b64);
    }
}

/// Every atSign hosted by this process.
pub(crate) struct Hub {
    servers: HashMap<String, Arc<AtServer>>,
    /// Host name or IP the directory hands out.
    pub host: String,
    /// Open connections (all listeners), for the inbound limit (§2.6).
    pub connections: AtomicUsize,
    pub max_connections: usize,
    /// Open connections, oldest first, for evicting unauthenticated ones at the limit.
    pub registry: std::sync::Mutex<std::collections::VecDeque<super::conn::ConnEntry>>,
    pub next_conn: std::sync::atomic::AtomicU64,
    pub last_evict_log: std::sync::atomic::AtomicI64,
    /// Buffered request input of all connections (§2.2 limit aside).
    pub input: Arc<super::conn::InputBudget>,
    pub unauth_idle: std::time::Duration,
    /// An atSign connection must authenticate this soon after it is accepted, and a directory
    /// request must be complete this soon after the previous answer (slow senders included).
    pub auth_timeout: std::time::Duration,
    /// Unauthenticated connections one address (IPv4, IPv6 /64) may hold; beyond it its oldest goes.
    pub max_unauth_per_source: usize,
    pub started_ms: i64,
    /// Outbound federation: peer directories, connection pool, delivery settings.
    pub peers: super::peer::Peers,
}

impl Hub {
    pub(crate) fn new(
        servers: Vec<Arc<AtServer>>,
        host: String,
        max_connections: usize,
        unauth_idle: std::time::Duration,
    ) -> Hub {
        Hub {
            servers: servers.into_iter().map(|s| (s.atsign.clone(), s)).collect(),
            host,
            connections: AtomicUsize::new(0),
            max_connections,
            registry: Default::default(),
            next_conn: Default::default(),
            last_evict_log: Default::default(),
            input: super::conn::InputBudget::new(super::conn::INPUT_BUDGET),
            unauth_idle,
            auth_timeout: AUTH_TIMEOUT_DEFAULT,
            max_unauth_per_source: MAX_UNAUTH_PER_SOURCE_DEFAULT,
            started_ms: now_ms(),
            peers: super::peer::Peers::default(),
        }
    }

    /// The hosted atSign `@name`, if any.
    pub(crate) fn get(&self, atsign: &str) -> Option<&Arc<AtServer>> {
        self.servers.get(atsign)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<AtServer>> {
        self.servers.values()
    }

    /// Stores a sent notification on `sender`, delivers it in-process to its recipient, and
    /// records the outcome. Recipients hosted elsewhere stay `queued` for the delivery task
    /// (`delivery.rs`); without `--peer-root` they are `errored` at once.
    ///
    /// # Errors
    /// The sender's log write failed (the notification was not accepted).
    pub(crate) fn send(&self, sender: &AtServer, n: Notification) -> io::Result<()> {
        sender.state().save_note(n.clone())?;
        let status = match self.get(&n.to) {
            Some(rcpt) => {
                let received = Notification {
                    kind: Kind::Received,
                    status: Status::Delivered,
                    epoch: now_ms(),
                    from: sender.atsign.clone(),
                    ..n.clone()
                };
                match rcpt.receive(received) {
                    Ok(()) => Status::Delivered,
                    Err(e) => {
                        log::error!(
                            "{}: storing notification from {}: {e}",
                            rcpt.atsign,
                            sender.atsign
                        );
                        Status::Errored
                    }
                }
            }
            None if self.peers.enabled() => {
                let _ = self.peers.wake.0.try_send(());
                return Ok(());
            }
            None => {
                log::warn!(
                    "{}: cannot deliver notification {} to {}: not hosted here and no --peer-root",
                    sender.atsign,
                    n.id,
                    n.to
                );
                Status::Errored
            }
        };
        sender.state().set_note_status(&n.id, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("atserver-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut st = State::open(&dir).unwrap();
            assert_eq!(st.put_simple("x.ns@a", "1", "@a", None).unwrap(), 1);
            assert_eq!(st.put_simple("y.ns@a", "2", "@a", None).unwrap(), 2);
            assert_eq!(st.put_simple("private:p@a", "3", "@a", None).unwrap(), -1);
            assert_eq!(st.delete("y.ns@a").unwrap(), 3);
            assert_eq!(st.put_simple("gone.ns@a", "4", "@a", Some(1)).unwrap(), 4);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut st = State::open(&dir).unwrap();
        assert_eq!(st.value("x.ns@a").as_deref(), Some("1"));
        assert!(st.value("y.ns@a").is_none());
        assert!(
            st.keys.get("gone.ns@a").is_none(),
            "expired keys are dropped at start"
        );
        assert_eq!(
            st.put_simple("z.ns@a", "5", "@a", None).unwrap(),
            5,
            "commit ids continue"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
