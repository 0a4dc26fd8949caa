//! Handing freed heap memory back to the system once a burst is over.
//!
//! glibc's allocator returns only the top of its heap, so a server that held 200 sessions at
//! once keeps their peak in its RSS after they end; musl's (the router builds) gives whole free
//! groups back by itself. The library forbids `unsafe`, so the binary registers the C
//! library's call with [`set_release`] (glibc builds only) and servers call [`release_soon`]
//! when a connection or session ends.
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static RELEASE: OnceLock<fn()> = OnceLock::new();
/// The scheduled release: one at a time, owned here.
static PENDING: Mutex<Option<super::Task<()>>> = Mutex::new(None);

/// How long after the first ending connection the release runs: a burst ending together
/// costs one release, not one per connection.
const SETTLE: Duration = Duration::from_secs(1);

/// Registers the allocator's release call (once; later calls are ignored).
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Schedules one release [`SETTLE`] from now unless one is already scheduled. Nothing happens
/// when no release call was registered.
pub fn release_soon() {
    let Some(&release) = RELEASE.get() else {
        return;
    };
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if pending.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    *pending = Some(super::spawn(async move {
        super::sleep(SETTLE).await;
        release();
    }));
}
