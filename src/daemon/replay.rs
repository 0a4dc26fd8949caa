//! The daemon's replay memory: session ids already served, so a replayed request (the same
//! signed envelope delivered again) is refused, across restarts too.
//!
//! Kept in RAM and appended to `$HOME/.sshnp/<device>/seen_requests` one line per request
//! (`<unix seconds> <session id>`, under 60 bytes); the file is rewritten with only the live
//! entries when the daemon starts and after every `COMPACT_AFTER` appends. On a router
//! `$HOME` is on flash: the old design rewrote the whole file (~197 KB at 4,096 ids) with an
//! fsync for each request, which a hostile but allowed client could use to wear it out. The
//! appends are not fsynced: a daemon restart (procd respawn) keeps the page cache; only a
//! power cut can lose the last lines.
//!
//! A request of ours carries a signed `requestedAt` (unix milliseconds): it is accepted only
//! within [`ACCEPT_PAST`] before and [`ACCEPT_FUTURE`] after the daemon's clock, a span inside
//! the time an id is remembered, so a request too old to be remembered is refused by its date.
//! When the memory is full and an id still inside the window must be forgotten, requests
//! dated before that id was seen are refused too. Official clients send no date: for them the
//! id memory alone stands (docs/protocol-notes.md).
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::noports::names::valid_session_id;

/// How long a served session id is remembered: well past the notification lifetime (60 s).
pub(super) const REPLAY_WINDOW: Duration = Duration::from_secs(600);
/// Most remembered session ids (oldest dropped first): bounds memory and the file.
const MAX_SEEN: usize = 4096;
/// How old a dated request may be: the replay window less the clock difference allowed the
/// other way, so every id a dated request could carry is still remembered.
pub(super) const ACCEPT_PAST: Duration = Duration::from_secs(540);
/// How far ahead of the daemon's clock a request may be dated.
pub(super) const ACCEPT_FUTURE: Duration = Duration::from_secs(60);
/// Appends between two rewrites of the file: it then holds at most this many lines beyond
/// the live ones (about 1 MB), and flash sees one rewrite per this many requests.
const COMPACT_AFTER: usize = 4 * MAX_SEEN;

pub(super) fn unix_secs() -> u64 {
    u64::try_from(crate::runtime::unix_millis() / 1000).unwrap_or(0)
}

/// The remembered ids and the file they are appended to.
pub(super) struct ReplayMemory {
    /// Only ever held for map updates and one small `write(2)`: never across an `.await`.
    inner: Mutex<Inner>,
    path: Option<PathBuf>,
}

struct Inner {
    seen: HashMap<String, u64>,
    /// When the newest id that was forgotten while still inside the window had been seen
    /// (unix seconds): a dated request from before then could be its replay.
    forgot_until: u64,
    /// `O_APPEND` handle on `path`, reopened after each rewrite.
    file: Option<std::fs::File>,
    appended: usize,
}

impl ReplayMemory {
    /// Loads the memory from `path` (if any), keeping the ids inside the window, and rewrites
    /// the file with them.
    pub(super) fn open(path: Option<PathBuf>) -> ReplayMemory {
        let seen = path.as_deref().map(load_seen).unwrap_or_default();
        let file = path.as_deref().and_then(|p| rewrite(p, &seen));
        ReplayMemory {
            inner: Mutex::new(Inner {
                seen,
                forgot_until: 0,
                file,
                appended: 0,
            }),
            path,
        }
    }

    /// Records `sid` as served; true if it was served before (within the replay window).
    #[cfg(test)]
    async fn is_replay(&self, sid: &str) -> bool {
        self.admit(sid, None).await.is_err()
    }

