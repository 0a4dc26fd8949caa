//! What `npt` says and does in the flows a router owner meets: against a daemon that behaves
//! as the official C daemon (csshnpd) does — its feature set without `adjustableTimeout`, its
//! `allowedServices`, and silence when it refuses — with an unknown device or relay, with
//! `--suite nps1 -x`, and a clean session whose logs hold no WARN or ERROR.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use noports::at::{AtClient, AtKeys, AtSign, ClientConfig, MonitorStart, NotifyOptions, RootAddr};
use noports::noports::messages::{Feature, PingResponse};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// A stand-in for csshnpd, in this process: answers pings as the C daemon does (its features,
/// no adjustableTimeout, no deviceGroupName) and stays silent on every session request.
fn start_csshnpd_double(stack: &Stack, device: &str, allowed: &[&str]) {
    let config = ClientConfig {
        atsign: AtSign::parse(DEVICE).unwrap(),
        keys: AtKeys::load(&stack.keys(DEVICE)).unwrap(),
        root: RootAddr::parse(&stack.root).unwrap(),
    };
    let device = device.to_string();
    let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        noports::runtime::block_on(async move {
            let client = AtClient::connect(config).await.unwrap();
            let mut monitor = client
                .monitor(&format!("{device}\\.sshnp@"), MonitorStart::Live)
                .await
                .unwrap();
            let _ = ready_tx.send(());
            let features = Feature::ALL
                .into_iter()
                .filter(|f| *f != Feature::AdjustableTimeout)
                .map(|f| (f.name().to_string(), true))
                .collect::<Vec<_>>();
            while let Some(n) = monitor.next().await {
                if !n.key_name().starts_with("ping.") {
                    continue; // csshnpd: a refused or unwanted request gets no answer
                }
                let reply = PingResponse {
                    device_name: device.clone(),
                    device_group_name: None,
                    version: "0.2.0".into(),
                    core_package_version: "c0.1.0".into(),
                    supported_features: features.clone(),
                    allowed_services: allowed.clone(),
                };
                let opts = NotifyOptions {
                    ttl_ms: Some(10_000),
                    ..Default::default()
                };
                let _ = client
                    .notify(
                        &n.from,
                        &format!("heartbeat.{device}.sshnp"),
                        &reply.to_json(),
                        opts,
                    )
                    .await;
            }
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
}

/// Runs npt to its end; (exit code, output, seconds taken). Each run here ends by npt's own
/// deadlines; `limit` bounds how long that may take.
fn npt_to_end(
    stack: &Stack,
    device: &str,
    port: u16,
    extra: &[&str],
    limit: Duration,
) -> (Option<i32>, String, f64) {
    let started = Instant::now();
    let mut c = stack.command("npt");
    c.args([
        "-f",
        CLIENT,
        "-t",
        DEVICE,
        "-r",
        RELAY,
        "-d",
        device,
        "-h",
        "localhost",
    ])
    .args(["-p", &port.to_string(), "--root-domain", &stack.root])
    .arg("-k")
    .arg(stack.keys(CLIENT))
    .args(extra);
    run_to_end(c, limit, started)
}

fn run_to_end(mut c: Command, limit: Duration, started: Instant) -> (Option<i32>, String, f64) {
    let out = c.stdin(std::process::Stdio::null()).output().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        secs < limit.as_secs_f64(),
        "ran {secs:.1} s, over {limit:?}"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        secs,
    )
}

#[test]
fn against_a_csshnpd_like_daemon_refusals_are_immediate_and_final() {
    let stack = Stack::start(bin(), "e2e-cflows", &[]);
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    start_csshnpd_double(&stack, "cdev", &["localhost:22", "localhost:3389"]);

    // -K without -T: no adjustable timeout needed; a port the daemon does not list fails at
    // once, naming what it allows, and -K does not retry it.
    let (code, out, secs) = npt_to_end(&stack, "cdev", 8080, &["-K"], Duration::from_secs(40));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("does not permit localhost:8080; it permits: localhost:22, localhost:3389"),
        "{out}"
    );
    assert!(
        !out.contains("'timeout'") && !out.contains("will wait 5 seconds and retry"),
        "{out}"
    );
    assert!(secs < 15.0, "took {secs:.1} s");

    // -T asks for what csshnpd lacks: a final error, not retried under -K.
    let (code, out, _) = npt_to_end(
        &stack,
        "cdev",
        22,
        &["-K", "-T", "60s"],
        Duration::from_secs(40),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not support the 'timeout'"), "{out}");
    assert!(!out.contains("will wait 5 seconds and retry"), "{out}");

    // --suite nps1 against a daemon without it: refused, never downgraded.
    let (code, out, _) = npt_to_end(
        &stack,
        "cdev",
        22,
        &["--suite", "nps1"],
        Duration::from_secs(40),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("does not support the nps1 data-plane suite"),
        "{out}"
    );

    // A permitted request that csshnpd then ignores: the timeout says what to check. The
    // feature check (unsigned) decides no suite, so nothing about one is said before the
    // daemon's signed answer, which never comes.
    let (code, out, _) = npt_to_end(&stack, "cdev", 22, &["-v"], Duration::from_secs(60));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("No response from the device daemon @demo_device (cdev)")
            && out.contains("--permit-open"),
        "{out}"
    );
    assert!(!out.contains("official suite"), "{out}");
}

