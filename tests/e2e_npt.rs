//! End to end: the real binary as separate processes over loopback — atserver + srvd +
//! sshnpd + npt — against a real TCP service.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::Duration;

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// nps1's AEAD (docs/suite-v1.md §1): AES-256-GCM only when both ends have AES instructions
/// (and neither is told `NOPORTS_AEAD=chacha20-poly1305`), ChaCha20-Poly1305 otherwise; data
/// moves and verifies either way.
#[test]
fn nps1_uses_aes_256_gcm_only_when_both_ends_take_it() {
    let stack = Stack::start(bin(), "e2e-aead", &[]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");
    let _fast = stack.start_daemon("fast", CLIENT, &permit);
    let mut chacha_daemon = stack.command("sshnpd");
    chacha_daemon.env("NOPORTS_AEAD", "chacha20-poly1305");
    let _chacha = stack.start_daemon_with(chacha_daemon, "chacha", CLIENT, &permit);
    let chacha_only = || {
        let mut c = stack.command("npt");
        c.env("NOPORTS_AEAD", "chacha20-poly1305");
        c
    };
    let npt_with =
        |c, device| stack.npt_with(c, CLIENT, device, "127.0.0.1", service, &["-T", "3s", "-v"]);
    for (npt, want) in [
        (npt_with(stack.command("npt"), "fast"), fastest_aead_here()),
        (npt_with(chacha_only(), "fast"), "chacha20-poly1305"),
        (
            npt_with(stack.command("npt"), "chacha"),
            "chacha20-poly1305",
        ),
    ] {
        let port = npt_port(&npt).unwrap();
        transfer_and_verify(port, 2 * 1024 * 1024).unwrap();
        let line = format!("uses the nps1 data plane ({want})");
        npt.wait_for(&line, Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn npt_reaches_a_permitted_service_and_both_suites_move_verified_data() {
    let stack = Stack::start(bin(), "e2e-basic", &["@stranger"]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");
    let daemon = stack.start_daemon("dev1", CLIENT, &permit);

    // Default: our suite is negotiated with our daemon.
    let npt = stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "3s", "-v"]);
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 4 * 1024 * 1024).unwrap();
    transfer_and_verify(port, 1000).unwrap();
    npt.wait_for("uses the nps1 data plane", Duration::from_secs(5))
        .unwrap();
    drop(npt);

    // Official suite on request: AES-256-CTR, one relay pair per connection.
    let npt = stack.npt(
        CLIENT,
        "dev1",
        "127.0.0.1",
        service,
        &["-T", "3s", "-v", "--suite", "official"],
    );
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 2 * 1024 * 1024).unwrap();
    transfer_and_verify(port, 1000).unwrap();
    npt.wait_for("uses the official data plane", Duration::from_secs(5))
        .unwrap();
    drop(npt);

    // An atSign that is not a manager is ignored (no reply: npt times out waiting for the
    // daemon) and the daemon logs why.
    let npt = stack.npt(
        "@stranger",
        "dev1",
        "127.0.0.1",
        service,
        &["-T", "3s", "--daemon-ping-timeout", "5"],
    );
    let mut npt = npt;
    let status = npt
        .wait_exit(Duration::from_secs(60))
        .expect("npt must give up, not hang");
    assert!(!status.success());
    npt.wait_for("Error :", Duration::from_secs(1)).unwrap();
    daemon
        .wait_for(
            "Notification ignored from @stranger which is not authorized",
            Duration::from_secs(5),
        )
        .unwrap();
}

#[test]
fn permit_open_refusal_uses_the_official_error_text() {
    let stack = Stack::start(bin(), "e2e-permit", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev2", CLIENT, "127.0.0.1:1");
    let mut npt = stack.npt(CLIENT, "dev2", "127.0.0.1", service, &["-T", "3s"]);
    let status = npt
        .wait_exit(Duration::from_secs(60))
        .expect("npt must exit");
    assert!(!status.success());
    npt.wait_for(
        &format!("Daemon does not permit connections to 127.0.0.1:{service}"),
        Duration::from_secs(1),
    )
    .unwrap();
}

#[test]
fn exit_when_connected_prints_the_port_and_leaves_a_working_tunnel() {
    let stack = Stack::start(bin(), "e2e-x", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev3", CLIENT, &format!("127.0.0.1:{service}"));
    let mut npt = stack.npt(CLIENT, "dev3", "127.0.0.1", service, &["-x", "-T", "5s"]);
    let status = npt
        .wait_exit(Duration::from_secs(60))
        .expect("npt -x must exit once connected");
    assert!(status.success(), "npt -x failed:\n{}", npt.output());
    let port: u16 = npt
        .output()
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("npt -x prints the local port alone on a line");
    transfer_and_verify(port, 1024 * 1024).unwrap();
}

#[test]
fn keep_alive_re_establishes_on_the_same_port() {
    let stack = Stack::start(bin(), "e2e-k", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev4", CLIENT, &format!("127.0.0.1:{service}"));
    let npt = stack.npt(CLIENT, "dev4", "127.0.0.1", service, &["-K", "-T", "2s"]);
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 100_000).unwrap();
    npt.wait_for(
        "keep-alive is set: will wait 5 seconds and retry",
        Duration::from_secs(30),
    )
    .unwrap();
    // The second session listens on the same port.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while npt.count("npt is listening on localhost:") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no second session:\n{}",
            npt.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    transfer_and_verify(port, 100_000).unwrap();
}

#[test]
fn a_local_port_in_use_fails_before_any_session_is_set_up() {
    let stack = Stack::start(bin(), "e2e-port-taken", &[]);
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev5", CLIENT, &format!("127.0.0.1:{service}"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for extra in [&["-l", &port][..], &["-l", &port, "-x"][..]] {
        let mut npt = stack.npt(CLIENT, "dev5", "127.0.0.1", service, extra);
        let status = npt
            .wait_exit(Duration::from_secs(20))
            .expect("npt must fail at once, not set up a session");
        assert!(!status.success());
        npt.wait_for(
            &format!("cannot listen on localhost:{port}"),
            Duration::from_secs(1),
        )
        .unwrap();
        npt.wait_for("-l 0", Duration::from_secs(1)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        daemon.count("session"),
        0,
        "no request reached the daemon:\n{}",
        daemon.output()
    );
}

#[test]
fn fifty_parallel_connections_share_one_nps1_session() {
    let stack = Stack::start(bin(), "e2e-parallel", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev6", CLIENT, &format!("127.0.0.1:{service}"));
    let npt = stack.npt(CLIENT, "dev6", "127.0.0.1", service, &["-T", "60s", "-v"]);
    let port = npt_port(&npt).unwrap();
    npt.wait_for("uses the nps1 data plane", Duration::from_secs(5))
        .unwrap();
    // All at once, every byte checked (the service adds one to each).
    let conns: Vec<_> = (0..50)
        .map(|_| std::thread::spawn(move || transfer_and_verify(port, 64 * 1024)))
        .collect();
    let failures: Vec<String> = conns
        .into_iter()
        .filter_map(|c| match c.join() {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("connection thread panicked".into()),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 50 parallel connections failed: {failures:?}\nnpt:\n{}",
        failures.len(),
        npt.output()
    );
    // Still one session: a further connection works after the burst.
    transfer_and_verify(port, 1000).unwrap();
    assert_eq!(npt.count("npt is listening"), 1, "{}", npt.output());
}
