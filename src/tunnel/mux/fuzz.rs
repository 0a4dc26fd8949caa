//! Fuzzing entry for the multiplexer (hidden; not an API, issue 24): the daemon's side of one
//! session, over loopback sockets, against a peer that holds the session keys and sends what
//! the input says, with the session's bounds shrunk ([`LIMITS`]) so a few hundred frames reach
//! every one of them. A local service on 127.0.0.1 takes the daemon's streams: it reads
//! everything and may send a greeting first (the daemon's sending window and credit). The
//! relay connection is a Unix socket pair, so executions leave no TCP sockets in TIME_WAIT.
//!
//! Input: one mode byte, then frames of `selector, id, len, body` (at most [`MAX_FRAMES`]).
//! - mode bit 0: single mode (`pre`-connected stream 1 only); bit 1 (multi mode): nothing
//!   listens on the local port, so every stream's connect fails; bits 2-4: greeting of
//!   n × 3 KiB per local connection; bit 5: the service then ends its sending side (the
//!   daemon sends FIN); bits 6-7 are not used.
//! - selector bits 0-3: 1-6 and 7-12 = OPEN, DATA, FIN, RESET, WINDOW, CLOSE for stream
//!   `id` (7: OPEN of the next stream, the last OPEN's id + 1, whatever `id` says),
//!   well-formed but for an empty or oversized DATA: DATA carries `body`, WINDOW
//!   `len` × 64 bytes of credit (`u32::MAX` for 255), the others no body and no `body` bytes
//!   are taken; 0 and 13-14 = `body` sealed as a whole frame (short, unknown type, control
//!   frames with a body, …); 15 = `body` written unsealed. Bit 4 is not used; bit 5: pause
//!   200 µs before this frame (the daemon's tasks run in between); bit 6: the id counts down
//!   from `u32::MAX`; bit 7 (DATA and kinds 0, 13-15): `body` is `len` × 128 filler bytes, one
//!   byte over [`MAX_DATA`] for 255 (up to [`MAX_FILLER`] per input), not taken from the
//!   input.
//!
//! Properties, each a distinct `Err`: the session ends within [`DEADLINE`] once the peer's
//! bytes end, `Ok` only after a CLOSE and `Truncated` not after one, other errors only for
//! inputs that deserve them; every record of the daemon opens and parses, names a stream the
//! peer opened, sends no DATA past the window and the credit given, nor after its FIN; no more
//! than the stream limit are live when a local connection arrives, and no local connection
//! without an OPEN; once the session ended no task keeps its state, and the queued memory it
//! counted is all given back.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt, FutureExt};

use super::TunnelError;
use super::{session, Limits, Outbox, Shared, Side};
use crate::noports::suite::{
    parse_frame, FrameType, RecordOpener, SuiteKeys, FRAME_HEADER, MAX_DATA, MAX_RECORD, TAG_LEN,
};
use crate::runtime;

/// The session's bounds under the fuzzer: 4 streams, 8 KiB windows (credit every 2 KiB),
/// 12 KiB queued per stream (189 one-byte records), 24 KiB per session.
const LIMITS: Limits = Limits {
    streams: 4,
    window: 8 * 1024,
    batch: 2 * 1024,
    stream_queue: 12 * 1024,
    session_queue: 24 * 1024,
};
/// Frames per input: keeps an execution in the milliseconds.
const MAX_FRAMES: usize = 256;
/// Filler body bytes per input (selector bit 7).
const MAX_FILLER: usize = 256 * 1024;
/// Pauses per input (selector bit 5), and each one's length.
const MAX_PAUSES: usize = 8;
const PAUSE: Duration = Duration::from_micros(200);
/// How long the session may take to end once the peer's bytes have ended (longer under
/// `cargo test`, where `make test` runs other suites beside it on two cores).
const DEADLINE: Duration = Duration::from_secs(if cfg!(test) { 20 } else { 2 });
/// How long the session's tasks may take to let go of its state once it ended.
const RELEASE: Duration = Duration::from_secs(if cfg!(test) { 10 } else { 1 });
/// Records per key on both ends, so rekeying happens inside the session.
const REKEY_EVERY: u64 = 64;

/// What the peer sent, as the daemon should see it.
#[derive(Default)]
struct Sent {
    /// Byte chunks to write, with a pause between two.
    chunks: Vec<Vec<u8>>,
    /// Stream ids of well-formed OPEN frames.
    opens: HashSet<u32>,
    /// The id of the last of them (0 before the first).
    last_open: u32,
    /// WINDOW credit per stream id, summed.
    credit: HashMap<u32, u64>,
    /// DATA body bytes in well-formed frames.
    data: u64,
    /// A well-formed CLOSE, with nothing unsealed or of a bad length before it.
    clean_close: bool,
    /// Any well-formed CLOSE.
    close: bool,
    /// Bytes written unsealed (the stream of records is broken from there on).
    raw: bool,
    /// A sealed frame the parser must refuse.
    malformed: bool,
    /// A record shorter than a frame header or over [`MAX_RECORD`].
    bad_length: bool,
}

