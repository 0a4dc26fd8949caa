//! `sshnpd --status-file`: the state a front end (LuCI) shows — running, sessions, the last
//! session — kept in one JSON file, and `stopped` after SIGTERM.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::{Duration, Instant};

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn wait_for_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle:?}; last: {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_file_follows_the_daemon() {
    let stack = Stack::start(bin(), "status", &[]);
    let service = start_plus_one_service();
    let status = stack.dir.join("run/sshnpd/cfg1.status");
    let mut c = stack.command("sshnpd");
    c.arg("--status-file").arg(&status);
    let mut daemon = stack.start_daemon_with(c, "stat", CLIENT, &format!("127.0.0.1:{service}"));
    let text = wait_for_file(&status, "\"state\":\"running\"");
    assert!(text.contains("\"atsign\":\"@demo_device\""), "{text}");
    assert!(text.contains("\"device\":\"stat\""), "{text}");
    assert!(
        text.contains(&format!("\"pid\":{}", daemon.pid())),
        "{text}"
    );
    assert!(text.contains("\"sessions\":0"), "{text}");
    assert!(!text.contains("last_session"), "{text}");

    let npt = stack.npt(CLIENT, "stat", "127.0.0.1", service, &["-T", "3s"]);
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 10_000).unwrap();
    let text = wait_for_file(&status, "\"sessions\":1");
    assert!(text.contains("\"last_session\":{\"at\":\"20"), "{text}");
    assert!(
        text.contains(&format!(
            "\"from\":\"@demo_client\",\"service\":\"127.0.0.1:{service}\",\"suite\":\"nps1\""
        )),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&status).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(npt);

    daemon.terminate();
    let text = wait_for_file(&status, "\"state\":\"stopped\"");
    assert!(
        text.contains("\"sessions\":1"),
        "the last session is kept: {text}"
    );
}
