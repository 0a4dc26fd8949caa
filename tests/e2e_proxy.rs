//! Restrictive networks (issue 13 item 4): sshnpd and npt reach the atDirectory, their
//! atServers and the relay only through an HTTP CONNECT or SOCKS5 proxy written here (each
//! counts what it carried); a refusing proxy gives a clear error; a malformed `--proxy` stops
//! the applet at start. Everything on 127.0.0.1; every wait has a deadline.
#[path = "common/stack.rs"]
mod stack;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// Proxy settings a developer's environment might carry; the children must not see them.
const PROXY_ENV: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn clean(mut c: Command) -> Command {
    for v in PROXY_ENV {
        c.env_remove(v);
    }
    c
}

#[derive(Clone, Copy)]
enum Mode {
    /// HTTP CONNECT; `Some(token)` requires `Proxy-Authorization: Basic <token>`.
    Http(Option<&'static str>),
    /// HTTP proxy that answers every CONNECT with 407.
    HttpRefuse,
    Socks5,
}

/// A proxy on 127.0.0.1 recording the `host:port` of every tunnel it opened.
struct TestProxy {
    port: u16,
    carried: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<usize>>,
}

impl TestProxy {
    fn start(mode: Mode) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let carried = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (c2, r2) = (carried.clone(), refused.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(s) = conn else { continue };
                let (c3, r3) = (c2.clone(), r2.clone());
                std::thread::spawn(move || {
                    let _ = serve(s, mode, &c3, &r3);
                });
            }
        });
        TestProxy {
            port,
            carried,
            refused,
        }
    }

    fn carried(&self) -> Vec<String> {
        self.carried.lock().unwrap().clone()
    }

    fn refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }
}

fn serve(
    mut s: TcpStream,
    mode: Mode,
    carried: &Mutex<Vec<String>>,
    refused: &Mutex<usize>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let target = match mode {
        Mode::Http(_) | Mode::HttpRefuse => {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                if s.read(&mut b)? == 0 {
                    return Ok(());
                }
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let target = head
                .strip_prefix("CONNECT ")
                .and_then(|r| r.split(' ').next())
                .unwrap_or("")
                .to_string();
            let authorized = match mode {
                Mode::Http(Some(token)) => {
                    head.contains(&format!("\r\nProxy-Authorization: Basic {token}\r\n"))
                }
                Mode::HttpRefuse => false,
                _ => true,
            };
            if !authorized {
                *refused.lock().unwrap() += 1;
                s.write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
                )?;
                return Ok(());
            }
            target
        }
        Mode::Socks5 => {
            let mut hello = [0u8; 2];
            s.read_exact(&mut hello)?;
            let mut methods = vec![0u8; usize::from(hello[1])];
            s.read_exact(&mut methods)?;
            assert_eq!(hello[0], 5);
            s.write_all(&[5, 0])?;
            let mut req = [0u8; 4];
            s.read_exact(&mut req)?;
            let host = match req[3] {
                1 => {
                    let mut a = [0u8; 4];
                    s.read_exact(&mut a)?;
                    std::net::Ipv4Addr::from(a).to_string()
                }
                4 => {
                    let mut a = [0u8; 16];
                    s.read_exact(&mut a)?;
                    format!("[{}]", std::net::Ipv6Addr::from(a))
                }
                _ => {
                    let mut l = [0u8; 1];
                    s.read_exact(&mut l)?;
                    let mut n = vec![0u8; usize::from(l[0])];
                    s.read_exact(&mut n)?;
                    String::from_utf8_lossy(&n).to_string()
                }
            };
            let mut p = [0u8; 2];
            s.read_exact(&mut p)?;
            format!("{host}:{}", u16::from_be_bytes(p))
        }
    };
    let upstream = match TcpStream::connect(&target) {
        Ok(u) => u,
        Err(e) => {
            match mode {
                Mode::Socks5 => s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?,
                _ => s.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")?,
            }
            return Err(e);
        }
    };
    match mode {
        Mode::Socks5 => s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?,
        _ => s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?,
    }
    carried.lock().unwrap().push(target);
    s.set_read_timeout(None)?;
    let (mut a_r, mut a_w) = (s.try_clone()?, s);
    let (mut b_r, mut b_w) = (upstream.try_clone()?, upstream);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b_r, &mut a_w);
        let _ = a_w.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut a_r, &mut b_w);
    let _ = b_w.shutdown(Shutdown::Write);
    Ok(())
}

