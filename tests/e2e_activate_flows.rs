//! The at_activate flows of the documentation beyond CRAM onboarding: first activation through
//! the registrar (`at_activate -a @x`, OTP typed in), `auto` approval, the `interactive`
//! prompt, and the documented flag spellings.
#[path = "common/registrar.rs"]
mod registrar;
#[path = "common/stack.rs"]
mod stack;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use registrar::Registrar;
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// Runs `at_activate args` with `stdin` typed in; (exit code, stdout + stderr).
fn activate(env: &[(&str, &Path)], args: &[&str], stdin: &str) -> (Option<i32>, String) {
    let mut c = Command::new(bin());
    c.arg("at_activate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn start_cram_server(dir: &Path, create: &str) -> (Proc, String, PathBuf) {
    let mut c = Command::new(bin());
    c.arg("atserver")
        .arg("--dir")
        .arg(dir.join("atserver"))
        .args([
            "--bind",
            "127.0.0.1",
            "--root-port",
            "0",
            "--create-cram",
            create,
        ]);
    let server = Proc::spawn("atserver", c);
    let line = server
        .wait_for("ready root=", Duration::from_secs(60))
        .unwrap();
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    (server, field("root="), PathBuf::from(field("ca=")))
}

#[test]
fn first_activation_through_the_registrar_with_the_code_typed_in() {
    let dir = unique_dir("e2e-registrar");
    let (_server, root, atserver_ca) = start_cram_server(&dir, "@fresh:s3cretCram");
    // One trust file for both: the atServer's local CA and the registrar double's.
    let trust = dir.join("trust.pem");
    std::fs::copy(&atserver_ca, &trust).unwrap();
    let reg = Registrar::start("ABC123", "@fresh:s3cretCram", &trust);
    let env: &[(&str, &Path)] = &[("NOPORTS_CA_FILE", &trust), ("HOME", &dir)];
    let keys = dir.join("fresh.atKeys");
    let k = keys.to_string_lossy().into_owned();

    // A wrong code: refused with the registrar's reason, nothing written.
    let (code, out) = activate(
        env,
        &["-a", "@fresh", "-r", &root, "-k", &k, "-g", &reg.address],
        "WRONG1\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("Enter the verification code")
            && out.contains("did not accept the verification code: Invalid OTP"),
        "{out}"
    );
    assert!(!keys.exists());

    // Registrar down: says which registrar and which flag.
    let (code, out) = activate(
        env,
        &["-a", "@fresh", "-r", &root, "-k", &k, "-g", "localhost:1"],
        "ABC123\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot reach the registrar localhost:1 (-g/--registrarUrl)"),
        "{out}"
    );

    // The documented first activation: `at_activate -a @x`, the code typed at the prompt.
    let (code, out) = activate(
        env,
        &[
            "-a",
            "@fresh",
            "--rootServer",
            &root,
            "-k",
            &k,
            "--registrarUrl",
            &reg.address,
        ],
        "ABC123\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("[Success] Your .atKeys file saved at"),
        "{out}"
    );
    let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let seen = reg.requests();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen
        .iter()
        .all(|r| r.authorization.as_deref().is_some_and(|a| !a.is_empty())));
    assert!(seen[2].body.contains("\"atsign\":\"@fresh\""), "{seen:?}");
    assert!(seen[3].body.contains("\"otp\":\"ABC123\""), "{seen:?}");
    let (code, out) = activate(env, &["status", "-a", "@fresh", "-r", &root], "");
    assert_eq!(code, Some(0), "{out}");

    // Already activated: said at once, and no code is asked of the registrar.
    let (code, out) = activate(
        env,
        &[
            "-a",
            "@fresh",
            "-r",
            &root,
            "-k",
            &format!("{k}.2"),
            "-g",
            &reg.address,
        ],
        "",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("@fresh is already activated") && out.contains("at_activate enroll"),
        "{out}"
    );
    assert_eq!(reg.requests().len(), 4, "the registrar was asked again");
    let _ = std::fs::remove_dir_all(&dir);
}

