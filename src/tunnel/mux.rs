//! Multiplexing for our suite (docs/suite-v1.md §5): many local TCP connections share one
//! relay socket pair. Frames (OPEN, DATA, FIN, RESET, WINDOW, CLOSE) travel inside sealed
//! records; each stream has a credit window so one slow local socket cannot stall the others.
//!
//! Tasks: one reader (owns the opener, dispatches frames, and writes DATA straight to the
//! local socket when nothing of that stream is queued), two halves per stream, and a flusher
//! for what the relay socket does not take at once (see [`Outbox`]: every task seals and sends
//! its own frames). Only the client opens streams.

use crate::runtime::atomic::AtomicU64;
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_io::Async;
use futures_lite::{future, AsyncWriteExt, FutureExt};

use super::net::{
    accept_local, connect_tcp, read_some, reset_on_close, write_nonblocking, TunnelError,
    TunnelStats, LOCAL_CONNECT_TIMEOUT,
};
use super::outbox::Outbox;
use super::splice::{Counters, TrackGuard, Tracker};
use crate::noports::suite::{parse_frame, FrameType, RecordOpener, SuiteKeys, MAX_DATA};
use crate::runtime;
use crate::runtime::dial::Route;

mod fuzz;
#[doc(hidden)]
pub use fuzz::fuzz_mux;

/// Bytes a sender may have in flight per stream before the receiver's WINDOW credit.
pub const STREAM_WINDOW: u64 = 512 * 1024;
/// Most concurrent streams a daemon accepts on one session.
pub const MAX_STREAMS: usize = 1024;
/// Read buffering of the relay socket.
const IO_BUF: usize = 64 * 1024;
/// Send WINDOW once this much has been written locally. Far below [`STREAM_WINDOW`], so a
/// sender never waits for credit held back here.
const WINDOW_BATCH: u64 = 64 * 1024;
/// How long a graceful end waits for the CLOSE record to be written.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// What one queued DATA body costs beyond its buffer's capacity (the Vec, its channel slot,
/// the allocator's rounding): queued memory is counted in allocated bytes, not body bytes, so
/// a flood of one-byte records costs what it really takes.
const ITEM_OVERHEAD: u64 = 64;
/// Bodies shorter than this are queued in a buffer of their own size; longer ones in a pooled
/// [`MAX_DATA`] buffer (at most twice their size).
const POOL_FROM: usize = MAX_DATA / 2;
/// Queued memory one stream may hold. A peer within its window queues at most about twice
/// [`STREAM_WINDOW`] plus [`ITEM_OVERHEAD`] per record; more means a flood of tiny records, and
/// the session is closed with that reason.
pub const STREAM_QUEUE_MAX: u64 = 2 * 1024 * 1024;
/// Queued memory all streams of a session may hold: beyond it the reader stops reading the
/// relay socket until the local applications have taken some (flow control for the session,
/// where the windows alone would allow [`MAX_STREAMS`] x [`STREAM_WINDOW`]).
pub const SESSION_QUEUE_MAX: u64 = 16 * 1024 * 1024;

/// The bounds one session enforces: the constants above, in one value so the mux fuzz target
/// (`mux/fuzz.rs`) can shrink them to where a few hundred frames reach every limit.
#[derive(Clone, Copy)]
struct Limits {
    /// [`MAX_STREAMS`].
    streams: usize,
    /// [`STREAM_WINDOW`], both ways.
    window: u64,
    /// [`WINDOW_BATCH`].
    batch: u64,
    /// [`STREAM_QUEUE_MAX`].
    stream_queue: u64,
    /// [`SESSION_QUEUE_MAX`].
    session_queue: u64,
}

impl Limits {
    const SESSION: Limits = Limits {
        streams: MAX_STREAMS,
        window: STREAM_WINDOW,
        batch: WINDOW_BATCH,
        stream_queue: STREAM_QUEUE_MAX,
        session_queue: SESSION_QUEUE_MAX,
    };
}

/// What this end of the session does.
pub(crate) enum Side {
    /// npt: accept local connections, one stream each.
    Client(Async<TcpListener>),
    /// sshnp: one already accepted local connection.
    ClientSingle(Async<TcpStream>),
    /// sshnpd: connect `local` for each OPEN; `pre` is an already connected first target.
    Daemon {
        local: (String, u16),
        pre: Option<Async<TcpStream>>,
        single: bool,
    },
}

