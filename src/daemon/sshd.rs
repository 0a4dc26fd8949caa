//! Which ssh server serves `--local-sshd-port`, and where it reads the keys that `-s` installs.
//!
//! OpenSSH and upstream dropbear read `~/.ssh/authorized_keys`. OpenWrt patches dropbear to read
//! `/etc/dropbear/authorized_keys` for root instead (openwrt/openwrt
//! package/network/services/dropbear/patches/100-pubkey_path.patch), so on a router a key written
//! to `/root/.ssh/authorized_keys` never lets anyone in. The server is found from the kernel's
//! socket table (`/proc/net/tcp*`: the listening socket's inode) and the process holding that
//! socket (`/proc/<pid>/fd`), which needs no tool that a router may lack.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

/// The ssh server behind a port, as far as `/proc` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sshd {
    Dropbear {
        pid: u32,
    },
    OpenSsh {
        pid: u32,
    },
    /// Some other program listens there (its `comm` name).
    Other {
        pid: u32,
        name: String,
    },
    /// Nothing listens there, or the owner is not visible to us.
    NotFound,
}

impl std::fmt::Display for Sshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sshd::Dropbear { pid } => write!(f, "dropbear (pid {pid})"),
            Sshd::OpenSsh { pid } => write!(f, "OpenSSH sshd (pid {pid})"),
            Sshd::Other { pid, name } => write!(f, "{name} (pid {pid})"),
            Sshd::NotFound => write!(f, "no visible listener"),
        }
    }
}

/// Find the process listening on TCP `port` (any local address, IPv4 or IPv6).
pub fn identify(port: u16) -> Sshd {
    identify_in(Path::new("/proc"), port)
}

fn identify_in(proc: &Path, port: u16) -> Sshd {
    let mut inodes = Vec::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(proc.join(table)) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Sshd::NotFound;
    }
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Sshd::NotFound;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|t| socket_inode(&t.to_string_lossy()))
                .is_some_and(|i| inodes.contains(&i))
        });
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return classify(pid, name.trim());
        }
    }
    Sshd::NotFound
}

fn classify(pid: u32, name: &str) -> Sshd {
    match name {
        "dropbear" | "dropbearmulti" => Sshd::Dropbear { pid },
        "sshd" => Sshd::OpenSsh { pid },
        // OpenSSH ≥ 9.8 splits the listener (sshd) from per-connection sshd-session.
        n if n.starts_with("sshd") => Sshd::OpenSsh { pid },
        n => Sshd::Other {
            pid,
            name: n.to_string(),
        },
    }
}

/// Inodes of sockets in LISTEN state on `port` in a `/proc/net/tcp` or `tcp6` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode = f.get(9)?;
            let (_, p) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            // 0A is TCP_LISTEN.
            (p == port && *state == "0A").then(|| inode.parse().ok())?
        })
        .filter(|i| *i != 0)
        .collect()
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Where `sshd` reads the keys of the user whose home is `home`:
/// `/etc/dropbear/authorized_keys` when the daemon runs as root on OpenWrt and dropbear serves
/// the port; else `<home>/.ssh/authorized_keys`.
pub fn authorized_keys_path(sshd: &Sshd, home: &Path) -> PathBuf {
    let openwrt = Path::new("/etc/openwrt_release").exists();
    if matches!(sshd, Sshd::Dropbear { .. }) && openwrt && effective_uid() == Some(0) {
        return PathBuf::from("/etc/dropbear/authorized_keys");
    }
    home.join(".ssh").join("authorized_keys")
}

/// This process's effective uid, from `/proc/self/status` (std has no geteuid).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_only_listening_sockets_on_the_port() {
        assert_eq!(listening_inodes(TCP, 22), vec![4242]);
        assert_eq!(listening_inodes(TCP, 8080), vec![7777]);
        assert!(listening_inodes(TCP, 23).is_empty());
        assert!(listening_inodes("garbage\n1 2 3\n: : : :", 22).is_empty());
    }

    #[test]
    fn names_the_server() {
        assert_eq!(classify(1, "dropbear"), Sshd::Dropbear { pid: 1 });
        assert_eq!(classify(2, "sshd"), Sshd::OpenSsh { pid: 2 });
        assert_eq!(
            classify(3, "nc"),
            Sshd::Other {
                pid: 3,
                name: "nc".into()
            }
        );
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
    }

    #[test]
    fn finds_this_process_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        match identify(port) {
            Sshd::Other { pid, .. } => assert_eq!(pid, std::process::id()),
            other => panic!("expected this test process, got {other:?}"),
        }
        drop(l);
        assert_eq!(identify(port), Sshd::NotFound);
    }

    #[test]
    fn openssh_reads_the_home_directory() {
        assert_eq!(
            authorized_keys_path(&Sshd::OpenSsh { pid: 1 }, Path::new("/home/x")),
            Path::new("/home/x/.ssh/authorized_keys")
        );
    }
}
