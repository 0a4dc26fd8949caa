//! Test harness for the `atserver` applet: runs the real binary in a temp dir, waits for its
//! readiness line, and offers a tiny blocking TLS line client trusting the generated CA.
//! Every wait has a deadline; the child is killed and the dir removed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use noports::at::keys::AtKeys;
use noports::crypto::{b64, rsa::HashAlgo};

/// How long the server may take to print its ready line (key generation included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Per-read deadline of the test client.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A running `noports atserver`.
pub struct TestAtServer {
    pub dir: PathBuf,
    child: Option<Child>,
    /// `host:port` of the directory.
    pub root: String,
    pub ca: PathBuf,
    args: Vec<String>,
    /// Extra environment variables for the child.
    env: Vec<(String, String)>,
}

fn temp_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "noports-atserver-test-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

impl TestAtServer {
    /// Starts a server in a fresh temp dir creating `create` (entries as for `--create`).
    pub fn start(create: &[&str]) -> TestAtServer {
        TestAtServer::start_with(create, &[])
    }

    /// As [`TestAtServer::start`] with extra command-line arguments.
    pub fn start_with(create: &[&str], extra: &[&str]) -> TestAtServer {
        let dir = temp_dir();
        let mut args: Vec<String> = vec![
            "atserver".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--root-port".into(),
            "0".into(),
        ];
        if !create.is_empty() {
            args.push("--create".into());
            args.push(create.join(","));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = TestAtServer {
            dir,
            child: None,
            root: String::new(),
            ca: PathBuf::new(),
            args,
            env: Vec::new(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_noports"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn noports atserver");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on a full pipe.
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        });
        self.child = Some(child);
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(l) => l,
            Err(_) => {
                self.kill9();
                panic!("atserver did not print its ready line within {READY_TIMEOUT:?}");
            }
        };
        let line = line.trim();
        let rest = line
            .strip_prefix("ready root=")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (root, ca) = rest.split_once(" ca=").expect("ready line has ca=");
        self.root = root.to_string();
        self.ca = PathBuf::from(ca);
        // Keep the directory port across restarts (peers and clients were told about it).
        if let Some(port) = root.rsplit_once(':').map(|(_, p)| p.to_string()) {
            if let Some(i) = self.args.iter().position(|a| a == "--root-port") {
                if let Some(slot) = self.args.get_mut(i + 1) {
                    *slot = port;
                }
            }
        }
    }

    /// SIGTERM, then starts again with `extra` arguments and `env` variables added.
    pub fn restart_with(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        assert!(self.stop(), "clean shutdown with exit 0");
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.spawn();
    }

    /// Stops with SIGTERM and waits (deadline 10 s); returns whether it exited with 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then starts again on the same dir.
    pub fn restart(&mut self) {
        assert!(self.stop(), "clean shutdown with exit 0");
        self.spawn();
    }

    /// SIGKILL without any chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again after [`TestAtServer::kill9`].
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The server's resident set size in KiB (`VmRSS` of /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// `DIR/keys/@a_key.atKeys`.
    pub fn keys_path(&self, atsign: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{atsign}_key.atKeys"))
    }

    pub fn keys(&self, atsign: &str) -> AtKeys {
        AtKeys::load(&self.keys_path(atsign)).expect("load atKeys")
    }

    /// A client connection to the directory (greeting consumed).
    pub fn root_client(&self) -> Client {
        let mut c = Client::connect(&self.root, &self.ca);
        assert_eq!(c.read_exact_str(1), "@");
        c
    }

    /// `host:port` of an atSign's server, from the directory.
    pub fn address(&self, atsign: &str) -> String {
        let mut c = self.root_client();
        let reply = c.cmd_raw(atsign.trim_start_matches('@'));
        let addr = reply.trim_end_matches('@').trim().to_string();
        assert!(addr.contains(':'), "directory reply {reply:?}");
        addr
    }

    /// A client connected to an atSign's server, greeting consumed.
    pub fn client(&self, atsign: &str) -> Client {
        let mut c = Client::connect(&self.address(atsign), &self.ca);
        assert_eq!(c.read_exact_str(1), "@", "bare @ greeting");
        c
    }

    /// A client authenticated with the created atKeys (APKAM form when `apkam`).
    pub fn login(&self, atsign: &str, apkam: bool) -> Client {
        let keys = self.keys(atsign);
        let mut c = self.client(atsign);
        let r = c.pkam(atsign, &keys, apkam);
        assert_eq!(r, "data:success", "pkam for {atsign}");
        c
    }
}

impl Drop for TestAtServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Blocking TLS line client.
pub struct Client {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read ca.pem") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl Client {
    /// Connects and verifies the server certificate (host name = the address's host part).
    pub fn connect(addr: &str, ca: &Path) -> Client {
        let (host, _) = addr.rsplit_once(':').expect("host:port");
        let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        tcp.set_write_timeout(Some(READ_TIMEOUT)).expect("timeout");
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("server name");
        let conn = rustls::ClientConnection::new(client_config(ca), name).expect("client conn");
        Client {
            tls: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        }
    }

