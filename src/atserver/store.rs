//! Per-atSign persistence: an in-memory key store (atprotocol.md §5, §6.4) backed by an
//! append-only, fsync'd log that is replayed and compacted at start-up.
//!
//! Durability choice: every `update`/`delete`/notification write is appended as one line at
//! once (a `kill -9` loses nothing written), and the reply to the request that wrote it waits
//! for [`durable`]: group commit, one `fdatasync` per log file covering every record written
//! meanwhile, run on a helper thread. So nothing acknowledged is lost to a power cut either,
//! and a burst of writes on a slow disk (an SD card) costs a few fsyncs, not one each, while
//! the server's one executor thread keeps serving. Other connections may read a value before
//! it is on disk; only its writer's acknowledgement waits. After a failed fsync the store
//! refuses further writes (the kernel may have dropped the pages): restart to recover.
//! A torn last line (no `\n`) is cut off on open; unparsable lines are skipped.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::meta::Meta;

/// One stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub value: String,
    pub meta: Meta,
    /// Commit id, or −1 for keys outside the commit log.
    pub commit: i64,
}

/// The key store of one atSign.
#[derive(Default)]
pub(crate) struct KeyStore {
    map: BTreeMap<String, Record>,
    last_commit: i64,
}

impl KeyStore {
    /// The record for a stored key, active or not.
    pub(crate) fn get(&self, key: &str) -> Option<&Record> {
        self.map.get(key)
    }
    /// All stored keys in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Record)> {
        self.map.iter()
    }
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
    pub(crate) fn last_commit(&self) -> i64 {
        self.last_commit
    }
    /// The commit id the next committed change gets.
    pub(crate) fn next_commit(&self) -> i64 {
        self.last_commit + 1
    }
    pub(crate) fn insert(&mut self, key: String, rec: Record) {
        self.last_commit = self.last_commit.max(rec.commit);
        self.map.insert(key, rec);
    }
    pub(crate) fn remove(&mut self, key: &str, commit: i64) -> Option<Record> {
        self.last_commit = self.last_commit.max(commit);
        self.map.remove(key)
    }
    pub(crate) fn bump_commit(&mut self, c: i64) {
        self.last_commit = self.last_commit.max(c);
    }
    /// Drops keys past their expiry; returns the dropped names.
    pub(crate) fn sweep(&mut self, now: i64) -> Vec<String> {
        let dead: Vec<String> = self
            .map
            .iter()
            .filter(|(_, r)| r.meta.is_expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            self.map.remove(k);
        }
        dead
    }
}

/// Escapes a log field: `%`, tab, CR and LF become `%xx`.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => o.push_str("%25"),
            '\t' => o.push_str("%09"),
            '\n' => o.push_str("%0A"),
            '\r' => o.push_str("%0D"),
            c => o.push(c),
        }
    }
    o
}

fn unesc(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%09", "\t")
        .replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%25", "%")
}

/// What the group commit knows: how many records were written and how many are on disk, the
/// files written since the last fsync began, and a failed fsync (final).
#[derive(Default)]
struct Commit {
    written: u64,
    synced: u64,
    dirty: Vec<Arc<File>>,
    syncing: bool,
    /// The fsync round's task: the store owns it (a round is never cut short).
    syncer: Option<crate::runtime::Task<()>>,
    failed: Option<String>,
    /// fsync rounds run (the tests count them).
    rounds: u64,
}

struct GroupCommit {
    state: Mutex<Commit>,
    synced: event_listener::Event,
}

fn group() -> &'static GroupCommit {
    static G: OnceLock<GroupCommit> = OnceLock::new();
    G.get_or_init(|| GroupCommit {
        state: Mutex::new(Commit::default()),
        synced: event_listener::Event::new(),
    })
}

fn commit() -> MutexGuard<'static, Commit> {
    // The counters stay consistent under a panic elsewhere: each update is one statement.
    group().state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records written by every log of this process so far (compare before and after a request).
