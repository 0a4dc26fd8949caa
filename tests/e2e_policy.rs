//! End to end: the policy service (npp_file, npp_atserver) answering a real `sshnpd -p` over
//! loopback, with real npt clients and a real TCP service (noports.md §6.3, §9.8).
#![cfg(feature = "policy")]
#[path = "common/atserver.rs"]
mod atserver;
#[path = "common/stack.rs"]
mod stack;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stack::*;

const POLICY: &str = "@demo_policy";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// `sshnpd` for DEVICE asking POLICY, with no managers and no local permit-open limit.
fn start_policy_daemon(stack: &Stack, device: &str, group: &str) -> Proc {
    let mut c = stack.command("sshnpd");
    c.args([
        "-a",
        DEVICE,
        "-p",
        POLICY,
        "-d",
        device,
        "--device-group",
        group,
    ]);
    c.args(["--root-domain", &stack.root, "-v"]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let p = Proc::spawn("sshnpd", c);
    p.wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    p
}

/// A policy applet (`npp_file` / `npp_atserver`) as POLICY with `extra` arguments.
fn policy_command(stack: &Stack, applet: &str, extra: &[&str]) -> Command {
    let mut c = stack.command(applet);
    c.args(extra);
    c.args(["-a", POLICY, "--root-domain", &stack.root]);
    c.arg("-k").arg(stack.keys(POLICY));
    c
}

fn start_service(stack: &Stack, applet: &str, extra: &[&str]) -> Proc {
    let p = Proc::spawn(applet, policy_command(stack, applet, extra));
    p.wait_for("listening for requests", Duration::from_secs(30))
        .unwrap();
    p
}

/// One group: `users` may reach `device` at DEVICE through `permits`.
fn policy_yaml(users: &[&str], device: &str, permits: &[String]) -> String {
    let users: String = users.iter().map(|u| format!("      - \"{u}\"\n")).collect();
    let permits: String = permits
        .iter()
        .map(|p| format!("          - \"{p}\"\n"))
        .collect();
    format!(
        "# test policy\nuserGroups:\n  \"ops\":\n    userAtSigns:\n{users}    permissions:\n      \
         daemonAtSigns:\n        - \"{DEVICE}\"\n      deviceNames:\n        \"{device}\":\n{permits}"
    )
}

/// npt from `from` must fail (the daemon never answers a refused client).
fn npt_refused(stack: &Stack, from: &str, device: &str, port: u16) {
    let mut npt = stack.npt(
        from,
        device,
        "127.0.0.1",
        port,
        &["-T", "3s", "--daemon-ping-timeout", "5"],
    );
    let status = npt
        .wait_exit(Duration::from_secs(60))
        .expect("npt must give up, not hang");
    assert!(!status.success(), "{from} got through:\n{}", npt.output());
}

fn npt_admitted(stack: &Stack, from: &str, device: &str, port: u16) {
    let npt = stack.npt(from, device, "127.0.0.1", port, &["-T", "3s"]);
    let local = npt_port(&npt).unwrap_or_else(|e| panic!("{from}: {e}"));
    transfer_and_verify(local, 256 * 1024).unwrap();
}

/// Writes `text` over `path` in place (same inode) and puts the old modification time back,
/// so only a SIGHUP can tell the service that the file changed.
fn rewrite_keeping_mtime(path: &Path, text: &str) {
    use std::io::Write;
    let old = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.set_modified(old).unwrap();
}

#[test]
fn npp_file_admits_refuses_follows_changes_and_its_absence_refuses_all() {
    let stack = Stack::start(
        bin(),
        "e2e-policy-file",
        &[POLICY, "@stranger", "@newcomer", "@late_one", "@after"],
    );
    let allowed = start_plus_one_service();
    let other = start_plus_one_service();
    let file: PathBuf = stack.dir.join("policy.yaml");
    std::fs::write(
        &file,
        policy_yaml(&[CLIENT], "dev1", &[format!("127.0.0.1:{allowed}")]),
    )
    .unwrap();
    let mut npp = start_service(&stack, "npp_file", &["--yaml", file.to_str().unwrap()]);
    npp.wait_for("loaded: 1 user groups", Duration::from_secs(1))
        .unwrap();
    let daemon = start_policy_daemon(&stack, "dev1", "__none__");
    npp.wait_for(
        &format!("heartbeat from daemon {DEVICE} device dev1"),
        Duration::from_secs(20),
    )
    .unwrap();

    // Allowed client, permitted host:port: through, and the decision is one line.
    npt_admitted(&stack, CLIENT, "dev1", allowed);
    npp.wait_for(
        &format!(
            "decision client={CLIENT} daemon={DEVICE} device=dev1 deviceGroup=__none__ \
             result=allowed permitOpen=[127.0.0.1:{allowed}] reason=\"{CLIENT} has permission \
             for device dev1 at daemon {DEVICE}\""
        ),
        Duration::from_secs(5),
    )
    .unwrap();
    // Same client, a port the policy does not list: the official refusal for the client's
    // permit-open list.
    let mut npt = stack.npt(CLIENT, "dev1", "127.0.0.1", other, &["-T", "3s"]);
    assert!(!npt.wait_exit(Duration::from_secs(60)).unwrap().success());
    npt.wait_for(
        &format!("Client is not permitted connections to 127.0.0.1:{other}"),
        Duration::from_secs(1),
    )
    .unwrap();
    // A client the policy does not know: refused with the policy's message.
    npt_refused(&stack, "@stranger", "dev1", allowed);
    daemon
        .wait_for(
            "Notification ignored from @stranger which is not authorized: No permissions for @stranger",
            Duration::from_secs(5),
        )
        .unwrap();
    npp.wait_for("decision client=@stranger", Duration::from_secs(1))
        .unwrap()
        .contains("result=denied")
        .then_some(())
        .expect("the stranger's decision is a denial");

    // A malformed file is refused with its line; the last good policy stays.
    std::fs::write(&file, "userGroups:\n  ops:\n    userAtSign: [\"@x\"]\n").unwrap();
    let bad = npp
        .wait_for("keeping the last good policy", Duration::from_secs(10))
        .unwrap();
    assert!(
        bad.contains("line 3") && bad.contains("userAtSign"),
        "{bad}"
    );

    // A rewritten file is picked up by itself.
    let permit = [format!("127.0.0.1:{allowed}")];
    let p2 = policy_yaml(&["@newcomer", "@after"], "dev1", &permit);
    std::fs::write(&file, &p2).unwrap();
    npp.wait_for("reloaded: 1 user groups", Duration::from_secs(10))
        .unwrap();
    npt_admitted(&stack, "@newcomer", "dev1", allowed);

    // A change only SIGHUP can reveal (same size, inode and mtime): picked up on SIGHUP.
    let p3 = p2.replace("@newcomer", "@late_one");
    assert_eq!(p3.len(), p2.len());
    rewrite_keeping_mtime(&file, &p3);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(npp.count("reloaded:"), 1, "the poll must not have seen it");
    let hup = Command::new("kill")
        .args(["-HUP", &npp.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    npp.wait_for("SIGHUP: re-reading", Duration::from_secs(5))
        .unwrap();
    for _ in 0..50 {
        if npp.count("reloaded:") == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(npp.count("reloaded:"), 2, "{}", npp.output());
    npt_admitted(&stack, "@late_one", "dev1", allowed);

    // The policy service is gone: a client it would allow is refused after the daemon's 10 s
    // deadline (not configurable: noports.md §6.3), with the official message.
    npp.terminate();
    npt_refused(&stack, "@after", "dev1", allowed);
    daemon
        .wait_for(
            "Notification ignored from @after which is not authorized: Timed out waiting for authorizer response",
            Duration::from_secs(30),
        )
        .unwrap();
}

#[test]
fn npp_file_refuses_a_malformed_file_at_start_naming_the_line() {
    let stack = Stack::start(bin(), "e2e-policy-bad", &[POLICY]);
    let file = stack.dir.join("bad.yaml");
    std::fs::write(
        &file,
        "userGroups:\n  ops:\n    userAtSigns:\n      - \"@a\"\n    permissions:\n      \
         deviceNames:\n        box:\n          - \"*.*\"\n",
    )
    .unwrap();
    let out = policy_command(&stack, "npp_file", &["--yaml", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 8") && err.contains("\"*.*\" is not host:port"),
        "{err}"
    );
}

fn admin(stack: &Stack, cmd: &str, extra: &[&str]) -> String {
    let mut c = stack.command("npp_atserver");
    c.arg(cmd).args(extra);
    c.args(["-a", POLICY, "--root-domain", &stack.root]);
    c.arg("-k").arg(stack.keys(POLICY));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "npp_atserver {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn npp_atserver_admits_by_device_group_and_follows_group_updates() {
    let stack = Stack::start(bin(), "e2e-policy-atserver", &[POLICY, "@newcomer"]);
    let allowed = start_plus_one_service();
    let other = start_plus_one_service();
    let mut npp = start_service(&stack, "npp_atserver", &["--daemon-atsigns", DEVICE]);
    npp.wait_for("Load complete: 0 groups", Duration::from_secs(1))
        .unwrap();
    let _daemon = start_policy_daemon(&stack, "dev7", "lab");
    npp.wait_for(
        &format!("heartbeat from daemon {DEVICE} device dev7"),
        Duration::from_secs(20),
    )
    .unwrap();

    // import: a YAML group granting the device group `lab`.
    let file = stack.dir.join("groups.yaml");
    std::fs::write(
        &file,
        format!(
            "userGroups:\n  ops:\n    userAtSigns: [\"{CLIENT}\"]\n    permissions:\n      \
             daemonAtSigns: [\"{DEVICE}\"]\n      deviceGroupNames:\n        lab: \
             [\"127.0.0.1:{allowed}\"]\n"
        ),
    )
    .unwrap();
    let out = admin(&stack, "import", &["--yaml", file.to_str().unwrap()]);
    assert!(out.contains("group 1 (ops) written"), "{out}");
    npp.wait_for("group 1 (ops) updated", Duration::from_secs(10))
        .unwrap();
    npt_admitted(&stack, CLIENT, "dev7", allowed);
    npp.wait_for(
        &format!("reason=\"{CLIENT} has permission for device dev7 and/or device group lab"),
        Duration::from_secs(5),
    )
    .unwrap();
    let mut npt = stack.npt(CLIENT, "dev7", "127.0.0.1", other, &["-T", "3s"]);
    assert!(!npt.wait_exit(Duration::from_secs(60)).unwrap().success());
    npt.wait_for(
        &format!("Client is not permitted connections to 127.0.0.1:{other}"),
        Duration::from_secs(1),
    )
    .unwrap();

    // set-group: a second group by device name, followed live.
    let json = format!(
        "{{\"name\":\"late\",\"description\":\"\",\"userAtSigns\":[\"@newcomer\"],\
         \"daemonAtSigns\":[\"{DEVICE}\"],\"devices\":[{{\"name\":\"dev7\",\"permitOpens\":\
         [\"127.0.0.1:{allowed}\"]}}],\"deviceGroups\":[]}}"
    );
    let out = admin(&stack, "set-group", &["--json", &json]);
    assert!(out.contains("group 2 (late) written"), "{out}");
    npp.wait_for("group 2 (late) updated", Duration::from_secs(10))
        .unwrap();
    npt_admitted(&stack, "@newcomer", "dev7", allowed);

    // The records persist (encrypted self keys) and are read back by a restarted service.
    let listed = admin(&stack, "list", &[]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains("\"name\":\"late\""), "{listed}");
    // The heartbeat of a daemon named by --daemon-atsigns is kept as a device record.
    let devices = admin(&stack, "devices", &[]);
    assert!(
        devices.starts_with("dev7 {") && devices.contains("\"devicename\":\"dev7\""),
        "{devices}"
    );
    npp.terminate();
    let mut npp = start_service(&stack, "npp_atserver", &[]);
    npp.wait_for("Load complete: 2 groups", Duration::from_secs(1))
        .unwrap();
    let out = admin(&stack, "delete-group", &["--id", "2"]);
    assert!(out.contains("deleted group 2"), "{out}");
    npp.wait_for("group 2 deleted", Duration::from_secs(10))
        .unwrap();
    assert_eq!(admin(&stack, "list", &[]).lines().count(), 1);
    npp.terminate();
}

/// An authenticated raw atProtocol connection as `atsign` (through the stack's directory).
fn raw_login(stack: &Stack, atsign: &str) -> atserver::Client {
    let mut root = atserver::Client::connect(&stack.root, &stack.ca);
    assert_eq!(root.read_exact_str(1), "@");
    let reply = root.cmd_raw(atsign.trim_start_matches('@'));
    let addr = reply.trim_end_matches('@').trim().to_string();
    let keys = noports::at::keys::AtKeys::load(&stack.keys(atsign)).unwrap();
    let mut c = atserver::Client::connect(&addr, &stack.ca);
    assert_eq!(c.read_exact_str(1), "@");
    assert_eq!(c.pkam(atsign, &keys, true), "data:success");
    c
}

/// A request notification sent in clear text (the service reads `isEncrypted:false` values
/// as they are), so the test controls every byte of it.
fn send_request(c: &mut atserver::Client, key_id: i64, body: &str) {
    let reply = c.cmd(&format!(
        "notify:update:messageType:key:ttln:30000:isEncrypted:false:{POLICY}:request.{key_id}.auth_checks.__rpcs.sshnp{DEVICE}:{body}"
    ));
    assert!(reply.starts_with("data:"), "{reply}");
}

fn request_body(id: i64, daemon: &str) -> String {
    format!(
        "{{\"reqId\":{id},\"payload\":{{\"daemonAtsign\":\"{daemon}\",\"daemonDeviceName\":\"dev1\",\
         \"daemonDeviceGroupName\":\"__none__\",\"clientAtsign\":\"{CLIENT}\"}}}}"
    )
}

#[test]
fn rpc_answers_ack_then_success_once_and_nack_for_unreadable_requests() {
    let stack = Stack::start(bin(), "e2e-policy-rpc", &[POLICY]);
    let file = stack.dir.join("policy.yaml");
    std::fs::write(
        &file,
        policy_yaml(&[CLIENT], "dev1", &["localhost:22".into()]),
    )
    .unwrap();
    let npp = start_service(&stack, "npp_file", &["--yaml", file.to_str().unwrap()]);
    let mut mon = raw_login(&stack, DEVICE);
    mon.send(r"monitor auth_checks\.__rpcs\.sshnp@");
    std::thread::sleep(Duration::from_millis(300));
    let mut c = raw_login(&stack, DEVICE);

    // The same request twice (a sender's retry): one ack, then one success.
    let id = 1_700_000_000_000_001;
    send_request(&mut c, id, &request_body(id, DEVICE));
    send_request(&mut c, id, &request_body(id, DEVICE));
    let wait = Duration::from_secs(15);
    mon.wait_for(
        &format!("{DEVICE}:ack.{id}.auth_checks.__rpcs.sshnp{POLICY}"),
        wait,
    )
    .expect("an ack first");
    mon.wait_for(
        &format!("{DEVICE}:success.{id}.auth_checks.__rpcs.sshnp{POLICY}"),
        wait,
    )
    .expect("then a success");
    assert!(
        mon.wait_for(&format!(".{id}.auth_checks"), Duration::from_secs(3))
            .is_none(),
        "a duplicate request must not be answered again"
    );
    assert_eq!(npp.count(&format!("decision client={CLIENT}")), 1);
    npp.wait_for(
        &format!("duplicate request {id} from {DEVICE}"),
        Duration::from_secs(1),
    )
    .unwrap();

    // The key's id and the body's disagree: nack.
    let id2 = id + 1;
    send_request(&mut c, id2, &request_body(id2 + 1, DEVICE));
    mon.wait_for(&format!("{DEVICE}:nack.{id2}.auth_checks"), wait)
        .expect("a nack for a mismatched reqId");
    // Not JSON: nack.
    let id3 = id + 3;
    send_request(&mut c, id3, "not json");
    mon.wait_for(&format!("{DEVICE}:nack.{id3}.auth_checks"), wait)
        .expect("a nack for an unreadable request");
    // A daemon asking about another daemon gets a denial, whatever the policy says.
    let id4 = id + 4;
    send_request(&mut c, id4, &request_body(id4, "@someone_else"));
    mon.wait_for(&format!("{DEVICE}:success.{id4}.auth_checks"), wait)
        .expect("an answer");
    npp.wait_for(
        &format!("does not match the requesting atSign {DEVICE}"),
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(npp.count("result=allowed"), 1, "{}", npp.output());
}

/// Issue 23 item 4: the service remembered every request id (4096, 120 s) before it checked the
/// sender, so 4,200 requests from an atSign the policy does not name filled the memory and every
/// daemon's request was dropped ("too many requests in flight") for two minutes. Now the
/// sender is checked first: the stranger is counted, not answered and not remembered, and a
/// named daemon asking in the middle of the flood is answered promptly.
#[test]
fn a_strangers_flood_neither_fills_the_memory_nor_delays_a_named_daemon() {
    let stack = Stack::start(bin(), "e2e-policy-flood", &[POLICY, "@stranger"]);
    let file = stack.dir.join("policy.yaml");
    std::fs::write(
        &file,
        policy_yaml(&[CLIENT], "dev1", &["localhost:22".into()]),
    )
    .unwrap();
    let npp = start_service(&stack, "npp_file", &["--yaml", file.to_str().unwrap()]);
    let mut stranger_mon = raw_login(&stack, "@stranger");
    stranger_mon.send(r"monitor auth_checks\.__rpcs\.sshnp@");
    let mut mon = raw_login(&stack, DEVICE);
    mon.send(r"monitor auth_checks\.__rpcs\.sshnp@");
    std::thread::sleep(Duration::from_millis(300));

    let (sent, flooded) = std::sync::mpsc::channel();
    let mut flooder = raw_login(&stack, "@stranger");
    let flood = std::thread::spawn(move || {
        let send = |c: &mut atserver::Client, id: i64| {
            let reply = c.cmd(&format!(
                "notify:update:messageType:key:ttln:30000:isEncrypted:false:{POLICY}:request.{id}.auth_checks.__rpcs.sshnp@stranger:{}",
                request_body(id, "@stranger")
            ));
            assert!(reply.starts_with("data:"), "{reply}");
        };
        let base = 1_800_000_000_000_000;
        for i in 0..4_200 {
            send(&mut flooder, base + i);
        }
        sent.send(()).unwrap();
        // And it goes on while the daemon asks.
        for i in 4_200..5_200 {
            send(&mut flooder, base + i);
        }
    });
    flooded.recv_timeout(Duration::from_secs(120)).unwrap();

    let mut c = raw_login(&stack, DEVICE);
    let id = 1_700_000_000_000_042;
    let started = std::time::Instant::now();
    send_request(&mut c, id, &request_body(id, DEVICE));
    mon.wait_for(
        &format!("{DEVICE}:success.{id}.auth_checks.__rpcs.sshnp{POLICY}"),
        Duration::from_secs(20),
    )
    .expect("the named daemon's request is answered during the flood");
    let took = started.elapsed();
    flood.join().unwrap();
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(
        stranger_mon
            .wait_for(".auth_checks.__rpcs.sshnp", Duration::from_secs(2))
            .is_none(),
        "the stranger is not answered"
    );
    assert_eq!(npp.count("too many requests in flight"), 0);
    assert_eq!(npp.count("decision client="), 1, "{}", npp.output());
    let logged = npp.count("from atSigns no group's daemonAtSigns");
    assert!(
        (1..=3).contains(&logged),
        "{logged} lines for 5,200 requests"
    );
}
