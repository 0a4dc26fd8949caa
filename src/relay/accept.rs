//! Accepting relay sockets and reading their auth lines (noports.md §4.3): one loop per
//! listener, for one side of one session (two-port mode) or for every session at once (the
//! shared port of single-port mode, where the line itself names the session and its signature
//! names the side).
//!
//! Every socket gets the same treatment whatever the mode: the fd cap, a short early look at
//! what it already sent (legitimate sides write their line at once), then concurrent
//! authentication under the auth deadline, the line-length cap and the per-source and
//! per-listener limits (a newcomer over a limit evicts the oldest stalled socket of the
//! busiest source, so strangers never lock anyone out).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::AsyncReadExt;

use super::pairing::Event;
use super::session::{ConnSlot, Inner, SessionSpec};
use crate::crypto::rsa::RsaPublicKey;
use crate::noports::relay_msg::{
    auth_line_rvd_nonce, take_auth_line, verify_auth_line, AuthLineError,
};
use crate::runtime;

/// How the accept loop waits for the first bytes of a silent new socket.
const EARLY_WAIT: Duration = Duration::from_millis(10);
/// ... but at most this long in all per second and listener: a flood of silent sockets must
/// not make the accept loop itself slow (the legitimate socket would wait in the backlog
/// behind them); beyond it, silent sockets go straight to concurrent authentication.
const EARLY_BUDGET: Duration = Duration::from_millis(100);
/// Back-off after a failed `accept` (e.g. EMFILE), so a full fd table does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

/// A socket that passed authentication (or needed none), with the bytes after its auth line.
pub(super) struct Ready {
    pub(super) sock: Arc<Async<TcpStream>>,
    pub(super) leftover: Vec<u8>,
    pub(super) peer: SocketAddr,
    pub(super) _slot: ConnSlot,
}

/// A live session as the accept loops see it: whom to check a line against, where to send
/// the verified socket.
#[derive(Clone)]
pub(super) struct Route {
    pub(super) spec: Arc<SessionSpec>,
    pub(super) events: async_channel::Sender<Event>,
}

/// What a listener serves.
pub(super) enum Gate {
    /// One side of one session (two-port mode); no key: that side is unauthenticated.
    Side {
        route: Route,
        side: Side,
        key: Option<Arc<RsaPublicKey>>,
    },
    /// The shared port: sessions are found by the line's `rvdNonce` in the table's routes.
    Shared(u16),
}

impl Gate {
    /// Counts a socket shed or evicted before its session was known.
    fn rejected(&self) {
        if let Gate::Side { route, .. } = self {
            let _ = route.events.try_send(Event::Rejected);
        }
    }

    fn label(&self) -> String {
        match self {
            Gate::Side { route, side, .. } => {
                format!("session {}: side {side}", route.spec.session_id)
            }
            Gate::Shared(port) => format!("shared port {port}"),
        }
    }

    /// Checks a complete auth line: where it leads and as which side.
    fn judge(&self, inner: &Inner, line: &str) -> Result<(Route, Claim), Refusal> {
        let verify = |route: &Route, key: &RsaPublicKey| {
            let s = &route.spec;
            verify_auth_line(line, &s.session_id, &s.client_nonce, &s.rvd_nonce, key)
        };
        match self {
            Gate::Side { route, side, key } => {
                let Some(key) = key else {
                    return Ok((route.clone(), Claim::Side(*side)));
                };
                match verify(route, key) {
                    Ok(()) => Ok((route.clone(), Claim::Side(*side))),
                    Err(e) => Err(Refusal(Some(route.clone()), AuthFail::Line(e))),
                }
            }
            Gate::Shared(_) => {
                let nonce = auth_line_rvd_nonce(line).map_err(|e| Refusal(None, e.into()))?;
                let route = inner
                    .route(&nonce)
                    .ok_or(Refusal(None, AuthFail::NoSession))?;
                let (Some(ka), Some(kb)) = (&route.spec.key_a, &route.spec.key_b) else {
                    // Never registered (the table refuses such sessions in this mode).
                    return Err(Refusal(Some(route), AuthFail::NoSession));
                };
                let claim = match verify(&route, ka) {
                    Ok(()) if ka == kb => Claim::Either,
                    Ok(()) => Claim::Side(Side::A),
                    Err(_) => match verify(&route, kb) {
                        Ok(()) => Claim::Side(Side::B),
                        Err(e) => return Err(Refusal(Some(route), AuthFail::Line(e))),
                    },
                };
                Ok((route, claim))
            }
        }
    }
}

