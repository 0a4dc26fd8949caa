//! The sending side of a multiplexed session's relay socket, shared by all of its tasks.
//!
//! Whichever task has a frame seals it and writes it to the socket itself: there is no writer
//! task to hand frames to, because every hand-off is a wake-up (often on the other executor
//! thread) on the latency path of each byte. Bytes the socket does not take at once stay in
//! `pending` and a flusher task writes them when the socket drains; DATA waits while too much is
//! pending. Control frames (WINDOW, RESET, FIN, OPEN, CLOSE) never wait: the reader sends
//! WINDOW and RESET, and a reader blocked on its own relay socket could wait for a peer that
//! waits for it.

use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

use async_io::Async;
use event_listener::Event;

use super::net::{write_nonblocking, TunnelError};
use crate::noports::suite::{put_header, FrameType, RecordSealer};

/// DATA waits while more than this is pending (not yet taken by the socket).
const HIGH_WATER: usize = 256 * 1024;
/// Written bytes are dropped from the front of `pending` once there are this many.
const COMPACT_AFTER: usize = 1024 * 1024;
/// Control frames never wait, so a peer that sends OPENs we refuse (each answered by RESET)
/// and never reads its socket would grow `pending` without end: past this many unsent bytes
/// the session fails instead.
pub(super) const BACKLOG_MAX: usize = HIGH_WATER + 1024 * 1024;

pub(super) struct Outbox {
    conn: Arc<Async<TcpStream>>,
    state: Mutex<State>,
    /// Bytes were left pending: wakes the flusher.
    leftover: Event,
    /// Pending bytes fell below [`HIGH_WATER`], or the socket failed: wakes DATA senders.
    room: Event,
}

struct State {
    sealer: RecordSealer,
    /// Sealed records not yet written; `pending[..sent]` has been.
    pending: Vec<u8>,
    sent: usize,
    /// Plaintext frame being sealed.
    frame: Vec<u8>,
    /// The socket failed: every later send fails the same way.
    failed: Option<io::ErrorKind>,
    /// CLOSE was queued: the flusher ends once everything is written.
    closing: bool,
    /// More than [`BACKLOG_MAX`] was unsent: every later send fails.
    overflowed: bool,
}

impl State {
    fn unsent(&self) -> usize {
        self.pending.len() - self.sent
    }

    fn check(&self) -> Result<(), TunnelError> {
        if self.overflowed {
            return Err(TunnelError::Protocol(
                "the peer does not read its relay socket",
            ));
        }
        match self.failed {
            Some(kind) => Err(TunnelError::Io {
                op: "writing relay socket",
                source: kind.into(),
            }),
            None => Ok(()),
        }
    }
}