    /// Records `sid` (dated `requested_at_ms` when the request says) as served, or says why
    /// the request is refused: its id was served before, or its date is outside what the
    /// memory covers. The id is on its way to the file before the session is served.
    pub(super) async fn admit(
        &self,
        sid: &str,
        requested_at_ms: Option<i64>,
    ) -> Result<(), String> {
        let compact = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let now = unix_secs();
            if inner
                .seen
                .get(sid)
                .is_some_and(|at| now.saturating_sub(*at) < REPLAY_WINDOW.as_secs())
            {
                return Err("session id already used (replay)".into());
            }
            if let Some(ms) = requested_at_ms {
                date_check(ms, now, inner.forgot_until)?;
            }
            if inner.seen.len() >= MAX_SEEN {
                inner
                    .seen
                    .retain(|_, at| now.saturating_sub(*at) < REPLAY_WINDOW.as_secs());
            }
            while inner.seen.len() >= MAX_SEEN {
                let Some((oldest, at)) = inner
                    .seen
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, t)| (k.clone(), *t))
                else {
                    break;
                };
                inner.seen.remove(&oldest);
                inner.forgot_until = inner.forgot_until.max(at);
            }
            inner.seen.insert(sid.to_string(), now);
            inner.appended += 1;
            if inner.appended >= COMPACT_AFTER {
                inner.appended = 0;
                inner.file = None;
                Some(inner.seen.clone())
            } else {
                if let (Some(f), Some(path)) = (inner.file.as_mut(), &self.path) {
                    if let Err(e) = f.write_all(format!("{now} {sid}\n").as_bytes()) {
                        log::warn!("replay memory {}: {e}", path.display());
                    }
                }
                None
            }
        };
        self.compact(compact).await;
        Ok(())
    }

    /// Rewrites the file with `seen` when a compaction is due.
    async fn compact(&self, seen: Option<HashMap<String, u64>>) {
        if let (Some(seen), Some(path)) = (seen, self.path.clone()) {
            // The rewrite (an fsync) runs off the executor; appends wait for the new handle
            // only in the sense that they are skipped meanwhile: the ids stay in RAM.
            let file = crate::runtime::unblock(move || rewrite(&path, &seen))
                .await
                .flatten();
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.file = file;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }
}

/// Whether a request dated `ms` (unix milliseconds) may be served at `now` (unix seconds).
fn date_check(ms: i64, now: u64, forgot_until: u64) -> Result<(), String> {
    let at = u64::try_from(ms / 1000).unwrap_or(0);
    if at.saturating_add(ACCEPT_PAST.as_secs()) < now {
        return Err(format!(
            "the request is dated {} s ago, more than the {} s accepted (a replay, or check NTP)",
            now - at,
            ACCEPT_PAST.as_secs()
        ));
    }
    if at > now.saturating_add(ACCEPT_FUTURE.as_secs()) {
        return Err(format!(
            "the request is dated {} s ahead of this device's clock, more than the {} s accepted (check NTP)",
            at - now,
            ACCEPT_FUTURE.as_secs()
        ));
    }
    if forgot_until > 0 && at <= forgot_until {
        return Err(format!(
            "the request is dated before ids the full replay memory forgot ({MAX_SEEN} in {} s); send it again",
            REPLAY_WINDOW.as_secs()
        ));
    }
    Ok(())
}

/// Writes the live ids to `path` (atomic, 0600) and opens it for appending.
fn rewrite(path: &Path, seen: &HashMap<String, u64>) -> Option<std::fs::File> {
    let mut text = String::with_capacity(seen.len() * 48);
    for (k, t) in seen {
        text.push_str(&format!("{t} {k}\n"));
    }
    let opened = crate::runtime::fs::write_atomic_0600(path, text.as_bytes()).and_then(|()| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    });
    match opened {
        Ok(f) => Some(f),
        Err(e) => {
            log::warn!("replay memory {}: {e}", path.display());
            None
        }
    }
}

