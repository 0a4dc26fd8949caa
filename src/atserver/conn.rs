//! Connection plumbing shared by the directory and the atServers: the sans-IO request line
//! buffer (atprotocol.md §2.2), the single writer task that keeps every response one write
//! (§2.3), the inbound connection limit (§2.6) and TLS accept with a deadline.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_io::Async;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;

/// Inbound request buffer limit for authenticated connections: 10,240,000 bytes (§2.2);
/// beyond it AT0005 and close.
pub(crate) const MAX_LINE: usize = 10_240_000;
/// Request line limit before authentication (and on directory connections). The longest
/// legitimate unauthenticated commands (`from:` with a client config, `pkam:`, an
/// `enroll:request` with an RSA-4096 key) stay under 3 KiB.
pub(crate) const MAX_UNAUTH_LINE: usize = 8 * 1024;
/// Input every connection may buffer without drawing on the shared [`InputBudget`].
pub(crate) const FREE_INPUT: usize = 32 * 1024;
/// Buffered request input of all connections together, beyond [`FREE_INPUT`] each.
pub(crate) const INPUT_BUDGET: usize = 4 * 1024 * 1024;
/// TLS handshake deadline.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Outbound queue depth per connection (replies plus monitor lines; a monitor that falls this
/// far behind is dropped and resumes from its last notification when it reconnects). The
/// queue's slots are allocated up front, 32 B each, for every connection: 4096 made it 128 KiB
/// per connection, most of the atserver's memory in a burst of hundreds of logins.
pub(crate) const OUT_QUEUE: usize = 256;

/// The line buffer ran past its limit without a `\n`, or the shared input budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// Bytes of buffered request input the whole process may hold (beyond each connection's
/// [`FREE_INPUT`]), so memory stays bounded by the number of connections, not by what peers send.
pub(crate) struct InputBudget {
    used: AtomicUsize,
    max: usize,
}

