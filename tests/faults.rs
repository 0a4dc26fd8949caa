//! Issue 11, faults: `kill -9` of the atserver and of srvd in the middle of sessions (the
//! daemon serves again within 5 s of the restart), damaged store records (reported and
//! skipped, the rest kept), and short soak runs (sessions in a row and at once) that must not
//! grow the descriptors or memory of atserver, srvd and sshnpd. `make soak` runs the soak with
//! SOAK_SESSIONS=1000 SOAK_CONCURRENT=200.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::{Duration, Instant};

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// Starts npt sessions until one moves verified data; returns how long that took.
fn serves_again(stack: &Stack, device: &str, service: u16, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let npt = stack.npt(
            CLIENT,
            device,
            "127.0.0.1",
            service,
            &["-T", "2s", "--daemon-ping-timeout", "2"],
        );
        if let Ok(port) = npt_port(&npt) {
            if transfer_and_verify(port, 10_000).is_ok() {
                return t.elapsed();
            }
        }
        if std::env::var_os("FAULTS_DEBUG").is_some() {
            eprintln!("attempt failed at {:?}:\n{}", t.elapsed(), npt.output());
        }
        assert!(
            t.elapsed() < within,
            "no session within {within:?} of the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Transfers in a loop through a running session until the returned flag is set.
fn busy_session(
    port: u16,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<usize>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut ok = 0;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            if transfer_and_verify(port, 64 * 1024).is_ok() {
                ok += 1;
            } else {
                break;
            }
        }
        ok
    });
    (stop, h)
}

#[test]
fn daemon_serves_within_5s_of_an_atserver_restart_after_kill9() {
    let mut stack = Stack::start(bin(), "fault-at", &[]);
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let npt = stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "2s"]);
    let port = npt_port(&npt).unwrap();
    let (stop, busy) = busy_session(port);
    std::thread::sleep(Duration::from_millis(300));
    // kill -9 in the middle of a session, and an outage long enough to grow the back-off.
    stack.atserver.kill9();
    std::thread::sleep(Duration::from_secs(4));
    stack.kill9_and_restart_atserver();
    let restarted = Instant::now();
    // The established session does not depend on the atServer.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moved = busy.join().unwrap();
    assert!(moved > 0, "the running session kept moving data");
    drop(npt);
    while daemon.count("monitor started") < 2 {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "the daemon did not reconnect within 5 s:\n{}",
            daemon.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let monitor = restarted.elapsed();
    // A whole npt session (its own atServer login, ping, request, relay) on a loaded machine.
    let session = serves_again(&stack, "dev1", service, Duration::from_secs(15));
    eprintln!(
        "atserver kill -9: daemon monitor back {monitor:?} after the restart; next session verified {session:?} later; {moved} transfers during the outage"
    );
}

#[test]
fn daemon_serves_within_5s_of_an_srvd_restart_after_kill9() {
    let mut stack = Stack::start(bin(), "fault-srvd", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let npt = stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "2s"]);
    let port = npt_port(&npt).unwrap();
    let (stop, busy) = busy_session(port);
    std::thread::sleep(Duration::from_millis(300));
    stack.kill9_srvd();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = busy.join();
    drop(npt);
    stack.start_srvd();
    let took = serves_again(&stack, "dev1", service, Duration::from_secs(5));
    eprintln!("srvd kill -9: first verified session {took:?} after the restart");
}

