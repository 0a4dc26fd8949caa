//! The relay's session table (noports.md §4.2–§4.5): a port pair per session, the auth line on
//! every socket, pairing by verified side within one session, bridging, expiry and limits.
//!
//! No atProtocol here: [`SessionTable::open`] takes an already validated [`SessionSpec`] (with
//! the side's public keys fetched), so tests drive it with real sockets and generated keys.
//!
//! Each session is one task that owns its two listeners, its pending sockets and its pair
//! tasks; when it ends, dropping them closes every socket. A socket is only ever paired with a
//! socket of the *other* side of the *same* session, and only after it presented an auth line
//! signed by that side's atSign over this session's sessionId/clientNonce/rvdNonce.

use crate::runtime::atomic::AtomicU64;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, FutureExt};

use crate::crypto::rsa::RsaPublicKey;
use crate::noports::relay_msg::{take_auth_line, verify_auth_line, AuthLineError};
use crate::noports::tunnel::{splice, Direction};
use crate::runtime;

/// 5 s to complete authentication, as the reference relay (noports.md §4.3).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// 30 s session timer (noports.md §4.5).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`RelayConfig::half_close_linger`].
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);
/// How long the accept loop waits for the first bytes of a silent new socket.
const EARLY_WAIT: Duration = Duration::from_millis(10);
/// ... but at most this long in all per second and side: a flood of silent sockets must not
/// make the accept loop itself slow (the legitimate socket would wait in the backlog behind
/// them); beyond it, silent sockets go straight to concurrent authentication.
const EARLY_BUDGET: Duration = Duration::from_millis(100);
/// Back-off after a failed `accept` (e.g. EMFILE), so a full fd table does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits and addresses of one relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address the session listeners bind (the reference binds 0.0.0.0).
    pub bind: IpAddr,
    /// Inclusive port range for session listeners; `None` lets the OS choose.
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
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::TooManySessions => f.write_str("session limit reached"),
            RelayError::DuplicateSession => f.write_str("a session with this id is already open"),
            RelayError::NoFreePorts => f.write_str("no free port pair in the configured range"),
            RelayError::Bind(e) => write!(f, "binding session listener: {e}"),
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

struct Inner {
    cfg: RelayConfig,
    sessions: Mutex<HashSet<String>>,
    conns: AtomicUsize,
    cursor: AtomicUsize,
    last_shed_log: Mutex<Option<Instant>>,
    stop: (async_channel::Sender<()>, async_channel::Receiver<()>),
    reports: (
        async_channel::Sender<SessionReport>,
        async_channel::Receiver<SessionReport>,
    ),
}

impl Inner {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_slot(self: &Arc<Self>) -> Option<ConnSlot> {
        let prev = self.conns.fetch_add(1, Ordering::SeqCst);
        let slot = ConnSlot(self.clone());
        (prev < self.cfg.max_connections).then_some(slot)
    }

    /// One warning per second at most: a flood must not also flood the log.
    fn shed_log(&self, why: &str) {
        let mut last = self.last_shed_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.map_or(true, |t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            log::warn!("shedding connections: {why}");
        }
    }
}

