//! The LuCI app in a real browser: headless Chromium loads the views from luci-app/ with a test
//! double of the LuCI JavaScript runtime (tests/luci/luci-double.js: form, uci, rpc, fs, poll,
//! view, ui, E(), _() and L, recorded and answered, the rpcd ACL of the app enforced) and runs a
//! scenario page (tests/luci/harness.html + scenarios.js) that drives the view through DOM
//! events and reports a verdict with the recorded calls.
//!
//! This test serves the repository's files on 127.0.0.1 (ephemeral port), runs Chromium once per
//! scenario with `--screenshot`, and reads the verdict the page POSTs back. The page's load event
//! waits on /hold, which the server answers only once the verdict arrived (or after a timeout), so
//! the screenshot shows the finished scenario. Screenshots: target/luci-screenshots/*.png.
//!
//! It needs /usr/bin/chromium ($CHROMIUM overrides the path), which `scripts/test-deps.sh`
//! installs (Debian's chromium), so it is `#[ignore]`d for a plain `cargo test`; `make test`
//! installs chromium and runs it with `--ignored`, and then a missing browser fails it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};

/// How long the page may take to post its verdict.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(45);
/// How long one Chromium run may take in all (the /hold wait included).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// $CHROMIUM when set (and only it), else Debian's /usr/bin/chromium.
fn chromium() -> Option<PathBuf> {
    let candidate = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    candidate.is_file().then_some(candidate)
}

#[derive(Default)]
struct Results {
    by_scenario: HashMap<String, String>,
}

struct Server {
    port: u16,
    results: Arc<(Mutex<Results>, Condvar)>,
}

/// Generated responses the pages fetch from /fixture/<name>.
type Fixtures = Arc<HashMap<String, String>>;

/// Only these trees are served (read-only); everything else is 404.
const SERVED: &[&str] = &["luci-app/", "tests/luci/", "openwrt/noports/files/"];

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("css") => "text/css",
        _ => "text/plain; charset=utf-8",
    }
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn query_param(query: &str, key: &str) -> String {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

fn handle(mut stream: TcpStream, results: Arc<(Mutex<Results>, Condvar)>, fixtures: Fixtures) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => return,
    };
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let path = path.trim_start_matches('/').to_string();
    let scenario = query_param(query, "scenario");
    let (lock, cvar) = &*results;

    match (method.as_str(), path.as_str()) {
        ("POST", "result") => {
            let mut body = vec![0u8; length.min(4 << 20)];
            let ok = reader.read_exact(&mut body).is_ok();
            respond(&mut stream, "204 No Content", "text/plain", b"");
            if ok {
                let mut r = lock.lock().unwrap();
                r.by_scenario
                    .insert(scenario, String::from_utf8_lossy(&body).into_owned());
                cvar.notify_all();
            }
        }
        ("GET", "hold") => {
            // Keeps the page's load event (and so the screenshot) waiting for the verdict.
            let deadline = Instant::now() + SCENARIO_TIMEOUT;
            let mut r = lock.lock().unwrap();
            while !r.by_scenario.contains_key(&scenario) && Instant::now() < deadline {
                r = cvar
                    .wait_timeout(r, deadline.saturating_duration_since(Instant::now()))
                    .unwrap()
                    .0;
            }
            drop(r);
            respond(&mut stream, "200 OK", "text/plain", b"done");
        }
        ("GET", p) if p.starts_with("fixture/") => match fixtures.get(&p["fixture/".len()..]) {
            Some(body) => respond(&mut stream, "200 OK", "text/plain", body.as_bytes()),
            None => respond(&mut stream, "404 Not Found", "text/plain", b"no fixture"),
        },
        ("GET", p) => {
            let allowed = SERVED.iter().any(|prefix| p.starts_with(prefix))
                && !p.split('/').any(|seg| seg == ".." || seg.is_empty());
            match allowed.then(|| std::fs::read(root().join(p))) {
                Some(Ok(body)) => respond(&mut stream, "200 OK", content_type(p), &body),
                _ => respond(&mut stream, "404 Not Found", "text/plain", b"not found"),
            }
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", b""),
    }
}

fn serve(fixtures: HashMap<String, String>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let results: Arc<(Mutex<Results>, Condvar)> = Arc::default();
    let shared = results.clone();
    let fixtures: Fixtures = Arc::new(fixtures);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (shared, fixtures) = (shared.clone(), fixtures.clone());
            std::thread::spawn(move || handle(stream, shared, fixtures));
        }
    });
    Server { port, results }
}

