//! The relay's session table (noports.md §4.2–§4.5): a port pair per session (or one shared
//! port for all), the auth line on every socket, pairing by verified side within one session,
//! bridging, expiry and limits.
//!
//! No atProtocol here: [`SessionTable::open`] takes an already validated [`SessionSpec`] (with
//! the side's public keys fetched), so tests drive it with real sockets and generated keys.
//!
//! Each session is one task (`pairing`) that owns its pending sockets and its pair tasks, and
//! in two-port mode its two listeners; when it ends, dropping them closes every socket. In
//! single-port mode (`port_range` of one port) one listener serves every session: each
//! socket's auth line names its session by the relay nonce, and which of the session's two
//! keys verifies the signature names its side (`accept`). Either way a socket is only ever
//! paired with a socket of the *other* side of the *same* session, and only after it
//! presented an auth line signed by that side's atSign over this session's
//! sessionId/clientNonce/rvdNonce.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::FutureExt;

use super::accept::{accept_loop, Gate, Route};
use super::pairing::run_session;
use crate::crypto::rsa::RsaPublicKey;
use crate::runtime;

/// 5 s to complete authentication, as the reference relay (noports.md §4.3).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// 30 s session timer (noports.md §4.5).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`RelayConfig::half_close_linger`].
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Limits and addresses of one relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address the session listeners bind (the reference binds 0.0.0.0).
    pub bind: IpAddr,
    /// Inclusive port range for session listeners; `None` lets the OS choose. A range of one
    /// port, `(p, p)`, is single-port mode: one listener on `p` serves every session, and
    /// only sessions that authenticate both sides can be opened (`(0, 0)`: a port the OS
    /// chooses, see [`SessionTable::listen`]).
    pub port_range: Option<(u16, u16)>,
    /// Most concurrent sessions.
    pub max_sessions: usize,
    /// Most accepted sockets (pending or paired) across all sessions: the fd cap.
    pub max_connections: usize,
    /// Most sockets per side of one session still authenticating, and (separately) most
    /// verified sockets per side waiting for a peer. A new socket over the first limit evicts
    /// the oldest authenticating socket of the busiest source instead of being refused, so
    /// strangers holding silent sockets cannot lock the legitimate sides out.
    pub max_pending_per_side: usize,
    /// Most sockets per side of one session still authenticating from one source (an IPv4
    /// address or an IPv6 /64); a new socket over it evicts that source's oldest stalled one.
    pub max_auth_per_source: usize,
    /// The grace timer (noports.md §4.5).
    pub session_timeout: Duration,
    /// Deadline for a socket's auth line.
    pub auth_timeout: Duration,
    /// After one socket of a pair closes, how long the other may stay idle before the pair
    /// (and so the session) ends.
    pub half_close_linger: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_range: None,
            max_sessions: 1000,
            max_connections: 4000,
            max_pending_per_side: 32,
            max_auth_per_source: 8,
            session_timeout: SESSION_TIMEOUT,
            auth_timeout: AUTH_TIMEOUT,
            half_close_linger: HALF_CLOSE_LINGER,
        }
    }
}

/// One accepted session request, validated by the caller.
#[derive(Clone)]
pub struct SessionSpec {
    /// The client's session id.
    pub session_id: String,
    /// Client atSign (side A, for logs).
    pub atsign_a: String,
    /// Device atSign (side B, for logs).
    pub atsign_b: String,
    /// The client's nonce from the request.
    pub client_nonce: String,
    /// Our nonce for this session (see [`new_rvd_nonce`]).
    pub rvd_nonce: String,
    /// Side A's public key; `None` leaves side A unauthenticated (legacy only).
    pub key_a: Option<RsaPublicKey>,
    /// Side B's public key; `None` leaves side B unauthenticated (legacy only).
    pub key_b: Option<RsaPublicKey>,
    /// Accept only one pair (sessions that multiplex, e.g. the nps1 suite); later sockets are
    /// refused.
    pub single_pair: bool,
}

/// The two ports of a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPorts {
    /// For the client (atSignA).
    pub port_a: u16,
    /// For the device (atSignB).
    pub port_b: u16,
}

/// Why a session could not be opened.
#[derive(Debug)]
pub enum RelayError {
    /// `max_sessions` reached.
    TooManySessions,
    /// A live session already has this id.
    DuplicateSession,
    /// No two free ports in the configured range.
    NoFreePorts,
    /// Binding a listener failed.
    Bind(io::Error),
    /// Single-port mode, and a side of the session would not authenticate: its sockets
    /// could not be told apart from the other side's or from other sessions'.
    NeedsAuthentication,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::TooManySessions => f.write_str("session limit reached"),
            RelayError::DuplicateSession => f.write_str("a session with this id is already open"),
            RelayError::NoFreePorts => f.write_str("no free port pair in the configured range"),
            RelayError::Bind(e) => write!(f, "binding session listener: {e}"),
            RelayError::NeedsAuthentication => f.write_str(
                "this relay serves all sessions on one port, which needs authenticated sockets on both sides",
            ),
        }
    }
}

