//! `sshnp -s` against a real dropbear laid out as on OpenWrt: dropbear reads root's keys from
//! `/etc/dropbear/authorized_keys` (OpenWrt's 100-pubkey_path.patch), and `sshnpd`, running as
//! root with `/etc/openwrt_release` present, finds dropbear on `--local-sshd-port` and installs
//! the key there, not in `~/.ssh/authorized_keys`. Then ssh logs in as root through the tunnel.
//!
//! Debian's dropbear reads `~root/.ssh/authorized_keys`, so the OpenWrt layout is built with
//! private mount namespaces (`unshare -m`, overlay + bind mounts, nothing outside changes):
//! one directory is `/root/.ssh` for dropbear and `/etc/dropbear` for sshnpd. Needs root,
//! `unshare` and dropbear (`scripts/test-deps.sh` installs dropbear-bin), so the test is
//! `#[ignore]`d for a plain `cargo test`; `make test` installs dropbear and runs it with
//! `--ignored`, and then a missing prerequisite fails it.
#[path = "common/stack.rs"]
mod stack;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sh -c SCRIPT sh ARGS…` inside a new private mount namespace.
fn in_namespace(script: &str, args: &[&Path]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"]);
    c.args(args);
    c
}

/// dropbear and dropbearkey; panics naming what is missing, since a test that did not run must
/// not pass.
fn prerequisites() -> (PathBuf, PathBuf) {
    let dropbear = find(&["/usr/sbin/dropbear", "/usr/bin/dropbear"]);
    let dropbearkey = find(&["/usr/bin/dropbearkey", "/usr/sbin/dropbearkey"]);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let unshare = Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    match (dropbear, dropbearkey, root && unshare) {
        (Some(d), Some(k), true) => (d, k),
        (d, k, ns) => panic!(
            "this test needs root, unshare -m and dropbear (dropbear: {}, dropbearkey: {}, \
             root with unshare -m: {ns}): run scripts/test-deps.sh (installs dropbear-bin) as root",
            d.is_some(),
            k.is_some()
        ),
    }
}

#[test]
#[ignore = "needs root, unshare -m and dropbear: scripts/test-deps.sh installs dropbear-bin; make test runs it"]
fn sshnp_s_installs_the_key_where_openwrt_dropbear_reads_it_and_logs_in() {
    let (dropbear, dropbearkey) = prerequisites();
    let stack = Stack::start(bin(), "e2e-dropbear", &[]);
    let d = &stack.dir;
    let keys_dir = d.join("etc-dropbear");
    for sub in ["etc-dropbear", "ovl/u1", "ovl/w1", "ovl/u2", "ovl/w2"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let authorized = keys_dir.join("authorized_keys");
    std::fs::write(&authorized, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o600)).unwrap();

    // dropbear, root's ~/.ssh being the shared directory.
    let host_key = d.join("dropbear_ed25519_host_key");
    assert!(Command::new(&dropbearkey)
        .args(["-t", "ed25519", "-f"])
        .arg(&host_key)
        .output()
        .unwrap()
        .status
        .success());
    let port = free_port();
    let listen = PathBuf::from(format!("127.0.0.1:{port}"));
    let mut c = in_namespace(
        "mount -t overlay overlay -o lowerdir=/root,upperdir=$1/ovl/u1,workdir=$1/ovl/w1 /root \
         && mkdir -p /root/.ssh && mount --bind $1/etc-dropbear /root/.ssh \
         && exec $2 -F -E -s -p $3 -r $4",
        &[d, &dropbear, &listen, &host_key],
    );
    c.stdin(std::process::Stdio::null());
    let dropbear_proc = Proc::spawn("dropbear", c);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "dropbear did not listen:\n{}",
            dropbear_proc.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // sshnpd as on OpenWrt: /etc/openwrt_release exists, /etc/dropbear is the shared directory.
    let noports = stack.bin.clone();
    let ns = in_namespace(
        "mount -t overlay overlay -o lowerdir=/etc,upperdir=$1/ovl/u2,workdir=$1/ovl/w2 /etc \
         && mkdir -p /etc/dropbear && touch /etc/openwrt_release \
         && mount --bind $1/etc-dropbear /etc/dropbear && shift && exec \"$@\"",
        &[d, &noports],
    );
    let mut c = stack.command_of(ns, "sshnpd");
    c.args([
        "-a",
        DEVICE,
        "-m",
        CLIENT,
        "-d",
        "router",
        "-s",
        "--root-domain",
        &stack.root,
        "-v",
        "--local-sshd-port",
        &port.to_string(),
        "--permit-open",
        &format!("localhost:{port}"),
    ]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let daemon = Proc::spawn("sshnpd", c);
    daemon
        .wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    daemon
        .wait_for(
            &format!("sshd on port {port}: dropbear (pid"),
            Duration::from_secs(5),
        )
        .unwrap();
    daemon
        .wait_for(
            "keys from -s go to /etc/dropbear/authorized_keys",
            Duration::from_secs(5),
        )
        .unwrap();

    // sshnp -s: sends the public key, then sets up the tunnel and prints the ssh command.
    let user_key = d.join("id_ed25519");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&user_key)
        .status()
        .unwrap()
        .success());
    let mut c = stack.command("sshnp");
    c.args([
        "-f",
        CLIENT,
        "-t",
        DEVICE,
        "-r",
        RELAY,
        "-d",
        "router",
        "-u",
        "root",
        "-s",
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
    daemon
        .wait_for(
            "added to /etc/dropbear/authorized_keys",
            Duration::from_secs(10),
        )
        .unwrap();
    let pubkey = std::fs::read_to_string(d.join("id_ed25519.pub")).unwrap();
    let blob = pubkey.split_whitespace().nth(1).unwrap();
    let installed = std::fs::read_to_string(&authorized).unwrap();
    assert_eq!(
        installed.lines().filter(|l| l.contains(blob)).count(),
        1,
        "exactly one key line: {installed:?}"
    );
    assert_eq!(
        std::fs::metadata(&authorized).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !d.join(".ssh/authorized_keys").exists(),
        "nothing written to ~/.ssh for dropbear on OpenWrt"
    );

    let line = sshnp.wait_for("ssh -p ", Duration::from_secs(1)).unwrap();
    let mut args: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    for o in [
        "BatchMode=yes".to_string(),
        "StrictHostKeyChecking=no".to_string(),
        "ConnectTimeout=20".to_string(),
        format!("UserKnownHostsFile={}", d.join("known_hosts").display()),
    ] {
        args.push("-o".into());
        args.push(o);
    }
    args.push("echo hello-from-dropbear".into());
    let out = Command::new("ssh").args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello-from-dropbear"),
        "ssh output {stdout:?}, stderr {}\ndropbear:\n{}\ndaemon:\n{}",
        String::from_utf8_lossy(&out.stderr),
        dropbear_proc.output(),
        daemon.output()
    );
}
