//! The multicall front end: version, applet list, symlink dispatch, unknown applets, --help.
use std::path::Path;
use std::process::Command;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

const APPLETS: &[&str] = &[
    "sshnpd",
    "sshnp",
    "npt",
    "srvd",
    "srv",
    "at_activate",
    "npp_file",
    "npp_atserver",
    "atserver",
];

#[test]
fn version_and_list() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("noports {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(bin()).arg("--list").output().unwrap();
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        listed, APPLETS,
        "--list must name every applet in table order"
    );
}

#[test]
fn install_creates_symlinks_that_dispatch_on_argv0() {
    let dir = std::env::temp_dir().join(format!("np-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(bin())
        .arg("--install")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for applet in APPLETS {
        let link = dir.join(applet);
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        let out = Command::new(&link).arg("--help").output().unwrap();
        assert!(out.status.success(), "{applet} --help exits 0");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Usage:") || text.contains("usage"),
            "{applet} --help prints usage: {text}"
        );
    }
    // sshnpd via the symlink shows the daemon's own options.
    let out = Command::new(dir.join("sshnpd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--permit-open") && help.contains("--managers"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_applet_is_exit_2_with_the_list() {
    let out = Command::new(bin()).arg("nosuch").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown applet 'nosuch'") && err.contains("sshnpd"));
    let dir = std::env::temp_dir().join(format!("np-cli2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("weirdname");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let out = Command::new(&link).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn argument_errors_are_clear_and_exit_1() {
    let out = Command::new(bin())
        .args(["sshnpd", "-a", "@dev"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("At least one of --managers and --policy-manager"));
    let out = Command::new(bin())
        .args([
            "npt", "-f", "@a", "-t", "@b", "-r", "@r", "-d", "x", "-p", "22",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Device name must be"));
    let out = Command::new(bin())
        .args([
            "npt", "-f", "@a", "-t", "@b", "-r", "@r", "-d", "dev", "-p", "22", "-K", "-x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mutually exclusive"));
    // A client without keys: clear error, non-zero, no hang.
    let home = std::env::temp_dir().join(format!("np-nokeys-{}", std::process::id()));
    let out = Command::new(bin())
        .args([
            "npt", "-f", "@a", "-t", "@b", "-r", "@r", "-d", "dev", "-p", "22",
        ])
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to find .atKeys file"));
    // Permit-open syntax errors are refused at start-up.
    let out = Command::new(bin())
        .args([
            "sshnpd",
            "-a",
            "@dev",
            "-m",
            "@m",
            "--permit-open",
            "nocolon",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn install_keeps_files_that_are_not_ours_unless_forced() {
    let dir = std::env::temp_dir().join(format!("np-cli-force-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let official = dir.join("sshnpd");
    std::fs::write(&official, "#!/bin/sh\necho official\n").unwrap();
    // A link from an earlier install of ours is replaced without asking.
    std::os::unix::fs::symlink("/opt/old/noports", dir.join("npt")).unwrap();

    let out = Command::new(bin())
        .arg("--install")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&official.display().to_string()), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(
        !err.contains("npt"),
        "our own old link is not foreign: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&official).unwrap(),
        "#!/bin/sh\necho official\n"
    );
    assert!(
        dir.join("srvd").symlink_metadata().is_err(),
        "nothing is changed when refusing"
    );

    let out = Command::new(bin())
        .args(["--install", "--force"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["sshnpd", "npt", "srvd"] {
        let target = std::fs::canonicalize(dir.join(name)).unwrap();
        assert_eq!(target, std::fs::canonicalize(bin()).unwrap(), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
