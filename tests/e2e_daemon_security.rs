//! The daemon against hostile requests, driven by a real atSign client (the library) through
//! the real atserver, with a fake relay that counts what the daemon opens:
//! a valid request gets a signed answer and exactly one relay connection carrying a valid
//! device-signed auth line; a replay, a tampered payload, garbage, and a port outside
//! permit-open open nothing. Then nps1's AEAD offer (docs/suite-v1.md §1 item 4): the daemon
//! answers `"suiteAead":"aes-256-gcm"` only to that exact offer, and only where AES-256-GCM is
//! its own faster AEAD; an unknown offer or none gets no `suiteAead` (ChaCha20-Poly1305).
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::Duration;

use noports::at::{AtClient, AtKeys, AtSign, ClientConfig, MonitorStart, NotifyOptions, RootAddr};
use noports::crypto::aead::EphemeralSecret;
use noports::crypto::b64;
use noports::crypto::rsa::RsaPrivateKey;
use noports::noports::messages::{NptRequest, SessionResponse};
use noports::noports::{envelope, relay_msg};
use noports::runtime::{block_on, timeout};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

#[test]
fn hostile_requests_open_nothing_and_valid_ones_are_signed() {
    let stack = Stack::start(bin(), "e2e-sec", &[]);
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("secdev", CLIENT, &format!("127.0.0.1:{service}"));
    let (relay_port, relay_lines) = recording_listener();
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);

    block_on(async {
        let me = AtSign::parse(CLIENT).unwrap();
        let device = AtSign::parse(DEVICE).unwrap();
        let keys = AtKeys::load(&stack.keys(CLIENT)).unwrap();
        let root = RootAddr::parse(&stack.root).unwrap();
        let client = AtClient::connect(ClientConfig {
            atsign: me,
            keys,
            root,
        })
        .await
        .unwrap();
        let mut replies = client.monitor("secdev", MonitorStart::Live).await.unwrap();
        let device_key = client.public_key(&device).await.unwrap();
        let ephemeral = RsaPrivateKey::generate().unwrap();
        let opts = NotifyOptions {
            ttl_ms: Some(10_000),
            ttln_ms: Some(60_000),
            ..Default::default()
        };
        let request = |sid: &str, port: u16| NptRequest {
            session_id: sid.to_string(),
            rvd_host: "127.0.0.1".into(),
            rvd_port: relay_port,
            requested_port: port,
            requested_host: "127.0.0.1".into(),
            authenticate_to_rvd: true,
            client_nonce: "cn-1".into(),
            rvd_nonce: "rn-1".into(),
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
        let send = |value: String| {
            let client = client.clone();
            let device = device.clone();
            let opts = opts.clone();
            async move {
                client
                    .notify(&device, "npt_request.secdev.sshnp", &value, opts)
                    .await
                    .unwrap()
            }
        };

        // 1. A valid request: signed answer with wrapped keys, one relay connection, a valid
        //    device-signed auth line over the session's values.
        let sid = "11111111-2222-4333-8444-555555555555";
        let signed = envelope::sign(
            &request(sid, service).to_object(),
            &client.keys().encrypt_private,
        )
        .unwrap();
        send(signed.clone()).await;
        let reply = timeout(Duration::from_secs(20), replies.next())
            .await
            .ok()
            .flatten()
            .expect("a reply to a valid request");
        assert_eq!(reply.key_name(), format!("{sid}.secdev.sshnp"));
        let env = envelope::parse(reply.value.as_deref().unwrap()).unwrap();
        env.verify(&device_key)
            .expect("the answer is signed by the device");
        let resp = SessionResponse::from_object(&env.payload).unwrap();
        assert!(resp.session_aes_key.is_some() && resp.session_iv.is_some());
        std::thread::sleep(Duration::from_secs(2));
        {
            let lines = relay_lines.lock().unwrap();
            assert_eq!(lines.len(), 1, "exactly one control connection");
            relay_msg::verify_auth_line(&lines[0], sid, "cn-1", "rn-1", &device_key)
                .expect("valid device auth line");
        }

        // 2. The same signed request again: a replay opens nothing.
        send(signed).await;
        // 3. A tampered payload (port changed after signing): refused with the official text.
        let mut tampered = envelope::sign(
            &request("22222222-2222-4333-8444-555555555555", service).to_object(),
            &client.keys().encrypt_private,
        )
        .unwrap();
        tampered = tampered.replacen(
            &format!("\"requestedPort\":{service}"),
            "\"requestedPort\":22",
            1,
        );
        send(tampered).await;
        let reply = timeout(Duration::from_secs(20), replies.next())
            .await
            .ok()
            .flatten()
            .expect("a reply to a tampered request");
        assert!(
            reply
                .value
                .as_deref()
                .unwrap()
                .starts_with("Signature not verified"),
            "{:?}",
            reply.value
        );
        // 3b. Validly signed requests dated 700 s ago and 300 s ahead (a replay the id memory
        //     may have forgotten, a skewed clock): refused by their date, nothing opened.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for (sid, at) in [
            ("33333333-2222-4333-8444-555555555555", now_ms - 700_000),
            ("44444444-2222-4333-8444-555555555555", now_ms + 300_000),
        ] {
            let mut dated = request(sid, service);
            dated.requested_at = Some(at);
            send(envelope::sign(&dated.to_object(), &client.keys().encrypt_private).unwrap()).await;
        }
        // 4. Garbage: no reply, nothing opened.
        send("{\"payload\":".into()).await;
        send("not json at all".into()).await;
        // 5. A validly signed request for a port outside permit-open: the official refusal.
        let sid5 = "55555555-2222-4333-8444-555555555555";
        send(
            envelope::sign(
                &request(sid5, 1).to_object(),
                &client.keys().encrypt_private,
            )
            .unwrap(),
        )
        .await;
        let reply = timeout(Duration::from_secs(20), replies.next())
            .await
            .ok()
            .flatten()
            .expect("a reply to a refused request");
        assert_eq!(
            reply.value.as_deref(),
            Some("Daemon does not permit connections to 127.0.0.1:1")
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            relay_lines.lock().unwrap().len(),
            1,
            "nothing else reached the relay"
        );
        for why in [
            "s ago, more than the 540 s accepted",
            "s ahead of this device's clock",
        ] {
            assert!(
                daemon.output().contains(why),
                "no refusal by date ({why}):\n{}",
                daemon.output()
            );
        }

        // 6. nps1 requests with each AEAD offer: every answer device-signed, with our suite.
        let aes = (fastest_aead_here() == "aes-256-gcm").then_some("aes-256-gcm");
        for (i, offer, want) in [
            (1, Some("rot13"), None),
            (2, None, None),
            (3, Some("AES-256-GCM"), None),
            (4, Some("aes-256-gcm"), aes),
        ] {
            let sid = format!("{i}{i}{i}{i}{i}{i}{i}{i}-3333-4333-8444-555555555555");
            let secret = EphemeralSecret::generate().unwrap();
            let request = NptRequest {
                suite: Some("nps1".into()),
                client_suite_pk: Some(b64::encode(&secret.public_bytes())),
                suite_aead: offer.map(Into::into),
                suite_binding: None,
                requested_at: None,
                ..request(&sid, service)
            };
            send(envelope::sign(&request.to_object(), &client.keys().encrypt_private).unwrap())
                .await;
            let reply = timeout(Duration::from_secs(20), replies.next())
                .await
                .ok()
                .flatten()
                .expect("a reply to each request");
            assert_eq!(reply.key_name(), format!("{sid}.secdev.sshnp"));
            let env = envelope::parse(reply.value.as_deref().unwrap()).unwrap();
            env.verify(&device_key).expect("signed by the device");
            let resp = SessionResponse::from_object(&env.payload).unwrap();
            assert_eq!(resp.suite.as_deref(), Some("nps1"), "offer {offer:?}");
            assert_eq!(resp.suite_aead.as_deref(), want, "offer {offer:?}");
        }
    });
    daemon
        .wait_for("session id already used (replay)", Duration::from_secs(5))
        .unwrap();
    daemon
        .wait_for("Failed to extract parameters", Duration::from_secs(5))
        .unwrap();
}
