//! The `srvd` applet: atProtocol glue around [`super::session::SessionTable`] (noports.md §4.1,
//! §4.6, §9.5). Monitors `sshrvd@`, validates each `request_ports` request, fetches the two
//! atSigns' public keys (cached by the at client), opens a session and replies N4.
//!
//! Differences from the reference, all on the side of refusing: the notification sender must
//! be the request's `atSignA` (the reference trusts the claim, §12); both sides must
//! authenticate unless `--allow-unauthenticated`; sessions and sockets are capped.
//!
//! Our extension: `--port-range P-P` serves every session on the one port P (e.g. 443 for
//! networks that only let 443 out). The reply names P twice (portA == portB, which the wire
//! format allows), and the relay tells the sides apart by which atSign signed the auth line;
//! requests that leave a side unauthenticated are refused with `error:` in that mode.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use futures_lite::FutureExt;

use super::session::{new_rvd_nonce, RelayConfig, SessionSpec, SessionTable};
use super::types::job;
use crate::at::{
    AtClient, AtKeys, AtSign, ClientConfig, MonitorStart, Notification, NotifyOptions, RootAddr,
};
use crate::crypto::rsa::RsaPublicKey;
use crate::noports::relay_msg::{RelayRequest, RelayResponse};
use crate::runtime::{self, Backoff, TaskSet};

/// N4 record ttl (noports.md §4.1).
const RESPONSE_TTL_MS: u64 = 10_000;
/// N4 notification ttln (noports.md §4.1).
const RESPONSE_TTLN_MS: u64 = 60_000;
/// Deadline for handling one request (key lookups and the reply).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Requests handled concurrently; more wait for a turn (within [`REQUEST_DEADLINE`]).
const MAX_IN_FLIGHT: usize = 64;
/// Requests waiting for a turn; beyond this they are refused ("relay busy"), the refusal
/// answered at most once a second like the others. A burst of hundreds of legitimate
/// sessions queues (each waiting request holds one notification, ~2 KiB); a flood from an
/// allowed sender is bounded.
const MAX_WAITING: usize = 1024;
/// File descriptors kept back for the at client, logging and the like.
const FD_RESERVE: usize = 64;

#[derive(FromArgs)]
/// NoPorts relay (socket rendezvous daemon).
struct Args {
    /// the relay's atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// host name or IP address returned to clients
    #[argh(option, short = 'i')]
    ip: String,
    /// atKeys file (default ~/.atsign/keys/<atSign>_key.atKeys)
    #[argh(option, short = 'k')]
    key_file: Option<String>,
    /// only this atSign may request sessions (default open)
    #[argh(option, short = 'm', default = "String::from(\"open\")")]
    manager: String,
    /// comma-separated client atSigns allowed to request sessions
    #[argh(option)]
    allow: Option<String>,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// accepted for compatibility; traffic snooping is not implemented
    #[argh(switch, short = 's')]
    snoop: bool,
    /// root server (default root.atsign.org)
    #[argh(option, default = "String::from(\"root.atsign.org\")")]
    root_domain: String,
    /// HTTP CONNECT or SOCKS5 proxy for the atDirectory and atServer connections:
    /// http://[user:pass@]host:port, socks5://... or socks5h://... (default $ALL_PROXY or
    /// $HTTPS_PROXY)
    #[argh(option)]
    proxy: Option<String>,
    /// address session listeners bind (default 0.0.0.0)
    #[argh(option, default = "String::from(\"0.0.0.0\")")]
    bind: String,
    /// inclusive port range for session listeners, LOW-HIGH (default: any); one port
    /// (e.g. 443-443) serves every session on that port, both sides authenticated
    #[argh(option)]
    port_range: Option<String>,
    /// most concurrent sessions (default: from the fd limit, at most 1000)
    #[argh(option)]
    max_sessions: Option<usize>,
    /// most relayed sockets (default: what the fd limit leaves)
    #[argh(option)]
    max_connections: Option<usize>,
    /// seconds before an unpaired session expires (default 30)
    #[argh(option, default = "30")]
    session_timeout: u64,
    /// accept legacy and unauthenticated session requests
    #[argh(switch)]
    allow_unauthenticated: bool,
}