impl InputBudget {
    pub(crate) fn new(max: usize) -> Arc<InputBudget> {
        Arc::new(InputBudget {
            used: AtomicUsize::new(0),
            max,
        })
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(n).filter(|t| *t <= self.max)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Bytes currently drawn.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

/// Sans-IO request framing: bytes in, complete lines out. Each `\n`-terminated line is one
/// command (a slightly more forgiving reading of §2.2 that never merges two commands).
/// An unterminated tail may grow to `limit`; buffer capacity beyond [`FREE_INPUT`] is drawn
/// from the shared budget, if any.
pub(crate) struct LineBuf {
    buf: Vec<u8>,
    scanned: usize,
    limit: usize,
    budget: Option<Arc<InputBudget>>,
    charged: usize,
    over: bool,
    over_budget: bool,
}

impl Default for LineBuf {
    fn default() -> Self {
        LineBuf::new(MAX_UNAUTH_LINE, None)
    }
}

impl LineBuf {
    pub(crate) fn new(limit: usize, budget: Option<Arc<InputBudget>>) -> LineBuf {
        LineBuf {
            buf: Vec::new(),
            scanned: 0,
            limit,
            budget,
            charged: 0,
            over: false,
            over_budget: false,
        }
    }

    /// Changes the line limit (e.g. after authentication).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Appends received bytes; past the limit or the budget the next [`LineBuf::next_line`]
    /// reports `TooLong` and nothing more is buffered.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.over {
            return;
        }
        // Callers drain every complete line before feeding, so the buffer is one unterminated
        // tail: without a newline in `bytes` it only grows.
        if !bytes.contains(&b'\n') && self.buf.len() + bytes.len() > self.limit {
            self.over = true;
            return;
        }
        // Grow (doubling) only with the budget for the new capacity already drawn, so the
        // allocation itself never exceeds the budget.
        let want = self.buf.len() + bytes.len();
        if want > self.buf.capacity() {
            let new_cap = want
                .max(
                    self.buf
                        .capacity()
                        .saturating_mul(2)
                        .min(self.limit + 64 * 1024),
                )
                .max(4096);
            // Doubling if the budget allows, else exactly what is needed.
            let new_cap = if self.charge_for(new_cap) {
                new_cap
            } else if self.charge_for(want) {
                want
            } else {
                self.over = true;
                self.over_budget = true;
                return;
            };
            self.buf.reserve_exact(new_cap - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
        self.recharge();
    }

    /// Draws budget so that a capacity of `cap` is covered.
    fn charge_for(&mut self, cap: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let need = cap.saturating_sub(FREE_INPUT);
        if need > self.charged {
            if !budget.take(need - self.charged) {
                return false;
            }
            self.charged = need;
        }
        true
    }

    /// Settles the charge to the buffer's actual capacity beyond [`FREE_INPUT`] (drawing more
    /// only if the allocator rounded up; returning what a shrink freed).
    fn recharge(&mut self) {
        let cap = self.buf.capacity();
        let Some(budget) = &self.budget else {
            return;
        };
        let need = cap.saturating_sub(FREE_INPUT);
        if need > self.charged {
            // Rounding by the allocator; count it even if it overdraws slightly.
            budget.used.fetch_add(need - self.charged, Ordering::SeqCst);
        } else {
            budget.give(self.charged - need);
        }
        self.charged = need;
    }

    /// The next complete line (lossy UTF-8, without `\n`), or `TooLong` once the unterminated
    /// tail exceeds the limit or the budget is spent.
    pub(crate) fn next_line(&mut self) -> Option<Result<String, TooLong>> {
        match self
            .buf
            .get(self.scanned..)
            .and_then(|t| t.iter().position(|b| *b == b'\n'))
        {
            Some(i) => {
                let end = self.scanned + i;
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                self.scanned = 0;
                if self.buf.capacity() > FREE_INPUT && self.buf.len() < FREE_INPUT / 2 {
                    self.buf.shrink_to(FREE_INPUT / 2);
                }
                self.recharge();
                if end > self.limit {
                    return Some(Err(TooLong));
                }
                let text = line.get(..end).unwrap_or_default();
                Some(Ok(String::from_utf8_lossy(text).into_owned()))
            }
            None => {
                self.scanned = self.buf.len();
                (self.over || self.buf.len() > self.limit).then_some(Err(TooLong))
            }
        }
    }

    /// True once the shared budget (not the line limit) refused more input.
    pub(crate) fn budget_spent(&self) -> bool {
        self.over_budget
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.charged);
        }
    }
}

/// Where a connection comes from, for the per-source limit: an IPv4 address, or the /64 of an
/// IPv6 address (one host usually holds a whole /64). IPv4-mapped IPv6 counts as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Source(u128);

impl Source {
    pub(crate) fn of(ip: std::net::IpAddr) -> Source {
        match ip {
            std::net::IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                None => Source(((u128::from(v6) >> 64) << 64) | 1),
            },
        }
    }
}

/// One registered connection: evictable while unauthenticated.
pub(crate) struct ConnEntry {
    pub(super) id: u64,
    pub(super) source: Source,
    pub(super) authed: Arc<AtomicBool>,
    pub(super) spoke: Arc<AtomicBool>,
    /// Receives the limit that evicted the connection (then closes).
    pub(super) kill: Sender<&'static str>,
}

impl ConnEntry {
    fn unauth(&self) -> bool {
        !self.authed.load(Ordering::SeqCst)
    }
}