/// A failed socket, with its session when the line named a live one.
pub(super) struct Refusal(Option<Route>, AuthFail);

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
/// listener is full; there the oldest stalled socket goes first, then the oldest. Age alone
/// decides among stalled ones: a stranger that sent half a line and stopped is no better
/// than a silent one, and a legitimate side (whose line follows its connect at once) is the
/// youngest, so it outlives `per_source` later arrivals from its own address.
fn evict_index(
    pending: &VecDeque<Authenticating>,
    source: IpAddr,
    per_source: usize,
    per_listener: usize,
) -> Option<usize> {
    let count = |s: IpAddr| pending.iter().filter(|p| p.source == s).count();
    let victim_source = if count(source) >= per_source.max(1) {
        source
    } else if pending.len() >= per_listener.max(1) {
        pending.iter().map(|p| p.source).max_by_key(|s| count(*s))?
    } else {
        return None;
    };
    pending
        .iter()
        .position(|p| p.source == victim_source && p.is_stalled())
        .or_else(|| pending.iter().position(|p| p.source == victim_source))
}

/// Why a socket failed authentication.
#[derive(Debug)]
pub(super) enum AuthFail {
    Timeout,
    Closed,
    Io(io::Error),
    Line(AuthLineError),
    /// Shared port: the line's rvdNonce names no live session.
    NoSession,
}

impl From<AuthLineError> for AuthFail {
    fn from(e: AuthLineError) -> Self {
        AuthFail::Line(e)
    }
}

impl fmt::Display for AuthFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFail::Timeout => f.write_str("no auth line before the deadline"),
            AuthFail::Closed => f.write_str("closed before sending an auth line"),
            AuthFail::Io(e) => write!(f, "reading auth line: {e}"),
            AuthFail::Line(e) => write!(f, "{e}"),
            AuthFail::NoSession => f.write_str("auth line names no live session"),
        }
    }
}

type Outcome = Result<(Route, Claim, Vec<u8>), Refusal>;

/// Reads the auth line and checks it (noports.md §4.3); returns the bytes after the `\n`.
async fn authenticate(
    sock: &Async<TcpStream>,
    inner: &Inner,
    gate: &Gate,
    early: Vec<u8>,
) -> Outcome {
    let read = async {
        let mut buf = early;
        let mut chunk = [0u8; 1024];
        loop {
            let n = (&*sock)
                .read(&mut chunk)
                .await
                .map_err(|e| Refusal(None, AuthFail::Io(e)))?;
            let got = chunk
                .get(..n)
                .filter(|c| !c.is_empty())
                .ok_or(Refusal(None, AuthFail::Closed))?;
            buf.extend_from_slice(got);
            if let Some((line, rest)) = take_auth_line(&buf).map_err(|e| Refusal(None, e.into()))? {
                let (route, claim) = gate.judge(inner, line)?;
                return Ok((route, claim, rest.to_vec()));
            }
        }
    };
    runtime::timeout(inner.cfg.auth_timeout, read)
        .await
        .unwrap_or(Err(Refusal(None, AuthFail::Timeout)))
}

/// What the accept loop learned from the bytes already waiting on a new socket.
enum Early {
    /// A complete line: verified (ready to pair) or refused (close now), as settled.
    Done(Outcome),
    /// No complete line yet: authenticate asynchronously, starting from these bytes.
    Partial(Vec<u8>),
}