impl Sent {
    /// Reads the frames of `input` and seals them as the peer holding `peer` would.
    fn new(input: &[u8], peer: &SuiteKeys) -> Result<Self, &'static str> {
        let (mut sealer, _) = peer.split();
        let mut sent = Sent::default();
        let mut cur = Vec::new();
        let (mut rest, mut filler, mut pauses) = (input, 0usize, 0usize);
        for _ in 0..MAX_FRAMES {
            let Some((&[sel, id, len], tail)) = rest.split_first_chunk::<3>() else {
                break;
            };
            let fill = match len {
                255 => MAX_DATA + 1,
                n => usize::from(n) * 128,
            };
            let ty = match sel & 0x0f {
                kind @ 1..=12 => Some((kind - 1) % 6 + 1),
                _ => None,
            };
            let (body, tail) = match ty {
                Some(1 | 3 | 4 | 6) => (Vec::new(), tail),
                Some(5) => {
                    let credit = match len {
                        255 => u32::MAX,
                        n => u32::from(n) * 64,
                    };
                    (credit.to_be_bytes().to_vec(), tail)
                }
                _ if sel & 0x80 != 0 && filler + fill <= MAX_FILLER => {
                    filler += fill;
                    (vec![id; fill], tail)
                }
                _ => {
                    let (b, t) = tail.split_at(usize::from(len).min(tail.len()));
                    (b.to_vec(), t)
                }
            };
            rest = tail;
            let id = if sel & 0x0f == 7 {
                sent.last_open.wrapping_add(1)
            } else if sel & 0x40 != 0 {
                u32::MAX - u32::from(id)
            } else {
                u32::from(id)
            };
            if sel & 0x20 != 0 && pauses < MAX_PAUSES && !cur.is_empty() {
                pauses += 1;
                sent.chunks.push(std::mem::take(&mut cur));
            }
            let mut frame = match ty {
                _ if sel & 0x0f == 15 => {
                    sent.raw = true;
                    cur.extend_from_slice(&body);
                    continue;
                }
                Some(ty) => {
                    let mut f = Vec::with_capacity(5 + body.len());
                    f.push(ty);
                    f.extend_from_slice(&id.to_be_bytes());
                    f.extend_from_slice(&body);
                    f
                }
                None => body,
            };
            sent.note(&frame);
            let header = sealer
                .seal(&mut frame)
                .map_err(|_| "sealing a frame failed")?;
            cur.extend_from_slice(&header);
            cur.extend_from_slice(&frame);
        }
        sent.chunks.push(cur);
        Ok(sent)
    }

    /// Records what one plaintext frame should mean to the daemon.
    fn note(&mut self, frame: &[u8]) {
        let len = frame.len() + TAG_LEN;
        if !(FRAME_HEADER + TAG_LEN..=MAX_RECORD).contains(&len) {
            self.bad_length = true;
            return;
        }
        let Ok((ty, id, body)) = parse_frame(frame) else {
            self.malformed = true;
            return;
        };
        match ty {
            FrameType::Open => {
                self.opens.insert(id);
                self.last_open = id;
            }
            FrameType::Data => self.data += body.len() as u64,
            FrameType::Window => {
                let mut w = [0u8; 4];
                w.copy_from_slice(body.get(..4).unwrap_or(&[0; 4]));
                *self.credit.entry(id).or_default() += u64::from(u32::from_be_bytes(w));
            }
            FrameType::Close => {
                self.clean_close |= !self.close && !self.raw && !self.bad_length;
                self.close = true;
            }
            FrameType::Fin | FrameType::Reset => {}
        }
    }
}

/// Runs the daemon's side of one multiplexed session against the peer `data` describes and
/// checks the properties in the module docs.
///
/// # Errors
/// A description of the broken property.
#[doc(hidden)]
pub fn fuzz_mux(data: &[u8]) -> Result<(), &'static str> {
    let Some((&mode, frames)) = data.split_first() else {
        return Ok(());
    };
    let keys = SuiteKeys::from_raw([1; 32], [2; 32]).with_rekey_interval(REKEY_EVERY);
    let sent = Sent::new(frames, &keys.mirrored())?;
    let single = mode & 1 != 0;
    let local_down = !single && mode & 2 != 0;
    let service = Service {
        greeting: usize::from((mode >> 2) & 7) * 3 * 1024,
        half_close: mode & 0x20 != 0,
    };
    runtime::block_on(session_against(keys, &sent, single, local_down, service))
}

