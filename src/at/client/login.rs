//! Logging in: the atDirectory look-up, TLS, then `from:` + `pkam:` (atprotocol.md §3,
//! §4.1–§4.2; the exchange itself is `at/auth.rs`). A server at its limit of unauthenticated
//! connections (per address or in all) sheds logins: it answers AT0012, or cuts the connection during the TLS handshake. A burst of
//! legitimate clients (hundreds of sessions started at once behind one address) meets exactly
//! that, so a turned-away attempt is retried with jittered back-off for up to
//! [`LOGIN_RETRY_FOR`]; then the caller gets [`AtError::TurnedAway`], which says so.
use std::future::Future;
use std::time::{Duration, Instant};

use super::{lock, Inner, REQUEST_TIMEOUT};
use crate::at::auth;
use crate::at::conn::{lookup_server, Connection};
use crate::at::AtError;
use crate::runtime::{sleep, Backoff};

/// How long turned-away logins (and directory look-ups) are retried.
const LOGIN_RETRY_FOR: Duration = Duration::from_secs(30);
/// First retry delay (jittered within [half, whole]); doubles up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(4);

/// Runs `attempt` until it succeeds, fails for another reason than being turned away, or
/// [`LOGIN_RETRY_FOR`] has passed; `what` names the server for the log and the final error.
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, AtError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AtError>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_MAX);
    let mut tries = 1u32;
    loop {
        match attempt().await {
            Err(e) if e.is_turned_away() => {
                let d = backoff.next_delay();
                if started.elapsed() + d > LOGIN_RETRY_FOR {
                    return Err(AtError::TurnedAway(format!(
                        "{what} turned the login away {tries} times in {:.0} s (last: {e}); it \
                         is at its connection limit or shedding load: try again later",
                        started.elapsed().as_secs_f32()
                    )));
                }
                log::info!(
                    "{what} turned the login away ({e}); retrying in {:.2}s",
                    d.as_secs_f32()
                );
                sleep(d).await;
                tries += 1;
            }
            r => return r,
        }
    }
}

impl Inner {
    /// The atServer's address (looked up once, then cached).
    pub(super) async fn server_address(&self) -> Result<(String, u16), AtError> {
        if let Some(a) = lock(&self.server).clone() {
            return Ok(a);
        }
        let what = format!("the atDirectory {}", self.root);
        let addr = retrying(&what, || lookup_server(&self.root, &self.atsign)).await?;
        *lock(&self.server) = Some(addr.clone());
        Ok(addr)
    }

    /// A new connection to our atServer, authenticated.
    pub(super) async fn open_authenticated(&self) -> Result<Connection, AtError> {
        let (host, port) = self.server_address().await?;
        let what = format!("the atServer of {} at {host}:{port}", self.atsign);
        retrying(&what, || self.login_once(&host, port)).await
    }

    async fn login_once(&self, host: &str, port: u16) -> Result<Connection, AtError> {
        let mut conn = match Connection::connect(host, port).await {
            Ok(c) => c,
            Err(e) => {
                // The atServer may have moved: look it up again next time (not when it is
                // there and merely busy).
                if !e.is_turned_away() {
                    *lock(&self.server) = None;
                }
                return Err(e);
            }
        };
        self.authenticate(&mut conn).await?;
        Ok(conn)
    }

    /// `from:` + `pkam:` (atprotocol.md §4.1–§4.2).
    async fn authenticate(&self, conn: &mut Connection) -> Result<(), AtError> {
        let keys = &self.keys;
        let id = keys.enrollment_id.as_deref();
        let answer = auth::pkam(conn, &self.atsign, &keys.pkam_private, id, REQUEST_TIMEOUT);
        match answer.await? {
            Ok(ok) if ok.trim() == "success" => Ok(()),
            Ok(other) => Err(AtError::Unauthorized(format!("pkam answered {other:?}"))),
            // Cut off at a connection limit while the answer was pending: not a refusal.
            Err(e) if e.is_turned_away() => Err(e),
            Err(AtError::Server { code, message }) => Err(AtError::Unauthorized(format!(
                "{} refused authentication ({code}: {message})",
                self.atsign
            ))),
            Err(e) => Err(e),
        }
    }
}