/// Reads what the peer already sent (never waits) and checks a complete auth line at once.
/// A legitimate side writes its line right after connecting, so it is usually verified here,
/// before any later socket is accepted and before strangers could evict it.
fn check_early(sock: &Async<TcpStream>, inner: &Inner, gate: &Gate) -> Early {
    use std::io::Read;
    let mut buf = vec![0u8; 4096];
    let n = match sock.get_ref().read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Early::Done(Err(Refusal(None, AuthFail::Io(e)))),
    };
    buf.truncate(n);
    match take_auth_line(&buf) {
        Ok(Some((line, rest))) => Early::Done(
            gate.judge(inner, line)
                .map(|(route, claim)| (route, claim, rest.to_vec())),
        ),
        Ok(None) => Early::Partial(buf),
        Err(e) => Early::Done(Err(Refusal(None, e.into()))),
    }
}

/// Accepts on `listener` until dropped (with the session, or at shutdown for the shared
/// port). Sockets still authenticating are owned here, so they close with the loop.
pub(super) async fn accept_loop(inner: Arc<Inner>, gate: Gate, listener: &Async<TcpListener>) {
    let mut pending: VecDeque<Authenticating> = VecDeque::new();
    // In a multi-pair session the first pair is the control channel: each side's first socket
    // must reach the pairing queue first, so the first socket accepted is verified before the
    // next is accepted (concurrent verification let a data socket overtake it under load).
    // The shared port serves every session, so it never waits on one socket.
    let mut first = matches!(&gate, Gate::Side { route, .. } if !route.spec.single_pair);
    // The shared port holds every session's authenticating sockets: up to half the socket
    // cap, so verified and paired sockets always keep room.
    let per_listener = match &gate {
        Gate::Side { .. } => inner.cfg.max_pending_per_side,
        Gate::Shared(_) => (inner.cfg.max_connections / 2).max(inner.cfg.max_pending_per_side),
    };
    let (mut window, mut waited) = (Instant::now(), Duration::ZERO);
    // Shared port: per source, the "done" signal of its latest socket still authenticating.
    // A verified socket is handed to its session only after every earlier socket from the same
    // source has settled, so a client's control socket (its first) is never overtaken by its
    // own data socket whose line verified faster: two-port mode gets this from verifying each
    // side's first socket alone, which one listener for every session cannot do.
    let mut order: HashMap<IpAddr, async_channel::Receiver<()>> = HashMap::new();
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("{}: accept: {e}", gate.label());
                Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(slot) = inner.try_slot() else {
            inner.shed_log(&format!(
                "{} sockets open (limit)",
                inner.cfg.max_connections
            ));
            gate.rejected();
            continue;
        };
        let _ = sock.get_ref().set_nodelay(true);
        if let Gate::Side {
            route,
            side,
            key: None,
        } = &gate
        {
            let ready = Ready {
                sock: Arc::new(sock),
                leftover: Vec::new(),
                peer,
                _slot: slot,
            };
            let _ = route
                .events
                .send(Event::Ready(Claim::Side(*side), ready))
                .await;
            continue;
        }
        // A legitimate side's line follows its connect within a moment: give a socket with
        // nothing yet a few milliseconds before judging it (strangers cost this much each).
        let mut checked = check_early(&sock, &inner, &gate);
        if window.elapsed() >= Duration::from_secs(1) {
            (window, waited) = (Instant::now(), Duration::ZERO);
        }
        if matches!(&checked, Early::Partial(b) if b.is_empty()) && waited < EARLY_BUDGET {
            let t = Instant::now();
            let spoke = runtime::timeout(EARLY_WAIT, sock.readable()).await.is_ok();
            waited += t.elapsed();
            if spoke {
                checked = check_early(&sock, &inner, &gate);
            }
        }
        let source = source_of(peer.ip());
        let (after, done) = match &gate {
            Gate::Shared(_) => {
                order.retain(|_, rx| !rx.is_closed());
                let (tx, rx) = async_channel::bounded::<()>(1);
                (order.insert(source, rx), Some(tx))
            }
            Gate::Side { .. } => (None, None),
        };
        let early = match checked {
            Early::Done(outcome) => {
                match after.filter(|rx| !rx.is_closed()) {
                    None => settle(&gate, peer, Arc::new(sock), slot, outcome).await,
                    Some(rx) => {
                        let gate2 = gate.share();
                        runtime::spawn(async move {
                            let _done = done;
                            let _ = rx.recv().await;
                            settle(&gate2, peer, Arc::new(sock), slot, outcome).await;
                        })
                        .detach();
                    }
                }
                continue;
            }
            Early::Partial(bytes) => bytes,
        };
        if std::mem::take(&mut first) {
            let outcome = authenticate(&sock, &inner, &gate, early).await;
            settle(&gate, peer, Arc::new(sock), slot, outcome).await;
            continue;
        }
        // Only a socket that goes on authenticating counts against the limits (one whose
        // line was already complete above never does): over a limit, the oldest silent
        // socket of the source makes room.
        pending.retain(|p| !p.task.is_finished());
        if let Some(i) = evict_index(
            &pending,
            source,
            inner.cfg.max_auth_per_source,
            per_listener,
        ) {
            if let Some(old) = pending.remove(i) {
                inner.shed_log(&format!(
                    "{}: too many sockets authenticating; closing the oldest from {}",
                    gate.label(),
                    old.source
                ));
                drop(old);
                gate.rejected();
            }
        }
        let sock = Arc::new(sock);
        let weak = Arc::downgrade(&sock);
        let (inner2, gate2) = (inner.clone(), gate.share());
        // Bounded by the auth deadline, and cancelled (closing the socket) when evicted or
        // when the loop ends.
        let task = runtime::spawn(async move {
            // Dropped when this task ends (settled, evicted or cancelled): releases the next
            // socket from the same source.
            let _done = done;
            let outcome = authenticate(&sock, &inner2, &gate2, early).await;
            if let Some(rx) = after {
                let _ = rx.recv().await;
            }
            settle(&gate2, peer, sock, slot, outcome).await;
        });
        pending.push_back(Authenticating {
            source,
            sock: weak,
            task,
        });
    }
}

