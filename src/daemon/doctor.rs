//! `sshnpd doctor …`: why does my daemon not answer? Runs the daemon's own start-up path one
//! step at a time with the same flags, prints one line per step (with a fix on failure), and
//! exits with the number of the first failing step (0 when all pass).
//!
//! It never serves a session: it reads its own notifications only (a self-addressed probe and
//! policy answers), so it can run beside the real daemon.
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Config;
use super::dispatch;
use super::policy::{self, PolicyRpc};
use super::sshd;
use crate::at::conn::{lookup_server, Connection};
use crate::at::{AtClient, AtError, AtKeys, AtSign, ClientConfig, MonitorStart, NotifyOptions};
use crate::crypto::random;
use crate::runtime::{self, timeout};

/// How long the self-addressed probe may take to come back through the monitor.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);
/// Clock difference beyond which TLS, APKAM and notification lifetimes start to misbehave.
const MAX_SKEW: Duration = Duration::from_secs(30);

enum Outcome {
    Ok(String),
    Fail { what: String, fix: String },
    Skip(String),
}

struct Report {
    step: u8,
    first_failure: Option<u8>,
}

impl Report {
    fn line(&mut self, name: &str, outcome: Outcome) -> bool {
        self.step += 1;
        let n = self.step;
        match outcome {
            Outcome::Ok(detail) => {
                println!("{n:>2} ok   {name}: {detail}");
                true
            }
            Outcome::Skip(why) => {
                println!("{n:>2} skip {name}: {why}");
                false
            }
            Outcome::Fail { what, fix } => {
                println!("{n:>2} FAIL {name}: {what}");
                println!("          fix: {fix}");
                self.first_failure.get_or_insert(n);
                false
            }
        }
    }
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome::Fail {
        what: what.into(),
        fix: fix.into(),
    }
}

/// `doctor`'s own flag, taken out of the daemon's: `--relay @atsign`.
pub fn take_relay_flag(argv: &mut Vec<String>) -> Result<Option<AtSign>, String> {
    let Some(i) = argv
        .iter()
        .position(|a| a == "--relay" || a.starts_with("--relay="))
    else {
        return Ok(None);
    };
    let value = match argv.remove(i).strip_prefix("--relay=") {
        Some(v) => v.to_string(),
        None if i < argv.len() => argv.remove(i),
        None => return Err("--relay needs the relay's atSign".into()),
    };
    AtSign::parse(&value)
        .map(Some)
        .map_err(|e| format!("--relay: {e}"))
}

pub fn run(config: Config, relay: Option<AtSign>) -> ExitCode {
    println!(
        "sshnpd doctor: {} device {} (root {})",
        config.atsign, config.device, config.root
    );
    let mut r = Report {
        step: 0,
        first_failure: None,
    };
    runtime::block_on(check_all(&mut r, config, relay));
    match r.first_failure {
        None => {
            println!("all checks passed");
            ExitCode::SUCCESS
        }
        Some(n) => {
            println!("first failing step: {n}");
            ExitCode::from(n)
        }
    }
}