impl std::error::Error for RelayError {}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The timer fired with no paired connection.
    Expired,
    /// The first pair closed, or the last pair closed after the timer.
    Closed,
    /// The relay is shutting down.
    Shutdown,
}

/// What a finished session did (also logged).
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// The session id.
    pub session_id: String,
    /// Why it ended.
    pub reason: EndReason,
    /// Pairs bridged.
    pub pairs: u64,
    /// Sockets closed for failing authentication or limits.
    pub rejected: u64,
    /// Bytes client → device.
    pub bytes_ab: u64,
    /// Bytes device → client.
    pub bytes_ba: u64,
}

/// The relay's live sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionTable {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) cfg: RelayConfig,
    sessions: Mutex<HashSet<String>>,
    /// Single-port mode: the live sessions by relay nonce, for the shared port's dispatch.
    routes: Mutex<HashMap<String, Route>>,
    /// Single-port mode: the shared port, once bound.
    shared: Mutex<Option<u16>>,
    conns: AtomicUsize,
    cursor: AtomicUsize,
    last_shed_log: Mutex<Option<Instant>>,
    pub(super) stop: (async_channel::Sender<()>, async_channel::Receiver<()>),
    pub(super) reports: (
        async_channel::Sender<SessionReport>,
        async_channel::Receiver<SessionReport>,
    ),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(super) fn try_slot(self: &Arc<Self>) -> Option<ConnSlot> {
        let prev = self.conns.fetch_add(1, Ordering::SeqCst);
        let slot = ConnSlot(self.clone());
        (prev < self.cfg.max_connections).then_some(slot)
    }

    /// One warning per second at most: a flood must not also flood the log.
    pub(super) fn shed_log(&self, why: &str) {
        let mut last = lock(&self.last_shed_log);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            log::warn!("shedding connections: {why}");
        }
    }

    /// The live session whose relay nonce is `rvd_nonce` (single-port mode).
    pub(super) fn route(&self, rvd_nonce: &str) -> Option<Route> {
        lock(&self.routes).get(rvd_nonce).cloned()
    }

    /// Forgets an ended session (its id may be used again).
    pub(super) fn end_session(&self, spec: &SessionSpec) {
        lock(&self.routes).remove(&spec.rvd_nonce);
        lock(&self.sessions).remove(&spec.session_id);
    }

    /// The one port of single-port mode, if configured.
    fn single_port(&self) -> Option<u16> {
        self.cfg.port_range.filter(|(lo, hi)| lo == hi).map(|r| r.0)
    }
}