enum Inbound {
    Data(Vec<u8>),
    Fin,
    Reset,
}

/// WINDOW credit received for a stream and not yet used by its sending half: one number, so
/// a flood of WINDOW frames costs no memory.
#[derive(Default)]
struct Credit {
    bytes: AtomicU64,
    arrived: event_listener::Event,
}

#[derive(Clone)]
struct Entry {
    inbound: Sender<Inbound>,
    credit: Arc<Credit>,
    /// Allocated bytes of the bodies queued for the local socket (see [`ITEM_OVERHEAD`]).
    queued_mem: Arc<AtomicU64>,
    /// The peer sent FIN (no DATA may follow) / RESET (late DATA is dropped).
    peer_fin: Arc<std::sync::atomic::AtomicBool>,
    peer_reset: Arc<std::sync::atomic::AtomicBool>,
    /// Bytes queued for the local socket and not yet written.
    unacked: Arc<AtomicU64>,
    /// Bytes written locally and not yet credited back with WINDOW.
    acked: Arc<AtomicU64>,
    /// The local socket, once the stream task has it.
    local: Arc<OnceLock<Arc<Async<TcpStream>>>>,
}

struct Shared {
    out: Arc<Outbox>,
    /// Allocated bytes queued for local sockets over all streams ([`SESSION_QUEUE_MAX`]).
    queued_mem: AtomicU64,
    /// Queued memory was given back: wakes a reader waiting under [`SESSION_QUEUE_MAX`].
    drained: event_listener::Event,
    streams: Mutex<HashMap<u32, Entry>>,
    pool: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    tracker: Arc<Tracker>,
    counters: Counters,
    limits: Limits,
}

impl Shared {
    fn new(out: Outbox, limits: Limits) -> Arc<Self> {
        Arc::new(Shared {
            out: Arc::new(out),
            queued_mem: AtomicU64::new(0),
            drained: event_listener::Event::new(),
            streams: Mutex::new(HashMap::new()),
            pool: async_channel::bounded(128),
            tracker: Tracker::new(),
            counters: Counters::default(),
            limits,
        })
    }