struct Config {
    atsign: AtSign,
    ip: String,
    key_file: std::path::PathBuf,
    manager: Option<AtSign>,
    allow: Option<Vec<AtSign>>,
    root: RootAddr,
    relay: RelayConfig,
    allow_unauthenticated: bool,
}

/// The soft RLIMIT_NOFILE, read from /proc (std has no getrlimit).
fn fd_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = text
        .split_once('-')
        .ok_or("--port-range must be LOW-HIGH")?;
    let lo: u16 = lo.trim().parse().map_err(|_| "--port-range: bad LOW")?;
    let hi: u16 = hi.trim().parse().map_err(|_| "--port-range: bad HIGH")?;
    // LOW == HIGH is single-port mode: one shared listener for every session.
    if lo == 0 || hi < lo {
        return Err("--port-range needs 1 <= LOW <= HIGH".into());
    }
    Ok((lo, hi))
}

impl Config {
    fn from_args(a: Args) -> Result<Config, String> {
        let atsign = AtSign::parse(&a.atsign).map_err(|e| e.to_string())?;
        let key_file = match a.key_file {
            Some(k) => k.into(),
            None => AtKeys::default_path(&atsign).map_err(|e| e.to_string())?,
        };
        let manager = match a.manager.as_str() {
            "open" => None,
            m => Some(AtSign::parse(m).map_err(|e| e.to_string())?),
        };
        let allow = a
            .allow
            .as_deref()
            .map(AtSign::parse_list)
            .transpose()
            .map_err(|e| e.to_string())?;
        let root = RootAddr::parse(&a.root_domain).map_err(|e| e.to_string())?;
        crate::runtime::dial::configure(a.proxy.as_deref())?;
        let bind: IpAddr = a
            .bind
            .parse()
            .map_err(|_| format!("--bind: not an IP address: {}", a.bind))?;
        let port_range = a.port_range.as_deref().map(parse_range).transpose()?;
        if a.snoop {
            log::warn!("--snoop is accepted but not implemented");
        }
        // Budget file descriptors: each session holds two listeners (none in single-port
        // mode, where one listener serves all), each relayed socket one.
        let budget = fd_limit()
            .unwrap_or(1024)
            .saturating_sub(FD_RESERVE)
            .max(64);
        let max_sessions = a.max_sessions.unwrap_or((budget / 4).min(1000)).max(1);
        let per_session = if port_range.is_some_and(|(lo, hi)| lo == hi) {
            0
        } else {
            2
        };
        let max_connections = a
            .max_connections
            .unwrap_or_else(|| budget.saturating_sub(per_session * max_sessions).max(16));
        if per_session * max_sessions + max_connections > budget {
            log::warn!(
                "limits exceed the file-descriptor budget ({budget}); a flood may hit EMFILE"
            );
        }
        Ok(Config {
            atsign,
            ip: a.ip,
            key_file,
            manager,
            allow,
            root,
            relay: RelayConfig {
                bind,
                port_range,
                max_sessions,
                max_connections,
                session_timeout: Duration::from_secs(a.session_timeout.max(1)),
                ..RelayConfig::default()
            },
            allow_unauthenticated: a.allow_unauthenticated,
        })
    }
}

