//! Byte plumbing of the data plane: the splice with fixed buffers, byte counters, and the
//! live-connection tracker behind the grace rule (noports.md §5.5). Used by the tunnel ends and
//! by the relay, which splices without decrypting.

use crate::runtime::atomic::AtomicU64;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{future, AsyncWriteExt, FutureExt};

use super::net::{read_some, TunnelStats};
use crate::crypto::aes_ctr::CtrStream;

/// Copy buffer per direction, sized for throughput; allocated only by a direction that cannot
/// use splice(2) (it has a keystream, or the system has no pipes to spare).
pub const SPLICE_BUF: usize = 64 * 1024;

/// Byte counters shared by concurrent connections of one tunnel.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) out: AtomicU64,
    pub(crate) inn: AtomicU64,
    pub(crate) conns: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> TunnelStats {
        TunnelStats {
            connections: self.conns.load(Ordering::Relaxed),
            bytes_out: self.out.load(Ordering::Relaxed),
            bytes_in: self.inn.load(Ordering::Relaxed),
        }
    }
}

/// Live-connection count with change notification, for the grace rule of §5.5.
pub(crate) struct Tracker {
    active: AtomicUsize,
    changed_tx: async_channel::Sender<()>,
    changed_rx: async_channel::Receiver<()>,
}

/// Counts one live connection until dropped.
pub(crate) struct TrackGuard(Arc<Tracker>);

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        let _ = self.0.changed_tx.try_send(());
    }
}

impl Tracker {
    pub(crate) fn new() -> Arc<Self> {
        let (changed_tx, changed_rx) = async_channel::bounded(1);
        Arc::new(Tracker {
            active: AtomicUsize::new(0),
            changed_tx,
            changed_rx,
        })
    }

    pub(crate) fn enter(self: &Arc<Self>) -> TrackGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        TrackGuard(self.clone())
    }

    /// Resolves when the session should end under the grace rule (§5.5): at `idle` if no
    /// connection is live, else when the live count next drops to zero. With `single`, also
    /// as soon as the first connection has come and gone.
    pub(crate) async fn grace(&self, idle: Duration, single: bool) {
        let mut timer = Timer::after(idle);
        let mut grace = false;
        let mut seen = false;
        loop {
            let n = self.active.load(Ordering::SeqCst);
            seen |= n > 0;
            if n == 0 && (grace || (single && seen)) {
                return;
            }
            let changed = async {
                let _ = self.changed_rx.recv().await;
                false
            };
            if grace {
                changed.await;
            } else {
                grace = changed
                    .or(async {
                        (&mut timer).await;
                        true
                    })
                    .await;
            }
        }
    }
}