fn run(stack: &Stack, args: &[&str]) -> (bool, String) {
    let out = stack.command("at_activate").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn otp(stack: &Stack, manage_keys: &str) -> String {
    let (ok, out) = run(
        stack,
        &["otp", "-a", DEVICE, "-k", manage_keys, "-r", &stack.root],
    );
    assert!(ok, "otp: {out}");
    out.trim().to_string()
}

fn start_enroll(stack: &Stack, otp: &str, device: &str) -> Proc {
    start_enroll_for(stack, otp, "sshnpd", device, "sshnp:rw,sshrvd:rw")
}

/// An `enroll` that reads its passcode from a 0600 file, as at_enroll.sh runs it.
fn start_enroll_for(stack: &Stack, otp: &str, app: &str, device: &str, ns: &str) -> Proc {
    let keys = stack.dir.join(format!("{device}.atKeys"));
    let code = stack.dir.join(format!("{device}.passcode"));
    std::fs::write(&code, format!("{otp}\n")).unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = stack.command("at_activate");
    c.args(["enroll", "-a", DEVICE, "-p", app, "-d", device, "-n", ns])
        .args(["-r", &stack.root])
        .arg("--passcode-file")
        .arg(code)
        .arg("-k")
        .arg(keys);
    Proc::spawn(device, c)
}

fn enrollment_id(p: &Proc) -> String {
    let line = p
        .wait_for("Enrollment ID: ", Duration::from_secs(30))
        .unwrap();
    line.trim().rsplit(' ').next().unwrap().to_string()
}

/// Issue 23 item 1: the device's request (`-d router`, sshnp and sshrvd) and a stranger's who
/// learnt a passcode (`-d router-backup`, `__manage:rw,*:rw`) are pending together. The
/// command that at_enroll.sh used to print, `approve --arx noports --drx router`, took both and
/// handed the stranger the owner's rights; now it takes the whole name only, shows what it
/// grants, and owner rights need --allow-privileged.
#[test]
fn approve_takes_whole_names_shows_the_grant_and_never_grants_owner_rights_unasked() {
    let stack = Stack::start(bin(), "e2e-approve-scope", &[]);
    let manage = stack.keys(DEVICE).to_string_lossy().into_owned();
    let device = start_enroll_for(
        &stack,
        &otp(&stack, &manage),
        "noports",
        "router",
        "sshnp:rw,sshrvd:rw",
    );
    let device_id = enrollment_id(&device);
    let exact = format!("at_activate approve -a {DEVICE} -i {device_id}");
    device
        .wait_for(&exact, Duration::from_secs(5))
        .expect("enroll prints the command for this one request");
    let stranger = start_enroll_for(
        &stack,
        &otp(&stack, &manage),
        "noports",
        "router-backup",
        "__manage:rw,*:rw",
    );
    let stranger_id = enrollment_id(&stranger);
    let manage_args = ["-a", DEVICE, "-k", &manage, "-r", &stack.root];

    let (ok, out) = run(
        &stack,
        &[
            &["approve"][..],
            &manage_args,
            &["--arx", "noports", "--drx", "router"],
        ]
        .concat(),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "Approving enrollmentId {device_id} (app \"noports\", device \"router\", namespaces sshnp:rw,sshrvd:rw)"
        )),
        "the approval shows what it grants: {out}"
    );
    assert!(
        !out.contains(&stranger_id),
        "router-backup is not router: {out}"
    );
    device
        .wait_for(
            "[Success] Your .atKeys file saved at",
            Duration::from_secs(40),
        )
        .unwrap();

    // A pattern that does select the stranger's request still does not grant owner rights.
    let (ok, out) = run(
        &stack,
        &[&["approve"][..], &manage_args, &["--drx", "router.*"]].concat(),
    );
    assert!(!ok, "refusing is a failure the caller sees: {out}");
    assert!(
        out.contains(&format!("not approving enrollmentId {stranger_id}"))
            && out.contains("__manage:rw")
            && out.contains("*:rw")
            && out.contains("would give the new key the owner's rights")
            && out.contains("--allow-privileged"),
        "{out}"
    );
    // `auto` shares the check: it sees the request and leaves it pending.
    let mut c = stack.command("at_activate");
    c.arg("auto")
        .args(manage_args)
        .args(["--drx", "router-backup", "--approve-existing"]);
    let auto = Proc::spawn("auto", c);
    auto.wait_for(
        &format!("not approving enrollmentId {stranger_id}"),
        Duration::from_secs(20),
    )
    .unwrap();
    auto.wait_for(
        "Listening for new enrollment requests",
        Duration::from_secs(10),
    )
    .unwrap();
    drop(auto);
    let (ok, listing) = run(
        &stack,
        &[
            &["list"][..],
            &manage_args,
            &["--enrollmentStatus", "pending"],
        ]
        .concat(),
    );
    assert!(
        ok && listing.contains(&stranger_id),
        "still pending: {listing}"
    );
    assert!(
        stranger.output().contains("not approved") || !stranger.output().contains("[Success]"),
        "{}",
        stranger.output()
    );

    // The owner who asked for it can still grant it, by id and with the flag.
    let (ok, out) = run(
        &stack,
        &[
            &["approve"][..],
            &manage_args,
            &["-i", &stranger_id, "--allow-privileged"],
        ]
        .concat(),
    );
    assert!(ok && out.contains("__manage:rw"), "{out}");
    stranger
        .wait_for(
            "[Success] Your .atKeys file saved at",
            Duration::from_secs(40),
        )
        .unwrap();
}

