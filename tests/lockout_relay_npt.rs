//! Issue 11: hundreds of idle and slow connections held against srvd's handed-out session
//! ports and against npt's local listener do not keep a legitimate session from moving
//! verified data. The real binary as separate processes (atserver, srvd, sshnpd, npt).
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/stack.rs"]
mod stack;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hostile::{raise_fd_limit, tcp_opener, Hostiles, Kind};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn src(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The two ports srvd handed out for the last session (from its `-v` log line).
fn session_ports(srvd: &Proc) -> (u16, u16) {
    let line = srvd
        .wait_for(
            "Sending response data for requested session",
            Duration::from_secs(30),
        )
        .unwrap();
    let inner = line
        .rsplit_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(r, _)| r)
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let f: Vec<&str> = inner.split(',').collect();
    (f[1].parse().unwrap(), f[2].parse().unwrap())
}

/// Transfers verified data through npt's port `rounds` times while the flood runs; each
/// round within `limit`.
fn legit_rounds(port: u16, rounds: usize, limit: Duration) -> Vec<Duration> {
    let mut took = Vec::new();
    for r in 0..rounds {
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        transfer_and_verify(port, 256 * 1024).unwrap_or_else(|e| panic!("round {r}: {e}"));
        let d = t.elapsed();
        assert!(d < limit, "round {r} took {d:?}");
        took.push(d);
    }
    took
}

#[test]
fn strangers_on_the_relay_ports_do_not_stop_a_multi_pair_session() {
    raise_fd_limit();
    let stack = Stack::start(bin(), "lockout-relay", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    // The official suite: one control pair, then a new relay pair per local connection, so
    // every round below needs srvd to authenticate and pair two new sockets.
    let npt = stack.npt(
        CLIENT,
        "dev1",
        "127.0.0.1",
        service,
        &["-T", "30s", "-v", "--suite", "official"],
    );
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 1000).unwrap();
    let (pa, pb) = session_ports(stack.srvd.as_ref().unwrap());
    let mut h = Hostiles::new();
    let kinds = [Kind::Raw, Kind::RawSlow];
    for (i, p) in [pa, pb].into_iter().enumerate() {
        let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        for j in 0..4u8 {
            let kind = kinds[usize::from(j) % 2];
            // Strangers on other addresses (one on the legitimate sides' own address can evict
            // their sockets: docs/security.md, residual risk).
            let from = src(2 + j + 4 * i as u8);
            h.pool(kind, 40, from, dst, tcp_opener());
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let held = h.held.load(Ordering::Relaxed);
    let took = std::panic::catch_unwind(|| legit_rounds(port, 3, Duration::from_secs(5)))
        .unwrap_or_else(|e| {
            for p in [stack.srvd.as_ref().unwrap(), &npt, &_daemon] {
                let out = p.output();
                let tail: Vec<&str> = out.lines().rev().take(30).collect();
                eprintln!(
                    "--- {} (last lines, newest first)\n{}",
                    p.name,
                    tail.join("\n")
                );
            }
            std::panic::resume_unwind(e)
        });
    let (opened, closed) = h.stop();
    eprintln!(
        "relay ports {pa}/{pb}: {opened} hostile connections opened, {closed} closed by the servers, {held} held when the rounds began; rounds {took:?}"
    );
    assert!(held >= 250, "the flood must hold hundreds: {held}");
    assert!(
        closed >= 200,
        "srvd must cut strangers off by its auth deadline: {closed} closed"
    );
}

#[test]
fn idle_local_connections_do_not_stop_an_nps1_session() {
    raise_fd_limit();
    let stack = Stack::start(bin(), "lockout-npt", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let npt = stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "30s", "-v"]);
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 1000).unwrap();
    let (pa, pb) = session_ports(stack.srvd.as_ref().unwrap());
    let mut h = Hostiles::new();
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    h.pool(Kind::Raw, 150, src(1), local, tcp_opener());
    h.pool(Kind::RawSlow, 100, src(1), local, tcp_opener());
    // The paired single-pair session's ports: strangers are closed, the pair is untouched.
    for p in [pa, pb] {
        h.pool(
            Kind::Raw,
            30,
            src(9),
            SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
            tcp_opener(),
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let held = h.held.load(Ordering::Relaxed);
    let took = legit_rounds(port, 3, Duration::from_secs(5));
    h.stop();
    eprintln!(
        "npt port {port}: {} hostile connections opened, {held} held when the rounds began; rounds {took:?}",
        h.opened.load(Ordering::Relaxed)
    );
    assert!(held >= 250, "the flood must hold hundreds: {held}");
}