pub(crate) fn written() -> u64 {
    commit().written
}

/// Waits until every record written so far is on disk (see the module docs).
///
/// # Errors
/// An fsync failed, now or earlier.
pub(crate) async fn durable() -> io::Result<()> {
    let target = written();
    loop {
        let listener = {
            let mut c = commit();
            if let Some(e) = &c.failed {
                return Err(io::Error::other(e.clone()));
            }
            if c.synced >= target {
                return Ok(());
            }
            let listener = group().synced.listen();
            if !c.syncing {
                c.syncing = true;
                // Replaces the previous round's task, which has finished.
                c.syncer = Some(crate::runtime::spawn(sync()));
            }
            listener
        };
        listener.await;
    }
}

/// One fsync round over every record written when it starts.
async fn sync() {
    let (files, upto) = {
        let mut c = commit();
        (std::mem::take(&mut c.dirty), c.written)
    };
    let on_helper = files.clone();
    let result = match crate::runtime::unblock(move || sync_all(&on_helper)).await {
        Some(r) => r,
        // No helper thread could be started: do it here rather than not at all.
        None => sync_all(&files),
    };
    let mut c = commit();
    c.rounds += 1;
    match result {
        Ok(()) => c.synced = c.synced.max(upto),
        Err(e) => {
            log::error!("the key store could not be written to disk: {e}; no further writes are accepted until the atserver restarts");
            c.failed = Some(format!("the key store could not be written to disk ({e})"));
        }
    }
    c.syncing = false;
    drop(c);
    group().synced.notify(usize::MAX);
}

fn sync_all(files: &[Arc<File>]) -> io::Result<()> {
    files.iter().try_for_each(|f| f.sync_data())
}

/// Puts everything written so far on disk, blocking (start-up, before serving).
///
/// # Errors
/// An fsync failed.
pub(crate) fn flush_blocking() -> io::Result<()> {
    let (files, upto) = {
        let mut c = commit();
        (std::mem::take(&mut c.dirty), c.written)
    };
    sync_all(&files)?;
    let mut c = commit();
    c.synced = c.synced.max(upto);
    Ok(())
}

/// The append-only log file.
pub(crate) struct Log {
    file: Arc<File>,
    path: PathBuf,
}

impl Log {
    /// Opens (creating) the log, cuts a torn tail, and returns its records as field lists.
    ///
    /// # Errors
    /// I/O errors opening or reading the file.
    pub(crate) fn open(path: &Path) -> io::Result<(Log, Vec<Vec<String>>)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let good = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if good < bytes.len() {
            log::warn!(
                "{}: dropping {} bytes of torn tail",
                path.display(),
                bytes.len() - good
            );
            file.set_len(u64::try_from(good).unwrap_or(0))?;
            file.seek(SeekFrom::End(0))?;
        }
        let text = String::from_utf8_lossy(bytes.get(..good).unwrap_or_default());
        let records = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(unesc).collect())
            .collect();
        Ok((
            Log {
                file: Arc::new(file),
                path: path.to_path_buf(),
            },
            records,
        ))
    }

    /// Appends one record (written at once; on disk by the next [`durable`]).
    ///
    /// # Errors
    /// Write failures, or an earlier fsync failure; the caller must not apply the change.
    pub(crate) fn append<S: AsRef<str>>(&mut self, fields: &[S]) -> io::Result<()> {
        let mut line = fields
            .iter()
            .map(|f| esc(f.as_ref()))
            .collect::<Vec<_>>()
            .join("\t");
        line.push('\n');
        let mut c = commit();
        if let Some(e) = &c.failed {
            return Err(io::Error::other(e.clone()));
        }
        (&*self.file).write_all(line.as_bytes())?;
        if !c.dirty.iter().any(|f| Arc::ptr_eq(f, &self.file)) {
            c.dirty.push(self.file.clone());
        }
        c.written += 1;
        Ok(())
    }

    /// Replaces the log with `records` (compaction): temp file, fsync, rename, reopen.
    ///
    /// # Errors
    /// I/O errors; the old log stays in place on failure.
    pub(crate) fn rewrite(&mut self, records: &[Vec<String>]) -> io::Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&r.iter().map(|f| esc(f)).collect::<Vec<_>>().join("\t"));
            text.push('\n');
        }
        crate::runtime::fs::write_atomic_0600(&self.path, text.as_bytes())?;
        self.file = Arc::new(OpenOptions::new().append(true).open(&self.path)?);
        Ok(())
    }
}