async fn check_all(r: &mut Report, config: Config, relay: Option<AtSign>) {
    // 1-6: the chain from key file to an authenticated connection; each needs the one before.
    let keys = check_key_file(&config.key_file);
    let keys_ok = r.line("key file", keys.0);
    let root = format!("{}", config.root);
    let (reach, trust) = if keys_ok {
        check_tls(&config.root.host, config.root.port, "atDirectory").await
    } else {
        (Outcome::Skip("needs the key file".into()), None)
    };
    r.line(&format!("atDirectory {root} reachable"), reach);
    let trusted = match trust {
        Some(t) => r.line("TLS trust", t),
        None => r.line("TLS trust", Outcome::Skip("needs the atDirectory".into())),
    };
    let server = if trusted {
        check_server(&config.root, &config.atsign).await
    } else {
        Outcome::Skip("needs TLS to the atDirectory".into())
    };
    let served = r.line(&format!("atServer of {}", config.atsign), server);
    let client = if served {
        check_pkam(&config, keys.1)
            .await
            .map_or_else(|o| (o, None), |(o, c)| (o, Some(c)))
    } else {
        (Outcome::Skip("needs the atServer".into()), None)
    };
    let enrollment = keys.2.clone();
    r.line("PKAM authentication", client.0);
    let client = client.1;
    r.line(
        "enrollment",
        match (&client, enrollment) {
            (Some(_), Some(id)) => Outcome::Ok(format!("APKAM enrollment {id} is approved")),
            (Some(_), None) => Outcome::Ok("owner keys (no APKAM enrollment)".into()),
            (None, Some(id)) => Outcome::Skip(format!(
                "enrollment {id}: state unknown until PKAM succeeds"
            )),
            (None, None) => Outcome::Skip("needs PKAM".into()),
        },
    );

    // 7-8: one self-addressed notification through the monitor measures both.
    let (skew, monitor) = match &client {
        Some(c) => check_monitor(c).await,
        None => (
            Outcome::Skip("needs PKAM".into()),
            Outcome::Skip("needs PKAM".into()),
        ),
    };
    r.line("clock", skew);
    r.line("monitor receiving", monitor);

    // 9: the relay's atSign (optional).
    r.line(
        "relay",
        match (&relay, &client) {
            (None, _) => Outcome::Skip("give --relay @relay to check the relay's atSign".into()),
            (Some(_), None) => Outcome::Skip("needs PKAM".into()),
            (Some(rl), Some(c)) => check_relay(&config, c, rl).await,
        },
    );

    // 10-11: local, independent of the network.
    r.line(
        &format!("sshd on port {}", config.local_sshd_port),
        check_sshd(&config).await,
    );
    r.line("permit-open", check_permit_open(&config));

    // 12: the policy service (with -p).
    let policy = match (&config.policy, client) {
        (None, _) => Outcome::Skip("no -p (policy service) configured".into()),
        (Some(_), None) => Outcome::Skip("needs PKAM".into()),
        (Some(p), Some(c)) => {
            let p = p.clone();
            check_policy(config, c, p).await
        }
    };
    r.line("policy service", policy);
}

/// (outcome, keys, enrollment id)
fn check_key_file(path: &Path) -> (Outcome, Option<AtKeys>, Option<String>) {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return (
            fail(
                format!("{shown}: {e}"),
                "enroll this device (at_activate enroll, or at_enroll.sh on OpenWrt) or pass -k",
            ),
            None,
            None,
        ),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return (
            fail(
                format!("{shown}: mode {mode:04o} lets other users read the atSign's private keys"),
                format!("chmod 600 {shown}"),
            ),
            None,
            None,
        );
    }
    match AtKeys::load(path) {
        Ok(k) => {
            let id = k.enrollment_id.clone();
            (
                Outcome::Ok(format!("{shown} (mode {mode:04o})")),
                Some(k),
                id,
            )
        }
        Err(e) => (
            fail(
                format!("{shown}: {e}"),
                "the file is damaged or not an atKeys file: enroll again or restore it",
            ),
            None,
            None,
        ),
    }
}

/// TCP then TLS to `host:port`: (reachable, trusted) with `trusted` None when TCP failed.
async fn check_tls(host: &str, port: u16, what: &str) -> (Outcome, Option<Outcome>) {
    let start = Instant::now();
    match Connection::connect(host, port).await {
        Ok(conn) => {
            let ms = start.elapsed().as_millis();
            conn.close().await;
            (
                Outcome::Ok(format!("connected in {ms} ms")),
                Some(Outcome::Ok("certificate verified".into())),
            )
        }
        Err(e @ (AtError::Tls { .. } | AtError::UntrustedCertificate { .. })) => (
            Outcome::Ok("TCP connected".into()),
            Some(fail(format!("{what} {host}:{port}: {e}"), tls_fix())),
        ),
        Err(e) => (
            fail(
                format!("{e}"),
                format!(
                    "check DNS and that outbound TCP to {host}:{port} is allowed (firewall, \
                     uplink), or set --root-domain"
                ),
            ),
            None,
        ),
    }
}

fn tls_fix() -> String {
    let now = runtime::utc_timestamp(' ');
    let now = now.get(..19).unwrap_or(&now);
    let mut fix = String::from(
        "for a self-hosted atServer set NOPORTS_CA_FILE to its CA certificate (ca.pem)",
    );
    // A router without a real-time clock boots in 1970 until NTP runs: every certificate is
    // then "not yet valid".
    if now < "2025" {
        fix.push_str(&format!(
            "; the clock says {now}: start NTP (sysntpd) first"
        ));
    } else {
        fix.push_str(&format!("; check the clock ({now} UTC)"));
    }
    fix
}