impl Outbox {
    pub(super) fn new(conn: Arc<Async<TcpStream>>, sealer: RecordSealer) -> Self {
        Outbox {
            conn,
            state: Mutex::new(State {
                sealer,
                pending: Vec::new(),
                sent: 0,
                frame: Vec::new(),
                failed: None,
                closing: false,
                overflowed: false,
            }),
            leftover: Event::new(),
            room: Event::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a control frame now (never waits). A failed socket fails it.
    pub(super) fn control(&self, ty: FrameType, id: u32, body: &[u8]) -> Result<(), TunnelError> {
        let mut st = self.lock();
        st.check()?;
        self.push(&mut st, ty, id, body)
    }

    /// Sends DATA, first waiting while too much is pending.
    pub(super) async fn data(&self, id: u32, body: &[u8]) -> Result<(), TunnelError> {
        loop {
            let listener = {
                let mut st = self.lock();
                st.check()?;
                if st.unsent() <= HIGH_WATER {
                    return self.push(&mut st, FrameType::Data, id, body);
                }
                self.room.listen()
            };
            // Rechecked after listening, so a notification between the two is not lost.
            if self.lock().unsent() <= HIGH_WATER {
                continue;
            }
            listener.await;
        }
    }

    /// Queues CLOSE; [`Outbox::flusher`] then returns once everything has been written.
    pub(super) fn close(&self) -> Result<(), TunnelError> {
        let mut st = self.lock();
        st.check()?;
        st.closing = true;
        self.push(&mut st, FrameType::Close, 0, &[])?;
        self.leftover.notify(1);
        Ok(())
    }

    /// Seals one frame onto `pending` and writes what the socket takes now.
    fn push(&self, st: &mut State, ty: FrameType, id: u32, body: &[u8]) -> Result<(), TunnelError> {
        let had_leftover = st.unsent() > 0;
        let mut frame = std::mem::take(&mut st.frame);
        put_header(&mut frame, ty, id);
        frame.extend_from_slice(body);
        let sealed = st.sealer.seal(&mut frame);
        if let Ok(header) = sealed {
            st.pending.extend_from_slice(&header);
            st.pending.extend_from_slice(&frame);
        }
        st.frame = frame;
        sealed?;
        self.write_now(st);
        if st.unsent() > BACKLOG_MAX {
            st.overflowed = true;
            self.room.notify(usize::MAX);
        }
        st.check()?;
        if st.unsent() > 0 && !had_leftover {
            self.leftover.notify(1);
        }
        Ok(())
    }

    /// Writes pending bytes until the socket would block (the socket is non-blocking).
    fn write_now(&self, st: &mut State) {
        if st.failed.is_none() {
            let unsent = st.pending.get(st.sent..).unwrap_or_default();
            let (n, failed) = write_nonblocking(&self.conn, unsent);
            st.sent += n;
            st.failed = failed;
        }
        if st.unsent() == 0 {
            st.pending.clear();
            st.sent = 0;
        } else if st.sent >= COMPACT_AFTER {
            st.pending.drain(..st.sent);
            st.sent = 0;
        }
        if st.failed.is_some() {
            self.room.notify(usize::MAX);
        }
    }

    /// Writes leftover bytes as the socket drains. Returns after CLOSE has been written, or
    /// with the socket's error.
    pub(super) async fn flusher(&self) -> Result<(), TunnelError> {
        loop {
            let listener = self.leftover.listen();
            let idle = {
                let st = self.lock();
                st.check()?;
                if st.unsent() == 0 && st.closing {
                    return Ok(());
                }
                st.unsent() == 0
            };
            if idle {
                listener.await;
                continue;
            }
            drop(listener);
            self.conn
                .writable()
                .await
                .map_err(|source| TunnelError::Io {
                    op: "writing relay socket",
                    source,
                })?;
            let mut st = self.lock();
            self.write_now(&mut st);
            st.check()?;
            if st.unsent() <= HIGH_WATER {
                self.room.notify(usize::MAX);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::noports::suite::{parse_frame, RecordOpener, SuiteKeys};
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A connected pair: our end (async) and the peer's (blocking, not read until asked).
    fn pair() -> (Arc<Async<TcpStream>>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (theirs, _) = l.accept().unwrap();
        (Arc::new(Async::new(ours).unwrap()), theirs)
    }

    /// Reads records from `peer` until CLOSE; the DATA bytes and the frame types seen.
    fn drain(peer: &mut TcpStream, mut opener: RecordOpener) -> (usize, Vec<FrameType>) {
        let (mut data, mut types) = (0, Vec::new());
        loop {
            let mut header = [0u8; 2];
            peer.read_exact(&mut header).unwrap();
            let mut body = vec![0u8; RecordOpener::body_len(header).unwrap()];
            peer.read_exact(&mut body).unwrap();
            opener.open(header, &mut body).unwrap();
            let (ty, _, payload) = parse_frame(&body).unwrap();
            if ty == FrameType::Data {
                data += payload.len();
            } else {
                types.push(ty);
            }
            if ty == FrameType::Close {
                return (data, types);
            }
        }
    }

    #[test]
    fn control_frames_never_wait_and_everything_arrives_once_read() {
        let keys = SuiteKeys::from_raw([1; 32], [2; 32]);
        let (sealer, _) = keys.split();
        let (_, opener) = keys.mirrored().split();
        let (conn, mut peer) = pair();
        let out = Arc::new(Outbox::new(conn, sealer));
        let flusher = crate::runtime::spawn({
            let out = out.clone();
            async move { out.flusher().await }
        });
        let body = vec![0x42u8; 32 * 1024];
        let sent = crate::runtime::block_on(async {
            // The peer reads nothing: DATA fills the socket, then `pending`, then waits.
            let mut sent = 0;
            loop {
                let push = out.data(7, &body);
                match crate::runtime::timeout(Duration::from_millis(300), push).await {
                    Ok(r) => {
                        r.unwrap();
                        sent += body.len();
                    }
                    Err(_) => break, // waiting for room, as it should
                }
                assert!(sent < 64 << 20, "DATA never waited");
            }
            // A control frame goes in at once even now.
            out.control(FrameType::Window, 7, &1u32.to_be_bytes())
                .unwrap();
            out.close().unwrap();
            sent
        });
        assert!(sent > HIGH_WATER, "only {sent} bytes before waiting");
        let reader = std::thread::spawn(move || drain(&mut peer, opener));
        let flushed =
            crate::runtime::block_on(crate::runtime::timeout(Duration::from_secs(10), flusher));
        assert!(matches!(flushed, Ok(Ok(()))), "flusher did not finish");
        let (data, types) = reader.join().unwrap();
        assert_eq!(data, sent);
        assert_eq!(types, vec![FrameType::Window, FrameType::Close]);
    }

    #[test]
    fn control_frames_a_peer_never_reads_fail_the_session_past_the_backlog() {
        let keys = SuiteKeys::from_raw([1; 32], [2; 32]);
        let (sealer, _) = keys.split();
        let (conn, _peer) = pair();
        let out = Outbox::new(conn, sealer);
        // RESETs answering refused OPENs, the peer reading none of them.
        let mut sent = 0usize;
        let err = loop {
            match out.control(FrameType::Reset, 1, &[]) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 10_000_000, "the backlog never filled");
        };
        assert!(
            matches!(err, TunnelError::Protocol(m) if m.contains("does not read")),
            "{err}"
        );
        assert!(
            out.lock().unsent() <= BACKLOG_MAX + 64,
            "pending grew past the backlog"
        );
        // And it stays failed.
        assert!(out
            .control(FrameType::Window, 1, &1u32.to_be_bytes())
            .is_err());
    }
}