#[test]
fn damaged_store_records_are_reported_and_skipped() {
    let mut stack = Stack::start(bin(), "fault-store", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    stack.atserver.terminate();
    let log = std::fs::read_dir(stack.dir.join("atserver/atsigns"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("log"))
        .find(|p| p.to_string_lossy().contains("demo_device"))
        .expect("the device's log");
    let text = std::fs::read(&log).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        lines.len() > 4,
        "a log worth damaging: {} records",
        lines.len()
    );
    // A record cut short in the middle of the file, a run of garbage, and a torn tail.
    let mut damaged = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i == 2 {
            damaged.extend_from_slice(&l[..l.len().min(3)]);
            damaged.push(b'\n');
            damaged.extend_from_slice(b"\xff\xfe garbage \x00\x01\n");
        }
        damaged.extend_from_slice(l);
        damaged.push(b'\n');
    }
    damaged.extend_from_slice(b"P\t99\ttorn");
    std::fs::write(&log, &damaged).unwrap();
    stack.restart_atserver();
    stack
        .atserver
        .wait_for("skipping unreadable log record", Duration::from_secs(10))
        .unwrap();
    stack
        .atserver
        .wait_for("torn tail", Duration::from_secs(1))
        .unwrap();
    // The rest is intact: the device's keys and its published data still serve a session.
    let daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let took = serves_again(&stack, "dev1", service, Duration::from_secs(30));
    drop(daemon);
    eprintln!("damaged store: reported, skipped, next session verified after {took:?}");
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (fds, RSS KiB) of atserver, srvd, sshnpd.
fn figures(stack: &Stack, daemon: &Proc) -> [(usize, u64); 3] {
    let pids = [
        stack.atserver.pid(),
        stack.srvd.as_ref().unwrap().pid(),
        daemon.pid(),
    ];
    pids.map(|p| (open_fds(p), rss_kib(p)))
}

/// What grew past the allowance (descriptors +4; RSS +50% + 4 MiB), one line per process.
fn growth(before: &[(usize, u64); 3], after: &[(usize, u64); 3]) -> Vec<String> {
    let mut grew = Vec::new();
    for (i, name) in ["atserver", "srvd", "sshnpd"].iter().enumerate() {
        let ((f0, r0), (f1, r1)) = (before[i], after[i]);
        if f1 > f0 + 4 {
            grew.push(format!("{name} fds grew {f0} -> {f1}"));
        }
        if r1 > r0 + r0 / 2 + 4096 {
            grew.push(format!("{name} RSS grew {r0} -> {r1} KiB"));
        }
    }
    grew
}

/// Measures after `what` until nothing grew past the allowance, or fails after `settle`. Data
/// the protocol keeps for a while (notifications live 60 s after their sender's `ttln`, swept
/// every 60 s) may hold memory that long after a burst; it must be given back after that.
fn check_growth(
    what: &str,
    stack: &Stack,
    daemon: &Proc,
    before: &[(usize, u64); 3],
    settle: Duration,
) {
    let t = Instant::now();
    loop {
        let after = figures(stack, daemon);
        let grew = growth(before, &after);
        if grew.is_empty() || t.elapsed() >= settle {
            for (i, name) in ["atserver", "srvd", "sshnpd"].iter().enumerate() {
                let ((f0, r0), (f1, r1)) = (before[i], after[i]);
                eprintln!("{what}: {name} fds {f0} -> {f1}, RSS {r0} -> {r1} KiB");
            }
            eprintln!(
                "{what}: measured {:.0} s after the end",
                t.elapsed().as_secs_f32() + 3.0
            );
            assert!(grew.is_empty(), "{what}: {}", grew.join("; "));
            return;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

#[test]
fn sessions_in_a_row_and_at_once_do_not_grow_descriptors_or_memory() {
    let seq = env_or("SOAK_SESSIONS", 4);
    let conc = env_or("SOAK_CONCURRENT", 4);
    let mut stack = Stack::start(bin(), "soak", &[]);
    // `NOPORTS_SOAK_BIN` runs srvd, sshnpd and npt from another build of the same version, e.g.
    // the static musl router build, whose allocator is the one routers run (it has no atserver).
    if let Some(other) = std::env::var_os("NOPORTS_SOAK_BIN") {
        stack.bin = other.into();
        stack.start_srvd();
    }
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let one = |i: usize| {
        let mut npt = stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "1s"]);
        let port = npt_port(&npt).unwrap_or_else(|e| panic!("session {i}: {e}"));
        transfer_and_verify(port, 4096).unwrap_or_else(|e| panic!("session {i}: {e}"));
        assert!(
            npt.wait_exit(Duration::from_secs(30)).is_some(),
            "session {i} did not end"
        );
    };
    // Warm up (shared keys, caches, pools), then measure.
    for i in 0..2 {
        one(i);
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = figures(&stack, &daemon);
    let t = Instant::now();
    for i in 0..seq {
        one(i);
    }
    let seq_time = t.elapsed();
    // How long memory and descriptors may stay up after the sessions end (see `check_growth`;
    // the daemon's and srvd's extra request connections close 5-10 s after their last use).
    let settle = Duration::from_secs(env_or("SOAK_SETTLE_SECS", 15) as u64);
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("{seq} sessions in a row in {seq_time:?}");
    check_growth(
        &format!("{seq} sessions in a row"),
        &stack,
        &daemon,
        &before,
        settle,
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..conc).map(|i| s.spawn(move || one(i))).collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let conc_time = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("{conc} sessions at once in {conc_time:?}");
    check_growth(
        &format!("{conc} concurrent sessions"),
        &stack,
        &daemon,
        &before,
        settle,
    );
}