/// Reads `<unix seconds> <session id>` lines, keeping those inside the replay window; a
/// malformed line is skipped with a log line.
fn load_seen(path: &Path) -> HashMap<String, u64> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            log::warn!("replay memory {}: {e}", path.display());
            return HashMap::new();
        }
    };
    let now = unix_secs();
    let mut seen = HashMap::new();
    let mut bad = 0;
    for line in text.lines() {
        let parsed = line
            .split_once(' ')
            .and_then(|(t, sid)| Some((t.parse::<u64>().ok()?, sid)))
            .filter(|(_, sid)| valid_session_id(sid));
        match parsed {
            Some((t, sid)) if now.saturating_sub(t) < REPLAY_WINDOW.as_secs() => {
                seen.insert(sid.to_string(), t);
            }
            Some(_) => {}
            None => bad += 1,
        }
    }
    if bad > 0 {
        log::warn!(
            "replay memory {}: {bad} malformed lines ignored",
            path.display()
        );
    }
    // Newest last wins on duplicates; keep at most MAX_SEEN, the newest.
    if seen.len() > MAX_SEEN {
        let mut all: Vec<(String, u64)> = seen.into_iter().collect();
        all.sort_unstable_by_key(|(_, t)| std::cmp::Reverse(*t));
        all.truncate(MAX_SEEN);
        seen = all.into_iter().collect();
    }
    seen
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::random;

    #[test]
    fn replay_memory_file_keeps_only_recent_well_formed_ids() {
        let dir = std::env::temp_dir().join(format!("np-seen-{}", random::uuid_v4()));
        let path = dir.join("seen_requests");
        let now = unix_secs();
        let text = format!(
            "{now} 11111111-2222-4333-8444-555555555555\n{} old-one\nnot a line\n{now} bad/id\n{now} ok_2\n",
            now - REPLAY_WINDOW.as_secs() - 5
        );
        crate::runtime::fs::write_atomic_0600(&path, text.as_bytes()).unwrap();
        let seen = load_seen(&path);
        let mut ids: Vec<&str> = seen.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["11111111-2222-4333-8444-555555555555", "ok_2"]);
        assert!(load_seen(&dir.join("absent")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The flash-wear attack: an allowed client sends request after request. Each costs one
    /// appended line, not a rewrite of the whole memory; a restart still refuses the replay.
    #[test]
    fn each_request_appends_one_line_and_a_restart_remembers() {
        let dir = std::env::temp_dir().join(format!("np-seen-{}", random::uuid_v4()));
        let path = dir.join("seen_requests");
        let memory = ReplayMemory::open(Some(path.clone()));
        let mut sizes = Vec::new();
        for i in 0..MAX_SEEN {
            let sid = format!("11111111-2222-4333-8444-{i:012}");
            assert!(!futures_lite::future::block_on(memory.is_replay(&sid)));
            sizes.push(std::fs::metadata(&path).unwrap().len());
        }
        // Every step grew the file by one line (under 60 bytes): nothing was rewritten.
        for w in sizes.windows(2) {
            let grew = w[1] - w[0];
            assert!((1..60).contains(&grew), "grew by {grew}");
        }
        assert_eq!(memory.len(), MAX_SEEN);
        let first = "11111111-2222-4333-8444-000000000000";
        let last = format!("11111111-2222-4333-8444-{:012}", MAX_SEEN - 1);
        assert!(futures_lite::future::block_on(memory.is_replay(&last)));
        drop(memory);
        let again = ReplayMemory::open(Some(path.clone()));
        assert!(futures_lite::future::block_on(again.is_replay(&last)));
        assert!(futures_lite::future::block_on(again.is_replay(first)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_is_compacted_and_memory_stays_bounded() {
        let dir = std::env::temp_dir().join(format!("np-seen-{}", random::uuid_v4()));
        let path = dir.join("seen_requests");
        let memory = ReplayMemory::open(Some(path.clone()));
        for i in 0..COMPACT_AFTER + 10 {
            let sid = format!("s{i}");
            assert!(!futures_lite::future::block_on(memory.is_replay(&sid)));
        }
        assert!(memory.len() <= MAX_SEEN);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= MAX_SEEN + 10, "{lines} lines after compaction");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A dated request is refused once it is too old for the memory to vouch for it, too far
    /// ahead, or older than an id the memory had to forget; undated ones rely on ids alone.
    #[test]
    fn dated_requests_are_refused_outside_what_the_memory_covers() {
        let memory = ReplayMemory::open(None);
        let now_ms = i64::try_from(unix_secs()).unwrap() * 1000;
        use futures_lite::future::block_on as block;
        assert_eq!(block(memory.admit("fresh", Some(now_ms))), Ok(()));
        let old = block(memory.admit("old", Some(now_ms - 541_000))).unwrap_err();
        assert!(
            old.contains("dated 541 s ago") && old.contains("NTP"),
            "{old}"
        );
        assert_eq!(block(memory.admit("edge", Some(now_ms - 530_000))), Ok(()));
        let ahead = block(memory.admit("ahead", Some(now_ms + 120_000))).unwrap_err();
        assert!(ahead.contains("ahead"), "{ahead}");
        let again = block(memory.admit("fresh", Some(now_ms))).unwrap_err();
        assert!(again.contains("replay"), "{again}");
        assert_eq!(block(memory.admit("undated", None)), Ok(()));
        // The memory fills with live ids: the oldest is forgotten, and a request dated up to
        // its time is refused, while a later one is served.
        for i in 0..MAX_SEEN {
            block(memory.admit(&format!("f{i}"), None)).unwrap();
        }
        let before = block(memory.admit("late-replay", Some(now_ms - 1_000))).unwrap_err();
        assert!(before.contains("memory forgot"), "{before}");
        assert_eq!(block(memory.admit("next", Some(now_ms + 2_000))), Ok(()));
    }
}
