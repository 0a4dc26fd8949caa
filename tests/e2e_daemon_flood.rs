//! Issue 16: the daemon refuses strangers on the sender alone, before any look-up or
//! decryption, and a flood of them does not delay a manager. Its own test binary: the trust
//! anchors (NOPORTS_CA_FILE) are per process.
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

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// Issue 16: a stranger's notifications are refused on the sender alone, before any shared-key
/// look-up or decryption (the monitor leaves values sealed), the refusals are logged at most
/// once a second, and a manager's request in the middle of the flood is answered promptly.
#[test]
fn strangers_cost_no_lookups_and_do_not_delay_a_manager() {
    let stack = Stack::start(bin(), "e2e-flood", &["@stranger"]);
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("flooddev", CLIENT, &format!("127.0.0.1:{service}"));
    let (relay_port, _relay_lines) = recording_listener();
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    block_on(async {
        let root = RootAddr::parse(&stack.root).unwrap();
        let connect = |who: &str| {
            let cfg = ClientConfig {
                atsign: AtSign::parse(who).unwrap(),
                keys: AtKeys::load(&stack.keys(who)).unwrap(),
                root: root.clone(),
            };
            async move { AtClient::connect(cfg).await.unwrap() }
        };
        let stranger = connect("@stranger").await;
        let manager = connect(CLIENT).await;
        let device = AtSign::parse(DEVICE).unwrap();
        let mut replies = manager
            .monitor("flooddev", MonitorStart::Live)
            .await
            .unwrap();
        // 300 encrypted-looking requests whose values nobody can open: the old daemon looked
        // up the stranger's shared key and tried to decrypt each one.
        let flood = async {
            for i in 0..300 {
                stranger
                    .request(&format!(
                        "notify:id:flood-{i}:update:messageType:key:ttln:60000:isEncrypted:true:sharedKeyEnc:Z2FyYmFnZQ==:ivNonce:AAAAAAAAAAAAAAAAAAAAAA==:{DEVICE}:npt_request.flooddev.sshnp@stranger:Z2FyYmFnZQ=="
                    ))
                    .await
                    .unwrap();
            }
        };
        let ephemeral = RsaPrivateKey::generate().unwrap();
        let sid = "77777777-2222-4333-8444-555555555555";
        let request = NptRequest {
            session_id: sid.to_string(),
            rvd_host: "127.0.0.1".into(),
            rvd_port: relay_port,
            requested_port: service,
            requested_host: "127.0.0.1".into(),
            authenticate_to_rvd: true,
            client_nonce: "cn-7".into(),
            rvd_nonce: "rn-7".into(),
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
        let signed = envelope::sign(&request.to_object(), &manager.keys().encrypt_private).unwrap();
        let ask = async {
            // Halfway into the flood.
            noports::runtime::sleep(Duration::from_millis(200)).await;
            let started = std::time::Instant::now();
            manager
                .notify(
                    &device,
                    "npt_request.flooddev.sshnp",
                    &signed,
                    NotifyOptions {
                        ttl_ms: Some(10_000),
                        ttln_ms: Some(60_000),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let reply = timeout(Duration::from_secs(20), replies.next())
                .await
                .ok()
                .flatten()
                .expect("the manager's request is answered");
            assert_eq!(reply.key_name(), format!("{sid}.flooddev.sshnp"));
            started.elapsed()
        };
        let ((), took) = futures_lite::future::zip(flood, ask).await;
        assert!(
            took < Duration::from_secs(5),
            "manager answered after {took:?}"
        );
    });
    daemon
        .wait_for(
            "Notification ignored from @stranger which is not authorized",
            Duration::from_secs(10),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        daemon.count("dropped a notification"),
        0,
        "the daemon tried to open a stranger's notification"
    );
    assert_eq!(daemon.count("cannot decrypt"), 0);
    let logged = daemon.count("Notification ignored from @stranger");
    assert!(
        (1..50).contains(&logged),
        "{logged} refusal lines for 300 notifications"
    );
}