#[test]
fn auto_approves_matching_requests_as_they_arrive_and_only_those() {
    let stack = Stack::start(bin(), "e2e-auto", &[]);
    let manage = stack.keys(DEVICE).to_string_lossy().into_owned();
    let mut c = stack.command("at_activate");
    c.args([
        "auto",
        "-a",
        DEVICE,
        "-k",
        &manage,
        "--rootServer",
        &stack.root,
    ])
    .args(["--arx", "sshnpd", "--drx", "router\\d+", "-L", "1"]);
    let mut auto = Proc::spawn("auto", c);
    auto.wait_for(
        "Listening for new enrollment requests",
        Duration::from_secs(20),
    )
    .unwrap();

    // Not matching (device "laptop"): seen, not approved.
    let other = start_enroll(&stack, &otp(&stack, &manage), "laptop");
    let other_id = other
        .wait_for("Enrollment ID: ", Duration::from_secs(30))
        .unwrap();
    let other_id = other_id.trim().rsplit(' ').next().unwrap().to_string();
    auto.wait_for(
        &format!("Not approving {other_id}"),
        Duration::from_secs(20),
    )
    .unwrap();

    let router = start_enroll(&stack, &otp(&stack, &manage), "router7");
    auto.wait_for("Approval successful.", Duration::from_secs(20))
        .unwrap();
    auto.wait_for(
        "Approved 1 requests - limit was 1 - done.",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        auto.wait_exit(Duration::from_secs(10)).map(|s| s.success()),
        Some(true)
    );
    router
        .wait_for(
            "[Success] Your .atKeys file saved at",
            Duration::from_secs(40),
        )
        .unwrap();

    let (ok, listing) = run(
        &stack,
        &[
            "list",
            "-a",
            DEVICE,
            "-k",
            &manage,
            "--root-domain",
            &stack.root,
            "--enrollmentStatus",
            "pending",
        ],
    );
    assert!(ok, "{listing}");
    assert!(
        listing.contains(&other_id),
        "the unmatched request stays pending: {listing}"
    );
    drop(other);
}