    fn buf(&self) -> Vec<u8> {
        self.pool
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(MAX_DATA))
    }

    fn recycle(&self, mut b: Vec<u8>) {
        b.clear();
        let _ = self.pool.0.try_send(b);
    }

    fn register(self: &Arc<Self>, id: u32) -> StreamIo {
        // Unbounded, but bounded in effect: DATA by [`STREAM_QUEUE_MAX`], and FIN and RESET
        // are queued at most once each.
        let (in_tx, in_rx) = async_channel::unbounded();
        let credit = Arc::new(Credit::default());
        let entry = Entry {
            inbound: in_tx,
            credit: credit.clone(),
            queued_mem: Arc::new(AtomicU64::new(0)),
            peer_fin: Default::default(),
            peer_reset: Default::default(),
            unacked: Arc::new(AtomicU64::new(0)),
            acked: Arc::new(AtomicU64::new(0)),
            local: Arc::new(OnceLock::new()),
        };
        let io_entry = entry.clone();
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, entry);
        StreamIo {
            id,
            inbound: in_rx,
            credit,
            entry: io_entry,
            shared: self.clone(),
            _guard: self.tracker.enter(),
        }
    }

    /// Counts `n` bytes written to stream `id`'s local socket; sends WINDOW per batch.
    fn credit(&self, id: u32, acked: &AtomicU64, n: u64) {
        if acked.fetch_add(n, Ordering::SeqCst) + n >= self.limits.batch {
            let credit = acked.swap(0, Ordering::SeqCst);
            let credit = u32::try_from(credit).unwrap_or(u32::MAX);
            let _ = self
                .out
                .control(FrameType::Window, id, &credit.to_be_bytes());
        }
    }

    /// DATA for stream `id`: written to the local socket at once when nothing of the stream is
    /// queued and the socket takes it, the rest queued for the stream's task.
    fn deliver(&self, id: u32, payload: &[u8]) -> Result<(), TunnelError> {
        let Some(e) = self.with_entry(id, Entry::clone) else {
            return Ok(()); // a stream that ended: its late data is dropped
        };
        if e.peer_fin.load(Ordering::SeqCst) {
            return Err(TunnelError::Protocol("DATA after FIN"));
        }
        if e.peer_reset.load(Ordering::SeqCst) {
            return Ok(()); // the stream is ending: late data is dropped
        }
        let mut rest = payload;
        if e.unacked.load(Ordering::SeqCst) == 0 {
            if let Some(sock) = e.local.get() {
                // An error is left for the stream's task to meet on its own write.
                let (n, _) = write_nonblocking(sock, payload);
                if n > 0 {
                    rest = payload.get(n..).unwrap_or_default();
                    self.counters.inn.fetch_add(n as u64, Ordering::Relaxed);
                    self.credit(id, &e.acked, n as u64);
                }
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        let n = rest.len() as u64;
        let buf = if rest.len() >= POOL_FROM {
            let mut buf = self.buf();
            buf.extend_from_slice(rest);
            buf
        } else {
            rest.to_vec()
        };
        let cost = queue_cost(&buf);
        let pending = e.unacked.fetch_add(n, Ordering::SeqCst) + n;
        let stream_mem = e.queued_mem.fetch_add(cost, Ordering::SeqCst) + cost;
        self.queued_mem.fetch_add(cost, Ordering::SeqCst);
        if e.inbound.try_send(Inbound::Data(buf)).is_err() {
            // The stream's task has ended and drained its queue: nothing will take this.
            self.dequeued(&e, cost);
        }
        if pending > self.limits.window {
            return Err(TunnelError::Protocol("peer exceeded the stream window"));
        }
        if stream_mem > self.limits.stream_queue {
            return Err(TunnelError::Protocol(
                "over 2 MiB queued on a stream: records too small",
            ));
        }
        Ok(())
    }

    /// A queued body was written locally (or dropped): its cost is given back.
    fn dequeued(&self, e: &Entry, cost: u64) {
        e.queued_mem.fetch_sub(cost, Ordering::SeqCst);
        self.queued_mem.fetch_sub(cost, Ordering::SeqCst);
        self.drained.notify(usize::MAX);
    }

    /// Waits while the session's queued memory is over [`SESSION_QUEUE_MAX`].
    async fn room_to_queue(&self) {
        let max = self.limits.session_queue;
        while self.queued_mem.load(Ordering::SeqCst) > max {
            let listener = self.drained.listen();
            if self.queued_mem.load(Ordering::SeqCst) <= max {
                break;
            }
            listener.await;
        }
    }

    /// The session failed (cut, tampered, out of protocol): every open stream's local
    /// connection ends in a reset once its task is dropped, so no application takes a cut
    /// download for a complete one.
    fn reset_all(&self) {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for e in streams.values() {
            if let Some(sock) = e.local.get() {
                reset_on_close(sock.get_ref());
            }
        }
    }

    fn unregister(&self, id: u32) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn with_entry<T>(&self, id: u32, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(f)
    }
}

/// What a queued body costs against [`STREAM_QUEUE_MAX`] and [`SESSION_QUEUE_MAX`].
fn queue_cost(buf: &Vec<u8>) -> u64 {
    buf.capacity() as u64 + ITEM_OVERHEAD
}

/// One stream's end of its queue. Dropped when the stream's task ends, also when the task is
/// cancelled (the session ended) or its local connect failed: the stream is forgotten and the
/// cost of what is still queued is given back (a body the reader queues after that is given
/// back by the reader, see `deliver`), so the session's account of queued memory never keeps
/// bodies nobody will write.
struct StreamIo {
    id: u32,
    inbound: Receiver<Inbound>,
    credit: Arc<Credit>,
    entry: Entry,
    shared: Arc<Shared>,
    _guard: TrackGuard,
}

impl Drop for StreamIo {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
        self.inbound.close();
        while let Ok(item) = self.inbound.try_recv() {
            if let Inbound::Data(buf) = item {
                self.shared.dequeued(&self.entry, queue_cost(&buf));
            }
        }
    }
}

/// A body taken off a stream's queue and being written: its cost is given back when this is
/// dropped, after the write or when the stream's task is cancelled in the middle of it.
struct Writing<'a> {
    shared: &'a Shared,
    entry: &'a Entry,
    cost: u64,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.shared.dequeued(self.entry, self.cost);
    }
}

