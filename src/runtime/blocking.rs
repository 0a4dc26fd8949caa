//! Blocking calls (name resolution) on helper threads, never on the executor's two threads:
//! one slow DNS answer must not stall every other session.
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;

/// Most helper threads at once; more callers wait their turn (asynchronously).
const MAX_HELPERS: usize = 64;

fn helpers() -> &'static async_lock::Semaphore {
    static S: OnceLock<async_lock::Semaphore> = OnceLock::new();
    S.get_or_init(|| async_lock::Semaphore::new(MAX_HELPERS))
}

/// Runs `f` on a helper thread and waits for it without blocking the executor. `None` if the
/// thread could not be started or died.
pub async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _permit = helpers().acquire().await;
    let (tx, rx) = async_channel::bounded(1);
    std::thread::Builder::new()
        .name("noports-blocking".into())
        .spawn(move || {
            let _ = tx.send_blocking(f());
        })
        .ok()?;
    rx.recv().await.ok()
}

/// Resolves `host:port` to its first address: literal addresses directly, names on a helper
/// thread (the caller puts a deadline around it).
///
/// # Errors
/// Resolution failures, or `NotFound` when the name has no address.
pub async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let name = host.to_string();
    let found = unblock(move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(|mut a| a.next())
    })
    .await
    .ok_or_else(|| io::Error::other("resolver thread failed"))??;
    found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}