/// One counted accepted socket; released on drop.
struct ConnSlot(Arc<Inner>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SessionTable {
    /// An empty table with these limits.
    pub fn new(cfg: RelayConfig) -> Self {
        SessionTable {
            inner: Arc::new(Inner {
                cfg,
                sessions: Mutex::new(HashSet::new()),
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
        self.inner.sessions().len()
    }

    /// Accepted sockets currently held.
    pub fn active_connections(&self) -> usize {
        self.inner.conns.load(Ordering::SeqCst)
    }

    /// The next finished-session report (the most recent 1024 are kept).
    pub async fn next_report(&self) -> Option<SessionReport> {
        self.inner.reports.1.recv().await.ok()
    }

    /// Ends every session and refuses new ones.
    pub fn shutdown(&self) {
        self.inner.stop.0.close();
    }

    /// Binds the session's two listeners and starts its task.
    ///
    /// # Errors
    /// Limits, a duplicate id, or bind failures; no listener is left open on error.
    pub fn open(&self, spec: SessionSpec) -> Result<SessionPorts, RelayError> {
        let inner = &self.inner;
        {
            let mut s = inner.sessions();
            if inner.stop.0.is_closed() || s.len() >= inner.cfg.max_sessions {
                return Err(RelayError::TooManySessions);
            }
            if !s.insert(spec.session_id.clone()) {
                return Err(RelayError::DuplicateSession);
            }
        }
        let bound = self.bind_pair();
        let (la, lb) = match bound {
            Ok(p) => p,
            Err(e) => {
                inner.sessions().remove(&spec.session_id);
                return Err(e);
            }
        };
        let port = |l: &Async<TcpListener>| l.get_ref().local_addr().map(|a| a.port()).unwrap_or(0);
        let ports = SessionPorts {
            port_a: port(&la),
            port_b: port(&lb),
        };
        log::info!(
            "Starting session {} for {} to {} using ports ({}, {})",
            spec.session_id,
            spec.atsign_a,
            spec.atsign_b,
            ports.port_a,
            ports.port_b
        );
        runtime::spawn(run_session(inner.clone(), spec, la, lb, ports)).detach();
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

/// Side A (client, portA) or B (device, portB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self == Side::A { "A" } else { "B" })
    }
}

/// A socket that passed authentication (or needed none), with the bytes after its auth line.
struct Ready {
    sock: Arc<Async<TcpStream>>,
    leftover: Vec<u8>,
    peer: SocketAddr,
    _slot: ConnSlot,
}

enum Wake {
    Event(Event),
    Stop,
    Tick,
}

/// Session events. Only verified sockets reach the session: a socket still authenticating
/// holds no place in any queue, so strangers cannot stall pairing. Verified sockets are paired
/// in the order they finished authentication, as in the reference (§4.4).
enum Event {
    Ready(Side, Ready),
    Failed,
    Rejected,
    PairDone { first: bool },
}

/// A side's verified sockets waiting for a peer, in order of verification.
type Queue = VecDeque<Ready>;

/// The per-source bucket of a peer address: the IPv4 address, or the IPv6 /64 (one host
/// usually holds a whole /64).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let seg = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    seg[0], seg[1], seg[2], seg[3], 0, 0, 0, 0,
                ))
            }
        },
    }
}

/// One socket still authenticating: dropping `task` closes it.
struct Authenticating {
    source: IpAddr,
    /// The socket itself, to see whether bytes wait on it when choosing whom to evict. Weak,
    /// so a socket handed to a pair still closes when the pair ends.
    sock: Weak<Async<TcpStream>>,
    task: runtime::Task<()>,
}

impl Authenticating {
    /// Stalled: nothing is waiting to be read (or the peer left). A legitimate side's line
    /// that arrived but was not read yet (its task not yet run on a loaded machine) is not.
    fn is_stalled(&self) -> bool {
        let Some(sock) = self.sock.upgrade() else {
            return true;
        };
        match sock.get_ref().peek(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != io::ErrorKind::Interrupted,
        }
    }
}

/// Picks the authenticating socket to evict for a newcomer from `source`, if a limit is hit:
/// within that source when it is at its own limit, else within the busiest source when the
/// side is full; there the oldest stalled socket goes first, then the oldest. Age alone
/// decides among stalled ones: a stranger that sent half a line and stopped is no better
/// than a silent one, and a legitimate side (whose line follows its connect at once) is the
/// youngest, so it outlives `per_source` later arrivals from its own address.
fn evict_index(
    pending: &VecDeque<Authenticating>,
    source: IpAddr,
    per_source: usize,
    per_side: usize,
) -> Option<usize> {
    let count = |s: IpAddr| pending.iter().filter(|p| p.source == s).count();
    let victim_source = if count(source) >= per_source.max(1) {
        source
    } else if pending.len() >= per_side.max(1) {
        pending.iter().map(|p| p.source).max_by_key(|s| count(*s))?
    } else {
        return None;
    };
    pending
        .iter()
        .position(|p| p.source == victim_source && p.is_stalled())
        .or_else(|| pending.iter().position(|p| p.source == victim_source))
}

#[derive(Default)]
struct Bytes {
    ab: AtomicU64,
    ba: AtomicU64,
}

/// Why a socket failed authentication.
#[derive(Debug)]
enum AuthFail {
    Timeout,
    Closed,
    Io(io::Error),
    Line(AuthLineError),
}

impl fmt::Display for AuthFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFail::Timeout => f.write_str("no auth line before the deadline"),
            AuthFail::Closed => f.write_str("closed before sending an auth line"),
            AuthFail::Io(e) => write!(f, "reading auth line: {e}"),
            AuthFail::Line(e) => write!(f, "{e}"),
        }
    }
}