/// One counted accepted socket; released on drop.
pub(super) struct ConnSlot(Arc<Inner>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SessionTable {
    /// An empty table with these limits. In single-port mode the shared port is bound by
    /// [`SessionTable::listen`] or the first [`SessionTable::open`].
    pub fn new(cfg: RelayConfig) -> Self {
        SessionTable {
            inner: Arc::new(Inner {
                cfg,
                sessions: Mutex::new(HashSet::new()),
                routes: Mutex::new(HashMap::new()),
                shared: Mutex::new(None),
                conns: AtomicUsize::new(0),
                cursor: AtomicUsize::new(0),
                last_shed_log: Mutex::new(None),
                stop: async_channel::bounded(1),
                reports: async_channel::bounded(1024),
            }),
        }
    }

    /// Live sessions.
    pub fn active_sessions(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Accepted sockets currently held.
    pub fn active_connections(&self) -> usize {
        self.inner.conns.load(Ordering::SeqCst)
    }

    /// The next finished-session report (the most recent 1024 are kept).
    pub async fn next_report(&self) -> Option<SessionReport> {
        self.inner.reports.1.recv().await.ok()
    }

    /// Ends every session and refuses new ones (and closes the shared port).
    pub fn shutdown(&self) {
        self.inner.stop.0.close();
    }

    /// Single-port mode: binds the shared port (once) and starts serving it; returns its
    /// number. `Ok(None)` in two-port mode. A relay calls it at start, so a port it may not
    /// bind fails at once rather than at the first request.
    ///
    /// # Errors
    /// [`RelayError::Bind`].
    pub fn listen(&self) -> Result<Option<u16>, RelayError> {
        let inner = &self.inner;
        let Some(want) = inner.single_port() else {
            return Ok(None);
        };
        let mut shared = lock(&inner.shared);
        if let Some(port) = *shared {
            return Ok(Some(port));
        }
        let listener = Async::<TcpListener>::bind(SocketAddr::new(inner.cfg.bind, want))
            .map_err(RelayError::Bind)?;
        let port = listener
            .get_ref()
            .local_addr()
            .map_err(RelayError::Bind)?
            .port();
        log::info!("serving every session on the shared port {port}");
        let inner2 = inner.clone();
        runtime::spawn(async move {
            let stop = async {
                let _ = inner2.stop.1.recv().await;
            };
            accept_loop(inner2.clone(), Gate::Shared(port), &listener)
                .or(stop)
                .await;
        })
        .detach();
        *shared = Some(port);
        Ok(Some(port))
    }

    /// Binds the session's two listeners (or, in single-port mode, registers it with the
    /// shared port) and starts its task.
    ///
    /// # Errors
    /// Limits, a duplicate id, bind failures, or (single-port mode) a side that would not
    /// authenticate; no listener is left open on error.
    pub fn open(&self, spec: SessionSpec) -> Result<SessionPorts, RelayError> {
        let inner = &self.inner;
        let single = inner.single_port().is_some();
        if single && (spec.key_a.is_none() || spec.key_b.is_none()) {
            return Err(RelayError::NeedsAuthentication);
        }
        {
            let mut s = lock(&inner.sessions);
            if inner.stop.0.is_closed() || s.len() >= inner.cfg.max_sessions {
                return Err(RelayError::TooManySessions);
            }
            if !s.insert(spec.session_id.clone()) {
                return Err(RelayError::DuplicateSession);
            }
        }
        let spec = Arc::new(spec);
        let events = async_channel::unbounded();
        let (listeners, ports) = if single {
            let registered = self.listen().and_then(|port| {
                let port = port.ok_or(RelayError::NoFreePorts)?;
                let route = Route {
                    spec: spec.clone(),
                    events: events.0.clone(),
                };
                let mut routes = lock(&inner.routes);
                if routes.contains_key(&spec.rvd_nonce) {
                    return Err(RelayError::DuplicateSession);
                }
                routes.insert(spec.rvd_nonce.clone(), route);
                Ok(port)
            });
            match registered {
                Ok(port) => (
                    None,
                    SessionPorts {
                        port_a: port,
                        port_b: port,
                    },
                ),
                Err(e) => {
                    lock(&inner.sessions).remove(&spec.session_id);
                    return Err(e);
                }
            }
        } else {
            let (la, lb) = match self.bind_pair() {
                Ok(p) => p,
                Err(e) => {
                    lock(&inner.sessions).remove(&spec.session_id);
                    return Err(e);
                }
            };
            let port =
                |l: &Async<TcpListener>| l.get_ref().local_addr().map(|a| a.port()).unwrap_or(0);
            let ports = SessionPorts {
                port_a: port(&la),
                port_b: port(&lb),
            };
            (Some((la, lb)), ports)
        };
        log::info!(
            "Starting session {} for {} to {} using ports ({}, {})",
            spec.session_id,
            spec.atsign_a,
            spec.atsign_b,
            ports.port_a,
            ports.port_b
        );
        let inner = inner.clone();
        runtime::spawn(async move {
            run_session(inner, spec, listeners, ports, events).await;
            runtime::mem::release_soon();
        })
        .detach();
        Ok(ports)
    }

    fn bind_pair(&self) -> Result<(Async<TcpListener>, Async<TcpListener>), RelayError> {
        let ip = self.inner.cfg.bind;
        let Some((lo, hi)) = self.inner.cfg.port_range else {
            let a = Async::<TcpListener>::bind(SocketAddr::new(ip, 0)).map_err(RelayError::Bind)?;
            let b = Async::<TcpListener>::bind(SocketAddr::new(ip, 0)).map_err(RelayError::Bind)?;
            return Ok((a, b));
        };
        let span = usize::from(hi.saturating_sub(lo)) + 1;
        let mut got: Vec<Async<TcpListener>> = Vec::with_capacity(2);
        for _ in 0..span {
            let off = self.inner.cursor.fetch_add(1, Ordering::Relaxed) % span;
            let Some(port) = u16::try_from(usize::from(lo) + off).ok() else {
                continue;
            };
            if let Ok(l) = Async::<TcpListener>::bind(SocketAddr::new(ip, port)) {
                got.push(l);
                if got.len() == 2 {
                    let b = got.pop().ok_or(RelayError::NoFreePorts)?;
                    let a = got.pop().ok_or(RelayError::NoFreePorts)?;
                    return Ok((a, b));
                }
            }
        }
        Err(RelayError::NoFreePorts)
    }
}

pub use super::nonce::new_rvd_nonce;