/// `npt` as [`Stack::npt`] builds it, without the developer's proxy environment.
fn npt(stack: &Stack, device: &str, port: u16, extra: &[&str]) -> Proc {
    let mut c = clean(stack.command("npt"));
    c.args(["-f", CLIENT, "-t", DEVICE, "-r", RELAY, "-d", device]);
    c.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    c.args(["--root-domain", &stack.root]);
    c.arg("-k").arg(stack.keys(CLIENT));
    c.args(extra);
    Proc::spawn("npt", c)
}

/// The two relay ports of the session srvd opened last (from its `-v` log).
fn relay_ports(stack: &Stack) -> Vec<String> {
    let srvd = stack.srvd.as_ref().unwrap();
    let line = srvd
        .wait_for("using ports (", Duration::from_secs(10))
        .unwrap();
    let inside = line.rsplit('(').next().unwrap().trim_end_matches(')');
    inside
        .split(',')
        .map(|p| format!("127.0.0.1:{}", p.trim()))
        .collect()
}

#[test]
fn sshnpd_via_http_connect_and_npt_via_socks5_move_verified_data() {
    let stack = Stack::start(bin(), "e2e-proxy", &[]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");
    // "bob:pw-s3cret" in base64: the daemon must present it and never log it.
    let http = TestProxy::start(Mode::Http(Some("Ym9iOnB3LXMzY3JldA==")));
    let socks = TestProxy::start(Mode::Socks5);
    let http_url = format!("http://bob:pw-s3cret@127.0.0.1:{}", http.port);
    let socks_url = format!("socks5://127.0.0.1:{}", socks.port);

    let mut c = clean(stack.command("sshnpd"));
    c.args(["--proxy", &http_url]);
    let daemon = stack.start_daemon_with(c, "dev1", CLIENT, &permit);
    let npt = npt(
        &stack,
        "dev1",
        service,
        &["--proxy", &socks_url, "-T", "3s", "-v"],
    );
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 2 * 1024 * 1024).unwrap();
    transfer_and_verify(port, 1000).unwrap();

    let root = stack.root.clone();
    let relays = relay_ports(&stack);
    let (via_http, via_socks) = (http.carried(), socks.carried());
    // Each side looked its atServer up in the atDirectory through its proxy, reached the
    // atServer through it (a different port on the same host), and its relay socket too.
    for (who, carried) in [("sshnpd", &via_http), ("npt", &via_socks)] {
        assert!(
            carried.contains(&root),
            "{who}'s proxy never carried the atDirectory {root}: {carried:?}"
        );
        assert!(
            carried
                .iter()
                .any(|t| *t != root && !relays.contains(t) && t.starts_with("127.0.0.1:")),
            "{who}'s proxy never carried an atServer connection: {carried:?}"
        );
        assert!(
            carried.iter().any(|t| relays.contains(t)),
            "{who}'s proxy never carried a relay socket ({relays:?}): {carried:?}"
        );
    }
    assert_eq!(http.refused(), 0, "the daemon's credentials were refused");
    for (name, out) in [("sshnpd", daemon.output()), ("npt", npt.output())] {
        assert!(
            !out.contains("pw-s3cret"),
            "{name} logged the proxy password"
        );
    }
    daemon
        .wait_for(
            &format!("go through http://127.0.0.1:{} (from --proxy)", http.port),
            Duration::from_secs(1),
        )
        .unwrap();
}

