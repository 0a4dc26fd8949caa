//! Set-up and start-up of the real binary as separate processes on loopback (atserver, srvd,
//! sshnpd, npt): how long the atServer takes to be ready with three new atSigns, how long `npt`
//! takes from start to "listening", and the daemon's idle memory. Ignored by default; run by
//! `scripts/bench.sh` (`cargo test --release --test platform_bench -- --ignored --nocapture`).
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
