//! sshnp's documented flags beyond the basic session (noports.md §7.2, §9.3, §10.1), end to end:
//! `--list-devices`/`--ls` against running and stopped daemons, `--config-file` profiles and
//! `--add-forwards-to-tunnel` through a real OpenSSH sshd, and the refusals of what this client
//! cannot do (`--ssh-client dart`, `--legacy-daemon`, `--no-ac`, bad `--ssh-algorithm`).
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

fn daemon(stack: &Stack, device: &str, extra: &[&str]) -> Proc {
    let mut c = stack.command("sshnpd");
    c.args(["-a", DEVICE, "-m", CLIENT, "-d", device, "--root-domain"])
        .arg(&stack.root)
        .args(["-v", "--permit-open", "localhost:22,localhost:3389"])
        .args(extra);
    c.arg("-k").arg(stack.keys(DEVICE));
    let p = Proc::spawn("sshnpd", c);
    p.wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    p.wait_for(
        &format!("Sharing device info for {device}"),
        Duration::from_secs(30),
    )
    .unwrap();
    p
}

/// `sshnp -f CLIENT <args> --root-domain … -k …`, run to completion (60 s deadline).
fn sshnp(stack: &Stack, args: &[&str]) -> (std::process::ExitStatus, Proc) {
    let mut c = stack.command("sshnp");
    c.args(["-f", CLIENT]).args(args);
    c.args(["--root-domain", &stack.root]);
    c.arg("-k").arg(stack.keys(CLIENT));
    let mut p = Proc::spawn("sshnp", c);
    let status = p
        .wait_exit(Duration::from_secs(60))
        .expect("sshnp exits within 60 s");
    (status, p)
}