/// A `P` (put) log record.
pub(crate) fn put_record(key: &str, rec: &Record) -> Vec<String> {
    let mut v = vec![
        "P".to_string(),
        rec.commit.to_string(),
        key.to_string(),
        rec.value.clone(),
    ];
    v.extend(rec.meta.to_log_items());
    v
}

/// Applies a `P`/`D`/`C` record to the key store; other kinds return false.
pub(crate) fn replay_key_record(store: &mut KeyStore, r: &[String]) -> bool {
    match r.first().map(String::as_str) {
        Some("P") if r.len() >= 4 => {
            let commit = r[1].parse().unwrap_or(-1);
            let meta = Meta::from_log_items(r[4..].iter().map(String::as_str));
            store.insert(
                r[2].clone(),
                Record {
                    value: r[3].clone(),
                    meta,
                    commit,
                },
            );
            true
        }
        Some("D") if r.len() >= 3 => {
            store.remove(&r[2], r[1].parse().unwrap_or(-1));
            true
        }
        Some("C") if r.len() >= 2 => {
            store.bump_commit(r[1].parse().unwrap_or(0));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_roundtrip() {
        for s in ["plain", "a\tb\nc\rd%e%09", ""] {
            assert_eq!(unesc(&esc(s)), s);
        }
    }

    /// Writers waiting at once share fsyncs, and each is answered only once its record is
    /// covered by one.
    #[test]
    fn concurrent_writers_share_fsyncs() {
        let dir = std::env::temp_dir().join(format!("atserver-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (log, _) = Log::open(&dir.join("log")).unwrap();
        let log = Arc::new(Mutex::new(log));
        let (synced_before, rounds_before) = {
            let c = commit();
            (c.synced, c.rounds)
        };
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                crate::runtime::spawn(async move {
                    log.lock()
                        .unwrap()
                        .append(&["P", "1", &format!("k{i}@a"), "v"])
                        .unwrap();
                    let mine = written();
                    durable().await.unwrap();
                    assert!(commit().synced >= mine, "acknowledged before its fsync");
                })
            })
            .collect();
        crate::runtime::block_on(async {
            for t in tasks {
                t.await;
            }
        });
        let c = commit();
        assert!(c.synced >= synced_before + 50);
        let rounds = c.rounds - rounds_before;
        assert!(
            rounds < 25,
            "{rounds} fsync rounds for 50 writers waiting at once"
        );
        drop(c);
        let (_, recs) = Log::open(&dir.join("log")).unwrap();
        assert_eq!(recs.len(), 50);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = std::env::temp_dir().join(format!("atserver-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("log");
        {
            let (mut log, recs) = Log::open(&path).unwrap();
            assert!(recs.is_empty());
            log.append(&["P", "1", "k@a", "v\tx"]).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"P\t2\tk2")
            .unwrap();
        let (mut log, recs) = Log::open(&path).unwrap();
        assert_eq!(
            recs,
            vec![vec![
                "P".to_string(),
                "1".into(),
                "k@a".into(),
                "v\tx".into()
            ]]
        );
        log.append(&["D", "3", "k@a"]).unwrap();
        let (_, recs) = Log::open(&path).unwrap();
        assert_eq!(recs.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