fn loopback() -> Result<TcpListener, &'static str> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(|_| "cannot bind")
}

fn port_of(l: &TcpListener) -> Result<u16, &'static str> {
    l.local_addr()
        .map(|a| a.port())
        .map_err(|_| "no local address")
}

/// The relay connection: a connected pair of Unix stream sockets, typed as the TCP stream the
/// multiplexer takes (it only reads, writes and shuts down). Over loopback TCP every execution
/// left a socket in TIME_WAIT, and a campaign used up the ephemeral ports (and slowed down).
fn relay_pair() -> Result<(Async<TcpStream>, Async<TcpStream>), &'static str> {
    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|_| "no socket pair")?;
    let tcp = |s| TcpStream::from(std::os::fd::OwnedFd::from(s));
    match (Async::new(tcp(a)), Async::new(tcp(b))) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err("cannot register sockets"),
    }
}

/// What the local service does with each connection: it reads everything, and sends
/// `greeting` bytes first, then with `half_close` ends its sending side.
#[derive(Clone, Copy)]
struct Service {
    greeting: usize,
    half_close: bool,
}

/// Runs the local service: counts connections and checks the daemon's live streams at each.
/// Its sockets close with a reset, so the daemon's ends never wait in TIME_WAIT.
async fn serve(
    listener: Async<TcpListener>,
    shared: Weak<Shared>,
    service: Service,
    accepted: Arc<AtomicUsize>,
    over_limit: Arc<AtomicBool>,
) {
    let mut conns = Vec::new();
    while let Ok((s, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::SeqCst);
        if let Some(sh) = shared.upgrade() {
            let live = sh.streams.lock().unwrap_or_else(|p| p.into_inner()).len();
            if live > LIMITS.streams {
                over_limit.store(true, Ordering::SeqCst);
            }
        }
        super::reset_on_close(s.get_ref());
        conns.retain(|t: &runtime::Task<()>| !t.is_finished());
        conns.push(runtime::spawn(async move {
            let write = async {
                let sent = (&s).write_all(&vec![0x5a; service.greeting]).await;
                if sent.is_ok() && service.half_close {
                    let _ = s.get_ref().shutdown(Shutdown::Write);
                }
                future::pending::<()>().await;
            };
            let read = async {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(1..) = (&s).read(&mut buf).await {}
            };
            read.or(write).await;
        }));
    }
}

/// Reads the daemon's records until its socket ends and checks each one.
async fn watch(
    peer: &Async<TcpStream>,
    mut opener: RecordOpener,
    sent: &Sent,
) -> Result<(), &'static str> {
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 64 * 1024]);
    let mut data: HashMap<u32, u64> = HashMap::new();
    let mut fin: HashSet<u32> = HashSet::new();
    loop {
        let n = match peer
            .read_with(|s| std::io::Read::read(&mut &*s, &mut chunk))
            .await
        {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(_) => return Err("reading the daemon's records failed"),
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut at = 0;
        while let Some((h, rest)) = buf.get(at..).and_then(|b| b.split_first_chunk::<2>()) {
            let len = RecordOpener::body_len(*h).ok_or("the daemon sent a bad record length")?;
            let Some(body) = rest.get(..len) else {
                break;
            };
            let mut body = body.to_vec();
            opener
                .open(*h, &mut body)
                .map_err(|_| "a record of the daemon did not open")?;
            at += 2 + len;
            let (ty, id, payload) =
                parse_frame(&body).map_err(|_| "the daemon sent a malformed frame")?;
            if !sent.opens.contains(&id) {
                return Err("the daemon sent a frame for a stream the peer never opened");
            }
            match ty {
                FrameType::Open | FrameType::Close => {
                    return Err("the daemon sent OPEN or CLOSE");
                }
                FrameType::Data => {
                    if fin.contains(&id) {
                        return Err("the daemon sent DATA after its FIN");
                    }
                    let total = data.entry(id).or_default();
                    *total += payload.len() as u64;
                    let credit = sent.credit.get(&id).copied().unwrap_or(0);
                    if *total > LIMITS.window + credit {
                        return Err("the daemon sent past its window and credit");
                    }
                }
                FrameType::Fin if !fin.insert(id) => return Err("the daemon sent FIN twice"),
                FrameType::Fin | FrameType::Reset | FrameType::Window => {}
            }
        }
        buf.drain(..at);
    }
}

