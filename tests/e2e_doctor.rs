//! `sshnpd doctor`: every step passes on a good set-up, and each broken step is named with its
//! fix, the exit status being the number of the first failing step.
#[path = "common/stack.rs"]
mod stack;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// A listener on 127.0.0.1 that greets every connection with `greeting`; returns its port.
fn greeter(greeting: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(greeting.as_bytes());
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn doctor(stack: &Stack, atsign: &str, keys: &Path, extra: &[&str]) -> (i32, String) {
    let mut c: Command = stack.command("sshnpd");
    c.arg("doctor")
        .args(["-a", atsign, "-m", CLIENT, "-d", "doc"])
        .arg("-k")
        .arg(keys)
        .args(extra);
    let out: Output = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
}

#[test]
fn doctor_passes_a_good_set_up_and_names_each_broken_step() {
    let stack = Stack::start(bin(), "doctor", &[]);
    let root = stack.root.clone();
    let sshd = greeter("SSH-2.0-FakeSSH_1.0\r\n");
    let sshd_s = sshd.to_string();
    let good = [
        "--root-domain",
        &root,
        "--local-sshd-port",
        &sshd_s,
        "--relay",
        RELAY,
    ];
    let keys = stack.keys(DEVICE);

    // All good.
    let (code, out) = doctor(&stack, DEVICE, &keys, &good);
    assert_eq!(code, 0, "{out}");
    for (n, what) in [
        (1, "key file"),
        (2, "atDirectory"),
        (3, "TLS trust"),
        (4, "atServer of"),
        (5, "PKAM authentication"),
        (6, "enrollment"),
        (7, "clock"),
        (8, "monitor receiving"),
        (9, "relay"),
        (10, "sshd on port"),
        (11, "permit-open"),
    ] {
        line(&out, &format!("{n} ok   {what}"));
    }
    assert!(line(&out, "10 ok").contains("SSH-2.0-FakeSSH_1.0"), "{out}");
    line(&out, "12 skip policy service");
    assert!(out.contains("all checks passed"));

    // 1: key file missing, then readable by others.
    let missing = stack.dir.join("nope.atKeys");
    let (code, out) = doctor(&stack, DEVICE, &missing, &good);
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "1 FAIL key file").contains("nope.atKeys"));
    assert!(out.contains("fix: enroll this device"));
    let loose = stack.dir.join("loose.atKeys");
    std::fs::copy(&keys, &loose).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = doctor(&stack, DEVICE, &loose, &good);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("fix: chmod 600 {}", loose.display())),
        "{out}"
    );

    // 2: nothing at the atDirectory address.
    let dead = format!("127.0.0.1:{}", free_port());
    let (code, out) = doctor(&stack, DEVICE, &keys, &["--root-domain", &dead]);
    assert_eq!(code, 2, "{out}");
    line(&out, "2 FAIL atDirectory");
    line(&out, "5 skip PKAM");

    // 3: TLS not trusted (no NOPORTS_CA_FILE for a self-hosted atServer).
    let mut c = stack.command("sshnpd");
    c.env_remove("NOPORTS_CA_FILE")
        .args(["doctor", "-a", DEVICE, "-m", CLIENT, "-k"])
        .arg(&keys)
        .args(good);
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        line(&text, "3 FAIL TLS trust").contains("UnknownIssuer"),
        "{text}"
    );
    assert!(text.contains("set NOPORTS_CA_FILE"), "{text}");

    // 4: an atSign the atDirectory does not know.
    let (code, out) = doctor(&stack, "@not_registered", &keys, &good);
    assert_eq!(code, 4, "{out}");
    line(&out, "4 FAIL atServer of @not_registered");

    // 5: keys of another atSign.
    let (code, out) = doctor(&stack, DEVICE, &stack.keys(CLIENT), &good);
    assert_eq!(code, 5, "{out}");
    line(&out, "5 FAIL PKAM authentication");

    // 9: an unknown relay atSign.
    let bad_relay = [
        "--root-domain",
        &root,
        "--local-sshd-port",
        &sshd_s,
        "--relay",
        "@no_relay",
    ];
    let (code, out) = doctor(&stack, DEVICE, &keys, &bad_relay);
    assert_eq!(code, 9, "{out}");
    line(&out, "9 FAIL relay: @no_relay");

    // 10: nothing on the sshd port; something that is not ssh.
    let closed = free_port().to_string();
    let (code, out) = doctor(
        &stack,
        DEVICE,
        &keys,
        &["--root-domain", &root, "--local-sshd-port", &closed],
    );
    assert_eq!(code, 10, "{out}");
    assert!(
        line(&out, "10 FAIL sshd on port").contains("nothing listens"),
        "{out}"
    );
    let http = greeter("HTTP/1.1 400 Bad Request\r\n\r\n").to_string();
    let (code, out) = doctor(
        &stack,
        DEVICE,
        &keys,
        &["--root-domain", &root, "--local-sshd-port", &http],
    );
    assert_eq!(code, 10, "{out}");
    assert!(
        line(&out, "10 FAIL").contains("not as an ssh server"),
        "{out}"
    );

    // 12: a policy atSign with no policy service behind it (10 s deadline).
    let mut with_policy: Vec<&str> = good.to_vec();
    with_policy.extend(["-p", RELAY]);
    let (code, out) = doctor(&stack, DEVICE, &keys, &with_policy);
    assert_eq!(code, 12, "{out}");
    assert!(
        line(&out, "12 FAIL policy service").contains("did not answer"),
        "{out}"
    );
}
