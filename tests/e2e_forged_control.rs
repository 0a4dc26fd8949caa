//! Control messages an atServer on the way can forge (issue 24 items 1 and 2), through the
//! real atserver, daemon, relay and client:
//! - a clear `sshpublickey` under a manager's name installs nothing (the same key sent
//!   encrypted is installed, so the check can fail);
//! - a clear and an altered ("npsX") feature check reply, delivered before the real one, do
//!   not downgrade a capable pair: the offer is in the signed request, the session runs nps1,
//!   and the client says the reply was altered;
//! - a daemon that really lacks nps1 (a double that answers like an official daemon) gets a
//!   WARN in auto mode, and `--suite nps1` fails when its signed answer lacks nps1 even though
//!   its feature check claimed it.
//!
//! One test function with one stack: the client library reads its trust anchors
//! (NOPORTS_CA_FILE) once per process.
#[path = "common/atserver.rs"]
mod atserver;
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use noports::at::{AtClient, AtKeys, AtSign, ClientConfig, MonitorStart, NotifyOptions, RootAddr};
use noports::crypto::aead::EphemeralSecret;
use noports::crypto::b64;
use noports::crypto::rsa::RsaPublicKey;
use noports::noports::messages::{NptRequest, SessionResponse};
use noports::noports::{envelope, suite};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn connect(stack: &Stack, who: &str) -> AtClient {
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    let config = ClientConfig {
        atsign: AtSign::parse(who).unwrap(),
        keys: AtKeys::load(&stack.keys(who)).unwrap(),
        root: RootAddr::parse(&stack.root).unwrap(),
    };
    noports::runtime::block_on(AtClient::connect(config)).unwrap()
}

/// An authenticated raw atProtocol connection as `atsign`: it can send a notification with
/// `isEncrypted:false`, as an atServer on the way could write one under that name.
fn raw_login(stack: &Stack, atsign: &str) -> atserver::Client {
    let mut root = atserver::Client::connect(&stack.root, &stack.ca);
    assert_eq!(root.read_exact_str(1), "@");
    let reply = root.cmd_raw(atsign.trim_start_matches('@'));
    let addr = reply.trim_end_matches('@').trim().to_string();
    let keys = AtKeys::load(&stack.keys(atsign)).unwrap();
    let mut c = atserver::Client::connect(&addr, &stack.ca);
    assert_eq!(c.read_exact_str(1), "@");
    assert_eq!(c.pkam(atsign, &keys, true), "data:success");
    c
}

fn clear_notify(c: &mut atserver::Client, from: &str, to: &str, key: &str, value: &str) {
    let reply = c.cmd(&format!(
        "notify:update:messageType:key:ttln:30000:isEncrypted:false:{to}:{key}{from}:{value}"
    ));
    assert!(reply.starts_with("data:"), "{reply}");
}

fn opts() -> NotifyOptions {
    NotifyOptions {
        ttl_ms: Some(10_000),
        ttln_ms: Some(60_000),
        ..Default::default()
    }
}

/// An OpenSSH ed25519 public key line whose 32 key bytes are all `byte`.
fn ed25519_line(byte: u8, comment: &str) -> String {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], &[byte; 32][..]] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} {comment}", b64::encode(&blob))
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn forged_control_messages_neither_install_keys_nor_downgrade_the_suite() {
    let stack = Stack::start(bin(), "forged", &[]);
    a_clear_sshpublickey_from_a_manager_installs_nothing(&stack);
    a_forged_or_altered_feature_check_reply_does_not_downgrade_a_capable_pair(&stack);
    an_official_suite_answer_is_a_warning_in_auto_and_fatal_for_suite_nps1(&stack);
    a_relay_latency_request_is_answered_without_probing_the_devices_networks(&stack);
}

