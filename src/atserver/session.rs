//! One client connection to a hosted atSign's server: the per-connection state ([`Session`],
//! [`Auth`]) and what every verb handler needs of it (who is asking, replying, the owner check).
//! The request loop and the authentication verbs are in `dispatch.rs`; data verbs in
//! `handlers.rs`, remote ones in `remote.rs`, enrollment verbs in `enroll.rs`.
use std::sync::Arc;

use async_channel::Sender;

use super::conn::{MAX_LINE, MAX_UNAUTH_LINE};
use super::error::{AtCode, AtErr, VerbResult};
use super::server::{AtServer, Hub};
use crate::crypto::random;

/// Who the connection is (§1 table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    Unauthenticated,
    /// Owner via CRAM (`cram`), legacy PKAM (`enrollment: None`) or APKAM (`Some(id)`).
    Owner {
        enrollment: Option<String>,
        cram: bool,
    },
    /// Another atServer acting for this atSign (`@bob`), proven by `pol` (§4.4).
    Pol(String),
}

/// What the loop does after a command.
pub(crate) enum Flow {
    Continue,
    Close,
}

/// Per-connection state.
pub(crate) struct Session {
    pub hub: Arc<Hub>,
    pub server: Arc<AtServer>,
    pub tx: Sender<Vec<u8>>,
    pub auth: Auth,
    pub(super) session_id: String,
    /// (challenge text, expiry) of the last `from:` for the own atSign.
    pub(super) challenge: Option<(String, i64)>,
    pub(super) json_errors: bool,
    pub(super) failed_auth: u32,
    pub enroll_requests: Vec<i64>,
    pub bad_otps: u32,
    /// (atSign, session key `_<id>@x`, proof, expiry) of the last foreign `from:` (§4.4).
    pub foreign: Option<(String, String, String, i64)>,
    /// Shared with the connection slot: set once authenticated (no longer evictable, long
    /// lines allowed).
    pub authed: Arc<std::sync::atomic::AtomicBool>,
    /// Shared with the connection slot: set once a request line was handled (evicted after
    /// silent connections).
    pub spoke: Arc<std::sync::atomic::AtomicBool>,
}

impl Session {
    pub(crate) fn new(hub: Arc<Hub>, server: Arc<AtServer>, tx: Sender<Vec<u8>>) -> Session {
        Session {
            hub,
            server,
            tx,
            auth: Auth::Unauthenticated,
            session_id: format!("_{}", random::uuid_v4()),
            challenge: None,
            json_errors: false,
            failed_auth: 0,
            enroll_requests: Vec::new(),
            bad_otps: 0,
            foreign: None,
            authed: Arc::default(),
            spoke: Arc::default(),
        }
    }

    /// The atSign this server hosts, `@alice`.
    pub(crate) fn me(&self) -> &str {
        &self.server.atsign
    }

    pub(crate) fn is_owner(&self) -> bool {
        matches!(self.auth, Auth::Owner { .. })
    }

    /// Authenticated as the owner or as another atServer (`pol`).
    pub(super) fn is_authed(&self) -> bool {
        !matches!(self.auth, Auth::Unauthenticated)
    }

    /// Longest request line accepted in the current state.
    pub(super) fn line_limit(&self) -> usize {
        if self.is_authed() {
            MAX_LINE
        } else {
            MAX_UNAUTH_LINE
        }
    }

    /// The APKAM enrollment id of this connection, if any.
    pub(crate) fn enrollment_id(&self) -> Option<&str> {
        match &self.auth {
            Auth::Owner {
                enrollment: Some(e),
                ..
            } => Some(e),
            _ => None,
        }
    }

    fn prompt(&self) -> String {
        match self.auth {
            Auth::Unauthenticated => "@".to_string(),
            Auth::Owner { .. } => format!("{}@", self.server.atsign),
            Auth::Pol(ref from) => format!("{from}@"),
        }
    }

    /// Queues `body\nprompt` as one write.
    pub(crate) async fn reply(&self, body: &str) {
        let msg = format!("{body}\n{}", self.prompt());
        let _ = self.tx.send(msg.into_bytes()).await;
    }

    pub(super) async fn reply_err(&self, e: &AtErr) {
        let body = e.render(self.is_owner(), self.json_errors);
        if matches!(self.auth, Auth::Pol(_)) {
            // Errors on pol connections carry the bare `@` prompt (§2.3).
            let _ = self.tx.send(format!("{body}\n@").into_bytes()).await;
            return;
        }
        self.reply(&body).await;
    }

    /// Fails unless the connection is authenticated as the owner.
    pub(crate) fn need_owner(&self) -> VerbResult<()> {
        if self.is_owner() {
            Ok(())
        } else {
            Err(AtErr::new(
                AtCode::AuthFailed,
                "Command cannot be executed without auth",
            ))
        }
    }
}
