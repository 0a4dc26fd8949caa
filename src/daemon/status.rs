//! The daemon's state for a front end (LuCI reads it through rpcd): one small JSON file,
//! replaced atomically on every change, when `--status-file` is given:
//!
//! `{"state":"running","atsign":"@d","device":"router","pid":123,"since":"…Z",
//!   "sessions":2,"last_session":{"at":"…Z","from":"@c","service":"localhost:22","suite":"nps1"}}`
//!
//! `state` is `connecting` (the atServer is not reached yet), `running` (monitor started),
//! `stopped` (on a signal) or `failed` (exited on an error). Times are UTC, RFC 3339. Process-wide, like the daemon it describes.
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::json::{Object, Value};

struct Status {
    path: PathBuf,
    atsign: String,
    device: String,
    since: String,
    state: &'static str,
    sessions: i64,
    last_session: Option<Object>,
}

static STATUS: OnceLock<Mutex<Status>> = OnceLock::new();

fn rfc3339_now() -> String {
    let t = crate::runtime::utc_timestamp('T');
    format!("{}Z", t.get(..19).unwrap_or(&t))
}

/// Start keeping the file at `path` (no-op without a path).
pub fn init(path: Option<PathBuf>, atsign: &str, device: &str) {
    let Some(path) = path else { return };
    let s = Status {
        path,
        atsign: atsign.to_string(),
        device: device.to_string(),
        since: rfc3339_now(),
        state: "connecting",
        sessions: 0,
        last_session: None,
    };
    if STATUS.set(Mutex::new(s)).is_ok() {
        update(|_| {});
    }
}

pub fn set_state(state: &'static str) {
    update(|s| s.state = state);
}

/// A session was started for `from` to `service`.
pub fn session(from: &str, service: &str, suite: &str) {
    update(|s| {
        s.sessions += 1;
        s.last_session = Some(
            Object::new()
                .with("at", rfc3339_now())
                .with("from", from)
                .with("service", service)
                .with("suite", suite),
        );
    });
}

fn update(change: impl FnOnce(&mut Status)) {
    let Some(m) = STATUS.get() else { return };
    let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
    change(&mut s);
    let mut o = Object::new()
        .with("state", s.state)
        .with("atsign", s.atsign.as_str())
        .with("device", s.device.as_str())
        .with("pid", std::process::id())
        .with("since", s.since.as_str())
        .with("sessions", Value::Int(s.sessions));
    if let Some(l) = &s.last_session {
        o.push("last_session", l.clone());
    }
    let mut text = o.to_json();
    text.push('\n');
    if let Some(dir) = s.path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::runtime::fs::write_atomic_0600(&s.path, text.as_bytes()) {
        log::warn!("cannot write the status file {}: {e}", s.path.display());
    }
}
