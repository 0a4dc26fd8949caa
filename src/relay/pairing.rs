//! One session's life (noports.md §4.4, §4.5): verified sockets queue per side, the heads
//! pair in verification order and are spliced, the timer expires an unpaired session, and
//! the end is reported. The sockets come from the session's own two listeners (two-port
//! mode) or from the table's shared port (single-port mode); pairing does not care which.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_io::{Async, Timer};
use futures_lite::FutureExt;

use super::accept::{accept_loop, Claim, Gate, Ready, Route, Side};
use super::session::{EndReason, Inner, SessionPorts, SessionReport, SessionSpec};
use crate::tunnel::{splice, Direction};
use crate::runtime::{self, atomic::AtomicU64};

enum Wake {
    Event(Event),
    Stop,
    Tick,
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

/// A side's verified sockets waiting for a peer, in order of verification.
type Queue = VecDeque<Ready>;

#[derive(Default)]
struct Bytes {
    ab: AtomicU64,
    ba: AtomicU64,
}

/// Runs a session to its end. `listeners` are its own two (two-port mode) or `None` when the
/// shared port delivers its sockets through `rx` (the table registered the route).
pub(super) async fn run_session(
    inner: Arc<Inner>,
    spec: Arc<SessionSpec>,
    listeners: Option<(Async<TcpListener>, Async<TcpListener>)>,
    ports: SessionPorts,
    (tx, rx): (async_channel::Sender<Event>, async_channel::Receiver<Event>),
) {
    let bytes = Arc::new(Bytes::default());
    let mut pending_a: Queue = VecDeque::new();
    let mut pending_b: Queue = VecDeque::new();
    let mut pairs: Vec<runtime::Task<()>> = Vec::new();
    let (mut formed, mut live, mut rejected) = (0u64, 0usize, 0u64);
    let mut timer = Timer::after(inner.cfg.session_timeout);
    let mut grace = false;
    let max_pending = inner.cfg.max_pending_per_side;
    let linger = inner.cfg.half_close_linger;

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
                Event::Ready(claim, r) => {
                    // Same atSign on both sides (shared port): sides in arrival order, so
                    // the first unpaired socket is A and the next B.
                    let side = match claim {
                        Claim::Side(s) => s,
                        Claim::Either if pending_a.len() <= pending_b.len() => Side::A,
                        Claim::Either => Side::B,
                    };
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
        match &listeners {
            Some((la, lb)) => {
                let gate = |side, key: &Option<_>| Gate::Side {
                    route: Route {
                        spec: spec.clone(),
                        events: tx.clone(),
                    },
                    side,
                    key: key.clone().map(Arc::new),
                };
                let a = accept_loop(inner.clone(), gate(Side::A, &spec.key_a), la);
                let b = accept_loop(inner.clone(), gate(Side::B, &spec.key_b), lb);
                a.or(b).await;
            }
            None => std::future::pending::<()>().await,
        }
        EndReason::Shutdown
    };
    let reason = main.or(accepts).await;
    drop((listeners, pending_a, pending_b, pairs));
    inner.end_session(&spec);
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
