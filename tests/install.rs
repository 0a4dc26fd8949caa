//! scripts/install.sh into temporary roots: the binary and its applet links for a user, an
//! in-place upgrade that keeps keys and settings, the systemd units and their documented
//! override.conf, and the headless/tmux cron jobs. cron and tmux are stand-ins that record what
//! they were asked. The units are also checked with `systemd-analyze verify`, which needs
//! systemd installed: that test is `#[ignore]`d for a plain `cargo test`, and `make test`
//! (whose scripts/test-deps.sh installs systemd) runs it with `--ignored`.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh")
}

fn temp(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!(
        "noports-install-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(d.join("home")).unwrap();
    d
}

fn applets() -> Vec<String> {
    let out = Command::new(bin()).arg("--list").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// `sh install.sh <args>` with HOME=<dir>/home and <dir>/fake first on PATH.
fn install(dir: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        dir.join("fake").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg(script())
        .arg("--bin")
        .arg(bin())
        .args(args)
        .env("HOME", dir.join("home"))
        .env("PATH", path)
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn same_file_content(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

#[test]
fn user_install_links_every_applet_and_upgrades_in_place_keeping_keys() {
    let dir = temp("user");
    install(&dir, &["--user"]);
    let bin_dir = dir.join("home/.local/bin");
    let installed = bin_dir.join("noports");
    assert!(same_file_content(&installed, bin()));
    assert_eq!(mode(&installed), 0o755);
    let names = applets();
    assert!(names.iter().any(|n| n == "sshnpd") && names.iter().any(|n| n == "sshnp"));
    for name in &names {
        let link = bin_dir.join(name);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("noports"),
            "{name} links to the multicall binary"
        );
    }
    // The link name selects the applet.
    let out = Command::new(bin_dir.join("sshnp"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--list-devices"));

    // Upgrade over an older install: keys stay, a foreign binary is kept as .old.
    let keys = dir.join("home/.atsign/keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("@alice_key.atKeys");
    std::fs::write(&key, "{\"secret\":\"keep me\"}").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(bin_dir.join("npt")).unwrap();
    std::fs::write(bin_dir.join("npt"), "official npt").unwrap();
    std::fs::write(&installed, "#!/bin/sh\necho old noports\n").unwrap();
    install(&dir, &["--user", "sshnpd"]);
    assert!(same_file_content(&installed, bin()), "binary replaced");
    assert_eq!(read(&key), "{\"secret\":\"keep me\"}", "keys untouched");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        std::fs::read_link(bin_dir.join("npt")).unwrap(),
        Path::new("noports")
    );
    assert_eq!(read(&bin_dir.join("npt.old")), "official npt");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Environment=` assignments of a unit or drop-in, in order (later ones win).
fn environment(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("Environment=") else {
            continue;
        };
        // Either NAME="value with \" escapes" or space-separated NAME=value words.
        if let Some((name, quoted)) = rest.split_once("=\"") {
            let value = quoted
                .strip_suffix('"')
                .unwrap()
                .replace("\\\"", "\"")
                .replace("\\\\", "\\");
            out.push((name.to_string(), value));
        } else {
            for word in rest.split_whitespace() {
                let (n, v) = word.split_once('=').unwrap();
                out.push((n.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// The argv that the unit's ExecStart gives the applet under `env`, with the applet replaced
/// by a script that prints its arguments.
fn exec_start_argv(
    unit: &str,
    applet_path: &str,
    env: &[(String, String)],
    dir: &Path,
) -> Vec<String> {
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let body = exec
        .strip_prefix("/bin/sh -c '")
        .and_then(|b| b.strip_suffix('\''))
        .expect("ExecStart runs /bin/sh -c '…'");
    let fake = dir.join("print-args");
    std::fs::write(
        &fake,
        "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // systemd turns $$ into $ before the shell sees the line.
    let body = body
        .replace("$$", "$")
        .replace(applet_path, &fake.display().to_string());
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&body)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect()
}

/// Installs the sshnpd, srvd and npp_file units into a root under `dir` the documented way
/// (override.conf edited as the documentation shows, then an upgrade with `-b`), checking each
/// step; returns the root's etc/systemd/system.
fn install_systemd_units(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let r = root.display().to_string();
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let base = ["--root", r.as_str(), "--system", "-u", me.as_str()];
    let mut args = base.to_vec();
    args.extend([
        "-c", "@alice", "-d", "@bob", "-n", "lab1", "-p", "@pol", "systemd", "sshnpd",
    ]);
    install(dir, &args);
    let units = root.join("etc/systemd/system");
    let unit = read(&units.join("sshnpd.service"));
    let conf_path = units.join("sshnpd.service.d/override.conf");
    let conf = read(&conf_path);
    for want in [
        &format!("User={me}") as &str,
        "Environment=manager_atsign=\"@alice\"",
        "Environment=device_atsign=\"@bob\"",
        "Environment=device_name=\"lab1\"",
        "Environment=delegate_policy=\"-p @pol\"",
        "Environment=s=\"-s\"",
        "Environment=v=\"-v\"",
        "Environment=additional_args=\"\"",
    ] {
        assert!(
            conf.lines().any(|l| l == want),
            "override.conf has {want}:\n{conf}"
        );
    }
    assert!(root.join("usr/local/bin/noports").is_file());
    assert!(root.join("usr/local/bin/sshnpd").is_symlink());
    assert_eq!(
        mode(
            &root.join(
                dir.join("home/.ssh/authorized_keys")
                    .strip_prefix("/")
                    .unwrap()
            )
        ),
        0o600
    );

    // The documentation's example of extra options, quoted the documented way.
    let edited = conf.replace(
        "Environment=additional_args=\"\"",
        "Environment=additional_args=\"--permit-open \\\"localhost:22,localhost:3389,localhost:2221\\\"\"",
    );
    std::fs::write(&conf_path, &edited).unwrap();
    let mut env = environment(&unit);
    env.extend(environment(&edited));
    let argv = exec_start_argv(&unit, "/usr/local/bin/sshnpd", &env, dir);
    assert_eq!(
        argv,
        [
            "-a",
            "@bob",
            "-m",
            "@alice",
            "-d",
            "lab1",
            "-p",
            "@pol",
            "-s",
            "-u",
            "-v",
            "--permit-open",
            "localhost:22,localhost:3389,localhost:2221"
        ]
    );
    // Policy only: no manager, so no -m at all (an empty -m would swallow the next flag).
    let mut env_policy = env.clone();
    env_policy.push(("manager_atsign".into(), String::new()));
    let argv = exec_start_argv(&unit, "/usr/local/bin/sshnpd", &env_policy, dir);
    assert!(!argv.iter().any(|a| a == "-m"), "{argv:?}");
    // The policy page writes just the atSign: Environment=delegate_policy="@policy_atsign_123"
    env_policy.push(("delegate_policy".into(), "@policy_atsign_123".into()));
    let argv = exec_start_argv(&unit, "/usr/local/bin/sshnpd", &env_policy, dir);
    assert!(
        argv.windows(2).any(|w| w == ["-p", "@policy_atsign_123"]),
        "{argv:?}"
    );

    // Upgrade: settings kept; -b moves ExecStart.
    let mut args = base.to_vec();
    args.extend(["-b", "/opt/noports/bin", "systemd", "sshnpd"]);
    install(dir, &args);
    assert_eq!(
        read(&conf_path),
        edited,
        "override.conf survives an upgrade"
    );
    assert!(read(&units.join("sshnpd.service")).contains("exec /opt/noports/bin/sshnpd "));
    assert!(root.join("opt/noports/bin/sshnpd").is_symlink());

    let mut args = base.to_vec();
    args.extend(["-a", "@relay", "-i", "203.0.113.7", "systemd", "srvd"]);
    install(dir, &args);
    let srvd_conf = read(&units.join("srvd.service.d/override.conf"));
    assert!(srvd_conf.contains("Environment=atsign=\"@relay\""));
    assert!(srvd_conf.contains("Environment=internet_address=\"203.0.113.7\""));
    let mut args = base.to_vec();
    args.extend(["-a", "@pol", "systemd", "npp_file"]);
    install(dir, &args);
    let npp_unit = read(&units.join("npp_file.service"));
    let mut env = environment(&npp_unit);
    env.extend(environment(&read(
        &units.join("npp_file.service.d/override.conf"),
    )));
    let argv = exec_start_argv(&npp_unit, "/usr/local/bin/npp_file", &env, dir);
    assert_eq!(argv, ["-a", "@pol", "--yaml", "/etc/noports/policy.yaml"]);
    units
}

#[test]
fn systemd_units_with_the_documented_override_conf() {
    let dir = temp("systemd");
    install_systemd_units(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs systemd-analyze: scripts/test-deps.sh installs systemd; make test runs it"]
fn systemd_analyze_verifies_the_installed_units() {
    let dir = temp("systemd-verify");
    let units = install_systemd_units(&dir);
    assert!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "systemd-analyze is not installed: run scripts/test-deps.sh (apt-get install systemd)"
    );
    for u in ["sshnpd", "srvd", "npp_file"] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(units.join(format!("{u}.service")))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "systemd-analyze verify {u}.service: {err}"
        );
        assert!(
            !err.contains("Unknown") && !err.contains("Invalid") && !err.contains("ignoring"),
            "{u}.service: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stand-ins for `crontab` (a file) and `tmux` (records calls, no sessions).
fn fakes(dir: &Path) -> PathBuf {
    let fake = dir.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    let tab = dir.join("crontab.txt");
    let log = dir.join("tmux.log");
    for (name, text) in [
        (
            "crontab",
            format!(
                "#!/bin/sh\nif [ \"$1\" = -l ]; then cat '{0}' 2>/dev/null || exit 1; else cat > '{0}'; fi\n",
                tab.display()
            ),
        ),
        (
            "tmux",
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" != has-session ]\n", log.display()),
        ),
    ] {
        let p = fake.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    tab
}

#[test]
fn headless_and_tmux_jobs_run_from_cron_and_keep_their_settings() {
    let dir = temp("headless");
    let tab = fakes(&dir);
    let home = dir.join("home");
    let h = home.display().to_string();
    install(
        &dir,
        &[
            "--user", "-c", "@alice", "-d", "@bob", "-n", "pi4", "headless", "sshnpd",
        ],
    );
    let job = home.join(".local/bin/sshnpd.sh");
    assert_eq!(mode(&job), 0o755);
    let text = read(&job);
    assert!(
        text.contains(&format!("binary_path=\"{h}/.local/bin\"")),
        "{text}"
    );
    assert!(text.contains("manager_atsign=\"@alice\""));
    assert!(text.contains("device_atsign=\"@bob\""));
    assert!(text.contains("device_name=\"pi4\""));
    assert!(home.join(".sshnpd/logs").is_dir());
    let entry = format!(
        "@reboot nohup {h}/.local/bin/sshnpd.sh > {h}/.sshnpd/logs/sshnpd.log 2> {h}/.sshnpd/logs/sshnpd.err"
    );
    assert_eq!(read(&tab).lines().collect::<Vec<_>>(), [entry.as_str()]);
    assert_eq!(mode(&home.join(".ssh/authorized_keys")), 0o600);

    // The script starts sshnpd with the settings (one turn of its loop, no sleeping).
    let once = text
        .replace("sleep 10", ":")
        .replace("while true; do", "for turn in 1; do")
        .replace(
            &format!("{h}/.local/bin\""),
            &format!("{}\"", dir.join("fakebin").display()),
        );
    std::fs::create_dir_all(dir.join("fakebin")).unwrap();
    let fake = dir.join("fakebin/sshnpd");
    std::fs::write(
        &fake,
        "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("sh").arg("-c").arg(&once).output().unwrap();
    let argv: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_string())
        .collect();
    assert_eq!(
        argv,
        ["-a", "@bob", "-m", "@alice", "-d", "pi4", "-s", "-u", "-v"]
    );

    // Upgrade: the edited script is kept and the cron line is not added twice.
    let edited = text.replace("v=\"-v\"", "v=\"\"");
    std::fs::write(&job, &edited).unwrap();
    install(&dir, &["--user", "headless", "sshnpd"]);
    assert_eq!(read(&job), edited);
    assert_eq!(read(&tab).lines().count(), 1);

    install(&dir, &["--user", "tmux", "sshnpd"]);
    let tmux_entry = format!(
        "@reboot tmux new-session -d -s sshnpd && tmux send-keys -t sshnpd {h}/.local/bin/sshnpd.sh C-m"
    );
    assert_eq!(
        read(&tab).lines().collect::<Vec<_>>(),
        [entry.as_str(), tmux_entry.as_str()]
    );
    assert_eq!(read(&job), edited, "tmux uses the same, kept, script");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_what_it_cannot_do() {
    let dir = temp("refuse");
    for (args, expect) in [
        (&["systemd"][..], "systemd needs a unit"),
        (&["--user", "systemd", "nginx"][..], "unknown systemd unit"),
        (&["--user", "tmux", "npp_file"][..], "unknown tmux job"),
        (&["-n", "Bad Name!", "sshnpd"][..], "device name"),
        (&["frobnicate"][..], "unknown command or option"),
    ] {
        let out = Command::new("sh")
            .arg(script())
            .arg("--bin")
            .arg(bin())
            .args(args)
            .env("HOME", dir.join("home"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
