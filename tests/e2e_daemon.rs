//! The daemon survives an atServer restart, and does not leak descriptors over many sessions.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::Duration;

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

#[test]
fn daemon_recovers_after_the_atserver_restarts() {
    let mut stack = Stack::start(bin(), "e2e-restart", &[]);
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev5", CLIENT, &format!("127.0.0.1:{service}"));
    let npt = stack.npt(CLIENT, "dev5", "127.0.0.1", service, &["-T", "2s"]);
    transfer_and_verify(npt_port(&npt).unwrap(), 10_000).unwrap();
    drop(npt);

    stack.restart_atserver();
    // The daemon notices and re-establishes its monitor.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while daemon.count("monitor started") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "daemon did not reconnect:\n{}",
            daemon.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let npt = stack.npt(CLIENT, "dev5", "127.0.0.1", service, &["-T", "2s"]);
    transfer_and_verify(npt_port(&npt).unwrap(), 10_000).unwrap();
}

#[test]
fn fifty_sessions_in_a_row_do_not_grow_the_daemons_descriptors() {
    let stack = Stack::start(bin(), "e2e-fds", &[]);
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev6", CLIENT, &format!("127.0.0.1:{service}"));
    let mut baseline = 0;
    for i in 0..50 {
        let mut npt = stack.npt(CLIENT, "dev6", "127.0.0.1", service, &["-T", "1s"]);
        let port = npt_port(&npt).unwrap();
        transfer_and_verify(port, 1000).unwrap();
        assert!(
            npt.wait_exit(Duration::from_secs(30)).is_some(),
            "session {i} did not end"
        );
        if i == 4 {
            // Let the first sessions' sockets close, then take the baseline.
            std::thread::sleep(Duration::from_secs(2));
            baseline = open_fds(daemon.pid());
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = open_fds(daemon.pid());
    assert!(baseline > 0);
    assert!(
        after <= baseline + 3,
        "daemon fds grew from {baseline} to {after} over 45 sessions"
    );
}