/// The line after `header` in `out`, trimmed.
fn lines_after(out: &str, header: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn list_devices_shows_answering_and_silent_devices_with_their_info() {
    let stack = Stack::start(bin(), "e2e-ls", &[]);
    let _live = daemon(&stack, "live1", &[]);
    let mut gone = daemon(&stack, "gone1", &[]);
    gone.terminate();

    // With -t: names as the device calls itself; the stopped one stays listed, inactive.
    let (status, p) = sshnp(&stack, &["--list-devices", "-t", DEVICE]);
    let out = p.output();
    assert!(status.success(), "sshnp --list-devices failed:\n{out}");
    assert!(out.contains("Searching for devices..."), "{out}");
    let active = lines_after(&out, "Active Devices:");
    let inactive = lines_after(&out, "Inactive Devices:");
    assert!(
        active
            .iter()
            .any(|l| l.starts_with("live1 - v") && l.contains("(core v")),
        "live1 is active: {out}"
    );
    assert!(
        active
            .iter()
            .any(|l| l == "- allowedServices: localhost:22 localhost:3389"),
        "its permit-open list is shown: {out}"
    );
    assert!(
        inactive.iter().any(|l| l.starts_with("gone1 - v")),
        "gone1 is inactive: {out}"
    );
    assert!(
        !active.iter().any(|l| l.starts_with("gone1")),
        "a stopped daemon is not active: {out}"
    );

    // Without -t (and with the --ls alias): every device atSign that shares with us, the
    // names qualified by their atSign.
    let (status, p) = sshnp(&stack, &["--ls"]);
    let out = p.output();
    assert!(status.success(), "sshnp --ls failed:\n{out}");
    let active = lines_after(&out, "Active Devices:");
    assert!(
        active
            .iter()
            .any(|l| l.starts_with(&format!("live1{DEVICE} - v"))),
        "live1{DEVICE} is active: {out}"
    );
}

#[test]
fn list_devices_without_devices_says_so() {
    let stack = Stack::start(bin(), "e2e-ls-none", &[]);
    let (status, p) = sshnp(&stack, &["--ls", "-t", DEVICE]);
    assert!(status.success(), "{}", p.output());
    p.wait_for("[X] No devices found", Duration::from_secs(1))
        .unwrap();
    // A hidden daemon (-h) shares nothing, so it is not listed either.
    let mut c = stack.command("sshnpd");
    c.args(["-a", DEVICE, "-m", CLIENT, "-d", "hidden1", "-h", "-v"])
        .args(["--root-domain", &stack.root]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let d = Proc::spawn("sshnpd", c);
    d.wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    let (status, p) = sshnp(&stack, &["--ls", "-t", DEVICE]);
    assert!(status.success(), "{}", p.output());
    assert!(!p.output().contains("hidden1"), "{}", p.output());
}

/// One daemon in front of a private sshd; returns (daemon, sshd, user key path).
fn ssh_stack(tag: &str, device: &str) -> (Stack, Proc, Proc, std::path::PathBuf) {
    let stack = Stack::start(bin(), tag, &[]);
    let user_key = stack.dir.join("id_ed25519");
    keygen(&user_key);
    let (sshd, port) = start_sshd(&stack.dir, &stack.dir.join("id_ed25519.pub"));
    let mut c = stack.command("sshnpd");
    c.args(["-a", DEVICE, "-m", CLIENT, "-d", device, "-v"])
        .args(["--root-domain", &stack.root])
        .args(["--local-sshd-port", &port.to_string()])
        .args(["--permit-open", &format!("localhost:{port}")]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let d = Proc::spawn("sshnpd", c);
    d.wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    (stack, d, sshd, user_key)
}

#[test]
fn config_file_profile_drives_a_real_ssh_session_and_the_command_line_wins() {
    let (stack, daemon, _sshd, key) = ssh_stack("e2e-profile", "prof1");
    let user = current_user();
    let local_port = free_port();
    let profile = stack.dir.join("my_lab.env");
    std::fs::write(
        &profile,
        format!(
            "# written by hand\nTO={DEVICE}\nDEVICE=prof1\nSRVD={RELAY}\nREMOTE_USER_NAME=nobody_here\n\
             LOCAL_PORT={local_port}\nLOCAL_SSH_OPTIONS=-o ServerAliveInterval=11\nUNKNOWN_KEY=x\n"
        ),
    )
    .unwrap();
    let key_arg = key.display().to_string();
    let (status, p) = sshnp(
        &stack,
        &[
            "--config-file",
            &profile.display().to_string(),
            "-u",
            &user,
            "-i",
            &key_arg,
            "--idle-timeout",
            "20",
            "--ssh-algorithm",
            "ssh-rsa",
            "--ssh-client",
            "openssh",
            "-x",
        ],
    );
    assert!(status.success(), "sshnp failed:\n{}", p.output());
    let line = p.wait_for("ssh -p ", Duration::from_secs(1)).unwrap();
    assert!(
        line.starts_with(&format!("ssh -p {local_port} ")),
        "LOCAL_PORT from the profile: {line}"
    );
    assert!(
        line.contains("-o ServerAliveInterval=11"),
        "LOCAL_SSH_OPTIONS from the profile: {line}"
    );
    assert!(
        line.contains(&format!(" {user}@localhost")) && !line.contains("nobody_here"),
        "-u on the command line beats REMOTE_USER_NAME: {line}"
    );
    let (out, err) = ssh_printed(
        &line,
        &stack.dir.join("known_hosts"),
        "echo profile-session-ok",
    );
    assert!(
        out.contains("profile-session-ok"),
        "ssh through the profile's tunnel: {out:?} {err}\ndaemon:\n{}",
        daemon.output()
    );
}

#[test]
fn add_forwards_to_tunnel_keeps_local_ssh_options_out_of_the_ssh_session() {
    let (stack, daemon, _sshd, key) = ssh_stack("e2e-fwd", "fwd1");
    let user = current_user();
    let key_arg = key.display().to_string();
    // An option that would break a non-interactive login if it reached the session's ssh.
    let bad = "-o PreferredAuthentications=password";
    let base = [
        "-t", DEVICE, "-r", RELAY, "-d", "fwd1", "-u", &user, "-i", &key_arg, "-o", bad, "-x",
    ];
    let (status, p) = sshnp(&stack, &base);
    assert!(status.success(), "{}", p.output());
    let plain = p.wait_for("ssh -p ", Duration::from_secs(1)).unwrap();
    assert!(plain.contains(bad), "-o goes to the ssh session: {plain}");
    let (out, _) = ssh_printed(&plain, &stack.dir.join("known_hosts"), "echo reached");
    assert!(
        !out.contains("reached"),
        "with password-only auth in batch mode the session must fail"
    );

    let mut with_flag = base.to_vec();
    with_flag.push("--add-forwards-to-tunnel");
    let (status, p) = sshnp(&stack, &with_flag);
    assert!(status.success(), "{}", p.output());
    let line = p.wait_for("ssh -p ", Duration::from_secs(1)).unwrap();
    assert!(
        !line.contains("PreferredAuthentications"),
        "--add-forwards-to-tunnel leaves -o out of the session: {line}"
    );
    let (out, err) = ssh_printed(&line, &stack.dir.join("known_hosts"), "echo reached");
    assert!(
        out.contains("reached"),
        "{out:?} {err}\ndaemon:\n{}",
        daemon.output()
    );
}

/// Refusals need no network: they happen before any connection.
#[test]
fn send_ssh_public_key_is_refused_at_the_feature_check_by_a_daemon_that_keeps_no_keys() {
    let stack = Stack::start(bin(), "sshnp-no-keys", &[]);
    // Without -s the daemon's ping says acceptsPublicKeys: false, as csshnpd's can.
    let d = daemon(&stack, "nokeys", &[]);
    let key = stack.dir.join("id_test");
    std::fs::write(
        key.with_extension("pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheFeatureCheck test\n",
    )
    .unwrap();
    let key = key.to_str().unwrap();
    let (status, p) = sshnp(
        &stack,
        &["-t", DEVICE, "-r", RELAY, "-d", "nokeys", "-s", "-i", key],
    );
    let out = p.output();
    assert!(!status.success(), "sshnp -s succeeded: {out}");
    assert!(
        out.contains("This device daemon does not accept ssh public keys from the client"),
        "{out}"
    );
    // Refused before the session request: the daemon never saw one.
    std::thread::sleep(Duration::from_millis(500));
    let log = d.output();
    assert!(log.contains("ping from"), "{log}");
    assert!(
        !log.contains("ssh_request received") && !log.contains("sshpublickey"),
        "{log}"
    );
}

#[test]
fn unsupported_choices_are_refused_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--ssh-client", "dart"],
            "--ssh-client dart is not available",
        ),
        (
            &["--ssh-client", "putty"],
            "\"putty\" is not an allowed value for option \"ssh-client\".",
        ),
        (
            &["--ssh-algorithm", "ssh-dss"],
            "\"ssh-dss\" is not an allowed value for option \"ssh-algorithm\".",
        ),
        (&["--legacy-daemon"], "--legacy-daemon is not supported"),
        (&["--no-ac"], "--no-ac / --no-ad are not supported"),
        (&["--no-ad"], "--no-ac / --no-ad are not supported"),
        (&["--no-et"], "--no-et is not supported"),
    ];
    let dir = unique_dir("sshnp-refusals");
    for (args, expect) in cases {
        let out = Command::new(bin())
            .arg("sshnp")
            .args(["-f", "@a", "-t", "@b", "-r", "@c", "-d", "x1"])
            .args(*args)
            .env("HOME", &dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    // Without arguments: the version line first (the documented upgrade check), then the error.
    let out = Command::new(bin()).arg("sshnp").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("Version : "), "{err}");
    assert!(err.contains("Option from is mandatory."), "{err}");
    // A profile's ENCRYPT_RVD_TRAFFIC=false is the same as --no-et; a missing profile is named.
    let profile = dir.join("p.env");
    std::fs::write(&profile, "ENCRYPT_RVD_TRAFFIC=false\n").unwrap();
    for (file, expect) in [
        (profile.clone(), "--no-et is not supported"),
        (dir.join("absent.env"), "cannot read config file"),
    ] {
        let out = Command::new(bin())
            .args(["sshnp", "-f", "@a", "--config-file"])
            .arg(&file)
            .env("HOME", &dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(expect), "{err}");
    }
}