#[test]
fn unknown_device_and_relay_and_detached_nps1_say_what_is_wrong() {
    let stack = Stack::start(bin(), "e2e-cflows2", &[]);
    // --suite nps1 with -x: refused before anything is sent.
    let (code, out, secs) = npt_to_end(
        &stack,
        "nodev",
        22,
        &["--suite", "nps1", "-x"],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--suite nps1 cannot be used with -x"), "{out}");
    assert!(secs < 5.0);

    // No daemon answers for this device name: the message says what to check.
    let (code, out, _) = npt_to_end(
        &stack,
        "nodev",
        22,
        &["--daemon-ping-timeout", "3"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("Daemon feature check timed out: no device named \"nodev\"")
            && out.contains("Check the device name (-d)"),
        "{out}"
    );

    // A device atSign that does not exist is named as such.
    let mut c = stack.command("npt");
    c.args([
        "-f",
        CLIENT,
        "-t",
        "@no_such_device",
        "-r",
        RELAY,
        "-d",
        "xdev",
        "-p",
        "22",
    ])
    .args(["--root-domain", &stack.root, "--daemon-ping-timeout", "2"])
    .arg("-k")
    .arg(stack.keys(CLIENT));
    let (code, out, _) = run_to_end(c, Duration::from_secs(30), Instant::now());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("The device atSign @no_such_device (-t) does not exist"),
        "{out}"
    );

    // A relay atSign that does not exist is named as the relay.
    let d = stack.start_daemon("rdev", CLIENT, "localhost:22");
    let mut c = stack.command("npt");
    c.args([
        "-f",
        CLIENT,
        "-t",
        DEVICE,
        "-r",
        "@no_such_relay",
        "-d",
        "rdev",
        "-p",
        "22",
    ])
    .args(["--root-domain", &stack.root])
    .arg("-k")
    .arg(stack.keys(CLIENT));
    let (code, out, _) = run_to_end(c, Duration::from_secs(60), Instant::now());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("The relay atSign @no_such_relay (-r) does not exist"),
        "{out}"
    );
    drop(d);
}

#[test]
fn missing_ca_says_how_to_trust_a_self_hosted_atserver() {
    let stack = Stack::start(bin(), "e2e-cflows3", &[]);
    let out = Command::new(bin())
        .args([
            "npt", "-f", CLIENT, "-t", DEVICE, "-r", RELAY, "-d", "xdev", "-p", "22",
        ])
        .args(["--root-domain", &stack.root])
        .arg("-k")
        .arg(stack.keys(CLIENT))
        .env_remove("NOPORTS_CA_FILE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("NOPORTS_CA_FILE"), "{text}");
}

/// Lines an operator would see as alarms.
fn alarms(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| {
            ["[WARN", "[ERROR", " WARN ", " ERROR ", "Error :"]
                .iter()
                .any(|m| l.contains(m))
        })
        .collect()
}

#[test]
fn a_clean_session_logs_no_warn_or_error_in_any_applet() {
    let stack = Stack::start(bin(), "e2e-quiet", &[]);
    let service = start_plus_one_service();
    let mut daemon = stack.start_daemon("qdev", CLIENT, &format!("localhost:{service}"));
    let mut npt = stack.npt(CLIENT, "qdev", "localhost", service, &["-v", "-T", "3s"]);
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 256 * 1024).unwrap();
    // The idle timeout ends the session: a normal end.
    let status = npt.wait_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", npt.output());
    // A second session ended by Ctrl-C: not an error either.
    let mut npt2 = stack.npt(CLIENT, "qdev", "localhost", service, &["-v"]);
    let port = npt_port(&npt2).unwrap();
    transfer_and_verify(port, 64 * 1024).unwrap();
    unsafe_sigint(npt2.pid());
    let status = npt2.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", npt2.output());
    std::thread::sleep(Duration::from_secs(2));
    daemon.terminate();
    let srvd = stack.srvd.as_ref().unwrap();
    for (name, out) in [
        ("npt", npt.output()),
        ("npt (Ctrl-C)", npt2.output()),
        ("sshnpd", daemon.output()),
        ("srvd", srvd.output()),
        ("atserver", stack.atserver.output()),
    ] {
        let bad = alarms(&out);
        assert!(
            bad.is_empty(),
            "{name} logged alarms in a clean session:\n{}",
            bad.join("\n")
        );
    }
    assert!(
        daemon.output().contains("INFO"),
        "the daemon logs its normal events at INFO"
    );
}

/// SIGINT, as Ctrl-C in a terminal sends.
fn unsafe_sigint(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

#[test]
fn a_relay_refusal_reaches_the_client_with_its_reason() {
    let mut stack = Stack::start(bin(), "e2e-refuse", &[]);
    // The stack's relay, restarted with an allow-list that leaves the client out.
    if let Some(mut r) = stack.srvd.take() {
        r.terminate();
    }
    let mut c = stack.command("srvd");
    c.args([
        "-a",
        RELAY,
        "-i",
        "127.0.0.1",
        "--root-domain",
        &stack.root,
        "-v",
    ])
    .args(["--allow", DEVICE])
    .arg("-k")
    .arg(stack.keys(RELAY));
    let relay = Proc::spawn("srvd", c);
    relay
        .wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    let _daemon = stack.start_daemon("fdev", CLIENT, "localhost:22");
    let (code, out, secs) = npt_to_end(&stack, "fdev", 22, &["-K"], Duration::from_secs(40));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "The relay @demo_relay (-r) refused the session: @demo_client is not in the allow list"
        ),
        "{out}"
    );
    assert!(
        secs < 15.0,
        "took {secs:.1} s: the refusal must not wait for a timeout"
    );
    assert!(!out.contains("will wait 5 seconds and retry"), "{out}");
}
