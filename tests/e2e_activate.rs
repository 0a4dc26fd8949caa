//! at_activate end to end against our atserver: CRAM onboarding, OTP, enrollment with
//! approval and denial, and a daemon that runs on the enrolled (APKAM, namespaced) keys.
#[path = "common/stack.rs"]
mod stack;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn run(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let mut c = stack.command("at_activate");
    c.args(args);
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn otp_enroll_approve_then_the_enrolled_keys_serve_a_session() {
    let stack = Stack::start(bin(), "e2e-enroll", &[]);
    let manage_keys = stack.keys(DEVICE).to_string_lossy().into_owned();
    let root = stack.root.clone();

    let (ok, otp, err) = run(
        &stack,
        &["otp", "-a", DEVICE, "-k", &manage_keys, "-r", &root],
    );
    assert!(ok, "otp failed: {err}");
    let otp = otp.trim().to_string();
    assert!(
        otp.len() >= 6 && otp.chars().all(|c| c.is_ascii_alphanumeric()),
        "otp {otp:?}"
    );

    let new_keys = stack.dir.join("router1.atKeys");
    let mut c = stack.command("at_activate");
    c.args([
        "enroll",
        "-a",
        DEVICE,
        "-s",
        &otp,
        "-p",
        "sshnpd",
        "-d",
        "router1",
        "-n",
        "sshnp:rw,sshrvd:rw",
        "-r",
        &root,
    ]);
    c.arg("-k").arg(&new_keys);
    let mut enroll = Proc::spawn("enroll", c);
    let line = enroll
        .wait_for("Enrollment ID: ", Duration::from_secs(30))
        .unwrap();
    let id = line.trim().rsplit(' ').next().unwrap().to_string();

    let (ok, listing, err) = run(
        &stack,
        &[
            "list",
            "-a",
            DEVICE,
            "-k",
            &manage_keys,
            "-r",
            &root,
            "-s",
            "pending",
        ],
    );
    assert!(ok, "list failed: {err}");
    assert!(
        listing.contains(&id) && listing.contains("router1"),
        "pending list shows the request:\n{listing}"
    );

    let (ok, out, err) = run(
        &stack,
        &[
            "approve",
            "-a",
            DEVICE,
            "-k",
            &manage_keys,
            "-r",
            &root,
            "-i",
            &id,
        ],
    );
    assert!(ok, "approve failed: {out}{err}");
    let status = enroll
        .wait_exit(Duration::from_secs(40))
        .expect("enroll finishes after approval");
    assert!(status.success(), "enroll failed:\n{}", enroll.output());
    let mode = std::fs::metadata(&new_keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The enrolled keys (namespaces sshnp, sshrvd only) run the daemon for a real session.
    let service = start_plus_one_service();
    let mut c = stack.command("sshnpd");
    c.args([
        "-a",
        DEVICE,
        "-m",
        CLIENT,
        "-d",
        "router1",
        "--permit-open",
        &format!("127.0.0.1:{service}"),
    ]);
    c.args(["--root-domain", &root, "-v"])
        .arg("-k")
        .arg(&new_keys);
    let daemon = Proc::spawn("sshnpd", c);
    daemon
        .wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    let npt = stack.npt(CLIENT, "router1", "127.0.0.1", service, &["-T", "2s"]);
    transfer_and_verify(npt_port(&npt).unwrap(), 50_000).unwrap();

    // Revoke it: the enrollment can no longer authenticate.
    let (ok, out, err) = run(
        &stack,
        &[
            "revoke",
            "-a",
            DEVICE,
            "-k",
            &manage_keys,
            "-r",
            &root,
            "-i",
            &id,
        ],
    );
    assert!(ok, "revoke failed: {out}{err}");
    let (ok, _, _) = run(
        &stack,
        &[
            "otp",
            "-a",
            DEVICE,
            "-k",
            &new_keys.to_string_lossy(),
            "-r",
            &root,
        ],
    );
    assert!(!ok, "revoked keys must not authenticate");
}

#[test]
fn denied_enrollment_fails_cleanly_and_leaves_no_key_file() {
    let stack = Stack::start(bin(), "e2e-deny", &[]);
    let manage_keys = stack.keys(DEVICE).to_string_lossy().into_owned();
    let root = stack.root.clone();
    let (ok, _, err) = run(
        &stack,
        &[
            "spp",
            "-a",
            DEVICE,
            "-k",
            &manage_keys,
            "-r",
            &root,
            "-s",
            "Passcode42",
        ],
    );
    assert!(ok, "spp failed: {err}");
    let new_keys = stack.dir.join("denied.atKeys");
    let mut c = stack.command("at_activate");
    c.args([
        "enroll",
        "-a",
        DEVICE,
        "-s",
        "Passcode42",
        "-p",
        "app",
        "-d",
        "dev",
        "-n",
        "sshnp:rw",
        "-r",
        &root,
    ]);
    c.arg("-k").arg(&new_keys);
    let mut enroll = Proc::spawn("enroll", c);
    let line = enroll
        .wait_for("Enrollment ID: ", Duration::from_secs(30))
        .unwrap();
    let id = line.trim().rsplit(' ').next().unwrap().to_string();
    let (ok, out, err) = run(
        &stack,
        &[
            "deny",
            "-a",
            DEVICE,
            "-k",
            &manage_keys,
            "-r",
            &root,
            "-i",
            &id,
        ],
    );
    assert!(ok, "deny failed: {out}{err}");
    let status = enroll
        .wait_exit(Duration::from_secs(40))
        .expect("enroll gives up after denial");
    assert!(!status.success());
    enroll.wait_for("denied", Duration::from_secs(1)).unwrap();
    assert!(!new_keys.exists());
    // A wrong passcode is refused by the server.
    let (ok, _, err) = run(
        &stack,
        &[
            "enroll",
            "-a",
            DEVICE,
            "-s",
            "WRONG99",
            "-p",
            "x",
            "-d",
            "y",
            "-n",
            "sshnp:rw",
            "-r",
            &root,
            "-k",
            &stack.dir.join("x.atKeys").to_string_lossy(),
        ],
    );
    assert!(!ok, "wrong passcode must fail: {err}");
}

#[test]
fn cram_onboarding_then_status_reports_activated() {
    let dir = unique_dir("e2e-cram");
    let mut c = Command::new(bin());
    c.arg("atserver")
        .arg("--dir")
        .arg(dir.join("atserver"))
        .args(["--bind", "127.0.0.1", "--root-port", "0"]);
    c.args(["--create-cram", "@fresh:s3cretCram"]);
    let server = Proc::spawn("atserver", c);
    let line = server
        .wait_for("ready root=", Duration::from_secs(60))
        .unwrap();
    let root = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .unwrap()
        .to_string();
    let ca = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ca="))
        .unwrap()
        .to_string();
    let act = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("at_activate")
            .args(args)
            .env("NOPORTS_CA_FILE", &ca)
            .env("HOME", &dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = act(&["status", "-a", "@fresh", "-r", &root]);
    assert_eq!(code, Some(1), "not activated yet: {out}");
    let (code, out) = act(&["status", "-a", "@nobody", "-r", &root]);
    assert_eq!(code, Some(3), "unknown atSign: {out}");
    let keys = dir.join("fresh.atKeys").to_string_lossy().into_owned();
    let (code, out) = act(&[
        "onboard", "-a", "@fresh", "-c", "wrong", "-r", &root, "-k", &keys,
    ]);
    assert_ne!(code, Some(0), "wrong CRAM secret must fail: {out}");
    let (code, out) = act(&[
        "onboard",
        "-a",
        "@fresh",
        "-c",
        "s3cretCram",
        "-r",
        &root,
        "-k",
        &keys,
    ]);
    assert_eq!(code, Some(0), "onboard: {out}");
    assert!(out.contains("[Success] Your .atKeys file saved at"));
    let (code, out) = act(&["status", "-a", "@fresh", "-r", &root]);
    assert_eq!(code, Some(0), "activated: {out}");
    assert!(out.contains("returning 0"));
    // The secret is gone: onboarding again is refused.
    let (code, _) = act(&[
        "onboard",
        "-a",
        "@fresh",
        "-c",
        "s3cretCram",
        "-r",
        &root,
        "-k",
        &format!("{keys}.2"),
    ]);
    assert_ne!(code, Some(0));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
