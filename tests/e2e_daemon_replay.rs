//! Issue 16: the daemon's replay memory survives a restart: a captured, validly signed request
//! re-sent after the daemon restarted opens nothing. Its own test binary: the trust anchors
//! (NOPORTS_CA_FILE) are per process.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::Duration;

use noports::at::{AtClient, AtKeys, AtSign, ClientConfig, MonitorStart, NotifyOptions, RootAddr};
use noports::crypto::rsa::RsaPrivateKey;
use noports::noports::envelope;
use noports::noports::messages::NptRequest;
use noports::runtime::{block_on, timeout};
use stack::*;
use std::os::unix::fs::PermissionsExt;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

#[test]
fn replayed_request_after_a_daemon_restart_opens_nothing() {
    let stack = Stack::start(bin(), "e2e-replay", &[]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");
    let mut daemon = stack.start_daemon("replaydev", CLIENT, &permit);
    let (relay_port, relay_lines) = recording_listener();
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    let sid = "88888888-2222-4333-8444-555555555555";
    let seen_file = stack
        .dir
        .join(".sshnp")
        .join("replaydev")
        .join("seen_requests");
    let client = block_on(AtClient::connect(ClientConfig {
        atsign: AtSign::parse(CLIENT).unwrap(),
        keys: AtKeys::load(&stack.keys(CLIENT)).unwrap(),
        root: RootAddr::parse(&stack.root).unwrap(),
    }))
    .unwrap();
    let ephemeral = RsaPrivateKey::generate().unwrap();
    let request = NptRequest {
        session_id: sid.to_string(),
        rvd_host: "127.0.0.1".into(),
        rvd_port: relay_port,
        requested_port: service,
        requested_host: "127.0.0.1".into(),
        authenticate_to_rvd: true,
        client_nonce: "cn-8".into(),
        rvd_nonce: "rn-8".into(),
        encrypt_rvd_traffic: true,
        client_ephemeral_pk: ephemeral.public_key().to_spki_b64(),
        client_ephemeral_pk_type: "rsa2048".into(),
        timeout_ms: 5000,
        suite: None,
        client_suite_pk: None,
        suite_aead: None,
        suite_binding: None,
        requested_at: None,
    };
    let signed = envelope::sign(&request.to_object(), &client.keys().encrypt_private).unwrap();
    let device = AtSign::parse(DEVICE).unwrap();
    let send = |value: &str| {
        block_on(client.notify(
            &device,
            "npt_request.replaydev.sshnp",
            value,
            NotifyOptions {
                ttl_ms: Some(10_000),
                ttln_ms: Some(60_000),
                ..Default::default()
            },
        ))
        .unwrap()
    };
    // Served once. (The monitor also sees the daemon's username adverts: wait for our key.)
    let mut replies = block_on(client.monitor("replaydev", MonitorStart::Live)).unwrap();
    let mut reply_for = |sid: &str| {
        let want = format!("{sid}.replaydev.sshnp");
        block_on(timeout(Duration::from_secs(20), async {
            while let Some(n) = replies.next().await {
                if n.key_name() == want {
                    return Some(n);
                }
            }
            None
        }))
        .ok()
        .flatten()
    };
    send(&signed);
    reply_for(sid).expect("a reply to the valid request");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(relay_lines.lock().unwrap().len(), 1);
    // Remembered on disk, private to the user.
    let text = std::fs::read_to_string(&seen_file).expect("replay memory written");
    assert!(text.contains(sid), "{text}");
    let mode = std::fs::metadata(&seen_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Restart the daemon and replay the captured request: nothing is opened.
    daemon.terminate();
    let daemon = stack.start_daemon("replaydev", CLIENT, &permit);
    send(&signed);
    daemon
        .wait_for("session id already used (replay)", Duration::from_secs(20))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        relay_lines.lock().unwrap().len(),
        1,
        "the replay reached the relay"
    );
    // A new request is still served.
    let mut fresh = request.clone();
    fresh.session_id = "99999999-2222-4333-8444-555555555555".into();
    send(&envelope::sign(&fresh.to_object(), &client.keys().encrypt_private).unwrap());
    reply_for("99999999-2222-4333-8444-555555555555").expect("a reply to a new request");
}
