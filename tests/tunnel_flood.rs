//! A hostile nps1 peer against the daemon's multiplexer (issue 24 item 3), in its own process
//! so the peak RSS (VmHWM) measures this session alone. The peer holds the session keys (it
//! is the authorised client), skips the relay, and writes sealed records straight at the
//! daemon's relay socket:
//! - 200,000 one-byte DATA records for a stream whose local connection is still being made:
//!   before, each queued
//!   body took a 32 KiB buffer (~395 MiB for 100,000); now queued memory is counted in
//!   allocated bytes, and past 2 MiB on one stream the session is closed with that reason;
//! - 750,000 WINDOW frames and 750,000 FIN and RESET frames for streams that do not exist, then a
//!   second FIN on a stream: credit is one number, unknown streams cost nothing, and the
//!   repeated FIN closes the session.
//!
//! Each flood must leave the peak RSS less than [`RSS_BOUND_KIB`] above where it started.
#[path = "common/tunnel.rs"]
mod common_tunnel;
use common_tunnel::{loopback, port, suite_keys};

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use async_io::Async;
use futures_lite::AsyncWriteExt;
use noports::noports::suite::FrameWriter;
use noports::runtime::{block_on, spawn, timeout};
use noports::tunnel::{self, RelayTarget, SessionCrypto, TunnelError};

/// What a flood may add to the peak RSS: the session's queues may hold 2 MiB per stream
/// (16 MiB per session), plus buffers, the allocator's slack and the test's own chunks.
const RSS_BOUND_KIB: u64 = 24 * 1024;

const OPEN: u8 = 1;
const DATA: u8 = 2;
const FIN: u8 = 3;
const RESET: u8 = 4;
const WINDOW: u8 = 5;

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A local service whose accept queue is full and never served: the daemon's connect for a
/// stream hangs (for its 10 s connect timeout), so every DATA record for the stream queues.
fn unconnectable_service() -> u16 {
    use rustix::net::{bind, listen, socket, AddressFamily, SocketType};
    let l = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&l, &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    listen(&l, 0).unwrap();
    let p = match rustix::net::getsockname(&l).unwrap().try_into().unwrap() {
        SocketAddr::V4(a) => a.port(),
        SocketAddr::V6(a) => a.port(),
    };
    // Fill the queue (backlog 0 holds one); later SYNs are dropped.
    let mut held = Vec::new();
    for _ in 0..2 {
        if let Ok(s) = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
            Duration::from_millis(300),
        ) {
            held.push(s);
        }
    }
    std::mem::forget(held);
    std::mem::forget(l);
    p
}

/// Runs the daemon's side of one session against a peer that writes `frames` (produced in
/// chunks, so the test's own memory stays small); the daemon's result and the peak RSS growth.
fn flood(
    sid: &str,
    chunks: usize,
    mut chunk: impl FnMut(&mut FrameWriter, &mut Vec<u8>, usize),
) -> (Result<(), TunnelError>, u64) {
    let (ck, dk) = suite_keys(sid);
    let service = unconnectable_service();
    block_on(async {
        let relay = loopback();
        let target = RelayTarget {
            host: "127.0.0.1".into(),
            port: port(&relay),
            auth_line: None,
        };
        let daemon = spawn(tunnel::daemon_multi(
            target,
            ("127.0.0.1".into(), service),
            SessionCrypto::Suite(dk),
            Duration::from_secs(30),
        ));
        let (peer, _): (Async<TcpStream>, _) = relay.accept().await.unwrap();
        let before = vm_hwm_kib();
        let mut writer = FrameWriter::new(&ck);
        let mut buf = Vec::new();
        let write = async {
            for i in 0..chunks {
                buf.clear();
                chunk(&mut writer, &mut buf, i);
                if (&peer).write_all(&buf).await.is_err() {
                    break; // the daemon closed the session: what the test waits for
                }
            }
            futures_lite::future::pending::<()>().await;
        };
        let result = timeout(
            Duration::from_secs(60),
            futures_lite::FutureExt::or(async { Some(daemon.await) }, async {
                write.await;
                None
            }),
        )
        .await
        .expect("the daemon neither closed the session nor finished within 60 s")
        .expect("the writer never ends");
        let grown = vm_hwm_kib().saturating_sub(before);
        (result.map(|_| ()), grown)
    })
}

#[test]
fn floods_of_tiny_records_and_control_frames_are_closed_with_a_reason_and_bounded() {
    // One-byte DATA records on one stream, 10,000 a chunk.
    let (result, grown) = flood("tiny", 20, |w, out, i| {
        if i == 0 {
            w.push(out, OPEN, 1, &[]).unwrap();
        }
        for _ in 0..10_000 {
            w.push(out, DATA, 1, b"x").unwrap();
        }
    });
    eprintln!("one-byte DATA flood: {result:?}, peak RSS +{grown} KiB");
    assert!(
        matches!(&result, Err(TunnelError::Protocol(m)) if m.contains("too small")),
        "{result:?}"
    );
    assert!(grown < RSS_BOUND_KIB, "peak RSS grew {grown} KiB");

    // WINDOW frames for an open stream, FIN and RESET for streams that never existed, then
    // FIN twice on the open one.
    let (result, grown) = flood("control", 77, |w, out, i| {
        if i == 0 {
            w.push(out, OPEN, 1, &[]).unwrap();
        }
        if i < 75 {
            for n in 0..10_000u32 {
                w.push(out, WINDOW, 1, &1u32.to_be_bytes()).unwrap();
                let ghost = 1_000_000 + n;
                w.push(out, if n % 2 == 0 { FIN } else { RESET }, ghost, &[])
                    .unwrap();
            }
        } else {
            w.push(out, FIN, 1, &[]).unwrap();
        }
    });
    eprintln!("control flood: {result:?}, peak RSS +{grown} KiB");
    assert!(
        matches!(&result, Err(TunnelError::Protocol(m)) if m.contains("FIN twice")),
        "{result:?}"
    );
    assert!(grown < RSS_BOUND_KIB, "peak RSS grew {grown} KiB");
}
