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

use super::accept::{accept_loop, Gate};
use super::table::Table;
use super::types::{
    job, Claim, EndReason, Event, Ready, Route, SessionPorts, SessionReport, SessionSpec, Side,
};
use crate::runtime::{atomic::AtomicU64, TaskSet};
use crate::tunnel::{splice, Direction};

enum Wake {
    Event(Event),
    Stop,
    Tick,
}

/// A side's verified sockets waiting for a peer, in order of verification.
type Queue = VecDeque<Ready>;

#[derive(Default)]
struct Bytes {
    ab: AtomicU64,
    ba: AtomicU64,
}

/// A session's state while it runs: its queues, its pairs (tasks it owns: dropping the
/// session ends them) and its counters.
struct Session {
    table: Arc<Table>,
    spec: Arc<SessionSpec>,
    events: async_channel::Sender<Event>,
    bytes: Arc<Bytes>,
    pending_a: Queue,
    pending_b: Queue,
    pairs: TaskSet,
    formed: u64,
    live: usize,
    rejected: u64,
    /// The session timer has fired: from now on the last pair to close ends the session.
    grace: bool,
}

/// Runs a session to its end. `listeners` are its own two (two-port mode) or `None` when the
/// shared port delivers its sockets through `rx` (the table registered the route).
pub(super) async fn run_session(
    table: Arc<Table>,
    spec: Arc<SessionSpec>,
    listeners: Option<(Async<TcpListener>, Async<TcpListener>)>,
    ports: SessionPorts,
    (tx, rx): (async_channel::Sender<Event>, async_channel::Receiver<Event>),
) {
    let mut session = Session {
        table: table.clone(),
        spec: spec.clone(),
        events: tx.clone(),
        bytes: Arc::new(Bytes::default()),
        pending_a: VecDeque::new(),
        pending_b: VecDeque::new(),
        pairs: TaskSet::new(),
        formed: 0,
        live: 0,
        rejected: 0,
        grace: false,
    };
    let reason = session
        .run(&rx)
        .or(serve(&table, &spec, listeners.as_ref(), &tx))
        .await;
    drop(listeners);
    session.finish(reason, ports);
}

/// The session's own accept loops (two-port mode). They never return; they only run while
/// the session does.
async fn serve(
    table: &Arc<Table>,
    spec: &Arc<SessionSpec>,
    listeners: Option<&(Async<TcpListener>, Async<TcpListener>)>,
    events: &async_channel::Sender<Event>,
) -> EndReason {
    match listeners {
        Some((la, lb)) => {
            let gate = |side, key: &Option<_>| Gate::Side {
                route: Route {
                    spec: spec.clone(),
                    events: events.clone(),
                },
                side,
                key: key.clone().map(Arc::new),
            };
            let a = accept_loop(table.clone(), gate(Side::A, &spec.key_a), la);
            let b = accept_loop(table.clone(), gate(Side::B, &spec.key_b), lb);
            a.or(b).await;
        }
        None => std::future::pending::<()>().await,
    }
    EndReason::Shutdown
}

impl Session {
    /// Consumes events until the session ends: shutdown, expiry, or its pairs closing.
    async fn run(&mut self, rx: &async_channel::Receiver<Event>) -> EndReason {
        let mut timer = Timer::after(self.table.cfg.session_timeout);
        loop {
            let ev = async { rx.recv().await.map_or(Wake::Stop, Wake::Event) };
            let stop = async {
                let _ = self.table.stop.1.recv().await;
                Wake::Stop
            };
            let grace = self.grace;
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
                    self.grace = true;
                    if self.live == 0 {
                        return EndReason::Expired;
                    }
                    continue;
                }
            };
            if let Some(end) = self.on_event(ev) {
                return end;
            }
            self.pair_heads();
        }
    }

    fn on_event(&mut self, ev: Event) -> Option<EndReason> {
        match ev {
            Event::Rejected | Event::Failed => self.rejected += 1,
            Event::PairDone { first } => {
                self.live -= 1;
                // "A session ends when either side closes": the first pair is the whole
                // session (single mode, multiplexed suite) or its control channel (multi).
                if first || (self.grace && self.live == 0) {
                    return Some(EndReason::Closed);
                }
            }
            Event::Ready(claim, r) => self.enqueue(claim, r),
        }
        None
    }

    /// Queues a verified socket on its side, unless a limit refuses it.
    fn enqueue(&mut self, claim: Claim, r: Ready) {
        // Same atSign on both sides (shared port): sides in arrival order, so the first
        // unpaired socket is A and the next B.
        let side = match claim {
            Claim::Side(s) => s,
            Claim::Either if self.pending_a.len() <= self.pending_b.len() => Side::A,
            Claim::Either => Side::B,
        };
        let q = if side == Side::A {
            &mut self.pending_a
        } else {
            &mut self.pending_b
        };
        let refuse = if self.spec.single_pair && self.formed > 0 {
            Some("refusing extra socket (single pair)")
        } else if q.len() >= self.table.cfg.max_pending_per_side {
            Some("too many unpaired sockets")
        } else {
            None
        };
        match refuse {
            None => q.push_back(r),
            Some(why) => {
                log::warn!(
                    "session {}: side {side}: {why}; closing {}",
                    self.spec.session_id,
                    r.peer
                );
                self.rejected += 1;
            }
        }
    }

    /// Pairs the heads (verified sockets, in verification order); a single-pair session
    /// pairs once.
    fn pair_heads(&mut self) {
        while !self.pending_a.is_empty() && !self.pending_b.is_empty() {
            if self.spec.single_pair && self.formed > 0 {
                break;
            }
            let (Some(a), Some(b)) = (self.pending_a.pop_front(), self.pending_b.pop_front())
            else {
                break;
            };
            let first = self.formed == 0;
            self.formed += 1;
            self.live += 1;
            log::debug!(
                "session {}: pairing {} with {}",
                self.spec.session_id,
                a.peer,
                b.peer
            );
            let (tx, bytes) = (self.events.clone(), self.bytes.clone());
            let linger = self.table.cfg.half_close_linger;
            // Ends when either socket closes and the other has lingered; `splice` bounds it.
            self.pairs.spawn(job(async move {
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

    /// Closes every socket the session holds, forgets it in the table, then reports.
    fn finish(self, reason: EndReason, ports: SessionPorts) {
        let Session {
            table,
            spec,
            bytes,
            pending_a,
            pending_b,
            pairs,
            formed,
            rejected,
            ..
        } = self;
        drop((pending_a, pending_b, pairs));
        table.end_session(&spec);
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
        let _ = table.reports.0.try_send(report);
    }
}
