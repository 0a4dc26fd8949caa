//! The daemon's side of nps1's AEAD negotiation, driven by a real atSign client (the library)
//! through the real atserver: what it answers to each `suiteAead` offer. (A test binary of its
//! own: the library client reads NOPORTS_CA_FILE from the process environment.)
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::Duration;

use noports::at::{AtClient, AtKeys, AtSign, ClientConfig, MonitorStart, NotifyOptions, RootAddr};
use noports::crypto::aead::EphemeralSecret;
use noports::crypto::b64;
use noports::crypto::rsa::RsaPrivateKey;
use noports::noports::envelope;
use noports::noports::messages::{NptRequest, SessionResponse};
use noports::runtime::{block_on, timeout};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// The AEAD offer of an nps1 request (docs/suite-v1.md §1 item 4): the daemon answers
/// `"suiteAead":"aes-256-gcm"` only to that exact offer, and only where AES-256-GCM is its own
/// faster AEAD; an unknown offer or none gets no `suiteAead` (ChaCha20-Poly1305). Every answer
/// is device-signed and carries our suite.
#[test]
fn the_daemon_takes_aes_256_gcm_only_when_offered_by_name() {
    let stack = Stack::start(bin(), "e2e-aead-offer", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("aeaddev", CLIENT, &format!("127.0.0.1:{service}"));
    let (relay_port, _relay_lines) = recording_listener();
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    let aes = (fastest_aead_here() == "aes-256-gcm").then_some("aes-256-gcm");

    block_on(async {
        let device = AtSign::parse(DEVICE).unwrap();
        let client = AtClient::connect(ClientConfig {
            atsign: AtSign::parse(CLIENT).unwrap(),
            keys: AtKeys::load(&stack.keys(CLIENT)).unwrap(),
            root: RootAddr::parse(&stack.root).unwrap(),
        })
        .await
        .unwrap();
        let mut replies = client.monitor("aeaddev", MonitorStart::Live).await.unwrap();
        let device_key = client.public_key(&device).await.unwrap();
        let ephemeral = RsaPrivateKey::generate().unwrap();
        let opts = NotifyOptions {
            ttl_ms: Some(10_000),
            ttln_ms: Some(60_000),
            ..Default::default()
        };
        for (i, offer, want) in [
            (1, Some("rot13"), None),
            (2, None, None),
            (3, Some("AES-256-GCM"), None),
            (4, Some("aes-256-gcm"), aes),
        ] {
            let sid = format!("{i}{i}{i}{i}{i}{i}{i}{i}-2222-4333-8444-555555555555");
            let secret = EphemeralSecret::generate().unwrap();
            let request = NptRequest {
                session_id: sid.clone(),
                rvd_host: "127.0.0.1".into(),
                rvd_port: relay_port,
                requested_port: service,
                requested_host: "127.0.0.1".into(),
                authenticate_to_rvd: true,
                client_nonce: format!("cn-{i}"),
                rvd_nonce: format!("rn-{i}"),
                encrypt_rvd_traffic: true,
                client_ephemeral_pk: ephemeral.public_key().to_spki_b64(),
                client_ephemeral_pk_type: "rsa2048".into(),
                timeout_ms: 5000,
                suite: Some("nps1".into()),
                client_suite_pk: Some(b64::encode(&secret.public_bytes())),
                suite_aead: offer.map(Into::into),
            };
            let signed =
                envelope::sign(&request.to_object(), &client.keys().encrypt_private).unwrap();
            client
                .notify(&device, "npt_request.aeaddev.sshnp", &signed, opts.clone())
                .await
                .unwrap();
            let reply = timeout(Duration::from_secs(20), replies.next())
                .await
                .ok()
                .flatten()
                .expect("a reply to each request");
            assert_eq!(reply.key_name(), format!("{sid}.aeaddev.sshnp"));
            let env = envelope::parse(reply.value.as_deref().unwrap()).unwrap();
            env.verify(&device_key).expect("signed by the device");
            let resp = SessionResponse::from_object(&env.payload).unwrap();
            assert_eq!(resp.suite.as_deref(), Some("nps1"), "offer {offer:?}");
            assert_eq!(resp.suite_aead.as_deref(), want, "offer {offer:?}");
        }
    });
}