impl Gate {
    /// A copy for an authentication task.
    fn share(&self) -> Gate {
        match self {
            Gate::Side { route, side, key } => Gate::Side {
                route: route.clone(),
                side: *side,
                key: key.clone(),
            },
            Gate::Shared(port) => Gate::Shared(*port),
        }
    }
}

/// Hands a socket whose authentication ended to its session: verified (ready to pair) or
/// refused (closed here, counted as rejected by the session the line named, if any).
async fn settle(
    gate: &Gate,
    peer: SocketAddr,
    sock: Arc<Async<TcpStream>>,
    slot: ConnSlot,
    outcome: Outcome,
) {
    match outcome {
        Ok((route, claim, leftover)) => {
            log::debug!(
                "session {}: side {claim}: {peer} authenticated",
                route.spec.session_id
            );
            let ready = Ready {
                sock,
                leftover,
                peer,
                _slot: slot,
            };
            let _ = route.events.send(Event::Ready(claim, ready)).await;
        }
        Err(Refusal(route, e)) => {
            // Refusals before the line named a session belong to the listener's own session
            // in two-port mode; on the shared port they belong to none.
            let route = route.or(match gate {
                Gate::Side { route, .. } => Some(route.clone()),
                Gate::Shared(_) => None,
            });
            match (&route, gate) {
                (_, Gate::Side { route, side, .. }) => log::warn!(
                    "session {}: Authentication failed on side {side} from {peer}: {e}",
                    route.spec.session_id
                ),
                (Some(r), Gate::Shared(port)) => log::warn!(
                    "session {}: Authentication failed on shared port {port} from {peer}: {e}",
                    r.spec.session_id
                ),
                (None, Gate::Shared(port)) => {
                    log::warn!("shared port {port}: Authentication failed from {peer}: {e}")
                }
            }
            if let Some(r) = route {
                let _ = r.events.send(Event::Failed).await;
            }
        }
    }
}
