//! Handing a session to a detached `srv` process (the official contract, noports.md §5.6), so
//! `npt -x` / `sshnp -x` can exit while the tunnel keeps running.
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use super::session::Established;
use crate::runtime;

/// `-x`: hand the session to a detached `srv` (the official contract, noports.md §5.6) and
/// return its local port once it reports readiness.
pub async fn spawn_srv(
    est: &Established,
    local_port: u16,
    idle: Duration,
    multi: bool,
) -> Result<u16, String> {
    let port = if local_port == 0 {
        let probe = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
        probe.local_addr().map_err(|e| e.to_string())?.port()
    } else {
        local_port
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("srv")
        .args(["-h", &est.relay.host, "-p", &est.relay.port.to_string()])
        .args([
            "--local-port",
            &port.to_string(),
            "--local-host",
            "localhost",
        ])
        .args(["--timeout", &idle.as_secs().max(1).to_string()])
        .arg("--bind-local-port");
    if multi {
        cmd.arg("--multi");
    }
    // srv takes the proxy from its environment (ALL_PROXY wins over HTTPS_PROXY there too):
    // the official srv command line has no proxy flag, and ps would show credentials.
    if let Some(url) = crate::runtime::dial::configured_url() {
        cmd.env("ALL_PROXY", url);
    }
    if let Some(line) = &est.relay.auth_line {
        cmd.arg("--rv-auth").env("RV_AUTH", line.trim_end());
    }
    if let Some((k, iv)) = &est.official_b64 {
        cmd.arg("--rv-e2ee").env("RV_AES", k).env("RV_IV", iv);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start srv: {e}"))?;
    let stderr = child.stderr.take().ok_or("srv has no stderr")?;
    let (tx, rx) = async_channel::bounded::<Result<(), String>>(1);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.contains("rv started successfully") {
                let _ = tx.send_blocking(Ok(()));
                // Keep draining so srv never blocks on a full pipe.
                for _ in lines.by_ref() {}
                return;
            }
            if line.contains("Exception running srv") {
                let _ = tx.send_blocking(Err(line));
                return;
            }
        }
        let _ = tx.send_blocking(Err("srv exited before it was ready".into()));
    });
    match runtime::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Ok(Ok(()))) => Ok(port),
        Ok(Ok(Err(e))) => Err(e),
        _ => {
            let _ = child.kill();
            Err("TimeoutException: srv did not become ready".into())
        }
    }
}
