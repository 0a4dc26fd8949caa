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
//! sessionId/clientNonce/rvdNonce. The session tasks and the shared port's loop belong to the
//! [`SessionTable`]: dropping its last handle ends them all.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use async_io::Async;
use futures_lite::FutureExt;

use super::accept::{accept_loop, Gate};
use super::pairing::run_session;
use super::table::Table;
use super::types::{job, Route};
use crate::runtime::{self, TaskSet};

pub use super::nonce::new_rvd_nonce;
pub use super::types::{
    EndReason, RelayConfig, RelayError, SessionPorts, SessionReport, SessionSpec, AUTH_TIMEOUT,
    HALF_CLOSE_LINGER, SESSION_TIMEOUT,
};

/// The relay's live sessions. Cheap to clone; the sessions end when the last clone is dropped.
#[derive(Clone)]
pub struct SessionTable {
    table: Arc<Table>,
    /// The sessions and the shared port's accept loop. Not in `table`, which those tasks hold.
    tasks: Arc<TaskSet>,
}

impl SessionTable {
    /// An empty table with these limits. In single-port mode the shared port is bound by
    /// [`SessionTable::listen`] or the first [`SessionTable::open`].
    pub fn new(cfg: RelayConfig) -> Self {
        SessionTable {
            table: Arc::new(Table::new(cfg)),
            tasks: Arc::new(TaskSet::new()),
        }
    }

    /// Live sessions.
    pub fn active_sessions(&self) -> usize {
        self.table.sessions()
    }

    /// Accepted sockets currently held.
    pub fn active_connections(&self) -> usize {
        self.table.connections()
    }

    /// The next finished-session report (the most recent 1024 are kept).
    pub async fn next_report(&self) -> Option<SessionReport> {
        self.table.reports.1.recv().await.ok()
    }

    /// Ends every session and refuses new ones (and closes the shared port).
    pub fn shutdown(&self) {
        self.table.stop.0.close();
    }

    /// Single-port mode: binds the shared port (once) and starts serving it; returns its
    /// number. `Ok(None)` in two-port mode. A relay calls it at start, so a port it may not
    /// bind fails at once rather than at the first request.
    ///
    /// # Errors
    /// [`RelayError::Bind`].
    pub fn listen(&self) -> Result<Option<u16>, RelayError> {
        let Some(want) = self.table.cfg.single_port() else {
            return Ok(None);
        };
        self.table.shared_port(|| self.serve_shared(want)).map(Some)
    }

    fn serve_shared(&self, want: u16) -> Result<u16, RelayError> {
        let addr = SocketAddr::new(self.table.cfg.bind, want);
        let listener = Async::<TcpListener>::bind(addr).map_err(RelayError::Bind)?;
        let port = listener
            .get_ref()
            .local_addr()
            .map_err(RelayError::Bind)?
            .port();
        log::info!("serving every session on the shared port {port}");
        let table = self.table.clone();
        self.tasks.spawn(job(async move {
            let stop = async {
                let _ = table.stop.1.recv().await;
            };
            accept_loop(table.clone(), Gate::Shared(port), &listener)
                .or(stop)
                .await;
        }));
        Ok(port)
    }

    /// Binds the session's two listeners (or, in single-port mode, registers it with the
    /// shared port) and starts its task.
    ///
    /// # Errors
    /// Limits, a duplicate id, bind failures, or (single-port mode) a side that would not
    /// authenticate; no listener is left open on error.
    pub fn open(&self, spec: SessionSpec) -> Result<SessionPorts, RelayError> {
        let single = self.table.cfg.single_port().is_some();
        if single && (spec.key_a.is_none() || spec.key_b.is_none()) {
            return Err(RelayError::NeedsAuthentication);
        }
        self.table.admit(&spec.session_id)?;
        let spec = Arc::new(spec);
        let events = async_channel::unbounded();
        let placed = if single {
            self.route_shared(Route {
                spec: spec.clone(),
                events: events.0.clone(),
            })
            .map(|ports| (None, ports))
        } else {
            self.table.bind_pair().map(|(la, lb)| {
                let port = |l: &Async<TcpListener>| {
                    l.get_ref().local_addr().map(|a| a.port()).unwrap_or(0)
                };
                let ports = SessionPorts {
                    port_a: port(&la),
                    port_b: port(&lb),
                };
                (Some((la, lb)), ports)
            })
        };
        let (listeners, ports) = match placed {
            Ok(p) => p,
            Err(e) => {
                self.table.release(&spec.session_id);
                return Err(e);
            }
        };
        log::info!(
            "Starting session {} for {} to {} using ports ({}, {})",
            spec.session_id,
            spec.atsign_a,
            spec.atsign_b,
            ports.port_a,
            ports.port_b
        );
        let table = self.table.clone();
        // Bounded by the session's own timer until it pairs, then by its pairs' sockets.
        self.tasks.spawn(job(async move {
            run_session(table, spec, listeners, ports, events).await;
            runtime::mem::release_soon();
        }));
        Ok(ports)
    }

    /// Single-port mode: the shared port (bound now if not yet), where `route` is found.
    fn route_shared(&self, route: Route) -> Result<SessionPorts, RelayError> {
        let port = self.listen()?.ok_or(RelayError::NoFreePorts)?;
        self.table.add_route(route)?;
        Ok(SessionPorts {
            port_a: port,
            port_b: port,
        })
    }
}
