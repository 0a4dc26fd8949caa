//! rathole (from crates.io, named by `RATHOLE`) as the peer of our benchmarks: a server and a
#![allow(dead_code)] // each benchmark uses part of it
//! client process on loopback with two services, `bench` (to a sink) and `echo` (to an echo
//! server), over plain TCP or its Noise transport.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// rathole's transport: plain TCP (token auth only) or Noise (its default pattern,
/// Noise_NK_25519_ChaChaPoly_BLAKE2s, with a key pair from `rathole --genkey`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Noise,
}

/// The two processes; killed on drop.
pub struct Rathole {
    procs: Vec<Child>,
    /// Where to connect to reach the sink.
    pub entry: u16,
    /// Where to connect to reach the echo server.
    pub echo_entry: u16,
}

impl Drop for Rathole {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keypair(bin: &std::ffi::OsStr) -> Option<(String, String)> {
    let out = Command::new(bin).arg("--genkey").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let after = |label: &str| {
        let mut lines = text.lines();
        lines.find(|l| l.trim() == label)?;
        lines.next().map(|l| l.trim().to_string())
    };
    Some((after("Private Key:")?, after("Public Key:")?))
}

/// One byte to `port` and back.
fn echoes(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 1];
    s.write_all(b"r").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"r"
}

/// Starts rathole in front of `sink_port` and `echo_port`; `None` without `RATHOLE` or if it
/// does not come up within 20 s.
pub fn start(transport: Transport, sink_port: u16, echo_port: u16) -> Option<Rathole> {
    let bin = std::env::var_os("RATHOLE")?;
    let (control, entry, echo_entry) = (free_port(), free_port(), free_port());
    let (server_tr, client_tr) = match transport {
        Transport::Tcp => (String::new(), String::new()),
        Transport::Noise => {
            let (private, public) = keypair(&bin)?;
            (
                format!("[server.transport]\ntype = \"noise\"\n[server.transport.noise]\nlocal_private_key = \"{private}\"\n"),
                format!("[client.transport]\ntype = \"noise\"\n[client.transport.noise]\nremote_public_key = \"{public}\"\n"),
            )
        }
    };
    let dir = std::env::temp_dir().join(format!("np-rathole-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = dir.join(format!("server-{control}.toml"));
    let client = dir.join(format!("client-{control}.toml"));
    std::fs::write(&server, format!("[server]\nbind_addr = \"127.0.0.1:{control}\"\ndefault_token = \"bench\"\n{server_tr}[server.services.bench]\nbind_addr = \"127.0.0.1:{entry}\"\n[server.services.echo]\nbind_addr = \"127.0.0.1:{echo_entry}\"\n")).unwrap();
    std::fs::write(&client, format!("[client]\nremote_addr = \"127.0.0.1:{control}\"\ndefault_token = \"bench\"\n{client_tr}[client.services.bench]\nlocal_addr = \"127.0.0.1:{sink_port}\"\n[client.services.echo]\nlocal_addr = \"127.0.0.1:{echo_port}\"\n")).unwrap();
    let spawn = |flag: &str, conf: &std::path::Path| {
        Command::new(&bin)
            .arg(flag)
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    };
    let procs = vec![spawn("-s", &server)?, spawn("-c", &client)?];
    let rh = Rathole {
        procs,
        entry,
        echo_entry,
    };
    // Up once the client has registered its services: an echoed byte through `echo`.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if echoes(echo_entry) {
            return Some(rh);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
