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

use super::table::Table;
use super::types::{job, Claim, ConnSlot, Event, Ready, Route, Side};
use crate::crypto::rsa::RsaPublicKey;
use crate::noports::relay_msg::{
    auth_line_rvd_nonce, take_auth_line, verify_auth_line, AuthLineError,
};
use crate::runtime::{self, TaskSet};

/// How the accept loop waits for the first bytes of a silent new socket.
const EARLY_WAIT: Duration = Duration::from_millis(10);
/// ... but at most this long in all per second and listener: a flood of silent sockets must
/// not make the accept loop itself slow (the legitimate socket would wait in the backlog
/// behind them); beyond it, silent sockets go straight to concurrent authentication.
const EARLY_BUDGET: Duration = Duration::from_millis(100);
/// Back-off after a failed `accept` (e.g. EMFILE), so a full fd table does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    fn judge(&self, table: &Table, line: &str) -> Result<(Route, Claim), Refusal> {
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
                let route = table
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
    table: &Table,
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
                let (route, claim) = gate.judge(table, line)?;
                return Ok((route, claim, rest.to_vec()));
            }
        }
    };
    runtime::timeout(table.cfg.auth_timeout, read)
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
fn check_early(sock: &Async<TcpStream>, table: &Table, gate: &Gate) -> Early {
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
            gate.judge(table, line)
                .map(|(route, claim)| (route, claim, rest.to_vec())),
        ),
        Ok(None) => Early::Partial(buf),
        Err(e) => Early::Done(Err(Refusal(None, e.into()))),
    }
}