#[test]
fn interactive_runs_management_commands_and_refuses_the_others() {
    let stack = Stack::start(bin(), "e2e-interactive", &[]);
    let manage = stack.keys(DEVICE).to_string_lossy().into_owned();
    let mut c = stack.command("at_activate");
    c.arg("interactive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let script = format!(
        "list -a {DEVICE} -k '{manage}' -r {root}\n\
         enroll -a {DEVICE} -s x -p a -d b -n c -k /tmp/nope\n\
         otp -a {DEVICE} -k '{manage}' -r {root}\n\
         exit\n",
        root = stack.root
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("$ ") && text.contains("matching enrollment records"),
        "{text}"
    );
    assert!(
        text.contains("The enroll command is not available in interactive mode"),
        "{text}"
    );
    assert!(!Path::new("/tmp/nope").exists());
    // The OTP line: one word of letters and digits after a prompt.
    assert!(
        text.lines().any(|l| {
            let w = l.trim_start_matches("$ ").trim();
            w.len() >= 6 && w.chars().all(|c| c.is_ascii_alphanumeric())
        }),
        "{text}"
    );
}

#[test]
fn documented_flag_spellings_parse() {
    // Each is parsed up to a point where only a missing or unreachable thing can stop it:
    // never "Unrecognized argument".
    let cases: &[&[&str]] = &[
        &[
            "at_activate",
            "list",
            "-a",
            "@x",
            "--rootServer",
            "127.0.0.1:1",
            "--enrollmentStatus",
            "pending",
            "-v",
        ],
        &[
            "at_activate",
            "approve",
            "-a",
            "@x",
            "--root-domain",
            "127.0.0.1:1",
            "--enrollmentId",
            "abc",
        ],
        &[
            "at_activate",
            "deny",
            "-a",
            "@x",
            "-r",
            "127.0.0.1:1",
            "--arx",
            "a",
            "--drx",
            "b",
            "--mca",
            "1",
        ],
        &[
            "at_activate",
            "fetch",
            "-a",
            "@x",
            "-r",
            "127.0.0.1:1",
            "-i",
            "abc",
            "--debug",
        ],
        &[
            "at_activate",
            "auto",
            "-a",
            "@x",
            "-r",
            "127.0.0.1:1",
            "-A",
            "a",
            "-D",
            "b",
            "-L",
            "2",
            "--approve-existing",
        ],
        &[
            "sshnpd",
            "-a",
            "@x",
            "-m",
            "@y",
            "-d",
            "dev",
            "--no-sshpublickey",
            "--no-verbose",
            "--root-domain",
            "127.0.0.1:1",
            "--key-file",
            "/nonexistent",
        ],
        &[
            "sshnpd",
            "-a",
            "@x",
            "-m",
            "@y",
            "-d",
            "dev",
            "-s",
            "--no-sshpublickey",
            "-v",
            "--keyFile",
            "/nonexistent",
        ],
        &[
            "npt",
            "-f",
            "@x",
            "-t",
            "@y",
            "-r",
            "@z",
            "--rp",
            "22",
            "--no-verbose",
            "--keyFile",
            "/nonexistent",
        ],
    ];
    for argv in cases {
        let out = Command::new(bin())
            .args(*argv)
            .env("HOME", "/nonexistent")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{argv:?} cannot succeed here: {text}"
        );
        assert!(
            !text.contains("Unrecognized")
                && !text.contains("Unknown command")
                && !text.contains("Required options"),
            "{argv:?}: {text}"
        );
    }
    // An error names a flag that exists.
    let out = Command::new(bin())
        .args(["at_activate", "approve", "-a", "@x"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--enrollmentId, --arx or --drx"), "{text}");
    let out = Command::new(bin())
        .args([
            "at_activate",
            "approve",
            "-a",
            "@x",
            "--enrollmentId",
            "x",
            "-r",
            "127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Unrecognized"));
    // Each command's help is its own.
    let out = Command::new(bin())
        .args(["at_activate", "status", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Report whether an atSign is activated")
            && !help.contains("Options every command shares"),
        "{help}"
    );
}
