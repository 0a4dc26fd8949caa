//! Issue 23 item 7: a policy answer is taken only for the question it answers. The daemon's
//! request ids were the time in microseconds and an answer was matched by that id alone, so an
//! answer about another client or another device (two daemons sharing an atSign) could be taken.
//! Here the test plays the policy atSign itself with a real atProtocol client, against a real
//! `sshnpd -p` and a real npt. Its own test binary: the trust anchors (NOPORTS_CA_FILE) are per
//! process.
#![cfg(feature = "policy")]
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use noports::at::{AtClient, AtKeys, AtSign, ClientConfig, MonitorStart, NotifyOptions, RootAddr};
use noports::runtime::{block_on, timeout};
use stack::*;

const POLICY: &str = "@demo_policy";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn answer(id: i64, authorized: bool, echo: &str) -> String {
    format!(
        "{{\"reqId\":{id},\"respType\":\"success\",\"payload\":{{\"authorized\":{authorized},\
         \"message\":\"test policy\",\"permitOpen\":[\"*:*\"]{echo}}},\"message\":null}}"
    )
}

#[test]
fn answers_about_another_client_or_device_are_refused_and_ids_are_unpredictable() {
    let stack = Stack::start(bin(), "e2e-policy-answers", &[POLICY]);
    let service = start_plus_one_service();
    let mut c = stack.command("sshnpd");
    c.args([
        "-a",
        DEVICE,
        "-p",
        POLICY,
        "-d",
        "dev1",
        "--root-domain",
        &stack.root,
        "-v",
    ]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let daemon = Proc::spawn("sshnpd", c);
    daemon
        .wait_for("monitor started", Duration::from_secs(30))
        .unwrap();

    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    let policy = block_on(AtClient::connect(ClientConfig {
        atsign: AtSign::parse(POLICY).unwrap(),
        keys: AtKeys::load(&stack.keys(POLICY)).unwrap(),
        root: RootAddr::parse(&stack.root).unwrap(),
    }))
    .unwrap();
    let mut questions =
        block_on(policy.monitor(r"auth_checks\.__rpcs\.sshnp", MonitorStart::Live)).unwrap();
    let device = AtSign::parse(DEVICE).unwrap();
    let send = |id: i64, body: &str| {
        block_on(policy.notify(
            &device,
            &format!("success.{id}.auth_checks.__rpcs.sshnp"),
            body,
            NotifyOptions {
                ttln_ms: Some(30_000),
                ..Default::default()
            },
        ))
        .unwrap();
    };

    let npt = stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "3s"]);
    let n = block_on(timeout(Duration::from_secs(30), async {
        loop {
            let n = questions.next().await.expect("monitor open");
            if n.key_name().starts_with("request.") {
                return n;
            }
        }
    }))
    .expect("the daemon asks the policy atSign");
    let id: i64 = n
        .key_name()
        .trim_start_matches("request.")
        .trim_end_matches(".auth_checks.__rpcs.sshnp")
        .parse()
        .unwrap();
    let question = n.value.clone().unwrap_or_default();
    assert!(question.contains(&format!("\"reqId\":{id}")), "{question}");
    assert!(question.contains(CLIENT), "{question}");
    // Not the clock: an id a bystander could guess from the time of the request.
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!(
        (id - now_us).abs() > 3_600_000_000,
        "request id {id} is the time ({now_us})"
    );

    // Allowing answers for the right id about another client, another device, another daemon:
    // each refused, none lets the client in.
    let other_client = ",\"clientAtsign\":\"@mallory\",\"daemonAtsign\":\"@demo_device\",\"daemonDeviceName\":\"dev1\"";
    let other_device = format!(",\"clientAtsign\":\"{CLIENT}\",\"daemonAtsign\":\"{DEVICE}\",\"daemonDeviceName\":\"dev2\"");
    let other_daemon = format!(",\"clientAtsign\":\"{CLIENT}\",\"daemonAtsign\":\"@someone\",\"daemonDeviceName\":\"dev1\"");
    send(id, &answer(id, true, other_client));
    daemon
        .wait_for(
            &format!("policy response {id} ignored: it answers for client \"@mallory\""),
            Duration::from_secs(15),
        )
        .unwrap();
    send(id, &answer(id, true, &other_device));
    daemon
        .wait_for("it answers for device \"dev2\"", Duration::from_secs(15))
        .unwrap();
    send(id, &answer(id, true, &other_daemon));
    daemon
        .wait_for(
            "it answers for daemon \"@someone\"",
            Duration::from_secs(15),
        )
        .unwrap();
    // The right question's answer in the official shape (no question repeated) is taken: the
    // forged ones did not end the wait, and the client gets in.
    send(id, &answer(id, true, ""));
    let local = npt_port(&npt).unwrap_or_else(|e| panic!("{e}\n{}", daemon.output()));
    transfer_and_verify(local, 64 * 1024).unwrap();
    assert_eq!(
        daemon.count("ignored: it answers for"),
        3,
        "{}",
        daemon.output()
    );
}
