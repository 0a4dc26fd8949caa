//! What the relay's modules share: limits, a session's spec, ports, report and end, the sides,
//! and the messages a session receives. A leaf: it imports no other relay module.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_io::Async;

use crate::crypto::rsa::RsaPublicKey;

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
    /// chooses, see `SessionTable::listen`).
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

impl RelayConfig {
    /// The one port of single-port mode, if configured.
    pub(super) fn single_port(&self) -> Option<u16> {
        self.port_range.filter(|(lo, hi)| lo == hi).map(|r| r.0)
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
    /// Our nonce for this session (see `new_rvd_nonce`).
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

/// Side A (client, portA) or B (device, portB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    A,
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self == Side::A { "A" } else { "B" })
    }
}

/// The side a verified socket belongs to. `Either` on the shared port when both sides are
/// the same atSign (one key verifies both): the session assigns it in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    Side(Side),
    Either,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::Side(s) => s.fmt(f),
            Claim::Either => f.write_str("A or B"),
        }
    }
}

/// One counted accepted socket; released on drop.
pub(super) struct ConnSlot(Arc<AtomicUsize>);

impl ConnSlot {
    /// Counts a socket in `conns`; `None` (the count given back on drop) when the count was
    /// already at `max`.
    pub(super) fn take(conns: &Arc<AtomicUsize>, max: usize) -> Option<ConnSlot> {
        let prev = conns.fetch_add(1, Ordering::SeqCst);
        let slot = ConnSlot(conns.clone());
        (prev < max).then_some(slot)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A socket that passed authentication (or needed none), with the bytes after its auth line.
pub(super) struct Ready {
    pub(super) sock: Arc<Async<TcpStream>>,
    pub(super) leftover: Vec<u8>,
    pub(super) peer: SocketAddr,
    pub(super) _slot: ConnSlot,
}

/// Session events. Only verified sockets reach the session: a socket still authenticating
/// holds no place in any queue, so strangers cannot stall pairing. Verified sockets are paired
/// in the order they finished authentication, as in the reference (§4.4).
pub(super) enum Event {
    Ready(Claim, Ready),
    Failed,
    Rejected,
    PairDone { first: bool },
}

/// A live session as the accept loops see it: whom to check a line against, where to send
/// the verified socket.
#[derive(Clone)]
pub(super) struct Route {
    pub(super) spec: Arc<SessionSpec>,
    pub(super) events: async_channel::Sender<Event>,
}

/// A relay task's work, boxed: every relay task then shares one executor task type instead of
/// one per future (the router binary's size budget).
pub(super) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(super) fn job(work: impl Future<Output = ()> + Send + 'static) -> Job {
    Box::pin(work)
}