/// The position in `reg` of the connection to evict for a newcomer from `source`, and why
/// (silent connections before those that completed a request, then oldest first):
/// the oldest unauthenticated connection of the same source when that source already holds
/// `per_source` of them; else, at the global limit, the oldest unauthenticated connection of
/// the source holding the most of them. No minimum age: a churning flood must not be able to
/// keep every slot "too young to evict" (it then only evicts its own, the busiest source's).
/// `Err(())` when the limit is reached and nothing may be evicted (all authenticated).
pub(super) fn victim(
    reg: &std::collections::VecDeque<ConnEntry>,
    source: Source,
    open: usize,
    max: usize,
    per_source: usize,
) -> Result<Option<(usize, &'static str)>, ()> {
    // Within a group, connections that never completed a request line go first (the owner's
    // login in flight has), then the oldest.
    let pick = |of: &dyn Fn(&ConnEntry) -> bool| {
        reg.iter()
            .position(|e| of(e) && e.unauth() && !e.spoke.load(Ordering::SeqCst))
            .or_else(|| reg.iter().position(|e| of(e) && e.unauth()))
    };
    let mine = reg
        .iter()
        .filter(|e| e.source == source && e.unauth())
        .count();
    if mine >= per_source {
        if let Some(i) = pick(&|e| e.source == source) {
            return Ok(Some((i, "unauthenticated connections from one address")));
        }
    }
    if open < max {
        return Ok(None);
    }
    let mut counts: std::collections::HashMap<Source, usize> = Default::default();
    for e in reg.iter().filter(|e| e.unauth()) {
        *counts.entry(e.source).or_default() += 1;
    }
    // The busiest source's oldest; between equally busy sources, the oldest of them all.
    let most = counts.values().copied().max().ok_or(())?;
    let i = pick(&|e| counts.get(&e.source) == Some(&most)).ok_or(())?;
    Ok(Some((i, "inbound connection limit")))
}

pub(crate) type Tls = TlsStream<Async<std::net::TcpStream>>;

/// Accepts TLS within [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn accept_tls(
    acceptor: &TlsAcceptor,
    tcp: Async<std::net::TcpStream>,
) -> Option<Tls> {
    match crate::runtime::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            log::warn!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            log::warn!("TLS handshake timed out");
            None
        }
    }
}

/// The write side of a connection: its outbound queue, a signal that closes when the writer is
/// gone, and the writer task.
pub(crate) struct Outbound {
    pub tx: Sender<Vec<u8>>,
    /// `recv()` fails once the writer has stopped (queue closed, e.g. by a revocation, or a
    /// write error): the reader should stop too.
    pub stopped: Receiver<()>,
    pub task: crate::runtime::Task<()>,
}

/// Splits a stream into its read half and an outbound queue drained by a writer task. Each
/// queued message is written with one `write_all` + `flush`, so `body\nprompt` is one write.
pub(crate) fn split_with_writer<S>(stream: S) -> (ReadHalf<S>, Outbound)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (r, w) = futures_lite::io::split(stream);
    let (tx, rx) = async_channel::bounded(OUT_QUEUE);
    let (stop_tx, stopped) = async_channel::bounded(1);
    let task = crate::runtime::spawn(async move {
        writer(w, rx).await;
        stop_tx.close();
    });
    (r, Outbound { tx, stopped, task })
}