async fn check_server(root: &crate::at::RootAddr, atsign: &AtSign) -> Outcome {
    let (host, port) =
        match lookup_server(root, atsign).await {
            Ok(a) => a,
            Err(e) => return fail(
                e.to_string(),
                "check the atSign (-a) and the atDirectory (--root-domain); a new atSign must be \
                 activated first (at_activate)",
            ),
        };
    match check_tls(&host, port, "atServer").await {
        (Outcome::Ok(_), Some(Outcome::Ok(_))) => Outcome::Ok(format!("{host}:{port}")),
        (Outcome::Ok(_), Some(Outcome::Fail { what, fix })) => fail(what, fix),
        (Outcome::Fail { what, .. }, _) => fail(
            format!("{host}:{port}: {what}"),
            format!("outbound TCP to port {port} must be allowed"),
        ),
        _ => fail(format!("{host}:{port}: unreachable"), "check the network"),
    }
}

async fn check_pkam(config: &Config, keys: Option<AtKeys>) -> Result<(Outcome, AtClient), Outcome> {
    let Some(keys) = keys else {
        return Err(Outcome::Skip("needs the key file".into()));
    };
    let enrolled = keys.enrollment_id.is_some();
    let cfg = ClientConfig {
        atsign: config.atsign.clone(),
        keys,
        root: config.root.clone(),
    };
    match AtClient::connect(cfg).await {
        Ok(c) => Ok((Outcome::Ok("accepted".into()), c)),
        Err(e @ AtError::Unauthorized(_)) | Err(e @ AtError::Server { .. }) => {
            let fix = if enrolled {
                "the enrollment may be pending, denied or revoked: on a machine with the \
                 atSign's owner keys run 'at_activate list -a <atSign>' and approve it, or enroll \
                 again"
            } else {
                "these keys are not this atSign's (wrong -a or -k), or the atSign was reset"
            };
            Err(fail(e.to_string(), fix))
        }
        Err(e) => Err(fail(
            e.to_string(),
            "the atServer dropped the connection: try again",
        )),
    }
}