    /// As [`Client::connect`], but returns errors (connect or handshake) instead of panicking.
    pub fn try_connect(addr: &str, ca: &Path) -> std::io::Result<Client> {
        let (host, _) = addr
            .rsplit_once(':')
            .ok_or_else(|| std::io::Error::other("host:port"))?;
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        tcp.set_write_timeout(Some(READ_TIMEOUT))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(std::io::Error::other)?;
        let conn = rustls::ClientConnection::new(client_config(ca), name)
            .map_err(std::io::Error::other)?;
        Ok(Client {
            tls: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        })
    }

    /// TLS over an already connected socket (e.g. one bound to another loopback source
    /// address); `host` is the name the certificate must carry.
    pub fn over(tcp: TcpStream, host: &str, ca: &Path) -> std::io::Result<Client> {
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        tcp.set_write_timeout(Some(READ_TIMEOUT))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(std::io::Error::other)?;
        let conn = rustls::ClientConnection::new(client_config(ca), name)
            .map_err(std::io::Error::other)?;
        Ok(Client {
            tls: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.tls.sock.set_read_timeout(Some(d)).expect("timeout");
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 65536];
        let n = self.tls.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// One raw read (whatever one TLS record delivers), plus anything already buffered.
    pub fn read_once(&mut self) -> String {
        if self.buf.is_empty() {
            let _ = self.fill();
        }
        let s = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        s
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_str(&mut self, n: usize) -> String {
        while self.buf.len() < n {
            match self.fill() {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let take = n.min(self.buf.len());
        String::from_utf8_lossy(&self.buf.drain(..take).collect::<Vec<_>>()).into_owned()
    }

    pub fn send(&mut self, line: &str) {
        self.tls
            .write_all(format!("{line}\n").as_bytes())
            .expect("write");
        self.tls.flush().expect("flush");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Reads one response `body\nprompt` and returns it whole (`None` on EOF/timeout).
    pub fn read_response(&mut self) -> Option<String> {
        loop {
            if let Some(nl) = self.buf.iter().rposition(|b| *b == b'\n') {
                let tail = &self.buf[nl + 1..];
                if tail.first() == Some(&b'@') && tail.last() == Some(&b'@') {
                    let s = String::from_utf8_lossy(&self.buf).into_owned();
                    self.buf.clear();
                    return Some(s);
                }
            }
            match self.fill() {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends a command and returns the whole raw reply including the prompt.
    pub fn cmd_raw(&mut self, line: &str) -> String {
        self.send(line);
        self.read_response()
            .unwrap_or_else(|| panic!("no reply to {line:?}"))
    }

    /// Sends a command and returns the body (the text before the prompt).
    pub fn cmd(&mut self, line: &str) -> String {
        let raw = self.cmd_raw(line);
        let nl = raw.rfind('\n').expect("newline");
        raw[..nl].trim_end_matches('\r').to_string()
    }

    /// Reads one `\n`-terminated line (monitor output), `None` on timeout/EOF.
    pub fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            match self.fill() {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads monitor lines until one contains `needle` (deadline `d`).
    pub fn wait_for(&mut self, needle: &str, d: Duration) -> Option<String> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.set_read_timeout((end - Instant::now()).max(Duration::from_millis(10)));
            let line = self.read_line()?;
            if line.contains(needle) {
                self.set_read_timeout(READ_TIMEOUT);
                return Some(line);
            }
        }
        self.set_read_timeout(READ_TIMEOUT);
        None
    }

    /// True when the server closed the connection (EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        loop {
            match self.tls.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut
                }
            }
        }
    }

    /// `from` + `pkam` with `keys`; returns the pkam reply body.
    pub fn pkam(&mut self, atsign: &str, keys: &AtKeys, apkam: bool) -> String {
        let ch = self.cmd(&format!("from:{atsign}"));
        let challenge = ch
            .strip_prefix("data:")
            .unwrap_or_else(|| panic!("challenge {ch:?}"));
        let sig = b64::encode(
            &keys
                .pkam_private
                .sign(HashAlgo::Sha256, challenge.as_bytes())
                .expect("sign"),
        );
        match (&keys.enrollment_id, apkam) {
            (Some(id), true) => self.cmd(&format!(
                "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:{id}:{sig}"
            )),
            _ => self.cmd(&format!("pkam:{sig}")),
        }
    }

    /// `from` + `cram` with `secret`; returns the cram reply body.
    pub fn cram(&mut self, atsign: &str, secret: &str) -> String {
        let ch = self.cmd(&format!("from:{atsign}"));
        let challenge = ch.strip_prefix("data:").expect("challenge");
        let digest = noports::crypto::hash::sha512_hex(format!("{secret}{challenge}").as_bytes());
        self.cmd(&format!("cram:{digest}"))
    }
}