/// Runs one multiplexed session over `conn` until it ends.
///
/// # Errors
/// `Tampered` when a record fails authentication, `Protocol` for framing violations,
/// `Truncated` when the connection ends without CLOSE, `Io` otherwise.
///
/// Not an `async fn` itself: the setup runs at the call, and the future is [`session`]'s alone
/// (one state machine less: 256 bytes of the router binary).
pub(crate) fn run(
    conn: Async<TcpStream>,
    keys: SuiteKeys,
    side: Side,
    idle: Duration,
) -> impl std::future::Future<Output = Result<TunnelStats, TunnelError>> {
    let conn = Arc::new(conn);
    let (sealer, opener) = keys.split();
    // The first-generation keys live on only in the sealer and the opener, which replace them
    // at each rekey; this copy is zeroized now, not at the end of the session.
    drop(keys);
    let shared = Shared::new(Outbox::new(conn.clone(), sealer), Limits::SESSION);
    session(conn, opener, shared, side, idle)
}

/// [`run`] once the session's state exists (the fuzz target makes its own, to watch it).
async fn session(
    conn: Arc<Async<TcpStream>>,
    opener: RecordOpener,
    shared: Arc<Shared>,
    side: Side,
    idle: Duration,
) -> Result<TunnelStats, TunnelError> {
    let out = shared.out.clone();
    let flusher = runtime::spawn(async move { out.flusher().await });
    let (is_client, result) = match side {
        Side::Daemon { local, pre, single } => {
            let r = reader(
                &conn,
                opener,
                &shared,
                Some(DaemonCtx {
                    local: Arc::new(local),
                    pre,
                    single,
                }),
            )
            .await;
            (false, r)
        }
        Side::Client(listener) => {
            let driver = client_driver(&shared, Some(listener), None, idle);
            (true, reader(&conn, opener, &shared, None).or(driver).await)
        }
        Side::ClientSingle(local) => {
            let driver = client_driver(&shared, None, Some(local), idle);
            (true, reader(&conn, opener, &shared, None).or(driver).await)
        }
    };
    if is_client && result.is_ok() {
        // Graceful end: CLOSE tells the daemon this is not a truncation.
        if shared.out.close().is_ok() {
            let _ = runtime::timeout(CLOSE_FLUSH, flusher).await;
        }
    } else {
        drop(flusher);
    }
    let _ = conn.get_ref().shutdown(Shutdown::Both);
    if let Err(e) = &result {
        // The caller owns the session and logs its end at the level it deserves.
        log::debug!("multiplexed session ended: {e}");
    }
    result.map(|()| shared.counters.snapshot())
}

struct DaemonCtx {
    local: Arc<(String, u16)>,
    pre: Option<Async<TcpStream>>,
    single: bool,
}

/// The relay socket's read side, buffered [`IO_BUF`] at a time.
struct RelayReader<'a> {
    conn: &'a Async<TcpStream>,
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet taken.
    start: usize,
    end: usize,
}

impl RelayReader<'_> {
    /// Fills `out` completely; `UnexpectedEof` if the socket ends first.
    async fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < out.len() {
            if self.start == self.end {
                let n = read_some(self.conn, &mut self.buf).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                (self.start, self.end) = (0, n);
            }
            let take = (self.end - self.start).min(out.len() - filled);
            let (Some(dst), Some(src)) = (
                out.get_mut(filled..filled + take),
                self.buf.get(self.start..self.start + take),
            ) else {
                return Err(io::ErrorKind::InvalidData.into()); // unreachable: both in range
            };
            dst.copy_from_slice(src);
            filled += take;
            self.start += take;
        }
        Ok(())
    }
}

