//! End-to-end harness: runs the real `noports` binary as separate processes on loopback
//! (atserver, srvd, sshnpd, npt) and a real TCP service in-process. Every wait has a deadline;
//! every child is killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const CLIENT: &str = "@demo_client";
pub const DEVICE: &str = "@demo_device";
pub const RELAY: &str = "@demo_relay";

/// A child process whose stdout and stderr lines are collected for `wait_for`.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let echo = std::env::var_os("NOPORTS_TEST_ECHO").is_some();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for stream in [out, err] {
            let lines = lines.clone();
            let tag = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if echo {
                        eprintln!("[{tag}] {line}");
                    }
                    let (m, cv) = &*lines;
                    m.lock().unwrap().push(line);
                    cv.notify_all();
                }
            });
        }
        Proc {
            name: name.to_string(),
            child,
            lines,
        }
    }

    /// The first line containing `needle`, waiting up to `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut guard = m.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{}: no line containing {needle:?} within {timeout:?}; output:\n{}",
                    self.name,
                    guard.join("\n")
                ));
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    pub fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for exit up to `timeout`; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unique_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("noports-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The self-hosted platform plus relay: what every end-to-end scenario starts from.
pub struct Stack {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub atserver: Proc,
    pub root: String,
    pub ca: PathBuf,
    pub srvd: Option<Proc>,
}

impl Stack {
    /// `who` logged in to its atServer as an in-process client (trusting the stack's CA is
    /// the caller's: NOPORTS_CA_FILE, once per process).
    pub async fn at_client(&self, who: &str) -> noports::at::AtClient {
        let cfg = noports::at::ClientConfig {
            atsign: noports::at::AtSign::parse(who).unwrap(),
            keys: noports::at::AtKeys::load(&self.keys(who)).unwrap(),
            root: noports::at::RootAddr::parse(&self.root).unwrap(),
        };
        noports::at::AtClient::connect(cfg).await.unwrap()
    }

    /// Start `atserver` hosting the three demo atSigns (plus `extra`) and `srvd`.
    pub fn start(bin: &Path, tag: &str, extra: &[&str]) -> Stack {
        let dir = unique_dir(tag);
        let mut names = vec![CLIENT, DEVICE, RELAY];
        names.extend_from_slice(extra);
        let (atserver, root, ca) = start_atserver(bin, &dir, &names.join(","));
        let mut s = Stack {
            bin: bin.to_path_buf(),
            dir,
            atserver,
            root,
            ca,
            srvd: None,
        };
        s.start_srvd();
        s
    }

    pub fn keys(&self, atsign: &str) -> PathBuf {
        self.dir
            .join("atserver")
            .join("keys")
            .join(format!("{atsign}_key.atKeys"))
    }

    pub fn command(&self, applet: &str) -> Command {
        self.command_of(Command::new(&self.bin), applet)
    }

    /// Like [`Stack::command`], for another program that runs the multicall binary (e.g. a
    /// foreign-architecture build under qemu): `program` already holds the binary to run.
    pub fn command_of(&self, mut c: Command, applet: &str) -> Command {
        c.arg(applet)
            .env("NOPORTS_CA_FILE", &self.ca)
            .env("HOME", &self.dir)
            .env("USER", "demo");
        c
    }

    pub fn start_srvd(&mut self) {
        self.start_srvd_with(&[]);
    }

    /// (Re)starts `srvd` with `extra` arguments (e.g. `--port-range P-P`).
    pub fn start_srvd_with(&mut self, extra: &[&str]) {
        self.srvd = None;
        let mut c = self.command("srvd");
        c.args(extra);
        c.args([
            "-a",
            RELAY,
            "-i",
            "127.0.0.1",
            "--root-domain",
            &self.root,
            "-v",
        ]);
        c.arg("-k").arg(self.keys(RELAY));
        let p = Proc::spawn("srvd", c);
        p.wait_for("monitor started", Duration::from_secs(30))
            .unwrap();
        self.srvd = Some(p);
    }

    /// `sshnpd` for @demo_device managed by `managers`, permitting `permit`.
    pub fn start_daemon(&self, device: &str, managers: &str, permit: &str) -> Proc {
        self.start_daemon_with(self.command("sshnpd"), device, managers, permit)
    }

    /// [`Stack::start_daemon`] with the `sshnpd` command given (see [`Stack::command_of`]).
    pub fn start_daemon_with(
        &self,
        mut c: Command,
        device: &str,
        managers: &str,
        permit: &str,
    ) -> Proc {
        c.args([
            "-a",
            DEVICE,
            "-m",
            managers,
            "-d",
            device,
            "--permit-open",
            permit,
            "--root-domain",
            &self.root,
            "-v",
        ]);
        c.arg("-k").arg(self.keys(DEVICE));
        let p = Proc::spawn("sshnpd", c);
        p.wait_for("monitor started", Duration::from_secs(30))
            .unwrap();
        p
    }

    /// `npt` from `from` to the device's `host:port`; extra args appended.
    pub fn npt(&self, from: &str, device: &str, host: &str, port: u16, extra: &[&str]) -> Proc {
        self.npt_with(self.command("npt"), from, device, host, port, extra)
    }

    /// [`Stack::npt`] with the `npt` command given (e.g. with an extra environment variable).
    pub fn npt_with(
        &self,
        mut c: Command,
        from: &str,
        device: &str,
        host: &str,
        port: u16,
        extra: &[&str],
    ) -> Proc {
        c.args([
            "-f",
            from,
            "-t",
            DEVICE,
            "-r",
            RELAY,
            "-d",
            device,
            "-h",
            host,
            "-p",
            &port.to_string(),
        ]);
        c.args(["--root-domain", &self.root]);
        c.arg("-k").arg(self.keys(from));
        c.args(extra);
        Proc::spawn("npt", c)
    }

    /// Restart the atServer on the same directory (same ports are not guaranteed, so the
    /// root address is re-read).
    pub fn restart_atserver(&mut self) {
        self.atserver.terminate();
        let (p, root, ca) = start_atserver_in(&self.bin, &self.dir, &[]);
        assert_eq!(
            root, self.root,
            "the atserver must come back on the same root address"
        );
        self.atserver = p;
        self.ca = ca;
    }

    /// `kill -9` of the atServer, then a start on the same directory; returns when it is ready.
    pub fn kill9_and_restart_atserver(&mut self) {
        self.atserver.kill9();
        let (p, root, ca) = start_atserver_in(&self.bin, &self.dir, &[]);
        assert_eq!(
            root, self.root,
            "the atserver must come back on the same root address"
        );
        self.atserver = p;
        self.ca = ca;
    }

    /// `kill -9` of srvd (no restart).
    pub fn kill9_srvd(&mut self) {
        if let Some(mut p) = self.srvd.take() {
            p.kill9();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::env::var_os("NOPORTS_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn start_atserver(bin: &Path, dir: &Path, create: &str) -> (Proc, String, PathBuf) {
    start_atserver_in(bin, dir, &["--create", create])
}

fn start_atserver_in(bin: &Path, dir: &Path, extra: &[&str]) -> (Proc, String, PathBuf) {
    // `NOPORTS_TEST_ATSERVER_WRAP="heaptrack"` (or strace with fault injection, valgrind ...)
    // runs the atserver under that command, split on spaces.
    let wrap = std::env::var("NOPORTS_TEST_ATSERVER_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut c = match wrap.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(wrap).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.arg("atserver")
        .arg("--dir")
        .arg(dir.join("atserver"))
        .args(["--bind", "127.0.0.1"]);
    // A fixed root port per stack directory lets a restarted server keep its address.
    let port_file = dir.join("root-port");
    let port = match std::fs::read_to_string(&port_file) {
        Ok(p) => p.trim().to_string(),
        Err(_) => "0".to_string(),
    };
    c.args(["--root-port", &port]).args(extra);
    // Extra atserver arguments for soak runs (e.g. a higher --max-connections).
    if let Ok(more) = std::env::var("NOPORTS_TEST_ATSERVER_ARGS") {
        c.args(more.split_whitespace());
    }
    let p = Proc::spawn("atserver", c);
    let line = p.wait_for("ready root=", Duration::from_secs(120)).unwrap();
    let mut root = String::new();
    let mut ca = PathBuf::new();
    for word in line.split_whitespace() {
        if let Some(r) = word.strip_prefix("root=") {
            root = r.to_string();
        }
        if let Some(c) = word.strip_prefix("ca=") {
            ca = PathBuf::from(c);
        }
    }
    if let Some((_, port)) = root.rsplit_once(':') {
        let _ = std::fs::write(&port_file, port);
    }
    (p, root, ca)
}

/// The AEAD our ends pick for nps1 on this machine when nothing forces one
/// (docs/suite-v1.md §1 item 4): AES-256-GCM where /proc/cpuinfo lists AES and carry-less
/// multiply instructions.
pub fn fastest_aead_here() -> &'static str {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .unwrap_or_default();
    let has = |w: &str| flags.split_whitespace().any(|f| f == w);
    if has("aes") && (has("pclmulqdq") || has("pmull")) {
        "aes-256-gcm"
    } else {
        "chacha20-poly1305"
    }
}

/// A TCP service answering every byte with the byte + 1 (mod 256), so the test can tell the
/// two directions apart. Returns its port; runs until the process ends.
pub fn start_plus_one_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    for b in &mut buf[..n] {
                        *b = b.wrapping_add(1);
                    }
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Parse `npt is listening on localhost:<port>` from npt's output.
pub fn npt_port(npt: &Proc) -> Result<u16, String> {
    let line = npt.wait_for("npt is listening on localhost:", Duration::from_secs(60))?;
    line.rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("bad line {line:?}"))
}

/// Send `total` bytes through `port` and check every answered byte is the sent byte + 1.
/// Returns (bytes each way, seconds).
pub fn transfer_and_verify(port: u16, total: usize) -> Result<(usize, f64), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = s.try_clone().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let writer = std::thread::spawn(move || -> Result<(), String> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < total {
            let n = chunk.len().min(total - sent);
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = ((sent + i) % 251) as u8;
            }
            s.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
            sent += n;
        }
        Ok(())
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < total {
        // A signal to this test process (a child's exit) interrupts the read: read again.
        let n = match reader.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.map_err(|e| format!("after {got} bytes: {e}"))?,
        };
        if n == 0 {
            return Err(format!("connection closed after {got} of {total} bytes"));
        }
        for (i, b) in buf[..n].iter().enumerate() {
            let expect = (((got + i) % 251) as u8).wrapping_add(1);
            if *b != expect {
                return Err(format!("byte {} is {b}, expected {expect}", got + i));
            }
        }
        got += n;
    }
    writer.join().map_err(|_| "writer panicked".to_string())??;
    Ok((total, start.elapsed().as_secs_f64()))
}

/// Resident set size of a process in KiB (Linux), 0 if unknown.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of a process (Linux).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A stand-in relay: accepts connections on 127.0.0.1 and records the first line of each
/// (the auth line a daemon sends). Returns its port and the lines so far.
pub fn recording_listener() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let rec = lines.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let rec = rec.clone();
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut line = String::new();
                let _ = BufReader::new(c).read_line(&mut line);
                rec.lock().unwrap().push(line);
            });
        }
    });
    (port, lines)
}
