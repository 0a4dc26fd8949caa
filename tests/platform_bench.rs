//! Set-up and start-up of the real binary as separate processes on loopback (atserver, srvd,
//! sshnpd, npt): how long the atServer takes to be ready with three new atSigns, how long `npt`
//! takes from start to "listening", and the daemon's idle memory. Ignored by default; run by
//! `scripts/bench.sh` (`cargo test --release --test platform_bench -- --ignored --nocapture`).
#[path = "common/bench.rs"]
mod bench;
#[path = "common/rathole.rs"]
mod rathole;
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A field of /proc/<pid>/status in KiB (e.g. "RssAnon").
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
#[ignore = "benchmark; run scripts/bench.sh"]
fn setup_and_startup() {
    let runs = env_num("BENCH_SETUP_RUNS", 10).max(1);

    // atServer start-up: a fresh directory, three new atSigns, until "ready".
    let mut startup = Vec::new();
    for i in 0..3 {
        let dir = unique_dir(&format!("bench-startup-{i}"));
        let mut c = Command::new(bin());
        c.arg("atserver")
            .arg("--dir")
            .arg(dir.join("atserver"))
            .args(["--bind", "127.0.0.1", "--root-port", "0"])
            .args(["--create", "@bench_a,@bench_b,@bench_c"]);
        let t = Instant::now();
        let p = Proc::spawn("atserver", c);
        p.wait_for("ready root=", Duration::from_secs(120)).unwrap();
        startup.push(t.elapsed().as_secs_f64());
        drop(p);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // npt set-up: start to "listening", against our atserver, srvd and sshnpd.
    let stack = Stack::start(bin(), "bench-setup", &[]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");
    let daemon = stack.start_daemon("bench", CLIENT, &permit);
    let mut setup = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let npt = stack.npt(CLIENT, "bench", "127.0.0.1", service, &["-T", "3s"]);
        let port = npt_port(&npt).unwrap();
        setup.push(t.elapsed().as_secs_f64());
        transfer_and_verify(port, 1000).unwrap();
        drop(npt);
    }
    std::thread::sleep(Duration::from_secs(2));
    let anon = status_kib(daemon.pid(), "RssAnon");
    let rss = status_kib(daemon.pid(), "VmRSS");

    let s = median(startup.clone());
    println!("\nset-up and start-up (real processes on loopback)");
    println!("BENCH atserver ready with 3 new atSigns: median {s:.2} s of {startup:.2?}");
    println!(
        "BENCH npt start to listening ({runs} runs): median {:.3} s, min {:.3} s",
        median(setup.clone()),
        setup.iter().copied().fold(f64::MAX, f64::min)
    );
    println!("BENCH sshnpd idle: RssAnon {anon:?} KiB, VmRSS {rss:?} KiB");
    println!("KV setup_median_s={:.3}", median(setup));
    println!("KV atserver_startup_s={s:.2}");
}

/// 1-byte round trips through real processes: npt → srvd → sshnpd (nps1, multi mode) to an
/// echo server, against rathole's Noise transport (its server and client processes) to the
/// same echo server and direct loopback TCP, interleaved in blocks so drift hits all alike.
#[test]
#[ignore = "benchmark; run scripts/bench.sh"]
fn round_trips_through_real_processes() {
    let n = env_num("BENCH_RTT_N", 10_000);
    let echo = bench::echo_server();
    let stack = Stack::start(bin(), "bench-rtt", &[]);
    let permit = format!("127.0.0.1:{echo}");
    let _daemon = stack.start_daemon("bench", CLIENT, &permit);
    let npt = stack.npt(CLIENT, "bench", "127.0.0.1", echo, &["-T", "60s"]);
    let ours = npt_port(&npt).unwrap();
    let rh = rathole::start(rathole::Transport::Noise, rathole::free_port(), echo);
    // The floors of both shapes: rathole's two stops and our three, doing nothing but move
    // bytes.
    let (floor2, floor3) = (
        bench::forwarder_chain(echo, 2),
        bench::forwarder_chain(echo, 3),
    );
    // Warm-up, then blocks of n/10.
    let _ = bench::round_trips(ours, 100).unwrap();
    let block = (n / 10).max(1);
    let (mut d, mut o, mut r) = (Vec::new(), Vec::new(), Vec::new());
    let (mut f2, mut f3) = (Vec::new(), Vec::new());
    for _ in 0..(n / block) {
        d.extend(bench::round_trips(echo, block).unwrap());
        o.extend(bench::round_trips(ours, block).unwrap());
        if let Some(rh) = &rh {
            r.extend(bench::round_trips(rh.echo_entry, block).unwrap());
        }
        f2.extend(bench::round_trips(floor2, block).unwrap());
        f3.extend(bench::round_trips(floor3, block).unwrap());
    }
    let (dm, dp) = bench::median_p99(d);
    println!("\nround trips of 1 byte through real processes, {n} each (µs; added = minus direct)");
    println!(
        "BENCH {:<34} median {dm:>7.1}  p99 {dp:>7.1}",
        "direct loopback TCP"
    );
    // One row per path; returns its median.
    let row = |name: &str, v: Vec<f64>| {
        let (m, p) = bench::median_p99(v);
        println!(
            "BENCH {name:<34} median {m:>7.1}  p99 {p:>7.1}  added {:.1} / {:.1}",
            m - dm,
            p - dp
        );
        m
    };
    let om = row("npt -> srvd -> sshnpd (nps1)", o);
    row("floor: 3 blocking stops", f3);
    row("floor: 2 blocking stops", f2);
    if r.is_empty() {
        println!("BENCH rathole: not measured (set RATHOLE=<path to rathole>)");
        println!("KV rtt_processes_vs_rathole=n/a");
        return;
    }
    let rm = row("rathole server + client (Noise)", r);
    println!("KV rtt_processes_vs_rathole={:.2}", (om - dm) / (rm - dm));
}

/// One-way throughput through real processes: npt → srvd → sshnpd (nps1) to a counting sink,
/// against rathole's Noise transport (server and client processes) and direct loopback TCP,
/// interleaved, best of `BENCH_RUNS`.
#[test]
#[ignore = "benchmark; run scripts/bench.sh"]
fn throughput_through_real_processes() {
    let mb = env_num("BENCH_MB", 256) as u64;
    let runs = env_num("BENCH_RUNS", 3).max(1);
    let bytes = mb << 20;
    let (sink, done) = bench::counting_sink();
    let stack = Stack::start(bin(), "bench-tput", &[]);
    let permit = format!("127.0.0.1:{sink}");
    let _daemon = stack.start_daemon("bench", CLIENT, &permit);
    let npt = stack.npt(CLIENT, "bench", "127.0.0.1", sink, &["-T", "60s"]);
    let ours = npt_port(&npt).unwrap();
    let rh = rathole::start(rathole::Transport::Noise, sink, bench::echo_server());
    // Our shape's floor: three stops that only move bytes (splice, no cipher).
    let floor3 = bench::forwarder_chain(sink, 3);
    let (mut d, mut o, mut r, mut f) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..runs {
        d = d.max(bench::push_blocking(sink, bytes, &done));
        o = o.max(bench::push_blocking(ours, bytes, &done));
        if let Some(rh) = &rh {
            r = r.max(bench::push_blocking(rh.entry, bytes, &done));
        }
        f = f.max(bench::push_blocking(floor3, bytes, &done));
    }
    println!("\none way through real processes, {mb} MiB, best of {runs} (MB/s)");
    println!(
        "BENCH {:<34} {d:>9.1} MB/s  ratio 1.000",
        "direct loopback TCP"
    );
    println!(
        "BENCH {:<34} {o:>9.1} MB/s  ratio {:.3}",
        "npt -> srvd -> sshnpd (nps1)",
        o / d
    );
    println!(
        "BENCH {:<34} {f:>9.1} MB/s  ratio {:.3}",
        "floor: 3 blocking stops, no cipher",
        f / d
    );
    if rh.is_none() {
        println!("BENCH rathole: not measured (set RATHOLE=<path to rathole>)");
        println!("KV tput_processes_vs_rathole=n/a");
        return;
    }
    println!(
        "BENCH {:<34} {r:>9.1} MB/s  ratio {:.3}",
        "rathole server + client (Noise)",
        r / d
    );
    println!("KV tput_processes_vs_rathole={:.2}", o / r);
}

/// Issue 9, scale: `BENCH_SCALE_SESSIONS` (default 100) npt sessions through one real srvd
/// process, all moving `BENCH_SCALE_MIB` (default 4) MiB of verified data each way at once.
/// Sessions are opened ten at a time (their logins and key generations would otherwise be
/// measured too), then every transfer starts together. Prints srvd's VmRSS before, at its
/// peak (sampled every 50 ms) and after, and the aggregate rate (bytes sent by all sessions /
/// wall time of the transfer phase).
#[test]
#[ignore = "benchmark; run scripts/bench.sh"]
fn scale_sessions_through_one_srvd() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let n = env_num("BENCH_SCALE_SESSIONS", 100).max(1);
    let bytes = env_num("BENCH_SCALE_MIB", 4).max(1) << 20;
    let stack = Stack::start(bin(), "bench-scale", &[]);
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let srvd = stack.srvd.as_ref().expect("srvd").pid();
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(srvd);
    let t_open = Instant::now();
    let mut sessions: Vec<(Proc, u16)> = Vec::with_capacity(n);
    while sessions.len() < n {
        let wave = (n - sessions.len()).min(10);
        let started: Vec<Proc> = (0..wave)
            .map(|_| stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "120s"]))
            .collect();
        for npt in started {
            let port = npt_port(&npt).unwrap_or_else(|e| panic!("session {}: {e}", sessions.len()));
            sessions.push((npt, port));
        }
    }
    let opened = t_open.elapsed();
    let peak = Arc::new(AtomicU64::new(rss_kib(srvd)));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(srvd), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let t = Instant::now();
    std::thread::scope(|s| {
        let jobs: Vec<_> = sessions
            .iter()
            .enumerate()
            .map(|(i, (_, port))| {
                let port = *port;
                s.spawn(move || {
                    transfer_and_verify(port, bytes).unwrap_or_else(|e| panic!("session {i}: {e}"))
                })
            })
            .collect();
        for j in jobs {
            j.join().expect("transfer");
        }
    });
    let took = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let during = peak.load(Ordering::Relaxed);
    drop(sessions);
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(srvd);
    let mb = (n * bytes) as f64 / 1e6;
    println!(
        "BENCH scale: {n} sessions through one srvd, {} MiB verified each way per session, all at once: \
         {:.1} MB/s aggregate ({mb:.0} MB each way in {took:.2} s); srvd VmRSS {before} KiB before, \
         {during} KiB peak, {after} KiB after; sessions opened ten at a time in {:.1} s",
        bytes >> 20,
        mb / took,
        opened.as_secs_f64()
    );
    drop(daemon);
}