/// Reads the auth line and checks it (noports.md §4.3); returns the bytes after the `\n`.
async fn authenticate(
    sock: &Async<TcpStream>,
    key: &RsaPublicKey,
    spec: &SessionSpec,
    limit: Duration,
    early: Vec<u8>,
) -> Result<Vec<u8>, AuthFail> {
    let read = async {
        let mut buf = early;
        let mut chunk = [0u8; 1024];
        loop {
            let n = (&*sock).read(&mut chunk).await.map_err(AuthFail::Io)?;
            let got = chunk
                .get(..n)
                .filter(|c| !c.is_empty())
                .ok_or(AuthFail::Closed)?;
            buf.extend_from_slice(got);
            if let Some((line, rest)) = take_auth_line(&buf).map_err(AuthFail::Line)? {
                verify_auth_line(
                    line,
                    &spec.session_id,
                    &spec.client_nonce,
                    &spec.rvd_nonce,
                    key,
                )
                .map_err(AuthFail::Line)?;
                return Ok(rest.to_vec());
            }
        }
    };
    runtime::timeout(limit, read)
        .await
        .map_err(|_| AuthFail::Timeout)?
}

/// What the accept loop learned from the bytes already waiting on a new socket.
enum Early {
    /// A complete, valid auth line: ready to pair, with the bytes after it.
    Verified(Vec<u8>),
    /// A complete line that fails (or over-long input): close now.
    Refused(AuthFail),
    /// No complete line yet: authenticate asynchronously, starting from these bytes.
    Partial(Vec<u8>),
}

/// Reads what the peer already sent (never waits) and checks a complete auth line at once.
/// A legitimate side writes its line right after connecting, so it is usually verified here,
/// before any later socket is accepted and before strangers could evict it.
fn check_early(sock: &Async<TcpStream>, key: &RsaPublicKey, spec: &SessionSpec) -> Early {
    use std::io::Read;
    let mut buf = vec![0u8; 4096];
    let n = match sock.get_ref().read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Early::Refused(AuthFail::Io(e)),
    };
    buf.truncate(n);
    match take_auth_line(&buf) {
        Ok(Some((line, rest))) => match verify_auth_line(
            line,
            &spec.session_id,
            &spec.client_nonce,
            &spec.rvd_nonce,
            key,
        ) {
            Ok(()) => Early::Verified(rest.to_vec()),
            Err(e) => Early::Refused(AuthFail::Line(e)),
        },
        Ok(None) => Early::Partial(buf),
        Err(e) => Early::Refused(AuthFail::Line(e)),
    }
}

