//! The inbound connection limit: a [`ConnSlot`] per accepted connection, registered in the
//! hub and released on drop; at the limit the oldest unauthenticated connection is evicted
//! (the choice is `conn::victim`).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Receiver;

use super::conn::{victim, ConnEntry, Source};
use super::server::Hub;

/// Counts a connection against the inbound limit; released (and unregistered) on drop.
pub(crate) struct ConnSlot {
    hub: Arc<Hub>,
    id: u64,
    /// Set by the session once authenticated (then never evicted).
    pub authed: Arc<AtomicBool>,
    /// Set once a complete request line was handled (evicted after the silent ones).
    pub spoke: Arc<AtomicBool>,
    /// Yields the limit that evicted the connection (then closes).
    pub killed: Receiver<&'static str>,
    accepted: Instant,
}

impl ConnSlot {
    /// Takes a slot for a connection from `peer`. A source holding `max_unauth_per_source`
    /// unauthenticated connections makes room by losing its oldest one; at the global limit the
    /// oldest unauthenticated connection of the busiest source is evicted. So idle or hostile
    /// connections that never log in cannot lock owners out; `None` (AT0012) only when every
    /// slot is taken by an authenticated connection.
    pub(crate) fn take(hub: &Arc<Hub>, peer: std::net::IpAddr) -> Option<ConnSlot> {
        let source = Source::of(peer);
        let mut reg = hub.registry.lock().unwrap_or_else(|p| p.into_inner());
        let n = hub.connections.load(Ordering::SeqCst);
        let victim = victim(
            &reg,
            source,
            n,
            hub.max_connections,
            hub.max_unauth_per_source,
        )
        .ok()?;
        if let Some((i, why)) = victim {
            if let Some(old) = reg.remove(i) {
                let _ = old.kill.try_send(why);
                old.kill.close();
                let now = super::meta::now_ms();
                let last = hub.last_evict_log.swap(now, Ordering::SeqCst);
                if now - last >= 1000 {
                    log::warn!(
                        "{why} reached (limits {} in all, {} unauthenticated per address): closing the oldest unauthenticated connection",
                        hub.max_connections,
                        hub.max_unauth_per_source
                    );
                }
            }
        }
        hub.connections.fetch_add(1, Ordering::SeqCst);
        let id = hub.next_conn.fetch_add(1, Ordering::SeqCst);
        let authed = Arc::new(AtomicBool::new(false));
        let spoke = Arc::new(AtomicBool::new(false));
        let (kill, killed) = async_channel::bounded(1);
        reg.push_back(ConnEntry {
            id,
            source,
            authed: authed.clone(),
            spoke: spoke.clone(),
            kill,
        });
        Some(ConnSlot {
            hub: hub.clone(),
            id,
            authed,
            spoke,
            killed,
            accepted: Instant::now(),
        })
    }

    /// Resolves, with the reason, when the connection must end before its owner is done with
    /// it: evicted at a limit, or (with `deadline`) still unauthenticated that long after its
    /// accept. Otherwise never.
    pub(crate) async fn cut_off(&self, deadline: Option<Duration>) -> String {
        let evicted = async {
            match self.killed.recv().await {
                Ok(why) => format!("{why} reached"),
                Err(_) => "connection limit reached".to_string(),
            }
        };
        let late = async {
            let Some(d) = deadline else {
                return std::future::pending().await;
            };
            crate::runtime::sleep(d.saturating_sub(self.accepted.elapsed())).await;
            if self.authed.load(Ordering::SeqCst) {
                return std::future::pending().await;
            }
            format!("not authenticated within {} s", d.as_secs())
        };
        futures_lite::future::or(evicted, late).await
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut reg = self.hub.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = reg.iter().position(|e| e.id == self.id) {
            reg.remove(i);
        }
        self.hub.connections.fetch_sub(1, Ordering::SeqCst);
    }
}
