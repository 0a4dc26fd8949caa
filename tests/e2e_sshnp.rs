//! sshnp end to end with a real OpenSSH sshd and ssh: atserver + srvd + sshnpd + sshnp -x.
#[path = "common/sshd.rs"]
mod sshd;
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sshd::*;
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

#[test]
fn sshnp_runs_a_real_ssh_session_through_the_relay() {
    let stack = Stack::start(bin(), "e2e-ssh", &[]);
    let user_key = stack.dir.join("id_ed25519");
    keygen(&user_key);
    let (_sshd, sshd_port) = start_sshd(&stack.dir, &stack.dir.join("id_ed25519.pub"));

    let mut c = stack.command("sshnpd");
    c.args([
        "-a",
        DEVICE,
        "-m",
        CLIENT,
        "-d",
        "sshdev",
        "--root-domain",
        &stack.root,
        "-v",
    ]);
    c.args([
        "--local-sshd-port",
        &sshd_port.to_string(),
        "--permit-open",
        &format!("localhost:{sshd_port}"),
    ]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let daemon = Proc::spawn("sshnpd", c);
    daemon
        .wait_for("monitor started", Duration::from_secs(30))
        .unwrap();

    let user = current_user();
    let mut c = stack.command("sshnp");
    c.args([
        "-f",
        CLIENT,
        "-t",
        DEVICE,
        "-r",
        RELAY,
        "-d",
        "sshdev",
        "-u",
        &user,
        "-x",
        "--root-domain",
        &stack.root,
    ]);
    c.arg("-i").arg(&user_key).arg("-k").arg(stack.keys(CLIENT));
    let mut sshnp = Proc::spawn("sshnp", c);
    let status = sshnp
        .wait_exit(Duration::from_secs(60))
        .expect("sshnp -x exits once the tunnel is ready");
    assert!(status.success(), "sshnp failed:\n{}", sshnp.output());
    let line = sshnp.wait_for("ssh -p ", Duration::from_secs(1)).unwrap();
    let mut args: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    assert!(
        args.contains(&format!("{user}@localhost")),
        "command names the user: {line}"
    );
    args.extend(
        [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "ConnectTimeout=20",
        ]
        .map(String::from),
    );
    args.push("-o".into());
    args.push(format!(
        "UserKnownHostsFile={}",
        stack.dir.join("known_hosts").display()
    ));
    args.push("echo hello-through-noports".into());
    let out = Command::new("ssh").args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello-through-noports"),
        "ssh output {stdout:?}, stderr {}\ndaemon:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.output()
    );
    daemon
        .wait_for("ssh session", Duration::from_secs(5))
        .unwrap();
}

#[test]
fn sshnp_refused_when_sshd_port_is_not_permitted() {
    let stack = Stack::start(bin(), "e2e-ssh-deny", &[]);
    let mut c = stack.command("sshnpd");
    c.args([
        "-a",
        DEVICE,
        "-m",
        CLIENT,
        "-d",
        "sshdev2",
        "--root-domain",
        &stack.root,
        "-v",
    ]);
    c.args(["--local-sshd-port", "2222", "--permit-open", "localhost:80"]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let daemon = Proc::spawn("sshnpd", c);
    daemon
        .wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    let mut c = stack.command("sshnp");
    c.args([
        "-f",
        CLIENT,
        "-t",
        DEVICE,
        "-r",
        RELAY,
        "-d",
        "sshdev2",
        "-u",
        "nobody",
        "-x",
        "--root-domain",
        &stack.root,
    ]);
    c.arg("-k").arg(stack.keys(CLIENT));
    let mut sshnp = Proc::spawn("sshnp", c);
    let status = sshnp
        .wait_exit(Duration::from_secs(60))
        .expect("sshnp must exit");
    assert!(!status.success());
    sshnp
        .wait_for(
            "Daemon does not permit connections to localhost:2222",
            Duration::from_secs(1),
        )
        .unwrap();
}