/// (clock, monitor receiving)
async fn check_monitor(client: &AtClient) -> (Outcome, Outcome) {
    let me = client.atsign().clone();
    let name = format!("doctor{}", random::uuid_v4().replace('-', ""));
    let mut monitor = match client.monitor(&name, MonitorStart::Live).await {
        Ok(m) => m,
        Err(e) => {
            let f = fail(
                format!("cannot start a monitor: {e}"),
                "the atServer refused the monitor",
            );
            return (Outcome::Skip("needs the monitor".into()), f);
        }
    };
    let sent_at = crate::at::now_millis();
    let opts = NotifyOptions {
        ttl_ms: Some(30_000),
        ttln_ms: Some(30_000),
        ..Default::default()
    };
    if let Err(e) = client.notify(&me, &name, "probe", opts).await {
        let f = fail(
            format!("cannot send a notification: {e}"),
            "the atServer refused the notification",
        );
        return (Outcome::Skip("needs the monitor".into()), f);
    }
    let start = Instant::now();
    let arrived = timeout(PROBE_DEADLINE, async {
        loop {
            match monitor.next().await {
                Some(n) if n.key.contains(&name) => return Some(n),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    let n = match arrived {
        Ok(Some(n)) => n,
        Ok(None) => {
            let f = fail("the monitor connection ended", "check the network");
            return (Outcome::Skip("needs the monitor".into()), f);
        }
        Err(_) => {
            let f = fail(
                format!("a notification to {me} did not arrive within {PROBE_DEADLINE:?}"),
                "the atServer is not delivering notifications: check its status, retry later",
            );
            return (Outcome::Skip("needs the monitor".into()), f);
        }
    };
    let rtt = start.elapsed();
    // The server stamps the notification between our send and our receipt.
    let skew_ms = (n.epoch_millis - (sent_at + rtt.as_millis() as i64 / 2)).abs();
    let clock = if skew_ms as u128 > MAX_SKEW.as_millis() {
        fail(
            format!(
                "this clock differs from the atServer's by {} s",
                skew_ms / 1000
            ),
            "set the time (NTP: /etc/init.d/sysntpd start, or ntpd/chrony)",
        )
    } else {
        Outcome::Ok(format!("within {} ms of the atServer's", skew_ms.max(1)))
    };
    (
        clock,
        Outcome::Ok(format!(
            "a notification came back in {} ms",
            rtt.as_millis()
        )),
    )
}

async fn check_relay(config: &Config, client: &AtClient, relay: &AtSign) -> Outcome {
    let (host, port) = match lookup_server(&config.root, relay).await {
        Ok(a) => a,
        Err(e) => {
            return fail(
                format!("{relay}: {e}"),
                "check the relay's atSign (clients pass it with -r)",
            )
        }
    };
    match client.public_key(relay).await {
        Ok(_) => Outcome::Ok(format!(
            "{relay}: atServer {host}:{port}, public key published"
        )),
        Err(e) => fail(
            format!("{relay}: public key not readable: {e}"),
            "the relay's atSign is not activated, or its atServer is down",
        ),
    }
}

async fn check_sshd(config: &Config) -> Outcome {
    let port = config.local_sshd_port;
    let server = sshd::identify(port);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let banner = timeout(Duration::from_secs(3), async {
        use futures_lite::AsyncReadExt;
        let mut s = async_io::Async::<std::net::TcpStream>::connect(addr).await?;
        let mut buf = [0u8; 128];
        let n = s.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned())
    })
    .await;
    let keys = dispatch::authorized_keys_target(config)
        .1
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| e);
    match banner {
        Ok(Ok(b)) if b.starts_with("SSH-") => Outcome::Ok(format!(
            "{server}, {}; keys from -s go to {keys}",
            b.lines().next().unwrap_or("").trim()
        )),
        Ok(Ok(b)) => fail(
            format!(
                "{server} answers, but not as an ssh server ({:?})",
                b.trim()
            ),
            "point --local-sshd-port at the ssh server",
        ),
        Ok(Err(e)) => fail(
            format!("nothing listens on 127.0.0.1:{port} ({e})"),
            "start the ssh server (OpenWrt: /etc/init.d/dropbear start) or set --local-sshd-port",
        ),
        Err(_) => fail(
            format!("{server} on 127.0.0.1:{port} sent no banner within 3 s"),
            "check the ssh server",
        ),
    }
}

fn check_permit_open(config: &Config) -> Outcome {
    let entries = config.permit_open.entries().join(",");
    let port = config.local_sshd_port;
    if config.permit_open.allows("localhost", port) {
        Outcome::Ok(format!("{entries} (sshnp can reach localhost:{port})"))
    } else {
        Outcome::Ok(format!(
            "{entries} (note: localhost:{port} is not listed, so sshnp cannot reach this \
             device's sshd; npt works for the listed services)"
        ))
    }
}

async fn check_policy(config: Config, client: AtClient, policy: AtSign) -> Outcome {
    // Ask about the first manager (or ourselves): any answer shows the service is alive.
    let probe = config
        .managers
        .first()
        .cloned()
        .unwrap_or_else(|| config.atsign.clone());
    let monitor = match client
        .monitor(r"auth_checks\.__rpcs\.sshnp", MonitorStart::Live)
        .await
    {
        Ok(m) => m,
        Err(e) => return fail(format!("cannot start a monitor: {e}"), "retry later"),
    };
    let c = &config;
    let rpc = Arc::new(PolicyRpc::new(
        client,
        &c.atsign,
        &c.device,
        &c.device_group,
    ));
    let answers = policy::route_policy_answers(rpc.clone(), policy.clone(), monitor);
    let router = runtime::spawn(answers);
    let start = Instant::now();
    let decision = rpc.ask(&policy, &probe).await;
    drop(router);
    let secs = start.elapsed().as_secs_f32();
    if decision.unanswered {
        fail(
            format!("{policy} did not answer: {}", decision.reason),
            format!("start the policy service for {policy} (npp_file / npp_atserver) and check its atSign"),
        )
    } else {
        Outcome::Ok(format!(
            "{policy} answered in {secs:.1} s ({} for {probe}: {})",
            if decision.allowed {
                "allowed"
            } else {
                "denied"
            },
            decision.reason
        ))
    }
}