async fn session_against(
    keys: SuiteKeys,
    sent: &Sent,
    single: bool,
    local_down: bool,
    service: Service,
) -> Result<(), &'static str> {
    let (peer, conn) = relay_pair()?;
    let conn = Arc::new(conn);
    let (sealer, opener) = keys.split();
    let (_, peer_opener) = keys.mirrored().split();
    let shared = Shared::new(Outbox::new(conn.clone(), sealer), LIMITS);

    let listener = loopback()?;
    let mut local_port = port_of(&listener)?;
    if local_down {
        local_port = port_of(&loopback()?)?; // bound and closed again: refused
    }
    let pre = match single {
        true => Some(
            Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, local_port)))
                .await
                .map_err(|_| "cannot connect the local service")?,
        ),
        false => None,
    };
    let (accepted, over_limit) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let served = runtime::spawn(serve(
        Async::new(listener).map_err(|_| "cannot register the listener")?,
        Arc::downgrade(&shared),
        service,
        accepted.clone(),
        over_limit.clone(),
    ));
    let side = Side::Daemon {
        local: ("127.0.0.1".into(), local_port),
        pre,
        single,
    };
    let daemon = runtime::spawn(session(
        conn,
        opener,
        shared.clone(),
        side,
        Duration::from_secs(1),
    ));

    let (ended_tx, ended_rx) = async_channel::bounded::<()>(1);
    let daemon = async {
        let r = daemon.await;
        ended_tx.close();
        r
    };
    let write = async {
        let all = async {
            for (i, chunk) in sent.chunks.iter().enumerate() {
                if i > 0 {
                    Timer::after(PAUSE).await;
                }
                if (&peer).write_all(chunk).await.is_err() {
                    return;
                }
            }
        };
        // Once the daemon has ended it reads no more: stop rather than wait for room.
        all.or(async {
            let _ = ended_rx.recv().await;
        })
        .await;
        let _ = peer.get_ref().shutdown(Shutdown::Write);
    };
    let all = future::zip(future::zip(write, watch(&peer, peer_opener, sent)), daemon);
    let Ok((((), watched), result)) = runtime::timeout(DEADLINE, all).await else {
        return Err("the session did not end within its deadline after the peer's end");
    };
    watched?;
    served.cancel().await;

    // Every task of the session has let go of its state, and with it of what it queued.
    let since = Instant::now();
    while Arc::strong_count(&shared) > 1 {
        if since.elapsed() > RELEASE {
            return Err("a task of the session outlived it");
        }
        Timer::after(Duration::from_micros(100)).await;
    }
    if shared.queued_mem.load(Ordering::SeqCst) != 0 {
        return Err("queued memory was not all given back");
    }

    let accepted = accepted.load(Ordering::SeqCst);
    if over_limit.load(Ordering::SeqCst) {
        return Err("more streams were live than the limit");
    }
    if (single && accepted > 1)
        || (local_down && accepted > 0)
        || accepted > sent.opens.len() + usize::from(single)
    {
        return Err("a local connection without an OPEN");
    }
    match result {
        Ok(stats) => {
            if !sent.close {
                return Err("the session ended cleanly without CLOSE");
            }
            // Not against `accepted`: a connection the kernel completed may not have been
            // accepted by the service yet.
            let streams = if single { 1 } else { sent.opens.len() as u64 };
            if stats.connections > streams || stats.bytes_in > sent.data {
                return Err("the session's counters exceed what happened");
            }
        }
        Err(TunnelError::Truncated) if sent.clean_close => {
            return Err("the daemon missed a CLOSE");
        }
        Err(TunnelError::Truncated) => {}
        Err(TunnelError::Tampered) if !sent.raw => {
            return Err("a record sealed with the session's keys failed to open");
        }
        Err(TunnelError::Tampered) => {}
        Err(TunnelError::Protocol("record length out of range"))
            if !sent.raw && !sent.bad_length =>
        {
            return Err("a well-sized record was refused by its length");
        }
        Err(TunnelError::Protocol("malformed frame")) if !sent.raw && !sent.malformed => {
            return Err("a well-formed frame was refused");
        }
        Err(TunnelError::Protocol(_)) => {}
        Err(_) => return Err("the session ended with an error no peer bytes cause"),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OPEN: u8 = 1;
    const DATA: u8 = 2;
    const FIN: u8 = 3;
    const RESET: u8 = 4;
    const WINDOW: u8 = 5;
    const CLOSE: u8 = 6;

    /// One frame of the input format: selector, id, length, body.
    fn f(sel: u8, id: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![sel, id, u8::try_from(body.len()).unwrap()];
        v.extend_from_slice(body);
        v
    }

    /// A frame whose body is `times` x 128 filler bytes (selector bit 7).
    fn filler(sel: u8, id: u8, times: u8) -> Vec<u8> {
        vec![sel | 0x80, id, times]
    }

    fn input(mode: u8, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![mode];
        for fr in frames {
            v.extend_from_slice(fr);
        }
        v
    }

    #[test]
    fn fuzz_mux_holds_on_hand_written_sessions() {
        let open = |id| f(OPEN, id, &[]);
        let data = |id, n: usize| f(DATA, id, &vec![0x41; n]);
        // WINDOW credit of `units` x 64 bytes (u32::MAX for 255).
        let win = |id, units: u8| vec![WINDOW, id, units];
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("mode only", vec![0]),
            (
                "valid session",
                input(
                    0,
                    &[
                        open(1),
                        data(1, 100),
                        win(1, 64),
                        f(FIN, 1, &[]),
                        f(CLOSE, 0, &[]),
                    ],
                ),
            ),
            (
                "valid session, greeting, pauses",
                input(
                    2 << 2,
                    &[
                        open(1),
                        f(DATA | 0x20, 1, b"hello"),
                        vec![WINDOW | 0x20, 1, 200],
                        f(CLOSE | 0x20, 0, &[]),
                    ],
                ),
            ),
            (
                "the service half-closes",
                input(
                    0x20 | 1 << 2,
                    &[open(1), open(2), win(1, 64), f(CLOSE | 0x20, 0, &[])],
                ),
            ),
            (
                "single mode",
                input(1, &[open(1), open(2), data(1, 9), f(CLOSE, 0, &[])]),
            ),
            (
                "FIN twice",
                input(0, &[open(1), f(FIN, 1, &[]), f(FIN, 1, &[])]),
            ),
            (
                "DATA after FIN",
                input(0, &[open(1), f(FIN, 1, &[]), data(1, 1)]),
            ),
            ("window overflow", input(0, &[open(1), filler(DATA, 1, 70)])),
            (
                "too many tiny records",
                input(
                    0,
                    &[open(1)]
                        .into_iter()
                        .chain((0..200).map(|_| data(1, 1)))
                        .collect::<Vec<_>>(),
                ),
            ),
            ("empty DATA", input(0, &[open(1), f(DATA, 1, &[])])),
            (
                "oversized record",
                input(0, &[open(1), filler(DATA, 1, 255)]),
            ),
            (
                "ghost stream ids",
                input(
                    0,
                    &[
                        data(9, 3),
                        f(FIN, 10, &[]),
                        f(RESET, 11, &[]),
                        win(12, 255),
                        f(FIN | 0x40, 0, &[]),
                    ],
                ),
            ),
            (
                "next stream ids, past the limit",
                input(
                    0,
                    &(0..6)
                        .map(|_| vec![7, 0, 0])
                        .chain([f(CLOSE | 0x20, 0, &[])])
                        .collect::<Vec<_>>(),
                ),
            ),
            ("id reused", input(0, &[open(2), open(1)])),
            (
                "stream limit",
                input(0, &(1..=8).map(open).collect::<Vec<_>>()),
            ),
            (
                "RESET twice, late DATA",
                input(
                    0,
                    &[open(1), f(RESET, 1, &[]), f(RESET, 1, &[]), data(1, 5)],
                ),
            ),
            (
                "local service down",
                input(2, &[open(1), data(1, 250), open(2), data(2, 7)]),
            ),
            (
                "raw garbage",
                input(0, &[open(1), f(15, 0, b"\x00\x20garbage")]),
            ),
            (
                "malformed WINDOW",
                input(0, &[open(1), f(0, 0, &[WINDOW, 0, 0, 0, 1, 1, 2])]),
            ),
            (
                "FIN with a body",
                input(0, &[open(1), f(0, 0, &[FIN, 0, 0, 0, 1, 9])]),
            ),
            ("short frame", input(0, &[f(0, 0, &[2, 0])])),
            ("CLOSE only", input(0, &[f(CLOSE, 0, &[])])),
        ];
        // Bodies queued for streams whose local connect fails are given back: before, each
        // failed stream kept its queue's cost, and past the session's cap the reader stopped
        // for good (the session never ended).
        let failed: Vec<_> = (1..=6)
            .flat_map(|id| [open(id), filler(DATA, id, 62)])
            .collect();
        cases.push(("queues of failed connects", input(2, &failed)));
        for (name, data) in cases {
            assert_eq!(fuzz_mux(&data), Ok(()), "{name}");
        }
    }
}