/// What the shipped at_enroll.sh prints for `status` on an enrolled router whose daemon keeps
/// a status file: the real script, run by sh with /lib/functions.sh replaced by a stub holding
/// the shipped config (section cfg01e2b4) and its /var paths moved into a temporary directory.
fn at_enroll_status() -> String {
    let dir = std::env::temp_dir().join(format!("noports-luci-enroll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = dir.join("home");
    let keys = home.join(".atsign/keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::create_dir_all(dir.join("run/sshnpd")).unwrap();
    std::fs::write(keys.join("@atsign_key.atKeys"), "{}").unwrap();
    // As sshnpd --status-file writes it (src/daemon/status.rs), but spread over lines: the
    // script must put it on one.
    std::fs::write(
        dir.join("run/sshnpd/cfg01e2b4.status"),
        "{\"state\":\"running\",\"atsign\":\"@atsign\",\"device\":\"devicename\",\"pid\":4242,\n\
         \"since\":\"2026-12-02T17:00:00Z\",\"sessions\":3,\n\
         \"last_session\":{\"at\":\"2026-12-02T18:04:05Z\",\"from\":\"@alice\",\"service\":\"localhost:22\",\"suite\":\"nps1\"}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("at_enroll.log"),
        "at_enroll: enrolled; keys written; otp removed from /etc/config/sshnpd\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("functions.sh"),
        format!(
            r#"config_load() {{ :; }}
config_foreach() {{ local fn="$1" s; shift; for s in $CONFIG_SECTIONS; do "$fn" "$s" "$@"; done; }}
config_get() {{ local __v; eval "__v=\${{CONFIG_${{2}}_${{3}}:-}}"; [ -n "$__v" ] || __v="$4"; eval "$1=\$__v"; }}
CONFIG_SECTIONS="cfg01e2b4"
CONFIG_cfg01e2b4_enabled=0
CONFIG_cfg01e2b4_atsign='@atsign'
CONFIG_cfg01e2b4_manager='@manager'
CONFIG_cfg01e2b4_device='devicename'
CONFIG_cfg01e2b4_home='{}'
"#,
            home.display()
        ),
    )
    .unwrap();
    let mut script =
        std::fs::read_to_string(root().join("openwrt/noports/files/at_enroll.sh")).unwrap();
    for (from, to) in [
        (
            ". /lib/functions.sh".to_string(),
            format!(". '{}/functions.sh'", dir.display()),
        ),
        (
            "LOG=/var/log/at_enroll.log".into(),
            format!("LOG='{}/at_enroll.log'", dir.display()),
        ),
        (
            "PIDFILE=/var/run/at_enroll.pid".into(),
            format!("PIDFILE='{}/pid'", dir.display()),
        ),
        (
            "STATUS_DIR=/var/run/sshnpd".into(),
            format!("STATUS_DIR='{}/run/sshnpd'", dir.display()),
        ),
    ] {
        assert!(script.contains(&from), "at_enroll.sh no longer has {from}");
        script = script.replace(&from, &to);
    }
    std::fs::write(dir.join("at_enroll.sh"), script).unwrap();
    let out = Command::new("sh")
        .arg(dir.join("at_enroll.sh"))
        .arg("status")
        .output()
        .expect("run sh");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "at_enroll.sh status: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs Chromium on one scenario page; returns the verdict JSON text the page posted.
fn run_scenario(browser: &Path, server: &Server, scenario: &str) -> String {
    let shots = root().join("target/luci-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("{scenario}.png"));
    let _ = std::fs::remove_file(&shot);
    let profile = std::env::temp_dir().join(format!(
        "noports-luci-chromium-{}-{scenario}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let url = format!(
        "http://127.0.0.1:{}/tests/luci/harness.html?scenario={scenario}",
        server.port
    );
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1100,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .env("HOME", &profile)
        // Its own process group, so a timeout can end the renderers and helpers with it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stderr = child.stderr.take().unwrap();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = errs.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    let verdict = server
        .results
        .0
        .lock()
        .unwrap()
        .by_scenario
        .get(scenario)
        .cloned();
    let Some(verdict) = verdict else {
        panic!(
            "scenario {scenario}: the page posted no verdict (chromium {}; {:.1} s)\nchromium stderr:\n{stderr}",
            match status {
                Some(s) => format!("exited with {s}"),
                None => "killed after the timeout".into(),
            },
            start.elapsed().as_secs_f64()
        );
    };
    assert!(
        status.is_some(),
        "scenario {scenario}: chromium did not exit within {BROWSER_TIMEOUT:?}"
    );
    assert!(
        shot.is_file(),
        "scenario {scenario}: no screenshot at {} \nchromium stderr:\n{stderr}",
        shot.display()
    );
    verdict
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v {
        Value::Object(o) => o.get(key).unwrap_or(&Value::Null),
        _ => &Value::Null,
    }
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => json::to_string(other),
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        _ => &[],
    }
}

/// Checks the page's verdict: every check passed; returns the recorded calls.
fn verdict_ok(scenario: &str, text: &str) -> Vec<Value> {
    let v: Value =
        json::from_str(text).unwrap_or_else(|_| panic!("scenario {scenario}: bad verdict {text}"));
    let mut failed = Vec::new();
    let checks = array(get(&v, "checks"));
    for c in checks {
        let ok = matches!(get(c, "ok"), Value::Bool(true));
        let line = format!(
            "  [{}] {} {}",
            if ok { "ok" } else { "FAIL" },
            string(get(c, "name")),
            if ok {
                String::new()
            } else {
                string(get(c, "detail"))
            }
        );
        eprintln!("{scenario}:{line}");
        if !ok {
            failed.push(line);
        }
    }
    if let Value::String(e) = get(&v, "error") {
        failed.push(format!("  scenario error: {e}"));
    }
    assert!(
        !checks.is_empty() || !failed.is_empty(),
        "scenario {scenario}: no checks ran: {text}"
    );
    assert!(
        failed.is_empty(),
        "scenario {scenario} failed:\n{}\ncalls: {}",
        failed.join("\n"),
        string(get(&v, "calls"))
    );
    array(get(&v, "calls")).to_vec()
}

fn call_line(c: &Value) -> String {
    let args: Vec<String> = array(get(c, "args")).iter().map(string).collect();
    format!("{} {}", string(get(c, "fn")), args.join(" "))
}

#[test]
#[ignore = "needs chromium ($CHROMIUM or /usr/bin/chromium): scripts/test-deps.sh installs it; make test runs it"]
fn luci_views_in_chromium() {
    let Some(browser) = chromium() else {
        panic!("no chromium ($CHROMIUM or /usr/bin/chromium): run scripts/test-deps.sh (apt-get install chromium)");
    };
    let mut fixtures = HashMap::new();
    fixtures.insert("at_enroll_status".to_string(), at_enroll_status());
    let server = serve(fixtures);

    // Configuration page: renders /etc/config/sshnpd, the daemon state, validates, saves.
    let calls = verdict_ok("config", &run_scenario(&browser, &server, "config"));
    let lines: Vec<String> = calls.iter().map(call_line).collect();
    let writes: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("uci.save") || l.starts_with("uci.apply"))
        .collect();
    // One save with the net changes (sorted "config.section.option=value"), then the apply
    // with rollback; the earlier attempt with an invalid device name saved nothing.
    let expected = [
        "uci.save sshnpd.cfg01e2b4.arg=[\"--device-group my group\"] \
         sshnpd.cfg01e2b4.args=-v --permit-open localhost:22 \
         sshnpd.cfg01e2b4.atsign=@my_router sshnpd.cfg01e2b4.device=router \
         sshnpd.cfg01e2b4.enabled=1 sshnpd.cfg01e2b4.manager=@alice,@bob",
        "uci.apply true",
    ];
    assert_eq!(
        writes,
        expected.iter().collect::<Vec<_>>(),
        "config: what Save & Apply stored\nall calls:\n{}",
        lines.join("\n")
    );

    // Enrollment page: start runs detached and is polled to completion.
    let calls = verdict_ok("enroll", &run_scenario(&browser, &server, "enroll"));
    let execs: Vec<String> = calls
        .iter()
        .map(call_line)
        .filter(|l| l.starts_with("fs.exec "))
        .collect();
    assert_eq!(
        execs
            .iter()
            .filter(|l| *l == "fs.exec /usr/bin/at_enroll.sh start")
            .count(),
        1,
        "enroll: one detached start\n{}",
        execs.join("\n")
    );
    assert!(
        execs
            .iter()
            .all(|l| l == "fs.exec /usr/bin/at_enroll.sh start"
                || l == "fs.exec /usr/bin/at_enroll.sh status"),
        "enroll: only start and status run\n{}",
        execs.join("\n")
    );
    assert!(
        execs.iter().filter(|l| l.ends_with(" status")).count() >= 3,
        "enroll: the status is polled\n{}",
        execs.join("\n")
    );
    // The passcode (7 bytes with its newline) goes to the one writable file, mode 0600, once.
    let writes: Vec<String> = calls
        .iter()
        .map(call_line)
        .filter(|l| l.starts_with("fs.write "))
        .collect();
    assert_eq!(
        writes,
        ["fs.write /var/run/at_enroll.passcode 7 384"],
        "enroll: the passcode hand-over"
    );

    // An enrollment nobody approves: stays in progress, Cancel stops it, Enroll restarts it.
    let calls = verdict_ok(
        "enroll-waiting",
        &run_scenario(&browser, &server, "enroll-waiting"),
    );
    let runs: Vec<String> = calls
        .iter()
        .map(call_line)
        .filter(|l| l.ends_with(" start") || l.ends_with(" stop"))
        .collect();
    assert_eq!(
        runs,
        [
            "fs.exec /usr/bin/at_enroll.sh start",
            "fs.exec /usr/bin/at_enroll.sh stop",
            "fs.exec /usr/bin/at_enroll.sh start"
        ],
        "enroll-waiting"
    );
}
