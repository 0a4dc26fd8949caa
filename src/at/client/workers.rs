//! The request connections of one client. A connection answers one request at a time, in
//! order, so a client that answers many peers at once (the daemon, the relay) may spread its
//! requests over up to [`MAX_WORKERS`] of them ([`Workers::allow`]). Extra connections are
//! opened only while every open one is busy, and closed after [`EXTRA_IDLE`] unused. Slot 0
//! is the connection `AtClient::connect` opens; other clients use it alone.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::at::conn::Connection;
use crate::runtime::atomic::AtomicU64;
use crate::runtime::Task;

/// Most request connections one client opens.
const MAX_WORKERS: usize = 4;
/// An extra request connection unused this long is closed (checked at this interval, so it
/// goes between one and two intervals after its last request): a burst's extras do not
/// outlive it by much, and opening one again costs one login.
const EXTRA_IDLE: Duration = Duration::from_secs(5);

/// One request connection's slot, held for the whole request: `None` until opened (or after
/// it was lost).
pub(super) type Slot<'a> = async_lock::MutexGuard<'a, Option<Connection>>;

pub(super) struct Workers {
    slots: [async_lock::Mutex<Option<Connection>>; MAX_WORKERS],
    /// When each slot last finished a request, in ms since `born`.
    used_ms: [AtomicU64; MAX_WORKERS],
    born: Instant,
    allowed: AtomicUsize,
    next: AtomicUsize,
    /// Whether a task is closing idle extra connections.
    reaping: AtomicBool,
    /// That task: it ends with the client.
    reaper: Mutex<Option<Task<()>>>,
}

impl Workers {
    pub(super) fn new() -> Arc<Workers> {
        Arc::new(Workers {
            slots: Default::default(),
            used_ms: Default::default(),
            born: Instant::now(),
            allowed: AtomicUsize::new(1),
            next: AtomicUsize::new(0),
            reaping: AtomicBool::new(false),
            reaper: Mutex::new(None),
        })
    }

    /// Lets requests use up to `connections` slots (1 to [`MAX_WORKERS`]).
    pub(super) fn allow(&self, connections: usize) {
        self.allowed
            .store(connections.clamp(1, MAX_WORKERS), Ordering::Relaxed);
    }

    /// The first slot: where `connect` puts its connection.
    pub(super) async fn first(&self) -> Slot<'_> {
        self.slots[0].lock().await
    }

    /// A slot for one request, with its index: a free open connection, else a free slot to
    /// open one in, else the next slot in turn once it is free.
    pub(super) async fn take(&self) -> (usize, Slot<'_>) {
        let allowed = self.allowed.load(Ordering::Relaxed).clamp(1, MAX_WORKERS);
        let mut unopened = None;
        for (i, slot) in self.slots.iter().enumerate().take(allowed) {
            if let Some(g) = slot.try_lock() {
                if g.is_some() {
                    return (i, g);
                }
                unopened.get_or_insert((i, g));
            }
        }
        if let Some(found) = unopened {
            return found;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % allowed;
        match self.slots.get(i) {
            Some(slot) => (i, slot.lock().await),
            None => (0, self.slots[0].lock().await),
        }
    }

    /// Call when the request in slot `i` is done (`open`: its connection is still there).
    /// The first open extra connection starts the task that closes idle ones.
    pub(super) fn done(self: &Arc<Self>, i: usize, open: bool) {
        if let Some(used) = self.used_ms.get(i) {
            used.store(self.now_ms(), Ordering::Relaxed);
        }
        if i > 0 && open && !self.reaping.swap(true, Ordering::AcqRel) {
            let task = crate::runtime::spawn(reap_idle(Arc::downgrade(self)));
            // The last one has ended (it cleared `reaping`): replacing it cancels nothing.
            *self.reaper.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
    }

    /// Closes every connection politely.
    pub(super) async fn close_all(&self) {
        for slot in &self.slots {
            if let Some(conn) = slot.lock().await.take() {
                conn.close().await;
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Closes extra connections once they have idled for [`EXTRA_IDLE`]; ends when none is left
/// open (a later extra starts it again) or the client is gone.
async fn reap_idle(workers: Weak<Workers>) {
    loop {
        crate::runtime::sleep(EXTRA_IDLE).await;
        let Some(w) = workers.upgrade() else { return };
        let idle_before = w
            .now_ms()
            .saturating_sub(u64::try_from(EXTRA_IDLE.as_millis()).unwrap_or(u64::MAX));
        let mut open = 0;
        for (slot, used) in w.slots.iter().zip(&w.used_ms).skip(1) {
            let Some(mut g) = slot.try_lock() else {
                open += 1; // busy, so not idle
                continue;
            };
            if g.is_some() && used.load(Ordering::Relaxed) <= idle_before {
                if let Some(conn) = g.take() {
                    conn.close().await;
                }
            }
            open += usize::from(g.is_some());
        }
        if open == 0 {
            w.reaping.store(false, Ordering::Release);
            return;
        }
    }
}
