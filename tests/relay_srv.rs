//! The `srv` applet's parent-facing contract (noports.md §5.6), through the real binary:
//! RV_* environment, `rv started successfully` on stderr, exit 200 on failure, and the
//! AES-CTR bytes of §5.7 on the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KAT_KEY: &str = "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=";
const KAT_IV: &str = "MTIzNDU2Nzg5MEFCQ0RFRg==";
const KAT_CIPHER: &str = "f79020f51385b6a0c2d7371d058d93c1ac7b02624df784e5af5b";

fn srv() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_noports"));
    c.arg("srv")
        .env_remove("RV_AUTH")
        .env_remove("RV_AES")
        .env_remove("RV_IV");
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits for the child with a deadline, killing it if it overruns.
fn wait(mut child: std::process::Child, limit: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("srv did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// (flags, environment, expected message)
type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn missing_environment_is_a_usage_error() {
    let cases: &[UsageCase] = &[
        (
            &["--rv-auth"],
            &[],
            "--rv-auth required, but RV_AUTH is not in environment",
        ),
        (
            &["--rv-e2ee"],
            &[("RV_IV", KAT_IV)],
            "--rv-e2ee required, but RV_AES is not in environment",
        ),
        (
            &["--rv-e2ee"],
            &[("RV_AES", KAT_KEY)],
            "--rv-e2ee required, but RV_IV is not in environment",
        ),
    ];
    for (flags, env, want) in cases {
        let mut c = srv();
        c.args(["-h", "127.0.0.1", "-p", "9"])
            .args(*flags)
            .envs(env.iter().copied());
        let (code, err) = wait(c.spawn().unwrap(), Duration::from_secs(10));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn unreachable_relay_exits_200_with_the_exception_line() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = srv();
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &dead.to_string(),
        "--multi",
        "--rv-auth",
    ])
    .env("RV_AUTH", "{}");
    let (code, err) = wait(c.spawn().unwrap(), Duration::from_secs(20));
    assert_eq!(code, Some(200), "{err}");
    assert!(err.contains("Exception running srv : "), "{err}");
    assert!(!err.contains("rv started successfully"));
}

/// Daemon-side single mode: srv connects the local service, then the relay, sends the auth
/// line in clear, announces readiness, and speaks AES-256-CTR from keystream offset 0 in
/// both directions (§5.2, §5.7).
#[test]
fn daemon_single_mode_speaks_the_known_answer_bytes() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let service_port = service.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = service.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 26];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(
            &buf, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "srv decrypts the relay's bytes"
        );
        s.write_all(&buf).unwrap();
        let _ = s.shutdown(Shutdown::Write);
        let _ = s.read(&mut buf);
    });
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let mut c = srv();
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &relay_port.to_string(),
        "--local-port",
        &service_port.to_string(),
    ])
    .args([
        "--local-host",
        "127.0.0.1",
        "--timeout",
        "10",
        "--rv-auth",
        "--rv-e2ee",
    ])
    .envs([
        ("RV_AUTH", "{\"payload\":{}}"),
        ("RV_AES", KAT_KEY),
        ("RV_IV", KAT_IV),
    ]);
    let mut child = c.spawn().unwrap();
    let (mut r, _) = relay.accept().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = BufReader::new(r.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "{\"payload\":{}}\n");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut ready = String::new();
    stderr.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim_end(), "rv started successfully");
    r.write_all(&unhex(KAT_CIPHER)).unwrap();
    let mut back = [0u8; 26];
    reader.read_exact(&mut back).unwrap();
    assert_eq!(
        hex(&back),
        KAT_CIPHER,
        "the daemon's direction starts at the IV too"
    );
    drop((r, reader));
    echo.join().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "srv did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
