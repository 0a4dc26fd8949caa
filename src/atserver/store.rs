//! Per-atSign persistence: an in-memory key store (atprotocol.md §5, §6.4) backed by an
//! append-only, fsync'd log that is replayed and compacted at start-up.
//!
//! Durability choice: every acknowledged `update`/`delete`/notification write is appended as
//! one line and `fdatasync`ed *before* the reply is queued, so a `kill -9` loses nothing that was
//! acknowledged. A torn last line (no `\n`) is cut off on open; unparsable lines are skipped.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

/// The append-only log file.
pub(crate) struct Log {
    file: File,
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
                file,
                path: path.to_path_buf(),
            },
            records,
        ))
    }

    /// Appends one record and waits until it is on disk.
    ///
    /// # Errors
    /// Write or fsync failures; the caller must not acknowledge the change.
    pub(crate) fn append<S: AsRef<str>>(&mut self, fields: &[S]) -> io::Result<()> {
        let mut line = fields
            .iter()
            .map(|f| esc(f.as_ref()))
            .collect::<Vec<_>>()
            .join("\t");
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
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
        self.file = OpenOptions::new().append(true).open(&self.path)?;
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