/// Reads and dispatches records until CLOSE (Ok) or a failure.
async fn reader(
    conn: &Async<TcpStream>,
    mut opener: RecordOpener,
    shared: &Arc<Shared>,
    mut daemon: Option<DaemonCtx>,
) -> Result<(), TunnelError> {
    let mut r = RelayReader {
        conn,
        buf: vec![0; IO_BUF],
        start: 0,
        end: 0,
    };
    let mut body = Vec::with_capacity(crate::noports::suite::MAX_RECORD);
    let mut tasks: Vec<runtime::Task<()>> = Vec::new();
    let mut last_open = 0u32;
    let ended = async {
        loop {
            // Flow control for the whole session: the windows bound each stream, this all.
            shared.room_to_queue().await;
            let mut header = [0u8; 2];
            r.read_exact(&mut header).await.map_err(eof_is_truncation)?;
            let len = RecordOpener::body_len(header)
                .ok_or(TunnelError::Protocol("record length out of range"))?;
            body.resize(len, 0);
            r.read_exact(&mut body).await.map_err(eof_is_truncation)?;
            opener.open(header, &mut body)?;
            let (ty, id, payload) =
                parse_frame(&body).map_err(|_| TunnelError::Protocol("malformed frame"))?;
            match ty {
                FrameType::Close => return Ok(()),
                FrameType::Open => {
                    let Some(ctx) = daemon.as_mut() else {
                        return Err(TunnelError::Protocol("OPEN sent to the client"));
                    };
                    if id <= last_open {
                        return Err(TunnelError::Protocol("stream id reused"));
                    }
                    last_open = id;
                    tasks.retain(|t| !t.is_finished());
                    if tasks.len() >= shared.limits.streams || (ctx.single && id != 1) {
                        log::warn!("refusing stream {id}: stream limit reached");
                        // Fails once the peer lets our RESETs pile up unread.
                        shared.out.control(FrameType::Reset, id, &[])?;
                        continue;
                    }
                    let io = shared.register(id);
                    let (shared, local, pre) = (shared.clone(), ctx.local.clone(), ctx.pre.take());
                    tasks.push(runtime::spawn(async move {
                        let sock = match pre {
                            Some(s) => s,
                            None => {
                                match connect_tcp(
                                    &local.0,
                                    local.1,
                                    "local",
                                    Route::Direct,
                                    LOCAL_CONNECT_TIMEOUT,
                                )
                                .await
                                {
                                    Ok(s) => s,
                                    Err(e) => {
                                        log::warn!("stream {}: {e}", io.id);
                                        // Dropping `io` gives back what was queued.
                                        let _ = shared.out.control(FrameType::Reset, io.id, &[]);
                                        return;
                                    }
                                }
                            }
                        };
                        stream(shared, sock, io).await;
                    }));
                }
                FrameType::Data => shared.deliver(id, payload)?,
                // FIN and RESET are queued once each: a repeated FIN is a protocol error, a
                // repeated RESET (both halves of a stream may fail) is ignored.
                FrameType::Fin => {
                    let twice = shared.with_entry(id, |e| {
                        let twice = e.peer_fin.swap(true, Ordering::SeqCst);
                        if !twice {
                            let _ = e.inbound.try_send(Inbound::Fin);
                        }
                        twice
                    });
                    if twice == Some(true) {
                        return Err(TunnelError::Protocol("FIN twice on one stream"));
                    }
                }
                FrameType::Reset => {
                    shared.with_entry(id, |e| {
                        if !e.peer_reset.swap(true, Ordering::SeqCst) {
                            let _ = e.inbound.try_send(Inbound::Reset);
                        }
                    });
                }
                FrameType::Window => {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(payload.get(..4).unwrap_or(&[0; 4]));
                    shared.with_entry(id, |e| {
                        let credit = u64::from(u32::from_be_bytes(w));
                        e.credit.bytes.fetch_add(credit, Ordering::SeqCst);
                        e.credit.arrived.notify(1);
                    });
                }
            }
        }
    }
    .await;
    if ended.is_err() {
        // Before `tasks` (the daemon's streams) and the client's stream tasks are dropped.
        shared.reset_all();
    }
    drop(tasks);
    ended
}

fn eof_is_truncation(e: io::Error) -> TunnelError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        TunnelError::Truncated
    } else {
        TunnelError::Io {
            op: "reading relay socket",
            source: e,
        }
    }
}

/// The client's lifetime logic: accept and open streams, end under the grace rule (§5.5).
async fn client_driver(
    shared: &Arc<Shared>,
    listener: Option<Async<TcpListener>>,
    single: Option<Async<TcpStream>>,
    idle: Duration,
) -> Result<(), TunnelError> {
    let is_single = single.is_some();
    let mut first = None;
    if let Some(local) = single {
        let io = shared.register(1);
        shared.out.control(FrameType::Open, 1, &[])?;
        first = Some(runtime::spawn(stream(shared.clone(), local, io)));
    }
    // The listener gets a task of its own: polled inside the reader's task, it was asked for a
    // connection (accept4, then epoll_ctl) every time the reader woke, once per round trip.
    // Dropping the task drops the streams it started.
    let accept = async {
        match listener {
            Some(listener) => runtime::spawn(accept_loop(shared.clone(), listener)).await,
            None => future::pending().await,
        }
    };
    let grace = async {
        shared.tracker.grace(idle, is_single).await;
        Ok(())
    };
    let ended = accept.or(grace).await;
    drop(first);
    ended
}