/// Accepts on `listener` until dropped (with the session, or at shutdown for the shared
/// port). Sockets still authenticating are owned here, so they close with the loop.
pub(super) async fn accept_loop(table: Arc<Table>, gate: Gate, listener: &Async<TcpListener>) {
    let mut gatekeeper = Gatekeeper::new(table, gate);
    loop {
        match listener.accept().await {
            Ok((sock, peer)) => gatekeeper.admit(sock, peer).await,
            Err(e) => {
                log::warn!("{}: accept: {e}", gatekeeper.gate.label());
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// One listener's accepted sockets until they settle, and the limits they count against.
struct Gatekeeper {
    table: Arc<Table>,
    gate: Gate,
    /// Sockets authenticating concurrently; dropping one closes it.
    pending: VecDeque<Authenticating>,
    /// Verified sockets waiting for an earlier socket from their source to settle (shared
    /// port): each waits at most that one's auth deadline.
    deferred: TaskSet,
    /// In a multi-pair session the first pair is the control channel: each side's first socket
    /// must reach the pairing queue first, so the first socket accepted is verified before the
    /// next is accepted (concurrent verification let a data socket overtake it under load).
    /// The shared port serves every session, so it never waits on one socket.
    first: bool,
    per_listener: usize,
    /// This second's start and the early waits spent in it (see [`EARLY_BUDGET`]).
    window: Instant,
    waited: Duration,
    /// Shared port: per source, the "done" signal of its latest socket still authenticating.
    /// A verified socket is handed to its session only after every earlier socket from the same
    /// source has settled, so a client's control socket (its first) is never overtaken by its
    /// own data socket whose line verified faster: two-port mode gets this from verifying each
    /// side's first socket alone, which one listener for every session cannot do.
    order: HashMap<IpAddr, async_channel::Receiver<()>>,
}

/// A socket's place in its source's order (shared port): the earlier socket to wait for, and
/// the signal to drop once settled.
type Place = (
    Option<async_channel::Receiver<()>>,
    Option<async_channel::Sender<()>>,
);

impl Gatekeeper {
    fn new(table: Arc<Table>, gate: Gate) -> Gatekeeper {
        let first = matches!(&gate, Gate::Side { route, .. } if !route.spec.single_pair);
        // The shared port holds every session's authenticating sockets: up to half the socket
        // cap, so verified and paired sockets always keep room.
        let per_listener = match &gate {
            Gate::Side { .. } => table.cfg.max_pending_per_side,
            Gate::Shared(_) => (table.cfg.max_connections / 2).max(table.cfg.max_pending_per_side),
        };
        Gatekeeper {
            table,
            gate,
            pending: VecDeque::new(),
            deferred: TaskSet::new(),
            first,
            per_listener,
            window: Instant::now(),
            waited: Duration::ZERO,
            order: HashMap::new(),
        }
    }

    /// Takes one accepted socket: counted, then handed on, settled or authenticating.
    async fn admit(&mut self, sock: Async<TcpStream>, peer: SocketAddr) {
        let Some(slot) = self.table.try_slot() else {
            self.table.shed_log(&format!(
                "{} sockets open (limit)",
                self.table.cfg.max_connections
            ));
            self.gate.rejected();
            return;
        };
        let _ = sock.get_ref().set_nodelay(true);
        if let Gate::Side {
            route,
            side,
            key: None,
        } = &self.gate
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
            return;
        }
        let checked = self.look_early(&sock).await;
        let source = source_of(peer.ip());
        let (after, done) = self.place(source);
        let early = match checked {
            Early::Done(outcome) => {
                match after.filter(|rx| !rx.is_closed()) {
                    None => settle(&self.gate, peer, Arc::new(sock), slot, outcome).await,
                    Some(rx) => {
                        let gate = self.gate.share();
                        let limit = self.table.cfg.auth_timeout * 2;
                        self.deferred.spawn_within(
                            limit,
                            job(async move {
                                let _done = done;
                                let _ = rx.recv().await;
                                settle(&gate, peer, Arc::new(sock), slot, outcome).await;
                            }),
                        );
                    }
                }
                return;
            }
            Early::Partial(bytes) => bytes,
        };
        if std::mem::take(&mut self.first) {
            let outcome = authenticate(&sock, &self.table, &self.gate, early).await;
            settle(&self.gate, peer, Arc::new(sock), slot, outcome).await;
            return;
        }
        self.make_room(source);
        let sock = Arc::new(sock);
        let weak = Arc::downgrade(&sock);
        let (table, gate) = (self.table.clone(), self.gate.share());
        // Bounded by the auth deadline, and cancelled (closing the socket) when evicted or
        // when the loop ends.
        let task = runtime::spawn(job(async move {
            // Dropped when this task ends (settled, evicted or cancelled): releases the next
            // socket from the same source.
            let _done = done;
            let outcome = authenticate(&sock, &table, &gate, early).await;
            if let Some(rx) = after {
                let _ = rx.recv().await;
            }
            settle(&gate, peer, sock, slot, outcome).await;
        }));
        self.pending.push_back(Authenticating {
            source,
            sock: weak,
            task,
        });
    }

    /// A legitimate side's line follows its connect within a moment: give a socket with
    /// nothing yet a few milliseconds before judging it (strangers cost this much each).
    async fn look_early(&mut self, sock: &Async<TcpStream>) -> Early {
        let mut checked = check_early(sock, &self.table, &self.gate);
        if self.window.elapsed() >= Duration::from_secs(1) {
            (self.window, self.waited) = (Instant::now(), Duration::ZERO);
        }
        if matches!(&checked, Early::Partial(b) if b.is_empty()) && self.waited < EARLY_BUDGET {
            let t = Instant::now();
            let spoke = runtime::timeout(EARLY_WAIT, sock.readable()).await.is_ok();
            self.waited += t.elapsed();
            if spoke {
                checked = check_early(sock, &self.table, &self.gate);
            }
        }
        checked
    }

    /// The socket's place after the latest unsettled one from `source` (shared port only).
    fn place(&mut self, source: IpAddr) -> Place {
        match &self.gate {
            Gate::Shared(_) => {
                self.order.retain(|_, rx| !rx.is_closed());
                let (tx, rx) = async_channel::bounded::<()>(1);
                (self.order.insert(source, rx), Some(tx))
            }
            Gate::Side { .. } => (None, None),
        }
    }

    /// Only a socket that goes on authenticating counts against the limits (one whose line
    /// was already complete never does): over a limit, the oldest silent socket of the
    /// source makes room.
    fn make_room(&mut self, source: IpAddr) {
        self.pending.retain(|p| !p.task.is_finished());
        let Some(i) = evict_index(
            &self.pending,
            source,
            self.table.cfg.max_auth_per_source,
            self.per_listener,
        ) else {
            return;
        };
        if let Some(old) = self.pending.remove(i) {
            self.table.shed_log(&format!(
                "{}: too many sockets authenticating; closing the oldest from {}",
                self.gate.label(),
                old.source
            ));
            drop(old);
            self.gate.rejected();
        }
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