/// What an official 5.15 client sends when it picks the relay itself: every relay gets an
/// answer, -1 for one on the device's loopback (not probed) and one without a port.
fn a_relay_latency_request_is_answered_without_probing_the_devices_networks(stack: &Stack) {
    let daemon = stack.start_daemon("ldev", CLIENT, "127.0.0.1:22");
    let client = connect(stack, CLIENT);
    let mut answers = noports::runtime::block_on(
        client.monitor("relay_latency_response\\.ldev\\.sshnp", MonitorStart::Live),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let request = format!(
        r#"{{"@rv_local":{{"ipaddr":"127.0.0.1","port":{port}}},"@rv_noport":{{"ipaddr":"relay.example","port":null}}}}"#
    );
    noports::runtime::block_on(client.notify(
        &AtSign::parse(DEVICE).unwrap(),
        "relay_latency_request.ldev.sshnp",
        &request,
        opts(),
    ))
    .unwrap();
    let answer = noports::runtime::block_on(noports::runtime::timeout(
        Duration::from_secs(30),
        answers.next(),
    ))
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("no relay latency answer\n{}", daemon.output()));
    assert_eq!(answer.from.to_string(), DEVICE);
    assert_eq!(
        answer.value.as_deref(),
        Some(r#"{"@rv_local":-1,"@rv_noport":-1}"#)
    );
}

fn a_clear_sshpublickey_from_a_manager_installs_nothing(stack: &Stack) {
    let ak = stack.dir.join("ak-test");
    std::fs::write(&ak, "").unwrap();
    let mut c = stack.command("sshnpd");
    c.arg("-s").arg("--authorized-keys").arg(&ak);
    let daemon = stack.start_daemon_with(c, "pkdev", CLIENT, "127.0.0.1:22");

    let forged = ed25519_line(0xf0, "forged@atserver");
    let genuine = ed25519_line(0x6e, "genuine@client");
    let mut raw = raw_login(stack, CLIENT);
    clear_notify(
        &mut raw,
        CLIENT,
        DEVICE,
        "sshpublickey.pkdev.sshnp",
        &forged,
    );
    daemon
        .wait_for("sshpublickey not encrypted", Duration::from_secs(30))
        .unwrap();

    // The same verb, encrypted by the manager, is installed: the refusal above is about
    // encryption alone.
    let client = connect(stack, CLIENT);
    noports::runtime::block_on(client.notify(
        &AtSign::parse(DEVICE).unwrap(),
        "sshpublickey.pkdev.sshnp",
        &genuine,
        opts(),
    ))
    .unwrap();
    daemon
        .wait_for(
            "sshpublickey from @demo_client: added",
            Duration::from_secs(30),
        )
        .unwrap();
    let text = std::fs::read_to_string(&ak).unwrap();
    let blob = |line: &str| line.split(' ').nth(1).unwrap().to_string();
    assert!(text.contains(&blob(&genuine)), "{text}");
    assert!(
        !text.contains(&blob(&forged)),
        "a clear key was installed:\n{text}"
    );
    assert_eq!(daemon.count("sshpublickey from"), 1, "{}", daemon.output());
}

/// The reply an official-looking daemon gives to a feature check, with `features` on.
fn ping_reply(device: &str, features: &[&str], allowed: &str) -> String {
    let mut f = String::new();
    for (i, name) in features.iter().enumerate() {
        if i > 0 {
            f.push(',');
        }
        f.push_str(&format!("\"{name}\":true"));
    }
    format!(
        "{{\"devicename\":\"{device}\",\"version\":\"5.15.0\",\"corePackageVersion\":\"5.15.0\",\
         \"supportedFeatures\":{{{f}}},\"allowedServices\":[\"{allowed}\"]}}"
    )
}

const OFFICIAL_FEATURES: &[&str] = &[
    "srAuth",
    "srE2ee",
    "acceptsPublicKeys",
    "supportsPortChoice",
    "adjustableTimeout",
];

fn a_forged_or_altered_feature_check_reply_does_not_downgrade_a_capable_pair(stack: &Stack) {
    let service = start_plus_one_service();
    let target = format!("127.0.0.1:{service}");
    let daemon = stack.start_daemon("fdev", CLIENT, &target);

    // The forger writes under the device's name: it sees the client's ping first, because the
    // real daemon is stopped until the forged replies are delivered.
    let forger = connect(stack, DEVICE);
    let mut pings =
        noports::runtime::block_on(forger.monitor("ping\\.fdev\\.sshnp", MonitorStart::Live))
            .unwrap();
    let mut raw = raw_login(stack, DEVICE);
    signal(daemon.pid(), "-STOP");
    let npt = stack.npt(CLIENT, "fdev", "127.0.0.1", service, &["-v"]);
    let ping = noports::runtime::block_on(async {
        noports::runtime::timeout(Duration::from_secs(30), pings.next()).await
    });
    let ping = match ping {
        Ok(Some(n)) => n,
        other => {
            signal(daemon.pid(), "-CONT");
            panic!("no ping seen: {:?}\n{}", other.is_ok(), npt.output());
        }
    };
    assert_eq!(ping.from.to_string(), CLIENT);
    let mut altered = OFFICIAL_FEATURES.to_vec();
    altered.push("npsX"); // what one flipped byte of "nps1" in the AES-CTR reply gives
    clear_notify(
        &mut raw,
        DEVICE,
        CLIENT,
        "heartbeat.fdev.sshnp",
        &ping_reply("fdev", OFFICIAL_FEATURES, &target),
    );
    noports::runtime::block_on(forger.notify(
        &AtSign::parse(CLIENT).unwrap(),
        "heartbeat.fdev.sshnp",
        &ping_reply("fdev", &altered, &target),
        opts(),
    ))
    .unwrap();
    signal(daemon.pid(), "-CONT");

    let port = npt_port(&npt).unwrap_or_else(|e| panic!("{e}\n{}", npt.output()));
    transfer_and_verify(port, 64 * 1024).unwrap();
    let out = npt.output();
    assert!(
        out.contains("heartbeat.fdev.sshnp") && out.contains("not encrypted"),
        "the clear reply was not refused:\n{out}"
    );
    assert!(
        out.contains("altered on the way"),
        "the altered reply was not the one taken, or not reported:\n{out}"
    );
    daemon
        .wait_for("(suite nps1", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the session was downgraded: {e}\n{}", daemon.output()));
    assert!(
        !out.contains("without binding"),
        "the session's keys are not bound:\n{out}"
    );
    assert!(
        !out.contains("official suite"),
        "the client fell back:\n{out}"
    );
}

/// How a device double answers npt requests.
#[derive(Clone, Copy, PartialEq)]
enum Double {
    /// Like an official daemon: the official suite (the feature check claiming `nps1` or not).
    Official { claim_nps1: bool },
    /// nps1, with a signed binding for another target than the one requested.
    BoundElsewhere,
}

/// A device double that answers the feature check, then npt requests with a signed answer as
/// `mode` says. It never connects to the relay; the clients' checks happen before that.
fn start_double(stack: &Stack, device: &str, mode: Double) {
    let client = connect(stack, DEVICE);
    let device = device.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        noports::runtime::block_on(async move {
            let mut monitor = client
                .monitor(&format!("{device}\\.sshnp@"), MonitorStart::Live)
                .await
                .unwrap();
            let _ = ready_tx.send(());
            let mut features = OFFICIAL_FEATURES.to_vec();
            if mode != (Double::Official { claim_nps1: false }) {
                features.push("nps1");
            }
            while let Some(n) = monitor.next().await {
                let key = n.key_name().to_string();
                let Some(value) = n.value.clone() else {
                    continue;
                };
                if key.starts_with("ping.") {
                    let reply = ping_reply(&device, &features, "127.0.0.1:1");
                    let _ = client
                        .notify(
                            &n.from,
                            &format!("heartbeat.{device}.sshnp"),
                            &reply,
                            opts(),
                        )
                        .await;
                } else if key.starts_with("npt_request.") {
                    let env = envelope::parse(&value).unwrap();
                    let req = NptRequest::from_object(&env.payload).unwrap();
                    assert_eq!(
                        req.suite.as_deref(),
                        Some("nps1"),
                        "auto and nps1 offer nps1"
                    );
                    let pk = RsaPublicKey::from_spki_b64(&req.client_ephemeral_pk).unwrap();
                    let wrap =
                        |b: &[u8]| b64::encode(&pk.encrypt(b64::encode(b).as_bytes()).unwrap());
                    let mut resp = SessionResponse {
                        session_id: req.session_id.clone(),
                        session_aes_key: Some(wrap(&[7u8; 32])),
                        session_iv: Some(wrap(&[9u8; 16])),
                        ephemeral_private_key: None,
                        suite: None,
                        daemon_suite_pk: None,
                        suite_aead: None,
                        suite_binding: None,
                    };
                    if mode == Double::BoundElsewhere {
                        assert_eq!(req.suite_binding.as_deref(), Some("v1"));
                        let secret = EphemeralSecret::generate().unwrap();
                        resp.suite = Some("nps1".into());
                        resp.daemon_suite_pk = Some(b64::encode(&secret.public_bytes()));
                        resp.suite_binding = Some(suite::binding(
                            n.from.as_str(),
                            DEVICE,
                            &format!("127.0.0.1:{}", req.requested_port + 1),
                        ));
                    }
                    let signed =
                        envelope::sign(&resp.to_object(), &client.keys().encrypt_private).unwrap();
                    let _ = client
                        .notify(
                            &n.from,
                            &format!("{}.{device}.sshnp", req.session_id),
                            &signed,
                            opts(),
                        )
                        .await;
                }
            }
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
}

fn an_official_suite_answer_is_a_warning_in_auto_and_fatal_for_suite_nps1(stack: &Stack) {
    start_double(stack, "odev", Double::Official { claim_nps1: false });
    let mut auto = stack.npt(CLIENT, "odev", "127.0.0.1", 1, &["-v"]);
    auto.wait_for("answered with the official suite", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", auto.output()));
    let line = auto
        .output()
        .lines()
        .find(|l| l.contains("answered with the official suite"))
        .unwrap()
        .to_string();
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("--suite official"),
        "the warning names the fix: {line}"
    );
    auto.terminate();

    // A double whose feature check claims nps1 but whose signed answer has none.
    start_double(stack, "cdev", Double::Official { claim_nps1: true });
    let mut strict = stack.npt(CLIENT, "cdev", "127.0.0.1", 1, &["-v", "--suite", "nps1"]);
    let status = strict.wait_exit(Duration::from_secs(60));
    let out = strict.output();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(
        out.contains("answered without the nps1 data-plane suite"),
        "{out}"
    );
    assert!(!out.contains("npt is listening"), "{out}");

    // A signed nps1 answer bound to another target (or client, or device) is refused before
    // any key is used.
    start_double(stack, "bdev", Double::BoundElsewhere);
    let mut bound = stack.npt(CLIENT, "bdev", "127.0.0.1", 1, &["-v"]);
    let status = bound.wait_exit(Duration::from_secs(60));
    let out = bound.output();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(
        out.contains("signed answer is bound to \"v1 @demo_client @demo_device 127.0.0.1:2\""),
        "{out}"
    );
}
