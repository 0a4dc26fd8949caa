//! Issue 11: hundreds of connections that never log in — silent after the TLS handshake,
//! trickling a byte a second, or never finishing the handshake — cannot lock the owner out of
//! the atserver: per-address limits, eviction of the oldest unauthenticated connections at the
//! global limit, and a short deadline to authenticate.
#![cfg(feature = "atserver")]
#[path = "common/atserver.rs"]
mod atserver_harness;
#[path = "common/hostile.rs"]
mod hostile;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atserver_harness::{Client, TestAtServer};
use hostile::{connect_from, raise_fd_limit, Held, Hostiles, Kind, Opener};

impl Held for Client {
    fn trickle(&mut self) -> bool {
        self.send_bytes(b"a").is_ok()
    }
    fn is_closed(&mut self) -> bool {
        self.set_read_timeout(Duration::from_millis(1));
        let c = self.closed();
        self.set_read_timeout(Duration::from_secs(3));
        c
    }
}

/// TLS handshake plus the server's first bytes (the `@` prompt, or an AT0012 refusal).
fn tls_opener(ca: std::path::PathBuf) -> Opener {
    Arc::new(move |tcp| {
        let mut c = Client::over(tcp, "127.0.0.1", &ca).ok()?;
        c.set_read_timeout(Duration::from_secs(3));
        let first = c.read_exact_str(1);
        (first == "@").then(|| Box::new(c) as Box<dyn Held>)
    })
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("host:port")
}

/// The owner logs in and moves data (update, then read it back) within `limit`.
fn owner_works(s: &TestAtServer, round: usize, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut c = s.login("@alice", true);
    let value = format!("v{round}-{}", t.elapsed().as_nanos());
    let r = c.cmd(&format!("update:r{round}.lockout.sshnp@alice {value}"));
    assert!(r.starts_with("data:"), "update refused: {r}");
    assert_eq!(
        c.cmd(&format!("llookup:r{round}.lockout.sshnp@alice")),
        format!("data:{value}")
    );
    let took = t.elapsed();
    assert!(took < limit, "round {round}: the owner needed {took:?}");
    took
}

fn src(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Silent, slow and half-open connections from ten addresses (plus silent ones from the
/// owner's own address) against the atSign's port and the directory.
fn flood(s: &TestAtServer, per_pool: usize) -> Hostiles {
    let at = addr(&s.address("@alice"));
    let root = addr(&s.root);
    let mut h = Hostiles::new();
    let kinds = [Kind::Idle, Kind::Slow, Kind::Raw, Kind::RawSlow];
    for i in 0..10u8 {
        let kind = kinds[usize::from(i) % kinds.len()];
        let dst = if i == 9 { root } else { at };
        h.pool(kind, per_pool, src(2 + i), dst, tls_opener(s.ca.clone()));
    }
    // Strangers on the owner's own address: they lose their oldest to each newcomer.
    h.pool(Kind::Idle, per_pool, src(1), at, tls_opener(s.ca.clone()));
    h
}

#[test]
fn idle_and_slow_connections_cannot_lock_the_owner_out() {
    raise_fd_limit();
    let s = TestAtServer::start_with(&["@alice"], &["--auth-timeout", "3"]);
    // Deadline probes, opened before the flood: a silent TLS connection, a slow sender and a
    // slow directory request must all be closed by the 3 s deadline.
    let at = addr(&s.address("@alice"));
    let probe_t = Instant::now();
    let mut silent = Client::over(connect_from(src(40), at).unwrap(), "127.0.0.1", &s.ca).unwrap();
    assert_eq!(silent.read_exact_str(1), "@");
    let mut slow = Client::over(connect_from(src(41), at).unwrap(), "127.0.0.1", &s.ca).unwrap();
    assert_eq!(slow.read_exact_str(1), "@");
    let root = addr(&s.root);
    let mut slow_root =
        Client::over(connect_from(src(42), root).unwrap(), "127.0.0.1", &s.ca).unwrap();
    assert_eq!(slow_root.read_exact_str(1), "@");

    let mut h = flood(&s, 30);
    let started = Instant::now();
    let mut rounds = Vec::new();
    let mut probes_closed: Option<Duration> = None;
    let (mut silent_open, mut slow_open, mut root_open) = (true, true, true);
    while started.elapsed() < Duration::from_secs(9) {
        std::thread::sleep(Duration::from_millis(300));
        if silent_open && silent.is_closed() {
            silent_open = false;
        }
        if slow_open && (!slow.trickle() || slow.is_closed()) {
            slow_open = false;
        }
        if root_open && (!slow_root.trickle() || slow_root.is_closed()) {
            root_open = false;
        }
        if probes_closed.is_none() && !silent_open && !slow_open && !root_open {
            probes_closed = Some(probe_t.elapsed());
        }
        if started.elapsed() > Duration::from_secs(2) && rounds.len() < 3 {
            rounds.push(owner_works(&s, rounds.len(), Duration::from_secs(3)));
        }
    }
    let held = h.held.load(Ordering::Relaxed);
    let (opened, closed) = h.stop();
    eprintln!(
        "hostile connections: {opened} opened, {closed} closed by the server, {held} held at the end; owner rounds {rounds:?}; deadline probes closed after {probes_closed:?}"
    );
    assert_eq!(rounds.len(), 3);
    assert!(
        opened >= 300,
        "the flood must hold hundreds of connections: {opened}"
    );
    let p = probes_closed.expect("silent, slow and slow-directory connections are cut off");
    assert!(
        p < Duration::from_secs(6),
        "deadline 3 s, probes closed after {p:?}"
    );
    // Still serving afterwards.
    owner_works(&s, 9, Duration::from_secs(3));
}

#[test]
fn at_the_global_limit_the_oldest_unauthenticated_make_room() {
    raise_fd_limit();
    // One address may hold as many as it likes here: only the global limit acts.
    let s = TestAtServer::start_with(
        &["@alice"],
        &[
            "--max-connections",
            "100",
            "--max-unauth-per-source",
            "1000",
        ],
    );
    let at = addr(&s.address("@alice"));
    let mut h = Hostiles::new();
    for (i, kind) in [Kind::Idle, Kind::Slow, Kind::Raw].into_iter().enumerate() {
        h.pool(kind, 100, src(1), at, tls_opener(s.ca.clone()));
        let _ = i;
    }
    std::thread::sleep(Duration::from_secs(2));
    // An authenticated owner session is never evicted by the flood.
    let mut kept = s.login("@alice", true);
    let mut rounds = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        rounds.push(owner_works(&s, round, Duration::from_secs(3)));
    }
    assert!(kept.cmd("llookup:r2.lockout.sshnp@alice").len() > 5);
    h.stop();
    let opened = h.opened.load(Ordering::Relaxed);
    eprintln!("global limit 100: {opened} hostile connections opened; owner rounds {rounds:?}");
    assert!(opened >= 200, "flood too weak: {opened}");
}