async fn writer<S: AsyncWrite + Unpin>(mut w: WriteHalf<S>, rx: Receiver<Vec<u8>>) {
    while let Ok(msg) = rx.recv().await {
        let res = async {
            w.write_all(&msg).await?;
            w.flush().await
        };
        match crate::runtime::timeout(Duration::from_secs(30), res).await {
            Ok(Ok(())) => {}
            _ => {
                rx.close();
                break;
            }
        }
    }
    let _ = crate::runtime::timeout(Duration::from_secs(2), w.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut b = LineBuf::default();
        b.feed(b"from:@a\r\nscan");
        assert_eq!(b.next_line(), Some(Ok("from:@a\r".to_string())));
        assert_eq!(b.next_line(), None);
        b.feed(b" .*\n\xff\n");
        assert_eq!(b.next_line(), Some(Ok("scan .*".to_string())));
        assert_eq!(b.next_line(), Some(Ok("\u{fffd}".to_string())));
    }

    #[test]
    fn too_long() {
        // A peer that never sends '\n' cannot make us buffer more than the limit.
        let mut b = LineBuf::new(MAX_LINE, None);
        b.feed(&vec![b'a'; MAX_LINE + 1]);
        assert_eq!(b.next_line(), Some(Err(TooLong)));
        let mut b = LineBuf::default();
        for _ in 0..100 {
            b.feed(&[b'a'; 1000]);
        }
        assert_eq!(b.next_line(), Some(Err(TooLong)));
        assert!(b.buf.len() <= MAX_UNAUTH_LINE + 1000, "{}", b.buf.len());
    }

    fn entry(id: u64, ip: &str, _age_ms: u64, authed: bool) -> ConnEntry {
        let (kill, _) = async_channel::bounded(1);
        ConnEntry {
            id,
            source: Source::of(ip.parse().unwrap()),
            authed: Arc::new(AtomicBool::new(authed)),
            spoke: Arc::default(),
            kill,
        }
    }

    #[test]
    fn sources_group_ipv6_by_64() {
        let s = |ip: &str| Source::of(ip.parse().unwrap());
        assert_eq!(s("2001:db8:1:2::5"), s("2001:db8:1:2:ffff::1"));
        assert_ne!(s("2001:db8:1:2::5"), s("2001:db8:1:3::5"));
        assert_eq!(s("::ffff:10.0.0.1"), s("10.0.0.1"));
        assert_ne!(s("10.0.0.1"), s("10.0.0.2"));
    }

    #[test]
    fn eviction_order() {
        let a = Source::of("10.0.0.1".parse().unwrap());
        let b = Source::of("10.0.0.2".parse().unwrap());
        let reg: std::collections::VecDeque<ConnEntry> = [
            entry(0, "10.0.0.9", 9000, true),
            entry(1, "10.0.0.1", 5000, false),
            entry(2, "10.0.0.2", 4000, false),
            entry(3, "10.0.0.2", 3000, false),
            entry(4, "10.0.0.1", 10, false),
        ]
        .into_iter()
        .collect();
        // Under both limits: nothing to evict.
        assert_eq!(victim(&reg, a, 5, 10, 8), Ok(None));
        // Per-source cap: the newcomer's own oldest goes, even when young or at the limit.
        assert_eq!(victim(&reg, a, 5, 10, 2).unwrap().unwrap().0, 1);
        assert_eq!(victim(&reg, b, 5, 5, 2).unwrap().unwrap().0, 2);
        // Global limit: the busiest source's oldest, never the authenticated one; between
        // equally busy sources, the oldest.
        assert_eq!(victim(&reg, a, 5, 5, 8).unwrap().unwrap().0, 1);
        let mut busier = reg;
        busier.push_back(entry(5, "10.0.0.2", 0, false));
        assert_eq!(victim(&busier, a, 6, 6, 8).unwrap().unwrap().0, 2);
        // A connection that completed a request goes after the silent ones of its group.
        busier[2].spoke.store(true, Ordering::SeqCst);
        assert_eq!(victim(&busier, a, 6, 6, 8).unwrap().unwrap().0, 3);
        busier[1].spoke.store(true, Ordering::SeqCst);
        assert_eq!(victim(&busier, a, 6, 10, 2).unwrap().unwrap().0, 4);
        let authed: std::collections::VecDeque<ConnEntry> = [
            entry(0, "10.0.0.9", 9000, true),
            entry(1, "10.0.0.1", 10, false),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            victim(&authed, b, 2, 2, 8).unwrap().unwrap().0,
            1,
            "even a young one"
        );
        authed[1].authed.store(true, Ordering::SeqCst);
        assert_eq!(victim(&authed, b, 2, 2, 8), Err(()), "all authenticated");
    }

    #[test]
    fn shared_budget() {
        let budget = InputBudget::new(200_000);
        let mut a = LineBuf::new(MAX_LINE, Some(budget.clone()));
        let mut b = LineBuf::new(MAX_LINE, Some(budget.clone()));
        a.feed(&vec![b'a'; 150_000]);
        assert_eq!(a.next_line(), None);
        b.feed(&vec![b'b'; 150_000]);
        assert_eq!(b.next_line(), Some(Err(TooLong)), "budget spent");
        assert!(b.budget_spent());
        a.feed(b"\n");
        assert!(matches!(a.next_line(), Some(Ok(l)) if l.len() == 150_000));
        drop(b);
        drop(a);
        assert_eq!(budget.used(), 0);
    }
}