async fn accept_loop(
    inner: Arc<Inner>,
    spec: Arc<SessionSpec>,
    side: Side,
    listener: &Async<TcpListener>,
    events: async_channel::Sender<Event>,
) {
    let key = match side {
        Side::A => spec.key_a.clone(),
        Side::B => spec.key_b.clone(),
    };
    let key = key.map(Arc::new);
    // Sockets still authenticating, oldest first. Owned here, so they close with the session.
    let mut pending: VecDeque<Authenticating> = VecDeque::new();
    // In a multi-pair session the first pair is the control channel: each side's first socket
    // must reach the pairing queue first, so the first socket accepted is verified before the
    // next is accepted (concurrent verification let a data socket overtake it under load).
    let mut first = !spec.single_pair;
    let (mut window, mut waited) = (Instant::now(), Duration::ZERO);
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("session {}: accept on side {side}: {e}", spec.session_id);
                Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(slot) = inner.try_slot() else {
            inner.shed_log(&format!(
                "{} sockets open (limit)",
                inner.cfg.max_connections
            ));
            let _ = events.try_send(Event::Rejected);
            continue;
        };
        let _ = sock.get_ref().set_nodelay(true);
        let Some(key) = key.clone() else {
            let ready = Ready {
                sock: Arc::new(sock),
                leftover: Vec::new(),
                peer,
                _slot: slot,
            };
            let _ = events.send(Event::Ready(side, ready)).await;
            continue;
        };
        // A legitimate side's line follows its connect within a moment: give a socket with
        // nothing yet a few milliseconds before judging it (strangers cost this much each).
        let mut checked = check_early(&sock, &key, &spec);
        if window.elapsed() >= Duration::from_secs(1) {
            (window, waited) = (Instant::now(), Duration::ZERO);
        }
        if matches!(&checked, Early::Partial(b) if b.is_empty()) && waited < EARLY_BUDGET {
            let t = Instant::now();
            let spoke = runtime::timeout(EARLY_WAIT, sock.readable()).await.is_ok();
            waited += t.elapsed();
            if spoke {
                checked = check_early(&sock, &key, &spec);
            }
        }
        let early = match checked {
            Early::Verified(leftover) => {
                settle(
                    &spec,
                    side,
                    peer,
                    Arc::new(sock),
                    slot,
                    Ok(leftover),
                    &events,
                )
                .await;
                continue;
            }
            Early::Refused(e) => {
                settle(&spec, side, peer, Arc::new(sock), slot, Err(e), &events).await;
                continue;
            }
            Early::Partial(bytes) => bytes,
        };
        if std::mem::take(&mut first) {
            let limit = inner.cfg.auth_timeout;
            let outcome = authenticate(&sock, &key, &spec, limit, early).await;
            settle(&spec, side, peer, Arc::new(sock), slot, outcome, &events).await;
            continue;
        }
        // Only a socket that goes on authenticating counts against the limits (one whose
        // line was already complete above never does): over a limit, the oldest silent
        // socket of the source makes room.
        pending.retain(|p| !p.task.is_finished());
        let source = source_of(peer.ip());
        if let Some(i) = evict_index(
            &pending,
            source,
            inner.cfg.max_auth_per_source,
            inner.cfg.max_pending_per_side,
        ) {
            if let Some(old) = pending.remove(i) {
                inner.shed_log(&format!(
                    "session {}: side {side}: too many sockets authenticating; closing the oldest from {}",
                    spec.session_id, old.source
                ));
                drop(old);
                let _ = events.try_send(Event::Rejected);
            }
        }
        let sock = Arc::new(sock);
        let weak = Arc::downgrade(&sock);
        let (spec, events, limit) = (spec.clone(), events.clone(), inner.cfg.auth_timeout);
        // Bounded by the auth deadline, and cancelled (closing the socket) when evicted or
        // when the session ends.
        let task = runtime::spawn(async move {
            let outcome = authenticate(&sock, &key, &spec, limit, early).await;
            settle(&spec, side, peer, sock, slot, outcome, &events).await;
        });
        pending.push_back(Authenticating {
            source,
            sock: weak,
            task,
        });
    }
}

/// Hands a socket whose authentication ended to the session: verified (ready to pair) or
/// refused (closed here, counted as rejected).
async fn settle(
    spec: &SessionSpec,
    side: Side,
    peer: SocketAddr,
    sock: Arc<Async<TcpStream>>,
    slot: ConnSlot,
    outcome: Result<Vec<u8>, AuthFail>,
    events: &async_channel::Sender<Event>,
) {
    match outcome {
        Ok(leftover) => {
            log::debug!(
                "session {}: side {side}: {peer} authenticated",
                spec.session_id
            );
            let ready = Ready {
                sock,
                leftover,
                peer,
                _slot: slot,
            };
            let _ = events.send(Event::Ready(side, ready)).await;
        }
        Err(e) => {
            log::warn!(
                "session {}: Authentication failed on side {side} from {peer}: {e}",
                spec.session_id
            );
            let _ = events.send(Event::Failed).await;
        }
    }
}