/// Copies `from` → `to` through an optional keystream until EOF, then half-closes `to`.
/// `pre` is written first (bytes the relay read after an auth line).
async fn pump(
    from: &Async<TcpStream>,
    to: &Async<TcpStream>,
    pre: &[u8],
    mut cipher: Option<CtrStream>,
    count: &AtomicU64,
    progress: &AtomicU64,
) -> io::Result<()> {
    if !pre.is_empty() {
        let mut p = pre.to_vec();
        if let Some(c) = cipher.as_mut() {
            c.apply(&mut p);
        }
        (&*to).write_all(&p).await?;
        count.fetch_add(p.len() as u64, Ordering::Relaxed);
    }
    if cipher.is_none() {
        #[cfg(target_os = "linux")]
        match zero_copy::pump(from, to, count, progress).await {
            Err(zero_copy::Unavailable) => {} // e.g. no pipes left: copy through `buf` instead
            Ok(r) => return r,
        }
    }
    // Only now: a relay session that splices never touches it (128 KiB per session at scale).
    let mut buf = vec![0u8; SPLICE_BUF];
    loop {
        let n = read_some(from, &mut buf).await?;
        let Some(chunk) = buf.get_mut(..n).filter(|c| !c.is_empty()) else {
            let _ = to.get_ref().shutdown(Shutdown::Write);
            return Ok(());
        };
        if let Some(c) = cipher.as_mut() {
            c.apply(chunk);
        }
        (&*to).write_all(chunk).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Plaintext directions on Linux move bytes socket → pipe → socket with splice(2): the kernel
/// hands pages over instead of copying them through our buffer, which halves the copies and
/// syscall work per MiB of the relay (every session, whatever its cipher) and of plain tunnel
/// ends.
#[cfg(target_os = "linux")]
mod zero_copy {
    use super::*;
    use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};

    /// Most bytes moved per splice(2) call: the default pipe capacity.
    const CHUNK: usize = 64 * 1024;

    /// splice(2) cannot be used for this direction (no pipe could be made, or the kernel
    /// refused the first transfer); nothing has been moved yet.
    pub(super) struct Unavailable;

    fn is_would_block(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::WouldBlock
    }

    /// Like the copy loop of [`super::pump`], through a pipe: `Ok(result)` once the direction
    /// ended (EOF forwarded as a half-close, or an I/O error), `Err(Unavailable)` before any
    /// byte moved when splice(2) is not usable here.
    pub(super) async fn pump(
        from: &Async<TcpStream>,
        to: &Async<TcpStream>,
        count: &AtomicU64,
        progress: &AtomicU64,
    ) -> Result<io::Result<()>, Unavailable> {
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        let (pipe_r, pipe_w) =
            pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|_| Unavailable)?;
        let mut moved_any = false;
        loop {
            // Socket -> pipe: wait for data, then take what is there (0 = EOF).
            let n = loop {
                match splice(from.get_ref(), None, &pipe_w, None, CHUNK, flags) {
                    Ok(n) => break n,
                    Err(e) => {
                        let e = io::Error::from(e);
                        if is_would_block(&e) {
                            if let Err(e) = from.readable().await {
                                return Ok(Err(e));
                            }
                        } else if e.kind() == io::ErrorKind::Interrupted {
                        } else if !moved_any && e.kind() != io::ErrorKind::ConnectionReset {
                            return Err(Unavailable);
                        } else {
                            return Ok(Err(e));
                        }
                    }
                }
            };
            moved_any = true;
            if n == 0 {
                let _ = to.get_ref().shutdown(Shutdown::Write);
                return Ok(Ok(()));
            }
            // Pipe -> socket: all of it, waiting while the peer's window is full.
            let mut left = n;
            while left > 0 {
                match splice(&pipe_r, None, to.get_ref(), None, left, flags) {
                    Ok(0) => return Ok(Err(io::ErrorKind::WriteZero.into())),
                    Ok(m) => left = left.saturating_sub(m),
                    Err(e) => {
                        let e = io::Error::from(e);
                        if is_would_block(&e) {
                            if let Err(e) = to.writable().await {
                                return Ok(Err(e));
                            }
                        } else if e.kind() != io::ErrorKind::Interrupted {
                            return Ok(Err(e));
                        }
                    }
                }
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// One direction of a splice: the keystream applied to it and bytes to send before it.
pub struct Direction<'a> {
    /// Bytes already read from the source that must go first (after an auth line).
    pub pre: &'a [u8],
    /// Keystream XORed into this direction, if any.
    pub cipher: Option<CtrStream>,
    /// Bytes counted here.
    pub count: &'a AtomicU64,
}

/// Bridges `a` and `b` both ways. Each EOF is forwarded as a half-close; once one direction
/// has ended, the other may go on only while it moves data: after `linger` without progress
/// both sockets are shut down, so "either side closes" ends the pair (noports.md §4.4) without
/// cutting off a peer that half-closed and still receives. An error shuts both down at once.
/// A direction that copies (instead of splicing) allocates its [`SPLICE_BUF`] buffer once.
///
/// # Cancel safety
/// Dropping the future leaves the sockets to their owners; bytes in flight are lost.
pub async fn splice(
    a: &Async<TcpStream>,
    b: &Async<TcpStream>,
    ab: Direction<'_>,
    ba: Direction<'_>,
    linger: Duration,
) -> io::Result<()> {
    let progress = AtomicU64::new(0);
    let finished = AtomicUsize::new(0);
    let kill = || {
        let _ = a.get_ref().shutdown(Shutdown::Both);
        let _ = b.get_ref().shutdown(Shutdown::Both);
    };
    let fwd = async {
        let r = pump(a, b, ab.pre, ab.cipher, ab.count, &progress).await;
        finished.fetch_add(1, Ordering::SeqCst);
        if r.is_err() {
            kill();
        }
        r
    };
    let back = async {
        let r = pump(b, a, ba.pre, ba.cipher, ba.count, &progress).await;
        finished.fetch_add(1, Ordering::SeqCst);
        if r.is_err() {
            kill();
        }
        r
    };
    let watchdog = async {
        let mut last = None;
        loop {
            Timer::after(linger).await;
            if finished.load(Ordering::SeqCst) == 0 {
                continue;
            }
            let now = progress.load(Ordering::Relaxed);
            if last == Some(now) {
                kill();
                return future::pending().await;
            }
            last = Some(now);
        }
    };
    let (r1, r2) = future::zip(fwd, back).or(watchdog).await;
    r1.and(r2)
}
