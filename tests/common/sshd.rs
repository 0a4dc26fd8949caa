//! A private OpenSSH `sshd` on 127.0.0.1 for the sshnp end-to-end tests, with the key and
//! port helpers around it. Include next to `stack.rs` (it uses `Proc`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::stack::Proc;

pub fn sshd_path() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private sshd on 127.0.0.1 that accepts `user_key` for the current user.
pub fn start_sshd(dir: &Path, user_key_pub: &Path) -> (Proc, u16) {
    let sshd = sshd_path().expect("openssh-server is installed (.ci/run installs it)");
    let _ = std::fs::create_dir_all("/run/sshd");
    let host_key = dir.join("ssh_host_ed25519_key");
    keygen(&host_key);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(user_key_pub, &authorized).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nPidFile {}\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    let mut c = Command::new(sshd);
    c.arg("-D").arg("-e").arg("-f").arg(&config);
    let p = Proc::spawn("sshd", c);
    p.wait_for("Server listening on 127.0.0.1", Duration::from_secs(20))
        .unwrap();
    (p, port)
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs the `ssh` command line sshnp -x printed (`ssh -p …`), non-interactively, executing
/// `remote_cmd`; returns (stdout, stderr).
pub fn ssh_printed(line: &str, known_hosts: &Path, remote_cmd: &str) -> (String, String) {
    let mut args: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
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
    args.push(format!("UserKnownHostsFile={}", known_hosts.display()));
    args.push(remote_cmd.into());
    let out = Command::new("ssh").args(&args).output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