async fn run_session(
    inner: Arc<Inner>,
    spec: SessionSpec,
    la: Async<TcpListener>,
    lb: Async<TcpListener>,
    ports: SessionPorts,
) {
    let spec = Arc::new(spec);
    let (tx, rx) = async_channel::unbounded::<Event>();
    let bytes = Arc::new(Bytes::default());
    let mut pending_a: Queue = VecDeque::new();
    let mut pending_b: Queue = VecDeque::new();
    let mut pairs: Vec<runtime::Task<()>> = Vec::new();
    let (mut formed, mut live, mut rejected) = (0u64, 0usize, 0u64);
    let mut timer = Timer::after(inner.cfg.session_timeout);
    let mut grace = false;
    let max_pending = inner.cfg.max_pending_per_side;
    let linger = inner.cfg.half_close_linger;

    let accept_a = accept_loop(inner.clone(), spec.clone(), Side::A, &la, tx.clone());
    let accept_b = accept_loop(inner.clone(), spec.clone(), Side::B, &lb, tx.clone());
    let main = async {
        loop {
            let ev = async { rx.recv().await.map_or(Wake::Stop, Wake::Event) };
            let stop = async {
                let _ = inner.stop.1.recv().await;
                Wake::Stop
            };
            let tick = async {
                if grace {
                    std::future::pending::<()>().await;
                }
                (&mut timer).await;
                Wake::Tick
            };
            let ev = match ev.or(stop).or(tick).await {
                Wake::Event(e) => e,
                Wake::Stop => return EndReason::Shutdown,
                Wake::Tick => {
                    grace = true;
                    if live == 0 {
                        return EndReason::Expired;
                    }
                    continue;
                }
            };
            match ev {
                Event::Rejected => rejected += 1,
                Event::PairDone { first } => {
                    live -= 1;
                    // "A session ends when either side closes": the first pair is the whole
                    // session (single mode, multiplexed suite) or its control channel (multi).
                    if first || (grace && live == 0) {
                        return EndReason::Closed;
                    }
                }
                Event::Failed => rejected += 1,
                Event::Ready(side, r) => {
                    let q = if side == Side::A {
                        &mut pending_a
                    } else {
                        &mut pending_b
                    };
                    let refuse = if spec.single_pair && formed > 0 {
                        Some("refusing extra socket (single pair)")
                    } else if q.len() >= max_pending {
                        Some("too many unpaired sockets")
                    } else {
                        None
                    };
                    match refuse {
                        None => q.push_back(r),
                        Some(why) => {
                            log::warn!(
                                "session {}: side {side}: {why}; closing {}",
                                spec.session_id,
                                r.peer
                            );
                            rejected += 1;
                        }
                    }
                }
            }
            // Pair the heads (verified sockets, in verification order); a single-pair session
            // pairs once.
            while !pending_a.is_empty() && !pending_b.is_empty() {
                if spec.single_pair && formed > 0 {
                    break;
                }
                let (Some(a), Some(b)) = (pending_a.pop_front(), pending_b.pop_front()) else {
                    break;
                };
                let first = formed == 0;
                formed += 1;
                live += 1;
                log::debug!(
                    "session {}: pairing {} with {}",
                    spec.session_id,
                    a.peer,
                    b.peer
                );
                let (tx, bytes) = (tx.clone(), bytes.clone());
                pairs.retain(|t| !t.is_finished());
                pairs.push(runtime::spawn(async move {
                    let ab = Direction {
                        pre: &a.leftover,
                        cipher: None,
                        count: &bytes.ab,
                    };
                    let ba = Direction {
                        pre: &b.leftover,
                        cipher: None,
                        count: &bytes.ba,
                    };
                    let _ = splice(&a.sock, &b.sock, ab, ba, linger).await;
                    let _ = tx.send(Event::PairDone { first }).await;
                }));
            }
        }
    };
    // The accept loops never return; they only run while the session does.
    let accepts = async {
        accept_a.or(accept_b).await;
        EndReason::Shutdown
    };
    let reason = main.or(accepts).await;
    drop((la, lb, pending_a, pending_b, pairs));
    inner.sessions().remove(&spec.session_id);
    let report = SessionReport {
        session_id: spec.session_id.clone(),
        reason,
        pairs: formed,
        rejected,
        bytes_ab: bytes.ab.load(Ordering::Relaxed),
        bytes_ba: bytes.ba.load(Ordering::Relaxed),
    };
    log::info!(
        "Finished session {} for {} to {} using ports [{}, {}]: {:?}, {} pairs, {} rejected, {} bytes A->B, {} bytes B->A",
        report.session_id,
        spec.atsign_a,
        spec.atsign_b,
        ports.port_a,
        ports.port_b,
        report.reason,
        report.pairs,
        report.rejected,
        report.bytes_ab,
        report.bytes_ba
    );
    let _ = inner.reports.0.try_send(report);
}

/// A fresh relay nonce: the reference's ISO-8601 timestamp plus 64 random bits, so no two
/// sessions share one and an auth line from an earlier session never verifies (§3 step 6).
pub fn new_rvd_nonce() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    let rand = crate::crypto::hash::hex(&crate::crypto::random::bytes::<8>());
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z-{rand}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_000), (2022, 1, 8));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn nonces_are_unique_and_comma_free() {
        let (a, b) = (new_rvd_nonce(), new_rvd_nonce());
        assert_ne!(a, b);
        assert!(!a.contains(',') && a.len() > 26);
    }
}
