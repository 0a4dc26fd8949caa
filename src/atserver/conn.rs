//! Connection plumbing shared by the directory and the atServers: the sans-IO request line
//! buffer (atprotocol.md §2.2), the single writer task that keeps every response one write
//! (§2.3), the inbound connection limit (§2.6) and TLS accept with a deadline.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_io::Async;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;

use super::server::Hub;

/// Inbound request buffer limit: 10,240,000 bytes (§2.2); beyond it AT0005 and close.
pub(crate) const MAX_LINE: usize = 10_240_000;
/// TLS handshake deadline.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Outbound queue depth per connection (replies plus monitor lines).
pub(crate) const OUT_QUEUE: usize = 4096;

/// The line buffer ran past [`MAX_LINE`] without a `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// Sans-IO request framing: bytes in, complete lines out. Each `\n`-terminated line is one
/// command (a slightly more forgiving reading of §2.2 that never merges two commands).
#[derive(Default)]
pub(crate) struct LineBuf {
    buf: Vec<u8>,
    scanned: usize,
}

impl LineBuf {
    /// Appends received bytes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (lossy UTF-8, without `\n`), or `TooLong` once the unterminated
    /// tail exceeds [`MAX_LINE`].
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
                if end > MAX_LINE {
                    return Some(Err(TooLong));
                }
                let text = line.get(..end).unwrap_or_default();
                Some(Ok(String::from_utf8_lossy(text).into_owned()))
            }
            None => {
                self.scanned = self.buf.len();
                (self.buf.len() > MAX_LINE).then_some(Err(TooLong))
            }
        }
    }
}

/// Counts a connection against the inbound limit; released on drop.
pub(crate) struct ConnSlot(Arc<Hub>);

impl ConnSlot {
    /// Takes a slot, or `None` when the limit is reached.
    pub(crate) fn take(hub: &Arc<Hub>) -> Option<ConnSlot> {
        let n = hub.connections.fetch_add(1, Ordering::SeqCst);
        if n >= hub.max_connections {
            hub.connections.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(ConnSlot(hub.clone()))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
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
        // A peer that never sends '\n' cannot make us buffer more than MAX_LINE.
        let mut b = LineBuf::default();
        b.feed(&vec![b'a'; MAX_LINE + 1]);
        assert_eq!(b.next_line(), Some(Err(TooLong)));
    }
}
