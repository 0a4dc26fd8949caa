//! Issue 16: memory is bounded by state, not by what peers send. Unauthenticated connections
//! get short lines only, buffered input of all connections shares one budget, and at the
//! connection limit the oldest unauthenticated connection makes room.
#![cfg(feature = "atserver")]
#[path = "common/atserver.rs"]
mod atserver_harness;
#[path = "common/hostile.rs"]
mod hostile;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atserver_harness::{Client, TestAtServer};

/// A hostile connection from one of ten loopback addresses other than the owner's (127.0.0.1):
/// the server limits unauthenticated connections per address, so attackers sharing the owner's
/// address is a different test (tests/lockout_atserver.rs).
fn hostile_connect(i: usize, addr: &str, ca: &std::path::Path) -> Option<Client> {
    let src = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 10) as u8);
    let tcp = hostile::connect_from(src, addr.parse().ok()?).ok()?;
    Client::over(tcp, "127.0.0.1", ca).ok()
}

const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn hostile_endless_lines_keep_memory_bounded_and_owners_get_in() {
    let s = Arc::new(TestAtServer::start(&["@alice"]));
    let addr = s.address("@alice");
    let ca = s.ca.clone();
    let baseline = s.rss_kib().expect("rss");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // 100 silent connections that never log in (they hold connection slots).
    let mut silent = Vec::new();
    for i in 0..100 {
        if let Some(mut c) = hostile_connect(i, &addr, &ca) {
            let _ = c.send_bytes(b"");
            silent.push(c);
        }
    }
    // 200 unauthenticated connections, each sending one endless line, reconnecting when cut.
    for i in 0..200 {
        let (addr, ca, stop, sent) = (addr.clone(), ca.clone(), stop.clone(), sent.clone());
        threads.push(std::thread::spawn(move || {
            let chunk = vec![b'a'; 16 * 1024];
            while !stop.load(Ordering::Relaxed) {
                if let Some(mut c) = hostile_connect(i, &addr, &ca) {
                    c.set_read_timeout(Duration::from_secs(2));
                    while !stop.load(Ordering::Relaxed) && c.send_bytes(&chunk).is_ok() {
                        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }
    // 8 authenticated connections (a stolen key) sending endless lines: the shared input
    // budget, not the 10 MB line limit, caps them together.
    for _ in 0..8 {
        let (s, stop, sent, addr) = (s.clone(), stop.clone(), sent.clone(), addr.clone());
        threads.push(std::thread::spawn(move || {
            let chunk = vec![b'b'; 64 * 1024];
            let keys = s.keys("@alice");
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut c) = Client::try_connect(&addr, &s.ca) else {
                    continue;
                };
                let _ = c.read_exact_str(1);
                let login = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    c.pkam("@alice", &keys, true)
                }));
                if login.ok().as_deref() != Some("data:success") {
                    continue;
                }
                while !stop.load(Ordering::Relaxed) && c.send_bytes(&chunk).is_ok() {
                    sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    let started = Instant::now();
    let mut peak = baseline;
    let mut owner_ok = 0;
    while started.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(250));
        peak = peak.max(s.rss_kib().unwrap_or(0));
        if started.elapsed() > Duration::from_secs(3) && owner_ok < 2 {
            // A legitimate owner logs in and works in the middle of the flood.
            let t = Instant::now();
            let mut c = s.login("@alice", true);
            assert!(c.cmd("update:x.mem.sshnp@alice v").starts_with("data:"));
            assert_eq!(c.cmd("llookup:x.mem.sshnp@alice"), "data:v");
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "owner waited {:?}",
                t.elapsed()
            );
            owner_ok += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    drop(silent);
    let total = sent.load(Ordering::Relaxed);
    eprintln!(
        "baseline {baseline} KiB, peak {peak} KiB, {} MiB sent by hostile peers",
        total / (1024 * 1024)
    );
    assert_eq!(owner_ok, 2);
    assert!(
        total > 64 * 1024 * 1024,
        "flood too weak to mean anything: {total} bytes"
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "server RSS peaked at {peak} KiB (baseline {baseline} KiB)"
    );
    // Still serving afterwards.
    let mut c = s.login("@alice", true);
    assert_eq!(c.cmd("llookup:x.mem.sshnp@alice"), "data:v");
}