/// Entry point; `argv[0]` is the applet name.
pub(crate) fn main(argv: &[String]) -> ExitCode {
    let args: Args = match runtime::cli::parse(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(args.verbose);
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("srvd: {e}");
            return ExitCode::from(1);
        }
    };
    if !config.key_file.exists() {
        eprintln!(
            "Unable to find .atKeys file : {}",
            config.key_file.display()
        );
        return ExitCode::from(1);
    }
    runtime::block_on(async move {
        let stop = async {
            runtime::shutdown_signal().await;
            log::info!("srvd: shutting down on signal");
            Ok(())
        };
        match run(Arc::new(config)).or(stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn connect(config: &Config) -> Result<AtClient, String> {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let keys = AtKeys::load(&config.key_file).map_err(|e| e.to_string())?;
        let cfg = ClientConfig {
            atsign: config.atsign.clone(),
            keys,
            root: config.root.clone(),
        };
        match AtClient::connect(cfg).await {
            Ok(c) => {
                // Each session request waits for its answer: not all behind one connection.
                c.spread_requests(4);
                return Ok(c);
            }
            Err(e @ crate::at::AtError::Unauthorized(_)) => return Err(e.to_string()),
            Err(e) => {
                let d = backoff.next_delay();
                log::warn!(
                    "cannot reach the atServer of {} ({e}); retrying in {:.1}s",
                    config.atsign,
                    d.as_secs_f32()
                );
                runtime::sleep(d).await;
            }
        }
    }
}

async fn run(config: Arc<Config>) -> Result<(), String> {
    let client = connect(&config).await?;
    let table = SessionTable::new(config.relay.clone());
    // Single-port mode: bind the shared port now, so a port we may not bind (443 without
    // root or CAP_NET_BIND_SERVICE) stops srvd at once.
    table.listen().map_err(|e| format!("--port-range: {e}"))?;
    // Sealed: a request's value is only decrypted once its sender passed `-m`/`--allow`.
    let mut monitor = client
        .monitor_sealed("sshrvd@", MonitorStart::Live)
        .await
        .map_err(|e| e.to_string())?;
    log::info!(
        "srvd {} started as {} (ip {}, max {} sessions, {} sockets)",
        env!("CARGO_PKG_VERSION"),
        config.atsign,
        config.ip,
        config.relay.max_sessions,
        config.relay.max_connections
    );
    let in_flight = Arc::new(async_lock::Semaphore::new(MAX_IN_FLIGHT));
    let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut refusals = Refusals::default();
    // The requests being handled: they end with `run` (at shutdown).
    let requests = TaskSet::new();
    while let Some(n) = monitor.next().await {
        if !n.key.contains("sshrvd") || n.operation == "delete" {
            continue;
        }
        if let Err(why) = sender_allowed(&config, &n.from) {
            refusals.refuse(&client, n, why);
            continue;
        }
        let Some(turn) = Turn::take(&in_flight, &waiting) else {
            let why = format!("relay busy: {MAX_WAITING} session requests already waiting");
            refusals.refuse(&client, n, why);
            continue;
        };
        let (client, table, config) = (client.clone(), table.clone(), config.clone());
        // Bounded by its own deadline (the wait for a turn included), so a slow key lookup
        // never stalls the monitor and a stale request is not answered.
        requests.spawn(job(async move {
            let from = n.from.to_string();
            let work = async {
                let _permit = turn.wait().await;
                handle(&client, &table, &config, n).await
            };
            if runtime::timeout(REQUEST_DEADLINE, work).await.is_err() {
                log::warn!("session request from {from}: timed out");
            }
        }));
    }
    table.shutdown();
    Err("monitor ended".into())
}

/// A request's place: handled at once when fewer than [`MAX_IN_FLIGHT`] are, else queued
/// among at most [`MAX_WAITING`].
struct Turn {
    in_flight: Arc<async_lock::Semaphore>,
    /// Set while queued: the waiting count to give back.
    queued: Option<Arc<std::sync::atomic::AtomicUsize>>,
    permit: Option<async_lock::SemaphoreGuardArc>,
}

impl Turn {
    fn take(
        in_flight: &Arc<async_lock::Semaphore>,
        waiting: &Arc<std::sync::atomic::AtomicUsize>,
    ) -> Option<Turn> {
        use std::sync::atomic::Ordering;
        let permit = in_flight.try_acquire_arc();
        let queued = if permit.is_some() {
            None
        } else if waiting.fetch_add(1, Ordering::SeqCst) < MAX_WAITING {
            Some(waiting.clone())
        } else {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        };
        Some(Turn {
            in_flight: in_flight.clone(),
            queued,
            permit,
        })
    }

    /// The permit to handle the request (waits for one when queued).
    async fn wait(mut self) -> async_lock::SemaphoreGuardArc {
        match self.permit.take() {
            Some(p) => p,
            None => self.in_flight.acquire_arc().await,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(w) = self.queued.take() {
            w.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Validates one request and, if acceptable, opens the session and replies N4. Every refusal
/// is logged with its reason and answered `error:<reason>` on the N4 key (the reference stays
/// silent, §4.1, and its clients time out; ours say why, official ones stop at once).
async fn handle(client: &AtClient, table: &SessionTable, cfg: &Config, n: Notification) {
    let from = n.from.clone();
    log::info!("New session request from {from}");
    let Some(req) = read_request(client, n).await else {
        return;
    };
    let sid = req.session_id.clone();
    if let Err(why) = admit(cfg, &from, &req) {
        log::warn!("Session {sid} for {} is denied: {why}", req.atsign_a);
        if valid_session_id(&sid) {
            refuse(client, &from, &sid, &why).await;
        }
        return;
    }
    let (key_a, key_b) = match side_keys(client, &req).await {
        Ok(keys) => keys,
        Err(e) => {
            log::warn!("Unable to provide the socket pair for session {sid} due to: {e}");
            return;
        }
    };
    let legacy = req.client_nonce.is_empty() && !req.authenticate_socket_a;
    let spec = session_spec(&req, key_a, key_b);
    let rvd_nonce = spec.rvd_nonce.clone();
    let ports = match table.open(spec) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("Unable to provide the socket pair for session {sid} due to: {e}");
            refuse(client, &from, &sid, &e.to_string()).await;
            return;
        }
    };
    let response = RelayResponse {
        host: cfg.ip.clone(),
        port_a: ports.port_a,
        port_b: ports.port_b,
        rvd_nonce: (!legacy).then_some(rvd_nonce),
    }
    .to_text();
    log::info!("Sending response data for requested session {sid} : [{response}]");
    let opts = NotifyOptions {
        ttl_ms: Some(RESPONSE_TTL_MS),
        ttln_ms: Some(RESPONSE_TTLN_MS),
        ..Default::default()
    };
    if let Err(e) = client
        .notify(&from, &format!("{sid}.sshrvd"), &response, opts)
        .await
    {
        log::warn!("session {sid}: sending the response to {from}: {e}");
    }
}

/// Decrypts and parses a request (a `request_ports` one, or a legacy N3L); `None`, logged,
/// when it cannot be.
async fn read_request(client: &AtClient, mut n: Notification) -> Option<RelayRequest> {
    let from = n.from.clone();
    // Official clients encrypt their requests; a clear one under a client's name can have been
    // written by any atServer on the way, and would hold ports open for nobody.
    if !n.encrypted {
        log::warn!(
            "session request from {from} ignored: not encrypted (an atServer may have written it)"
        );
        return None;
    }
    if let Err(e) = client.unseal(&mut n).await {
        log::warn!("session request from {from}: cannot decrypt: {e}");
        return None;
    }
    let Some(value) = n.value.as_deref() else {
        log::warn!("session request from {from}: no value");
        return None;
    };
    if !n.key_name().contains(".request_ports.sshrvd") {
        // Legacy N3L: the value is the session id; no authentication at all (§1.6).
        return Some(RelayRequest {
            session_id: value.trim().to_string(),
            atsign_a: from.to_string(),
            atsign_b: String::new(),
            authenticate_socket_a: false,
            authenticate_socket_b: false,
            client_nonce: String::new(),
            extra: Default::default(),
        });
    }
    RelayRequest::parse(value)
        .map_err(|e| log::warn!("session request from {from}: {e}"))
        .ok()
}

type SideKeys = (Option<RsaPublicKey>, Option<RsaPublicKey>);

/// The public keys of the sides that authenticate, looked up together.
async fn side_keys(client: &AtClient, req: &RelayRequest) -> Result<SideKeys, String> {
    let key = |who: &str, needed: bool| {
        let who = who.to_string();
        async move {
            if !needed {
                return Ok(None);
            }
            let at = AtSign::parse(&who).map_err(|e| format!("{who}: {e}"))?;
            client
                .public_key(&at)
                .await
                .map(Some)
                .map_err(|e| format!("public key of {who}: {e}"))
        }
    };
    let (key_a, key_b) = futures_lite::future::zip(
        key(&req.atsign_a, req.authenticate_socket_a),
        key(&req.atsign_b, req.authenticate_socket_b),
    )
    .await;
    Ok((key_a?, key_b?))
}

/// The session an admitted request asks for, under a fresh relay nonce.
fn session_spec(
    req: &RelayRequest,
    key_a: Option<RsaPublicKey>,
    key_b: Option<RsaPublicKey>,
) -> SessionSpec {
    let sid = &req.session_id;
    if req
        .suite()
        .is_some_and(|s| s != crate::noports::suite::SUITE_NAME)
    {
        log::info!(
            "session {sid}: unknown suite {:?} in the request; pairing as multi",
            req.suite().unwrap_or_default()
        );
    }
    SessionSpec {
        session_id: sid.clone(),
        atsign_a: req.atsign_a.clone(),
        atsign_b: req.atsign_b.clone(),
        client_nonce: req.client_nonce.clone(),
        rvd_nonce: new_rvd_nonce(),
        key_a,
        key_b,
        // Our nps1 suite multiplexes everything over one pair; more sockets can only be
        // strangers (or replays), so the session pairs once.
        single_pair: req.suite() == Some(crate::noports::suite::SUITE_NAME),
    }
}

/// Answers a refused request with `error:<reason>` on the response key, so the client says
/// why instead of timing out (official clients fail to parse it and stop at once too).
async fn refuse(client: &AtClient, to: &AtSign, sid: &str, why: &str) {
    let opts = NotifyOptions {
        ttl_ms: Some(RESPONSE_TTL_MS),
        ttln_ms: Some(RESPONSE_TTLN_MS),
        ..Default::default()
    };
    let why: String = why.chars().filter(|c| !c.is_control()).take(200).collect();
    if let Err(e) = client
        .notify(to, &format!("{sid}.sshrvd"), &format!("error:{why}"), opts)
        .await
    {
        log::info!("session {sid}: cannot tell {to} of the refusal: {e}");
    }
}

/// A request from a sender that may not use this relay: its session id is inside the
/// encrypted value, so it is opened (a key look-up) only for the throttled reply.
/// Refused session requests: counted; logged and answered at most once a second, so the
/// reason reaches a real user while a flood costs the relay little.
#[derive(Default)]
struct Refusals {
    count: u64,
    last: Option<std::time::Instant>,
    /// The replies under way, each within [`REQUEST_DEADLINE`].
    replies: TaskSet,
}

impl Refusals {
    fn refuse(&mut self, client: &AtClient, n: Notification, why: String) {
        self.count += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        log::warn!(
            "session request from {} dropped: {why} ({} refused so far)",
            n.from,
            self.count
        );
        self.last = Some(std::time::Instant::now());
        let client = client.clone();
        self.replies.spawn_within(
            REQUEST_DEADLINE,
            job(async move {
                tell_refused(&client, n, &why).await;
            }),
        );
    }
}

async fn tell_refused(client: &AtClient, mut n: Notification, why: &str) {
    if client.unseal(&mut n).await.is_err() {
        return;
    }
    let Some(req) = n
        .value
        .as_deref()
        .filter(|_| n.key_name().contains(".request_ports.sshrvd"))
        .and_then(|v| RelayRequest::parse(v).ok())
    else {
        return;
    };
    if valid_session_id(&req.session_id) {
        refuse(client, &n.from, &req.session_id, why).await;
    }
}

fn valid_session_id(sid: &str) -> bool {
    crate::noports::names::valid_session_id(sid)
}

/// The sender part of the admission policy (`-m`, `--allow`), checked before anything is
/// looked up or decrypted.
fn sender_allowed(cfg: &Config, from: &AtSign) -> Result<(), String> {
    if let Some(m) = &cfg.manager {
        if m != from {
            return Err(format!("{from} is not the manager {m}"));
        }
    }
    if let Some(list) = &cfg.allow {
        if !list.contains(from) {
            return Err(format!("{from} is not in the allow list"));
        }
    }
    Ok(())
}

/// The admission policy: who may ask, and for what.
fn admit(cfg: &Config, from: &AtSign, req: &RelayRequest) -> Result<(), String> {
    if req.session_id.is_empty()
        || req.session_id.len() > 128
        || req.session_id.contains([',', '\n', ':', '@'])
    {
        return Err("malformed session id".into());
    }
    // The reference trusts the claimed atSignA (§12); we require the authenticated sender.
    if req.atsign_a != from.as_str() {
        return Err(format!("sender {from} is not atSignA {}", req.atsign_a));
    }
    sender_allowed(cfg, from)?;
    let both = req.authenticate_socket_a && req.authenticate_socket_b;
    if !both && !cfg.allow_unauthenticated {
        return Err("unauthenticated sockets requested (see --allow-unauthenticated)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[&str]) -> Config {
        let mut argv: Vec<String> = [
            "srvd",
            "-a",
            "@relay",
            "-i",
            "relay.example",
            "-k",
            "/nonexistent",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        argv.retain(|a| !a.is_empty());
        let args: Args =
            crate::runtime::cli::parse(&argv).unwrap_or_else(|_| panic!("bad test argv"));
        Config::from_args(args).unwrap()
    }

    fn request(a: &str, auth: bool) -> RelayRequest {
        RelayRequest {
            session_id: "5c3e8a6d-9d3e-4f52-8a8c-111111111111".into(),
            atsign_a: a.into(),
            atsign_b: "@device".into(),
            authenticate_socket_a: auth,
            authenticate_socket_b: auth,
            client_nonce: "cn".into(),
            extra: Default::default(),
        }
    }

    /// The admission table: sender binding, manager, allow list, unauthenticated requests.
    #[test]
    fn admission() {
        let alice = AtSign::parse("@alice").unwrap();
        let open = config(&[]);
        assert!(admit(&open, &alice, &request("@alice", true)).is_ok());
        // The claimed atSignA must be the authenticated sender (reference trusts the claim).
        assert!(admit(&open, &alice, &request("@bob", true)).is_err());
        assert!(admit(&open, &alice, &request("@alice", false)).is_err());
        assert!(admit(
            &config(&["--allow-unauthenticated"]),
            &alice,
            &request("@alice", false)
        )
        .is_ok());
        let allow = config(&["--allow", "@bob,@carol"]);
        assert!(admit(&allow, &alice, &request("@alice", true)).is_err());
        let bob = AtSign::parse("@bob").unwrap();
        assert!(admit(&allow, &bob, &request("@bob", true)).is_ok());
        let managed = config(&["-m", "@bob"]);
        assert!(admit(&managed, &alice, &request("@alice", true)).is_err());
        assert!(admit(&managed, &bob, &request("@bob", true)).is_ok());
        let mut bad = request("@alice", true);
        bad.session_id = "a,b".into();
        assert!(admit(&open, &alice, &bad).is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_range("40000-40999"), Ok((40000, 40999)));
        // Two ports: one session at a time, the client on one port, the device on the other.
        assert_eq!(parse_range("443-444"), Ok((443, 444)));
        // One port: single-port mode, every session on it.
        assert_eq!(parse_range("443-443"), Ok((443, 443)));
        for bad in ["", "5", "0-10", "0-0", "20-10", "a-b", "1-70000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
