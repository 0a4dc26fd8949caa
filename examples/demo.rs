//! `make demo`: the whole NoPorts stack on loopback with the embedded default.
//!
//! Starts our `atserver` hosting @demo_client, @demo_device and @demo_relay; `srvd`; a local
//! TCP service; `sshnpd` permitting it; `npt` opening a local port. Then moves data through the
//! tunnel in both directions, verifies every byte, prints a summary and shuts everything down.
//! Exit status 0 on success, 1 on any failure.
#[path = "../tests/common/stack.rs"]
mod stack;

use std::path::PathBuf;
use std::time::Instant;

use stack::{npt_port, start_plus_one_service, transfer_and_verify, Stack, CLIENT};

fn main() {
    let bin = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/noports"));
    match run(&bin) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("demo FAILED: {e}");
            std::process::exit(1);
        }
    }
}

fn run(bin: &std::path::Path) -> Result<(), String> {
    if !bin.exists() {
        return Err(format!(
            "{} not found; run `cargo build --release` first",
            bin.display()
        ));
    }
    println!("== noports-rs demo: atserver + srvd + sshnpd + npt on loopback ==");
    let t0 = Instant::now();
    let stack = Stack::start(bin, "demo", &[]);
    println!(
        "atserver ready at {} (CA {})",
        stack.root,
        stack.ca.display()
    );
    println!("srvd ready as @demo_relay");
    let service = start_plus_one_service();
    println!("local TCP service on 127.0.0.1:{service} (answers each byte + 1)");
    let permit = format!("127.0.0.1:{service}");
    let daemon = stack.start_daemon("demo", CLIENT, &permit);
    println!("sshnpd ready as @demo_device, device \"demo\", permit-open {permit}");
    let platform_secs = t0.elapsed().as_secs_f64();

    let setup = Instant::now();
    let npt = stack.npt(CLIENT, "demo", "127.0.0.1", service, &["-T", "5s"]);
    let port = npt_port(&npt)?;
    let setup_secs = setup.elapsed().as_secs_f64();
    let suite = if daemon.output().contains("(suite nps1)") {
        "nps1 (X25519 + ChaCha20-Poly1305)"
    } else {
        "official (AES-256-CTR)"
    };
    println!("npt listening on localhost:{port} after {setup_secs:.2} s of session set-up");

    let total = 64 * 1024 * 1024;
    let (bytes, secs) = transfer_and_verify(port, total)?;
    let mbps = bytes as f64 * 2.0 / secs / 1_000_000.0;
    // A second connection through the same session shows multiplexing / per-connection keys.
    let (bytes2, _) = transfer_and_verify(port, 1024 * 1024)?;

    println!();
    println!("== summary ==");
    println!("platform start-up      {platform_secs:.2} s (atserver, srvd, sshnpd)");
    println!("session set-up         {setup_secs:.2} s (npt start to listening)");
    println!("data plane             {suite}");
    println!(
        "transferred            {} MiB each way, verified byte for byte",
        bytes / (1024 * 1024)
    );
    println!("throughput             {mbps:.1} MB/s (both directions, {secs:.2} s)");
    println!(
        "second connection      {} KiB each way, verified",
        bytes2 / 1024
    );
    drop(npt);
    drop(daemon);
    drop(stack);
    println!("all processes stopped; demo OK");
    Ok(())
}
