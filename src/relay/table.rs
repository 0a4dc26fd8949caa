//! The table of live sessions: their ids (for limits and duplicates), their routes by relay
//! nonce (the shared port's dispatch), the shared port once bound, and the socket count.
//!
//! All of it is one [`State`] behind one lock, taken only inside the short synchronous
//! methods below, so no lock is ever held across an await or a network round trip. The
//! tasks that use the table (sessions, accept loops) are owned by the
//! `SessionTable`, never by the table, so nothing here keeps them alive.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_io::Async;

use super::types::{ConnSlot, RelayConfig, RelayError, Route, SessionReport, SessionSpec};

pub(super) struct Table {
    pub(super) cfg: RelayConfig,
    state: Mutex<State>,
    conns: Arc<AtomicUsize>,
    cursor: AtomicUsize,
    /// Closed by `SessionTable::shutdown`: every session and
    /// the shared port end, and no session opens.
    pub(super) stop: (async_channel::Sender<()>, async_channel::Receiver<()>),
    pub(super) reports: (
        async_channel::Sender<SessionReport>,
        async_channel::Receiver<SessionReport>,
    ),
}

#[derive(Default)]
struct State {
    sessions: HashSet<String>,
    /// Single-port mode: the live sessions by relay nonce, for the shared port's dispatch.
    routes: HashMap<String, Route>,
    /// Single-port mode: the shared port, once bound.
    shared: Option<u16>,
    last_shed_log: Option<Instant>,
}

impl Table {
    pub(super) fn new(cfg: RelayConfig) -> Table {
        Table {
            cfg,
            state: Mutex::new(State::default()),
            conns: Arc::new(AtomicUsize::new(0)),
            cursor: AtomicUsize::new(0),
            stop: async_channel::bounded(1),
            reports: async_channel::bounded(1024),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn try_slot(&self) -> Option<ConnSlot> {
        ConnSlot::take(&self.conns, self.cfg.max_connections)
    }

    pub(super) fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    pub(super) fn sessions(&self) -> usize {
        self.state().sessions.len()
    }

    /// One warning per second at most: a flood must not also flood the log.
    pub(super) fn shed_log(&self, why: &str) {
        let mut state = self.state();
        if state
            .last_shed_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            state.last_shed_log = Some(Instant::now());
            drop(state);
            log::warn!("shedding connections: {why}");
        }
    }

    /// The live session whose relay nonce is `rvd_nonce` (single-port mode).
    pub(super) fn route(&self, rvd_nonce: &str) -> Option<Route> {
        self.state().routes.get(rvd_nonce).cloned()
    }

    /// Takes a place for a new session under its id.
    pub(super) fn admit(&self, session_id: &str) -> Result<(), RelayError> {
        let mut state = self.state();
        if self.stop.0.is_closed() || state.sessions.len() >= self.cfg.max_sessions {
            return Err(RelayError::TooManySessions);
        }
        if !state.sessions.insert(session_id.to_string()) {
            return Err(RelayError::DuplicateSession);
        }
        Ok(())
    }

    /// Single-port mode: lets the shared port find an admitted session by its relay nonce.
    pub(super) fn add_route(&self, route: Route) -> Result<(), RelayError> {
        let mut state = self.state();
        if state.routes.contains_key(&route.spec.rvd_nonce) {
            return Err(RelayError::DuplicateSession);
        }
        state.routes.insert(route.spec.rvd_nonce.clone(), route);
        Ok(())
    }

    /// Gives back the place of a session that failed to start.
    pub(super) fn release(&self, session_id: &str) {
        self.state().sessions.remove(session_id);
    }

    /// Forgets an ended session (its id may be used again).
    pub(super) fn end_session(&self, spec: &SessionSpec) {
        let mut state = self.state();
        state.routes.remove(&spec.rvd_nonce);
        state.sessions.remove(&spec.session_id);
    }

    /// The shared port: the one bound, or the one `bind` binds now (under the lock, so it is
    /// bound once; `bind` is a local system call and a spawn, no await).
    pub(super) fn shared_port(
        &self,
        bind: impl FnOnce() -> Result<u16, RelayError>,
    ) -> Result<u16, RelayError> {
        let mut state = self.state();
        if let Some(port) = state.shared {
            return Ok(port);
        }
        let port = bind()?;
        state.shared = Some(port);
        Ok(port)
    }

    /// Two listeners for a session in two-port mode, from the configured range in turn.
    pub(super) fn bind_pair(&self) -> Result<(Async<TcpListener>, Async<TcpListener>), RelayError> {
        let ip = self.cfg.bind;
        let Some((lo, hi)) = self.cfg.port_range else {
            let a = Async::<TcpListener>::bind(SocketAddr::new(ip, 0)).map_err(RelayError::Bind)?;
            let b = Async::<TcpListener>::bind(SocketAddr::new(ip, 0)).map_err(RelayError::Bind)?;
            return Ok((a, b));
        };
        let span = usize::from(hi.saturating_sub(lo)) + 1;
        let mut got: Vec<Async<TcpListener>> = Vec::with_capacity(2);
        for _ in 0..span {
            let off = self.cursor.fetch_add(1, Ordering::Relaxed) % span;
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