#[test]
fn a_refusing_proxy_gives_an_error_naming_the_proxy_and_its_reply() {
    let stack = Stack::start(bin(), "e2e-proxy-407", &[]);
    let refuse = TestProxy::start(Mode::HttpRefuse);
    let url = format!("http://127.0.0.1:{}", refuse.port);

    // npt gives up with the proxy's answer in its error.
    let mut n = npt(&stack, "dev1", 22, &["--proxy", &url]);
    let status = n
        .wait_exit(Duration::from_secs(60))
        .expect("npt must give up, not hang");
    assert!(!status.success());
    let out = n.output();
    assert!(
        out.contains(&format!(
            "proxy {url} refused CONNECT to {}: HTTP/1.1 407 Proxy Authentication Required",
            stack.root
        )),
        "{out}"
    );
    assert!(out.contains("wants a user name and password"), "{out}");

    // With credentials the hint changes, and the password appears nowhere.
    let with_creds = format!("http://eve:hunter2@127.0.0.1:{}", refuse.port);
    let mut n = npt(&stack, "dev1", 22, &["--proxy", &with_creds]);
    n.wait_exit(Duration::from_secs(60))
        .expect("npt must give up, not hang");
    let out = n.output();
    assert!(out.contains("rejected the user name and password"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");

    // The daemon keeps retrying and logs the refusal each time.
    let mut c = clean(stack.command("sshnpd"));
    c.args(["-a", DEVICE, "-m", CLIENT, "-d", "dev1", "--proxy", &url]);
    c.args(["--root-domain", &stack.root, "-v"]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let daemon = Proc::spawn("sshnpd", c);
    daemon
        .wait_for("407 Proxy Authentication Required", Duration::from_secs(30))
        .unwrap();
    assert!(refuse.refused() >= 3, "{} refusals", refuse.refused());
}

#[test]
fn a_malformed_proxy_is_refused_at_start_by_every_applet() {
    let dir = unique_dir("e2e-proxy-bad");
    let keys = dir.join("none.atKeys");
    let keys = keys.to_str().unwrap();
    let applets: [(&str, Vec<&str>); 5] = [
        ("sshnpd", vec!["-a", "@d", "-m", "@c", "-k", keys]),
        (
            "npt",
            vec![
                "-f", "@c", "-t", "@d", "-r", "@r", "-d", "dev1", "-p", "22", "-k", keys,
            ],
        ),
        (
            "sshnp",
            vec!["-f", "@c", "-t", "@d", "-r", "@r", "-d", "dev1", "-k", keys],
        ),
        ("srvd", vec!["-a", "@r", "-i", "127.0.0.1", "-k", keys]),
        ("at_activate", vec!["status", "-a", "@x"]),
    ];
    for (applet, args) in &applets {
        for (bad, want) in [
            ("ftp://127.0.0.1:21", "unsupported proxy scheme"),
            ("http://u:hunter2@127.0.0.1", "missing :port"),
        ] {
            let mut c = clean(Command::new(bin()));
            c.arg(applet).args(args).args(["--proxy", bad]);
            c.env("HOME", &dir);
            let out = c.output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(1), "{applet} --proxy {bad}: {text}");
            assert!(
                text.contains("--proxy: ") && text.contains(want),
                "{applet} --proxy {bad}: {text}"
            );
            assert!(
                !text.contains("hunter2"),
                "{applet} echoed the password: {text}"
            );
        }
    }
    // From the environment, the error names the variable.
    let mut c = clean(Command::new(bin()));
    c.arg("npt")
        .args(&applets[1].1)
        .env("ALL_PROXY", "gopher://x:70");
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ALL_PROXY: unsupported proxy scheme"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn official_proxy_root_domain_skips_the_atdirectory() {
    let stack = Stack::start(bin(), "e2e-proxy-root", &[]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");

    // Learn where the device's atServer listens: the one target besides the atDirectory.
    let first = TestProxy::start(Mode::Http(None));
    let mut c = clean(stack.command("sshnpd"));
    c.args(["--proxy", &format!("http://127.0.0.1:{}", first.port)]);
    let mut daemon = stack.start_daemon_with(c, "dev1", CLIENT, &permit);
    daemon.terminate();
    let server = first
        .carried()
        .into_iter()
        .find(|t| *t != stack.root)
        .expect("the daemon reached its atServer");

    // `--root-domain proxy:host:port` goes straight there: the (forward) proxy, which sees
    // every connection, never carries a connection to the atDirectory.
    let second = TestProxy::start(Mode::Http(None));
    let mut c = clean(stack.command("sshnpd"));
    c.args([
        "-a",
        DEVICE,
        "-m",
        CLIENT,
        "-d",
        "dev1",
        "--permit-open",
        &permit,
    ]);
    c.args(["--root-domain", &format!("proxy:{server}"), "-v"]);
    c.args(["--proxy", &format!("http://127.0.0.1:{}", second.port)]);
    c.arg("-k").arg(stack.keys(DEVICE));
    let daemon = Proc::spawn("sshnpd", c);
    daemon
        .wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    let npt = npt(&stack, "dev1", service, &["-T", "3s"]);
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 100_000).unwrap();
    let carried = second.carried();
    assert!(carried.contains(&server), "{carried:?}");
    assert!(
        !carried.contains(&stack.root),
        "the atDirectory was asked despite proxy: {carried:?}"
    );
}

#[test]
fn a_detached_srv_from_npt_x_keeps_using_the_proxy() {
    let stack = Stack::start(bin(), "e2e-proxy-x", &[]);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let socks = TestProxy::start(Mode::Socks5);
    let url = format!("socks5h://127.0.0.1:{}", socks.port);
    let mut npt = npt(
        &stack,
        "dev1",
        service,
        &["--proxy", &url, "-x", "-T", "5s"],
    );
    let status = npt
        .wait_exit(Duration::from_secs(60))
        .expect("npt -x must exit once connected");
    assert!(status.success(), "npt -x failed:\n{}", npt.output());
    let port: u16 = npt
        .output()
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("npt -x prints the local port alone on a line");
    transfer_and_verify(port, 256 * 1024).unwrap();
    // With -x, npt itself opens no relay socket: the detached srv does, so the proxy carrying
    // one means srv took the proxy from the environment npt gave it (without it: none).
    let relays = relay_ports(&stack);
    let carried = socks.carried();
    assert!(
        carried.iter().any(|t| relays.contains(t)),
        "srv reached the relay {relays:?} without the proxy: {carried:?}"
    );
}

#[test]
fn at_activate_takes_proxy_in_any_position() {
    let stack = Stack::start(bin(), "e2e-proxy-act", &[]);
    let http = TestProxy::start(Mode::Http(None));
    let url = format!("http://127.0.0.1:{}", http.port);
    let root = stack.root.clone();
    let forms: [Vec<String>; 2] = [
        ["--proxy", &url, "status", "-a", DEVICE, "-r", &root]
            .map(String::from)
            .to_vec(),
        [
            "status",
            "-a",
            DEVICE,
            &format!("--proxy={url}"),
            "-r",
            &root,
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, args) in forms.iter().enumerate() {
        let mut c = clean(stack.command("at_activate"));
        c.args(args);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains("activated") || err.contains("OK"), "{err}");
        let carried = http.carried();
        let to_root = carried.iter().filter(|t| **t == root).count();
        assert_eq!(to_root, i + 1, "{args:?}: {carried:?}");
        assert_eq!(
            carried.len(),
            2 * (i + 1),
            "directory and atServer: {carried:?}"
        );
    }
}

#[test]
fn srvd_reaches_its_atserver_through_the_proxy() {
    let mut stack = Stack::start(bin(), "e2e-proxy-srvd", &[]);
    if let Some(mut direct) = stack.srvd.take() {
        direct.terminate();
    }
    let http = TestProxy::start(Mode::Http(None));
    let mut c = clean(stack.command("srvd"));
    c.args([
        "-a",
        RELAY,
        "-i",
        "127.0.0.1",
        "--root-domain",
        &stack.root,
        "-v",
    ]);
    c.args(["--proxy", &format!("http://127.0.0.1:{}", http.port)]);
    c.arg("-k").arg(stack.keys(RELAY));
    let srvd = Proc::spawn("srvd", c);
    srvd.wait_for("monitor started", Duration::from_secs(30))
        .unwrap();
    stack.srvd = Some(srvd);
    let service = start_plus_one_service();
    let _daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let npt = npt(&stack, "dev1", service, &["-T", "3s"]);
    let port = npt_port(&npt).unwrap();
    transfer_and_verify(port, 100_000).unwrap();
    let carried = http.carried();
    assert!(carried.contains(&stack.root), "{carried:?}");
    assert!(
        carried.iter().any(|t| *t != stack.root),
        "srvd's atServer connection: {carried:?}"
    );
}