/// Accepts local connections and opens a stream for each; returns only on an accept error.
async fn accept_loop(shared: Arc<Shared>, listener: Async<TcpListener>) -> Result<(), TunnelError> {
    let mut tasks: Vec<runtime::Task<()>> = Vec::new();
    let mut next_id = 1u32;
    loop {
        let (local, peer) = accept_local(&listener).await?;
        log::debug!("local connection from {peer}: stream {next_id}");
        let io = shared.register(next_id);
        shared.out.control(FrameType::Open, next_id, &[])?;
        next_id = next_id
            .checked_add(1)
            .ok_or(TunnelError::Protocol("stream ids exhausted"))?;
        tasks.retain(|t| !t.is_finished());
        tasks.push(runtime::spawn(stream(shared.clone(), local, io)));
    }
}

/// Runs both halves of one stream, then forgets it.
async fn stream(shared: Arc<Shared>, local: Async<TcpStream>, io: StreamIo) {
    let (id, inbound, credit, entry) = (io.id, &io.inbound, &*io.credit, &io.entry);
    shared.counters.conns.fetch_add(1, Ordering::Relaxed);
    let local = Arc::new(local);
    let _ = entry.local.set(local.clone());
    let local = &*local;
    // Closed when the peer resets the stream, so an `up` half waiting for credit wakes up.
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let up = async {
        let mut window = shared.limits.window;
        // Zeroed once: refilling a buffer for every read cost as much as a third of the
        // cipher's time at opt-level "z".
        let mut buf = vec![0u8; MAX_DATA];
        loop {
            window = window.saturating_add(credit.bytes.swap(0, Ordering::SeqCst));
            if window == 0 {
                let arrived = credit.arrived.listen();
                // Rechecked after listening, so credit that came in between is not missed.
                if credit.bytes.load(Ordering::SeqCst) == 0 {
                    arrived.await;
                }
                continue;
            }
            let want = usize::try_from(window).unwrap_or(MAX_DATA).min(MAX_DATA);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            match read_some(local, chunk).await {
                Ok(0) => {
                    let _ = shared.out.control(FrameType::Fin, id, &[]);
                    return;
                }
                Ok(n) => {
                    window -= n as u64;
                    shared.counters.out.fetch_add(n as u64, Ordering::Relaxed);
                    let sent = shared
                        .out
                        .data(id, chunk.get(..n).unwrap_or_default())
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = shared.out.control(FrameType::Reset, id, &[]);
                    shared.unregister(id);
                    return;
                }
            }
        }
    };
    let down = async {
        loop {
            match inbound.recv().await {
                Ok(Inbound::Data(buf)) => {
                    let n = buf.len() as u64;
                    let writing = Writing {
                        shared: &shared,
                        entry,
                        cost: queue_cost(&buf),
                    };
                    let r = (&*local).write_all(&buf).await;
                    drop(writing);
                    shared.recycle(buf);
                    if r.is_err() {
                        let _ = shared.out.control(FrameType::Reset, id, &[]);
                        let _ = local.get_ref().shutdown(Shutdown::Both);
                        stop_tx.close();
                        return;
                    }
                    shared.counters.inn.fetch_add(n, Ordering::Relaxed);
                    // Written before it stops counting as queued: the reader writes directly
                    // only when nothing is queued, so bytes cannot overtake each other.
                    entry.unacked.fetch_sub(n, Ordering::SeqCst);
                    shared.credit(id, &entry.acked, n);
                }
                Ok(Inbound::Fin) => {
                    let _ = local.get_ref().shutdown(Shutdown::Write);
                    return;
                }
                Ok(Inbound::Reset) => {
                    // The peer's end failed: the application gets a reset when the socket
                    // closes below, not a FIN it could take for a complete reply.
                    reset_on_close(local.get_ref());
                    stop_tx.close();
                    return;
                }
                Err(_) => {
                    let _ = local.get_ref().shutdown(Shutdown::Both);
                    stop_tx.close();
                    return;
                }
            }
        }
    };
    let up = up.or(async {
        let _ = stop_rx.recv().await;
    });
    future::zip(up, down).await;
    // Dropping `io` forgets the stream and gives back what is still queued.
    drop(io);
}
