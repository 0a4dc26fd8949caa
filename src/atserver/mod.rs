//! Applet `atserver`: a self-hosted atDirectory plus one atServer per hosted atSign, wire
//! compatible with the reference Dart atServer for everything NoPorts uses
//! (atprotocol.md §2–§8, §11, §12).
//!
//! ```text
//! noports atserver --dir DIR [--bind 127.0.0.1] [--root-port 64] [--create @a,@b] [--create-cram @x:secret]
//! ```
//!
//! On first start in an empty DIR it makes a local CA (`DIR/ca.pem`); `--create` makes activated
//! atSigns with their `.atKeys` in `DIR/keys/`; `--create-cram` registers atSigns awaiting a real
//! `cram:` activation. When every listener is up it prints one line,
//! `ready root=<host>:<port> ca=<DIR>/ca.pem`, and serves until SIGINT/SIGTERM (exit 0).
//! Clients use `--root-domain <host>:<port>` and `NOPORTS_CA_FILE=<DIR>/ca.pem`.
//!
//! Persistence: one append-only log per atSign (`DIR/atsigns/<name>/log`), on disk (group commit) before each
//! acknowledgement, replayed and compacted at start (see `store.rs`). Notifications between
//! atSigns hosted here are delivered in-process with the verified sender (`server.rs`).
//!
//! Federation (§4.4, §7.3, §7.4, §8): atSigns hosted elsewhere are found through the
//! `--peer-root` atDirectories (`peer.rs`), reached over TLS with the `from`/`pol` handshake,
//! looked up and cached (`remote.rs`), and sent queued notifications with retries
//! (`delivery.rs`). Inbound `pol` is verified over our own connection back to the sender.
//! Must not: import other applets.
mod conn;
mod delivery;
mod dispatch;
mod enroll;
mod error;
mod handlers;
mod key;
mod meta;
mod notify;
mod peer;
mod provision;
mod remote;
mod root;
mod scope;
mod server;
mod session;
mod slot;
mod store;
mod tls;
mod verbs;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use async_io::Async;
use futures_rustls::TlsAcceptor;

use crate::at::AtSign;
use conn::{accept_tls, split_with_writer};
use server::{AtServer, Hub};
use slot::ConnSlot;

/// How often expired keys and notifications are dropped from memory.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(FromArgs)]
/// Self-hosted atDirectory + atServers for offline tests and air-gapped installs.
///
/// Prints `ready root=<host>:<port> ca=<path>` once listening; clients then use
/// `--root-domain <host>:<port>` and `NOPORTS_CA_FILE=<path>`.
struct Args {
    /// data directory: CA, keys, per-atSign logs (created if missing)
    #[argh(option)]
    dir: String,
    /// address to listen on (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    bind: String,
    /// atDirectory port (default 64; 0 picks a free port)
    #[argh(option, default = "64")]
    root_port: u16,
    /// host name or IP the directory hands out and the certificate names (default: the bind
    /// address, or 127.0.0.1 when binding to all addresses)
    #[argh(option)]
    host: Option<String>,
    /// create activated atSigns (comma-separated, repeatable): keys, public key, an
    /// auto-approved first enrollment {"__manage":"rw","*":"rw"}, and DIR/keys/@a_key.atKeys.
    /// An entry written `@x:secret` is registered for CRAM activation instead
    #[argh(option)]
    create: Vec<String>,
    /// register atSigns for a real first activation (comma-separated, repeatable), each
    /// `@x:secret` or `@x` (a random secret is then printed once on stderr); use with
    /// `at_activate onboard -c <secret>`
    #[argh(option)]
    create_cram: Vec<String>,
    /// maximum simultaneous inbound connections, all listeners together (default 200)
    #[argh(option, default = "200")]
    max_connections: usize,
    /// seconds an unauthenticated connection may stay idle (default 600)
    #[argh(option, default = "600")]
    idle_timeout: u64,
    /// seconds a connection to an atSign may take from accept to authentication, and a
    /// directory connection per request; then it is closed (default 10)
    #[argh(option, default = "10")]
    auth_timeout: u64,
    /// unauthenticated connections one address (IPv4, IPv6 /64) may hold; a newcomer over it
    /// closes that address's oldest one (default 32)
    #[argh(option, default = "32")]
    max_unauth_per_source: usize,
    /// atDirectory (HOST:PORT, repeatable or comma-separated) asked, in order, where atSigns
    /// not hosted here live; enables server-to-server lookups and notification delivery, and
    /// makes this directory forward look-ups for atSigns it does not host
    #[argh(option)]
    peer_root: Vec<String>,
    /// extra trust anchors (PEM file, repeatable) for outbound connections to peer
    /// directories and atServers (added to webpki roots, NOPORTS_CA_FILE and DIR/ca.pem).
    /// Client certificates are neither presented nor required between servers (the
    /// self-hosted lab setting; the reference server's optional check of §2.1 is off)
    #[argh(option)]
    trust: Vec<String>,
    /// log protocol steps (RUST_LOG overrides)
    #[argh(switch, short = 'v')]
    verbose: bool,
}

/// What to create: atSign and, for CRAM registrations, the secret (`None` = random).
enum Create {
    Activated(AtSign),
    Cram(AtSign, Option<String>),
}

fn parse_creates(args: &Args) -> Result<Vec<Create>, String> {
    let mut out = Vec::new();
    let entries = |list: &Vec<String>| -> Vec<String> {
        list.iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for (list, cram) in [(&args.create, false), (&args.create_cram, true)] {
        for e in entries(list) {
            let (name, secret) = match e.split_once(':') {
                Some((n, s)) => (n, Some(s.to_string())),
                None => (e.as_str(), None),
            };
            let at = AtSign::parse(name).map_err(|err| format!("{e}: {err}"))?;
            if secret
                .as_deref()
                .is_some_and(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return Err(format!(
                    "{e}: the CRAM secret must be non-empty without spaces"
                ));
            }
            out.push(if cram || secret.is_some() {
                Create::Cram(at, secret)
            } else {
                Create::Activated(at)
            });
        }
    }
    Ok(out)
}

/// Fuzzing entry (hidden; not an API): frames `data` into request lines under the
/// unauthenticated size cap and parses each as a verb, as a key name and as a store log record
/// (the log replayed at start-up holds the same kind of text).
#[doc(hidden)]
pub fn fuzz_request_bytes(data: &[u8]) {
    let mut lines = conn::LineBuf::default();
    let mut keys = store::KeyStore::default();
    for chunk in data.chunks(61) {
        lines.feed(chunk);
        while let Some(line) = lines.next_line() {
            let Ok(line) = line else { return };
            let _ = verbs::parse(&line);
            let _ = key::AtKey::parse(line.trim());
            let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
            if !store::replay_key_record(&mut keys, &fields) {
                let _ = fields.get(1..).map(notify::Notification::from_log);
            }
        }
    }
}

/// Entry point: `argv[0]` is the applet name.
pub fn main(argv: &[String]) -> ExitCode {
    let args = match crate::runtime::cli::parse::<Args>(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    crate::runtime::init_logging(args.verbose);
    match crate::runtime::block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atserver: {e}");
            ExitCode::from(1)
        }
    }
}

/// Hosted atSigns found in `DIR/atsigns/`.
fn existing(dir: &Path) -> Vec<AtSign> {
    let Ok(rd) = std::fs::read_dir(dir.join("atsigns")) else {
        return Vec::new();
    };
    let mut v: Vec<AtSign> = rd
        .filter_map(Result::ok)
        .filter(|e| e.path().join("log").exists())
        .filter_map(|e| AtSign::parse(&e.file_name().to_string_lossy()).ok())
        .collect();
    v.sort();
    v
}

fn provision(dir: &Path, c: &Create) -> Result<(), String> {
    let at = match c {
        Create::Activated(a) | Create::Cram(a, _) => a,
    };
    let sdir = provision::state_dir(dir, at);
    if sdir.join("log").exists() {
        log::info!("{} exists, not re-created", at.as_str());
        return Ok(());
    }
    let build = || -> Result<(), String> {
        let server =
            AtServer::open(at.as_str(), &sdir).map_err(|e| format!("{}: {e}", sdir.display()))?;
        match c {
            Create::Activated(_) => provision::create_activated(dir, at, &server),
            Create::Cram(_, secret) => {
                let secret = match secret {
                    Some(s) => s.clone(),
                    None => {
                        let s = provision::random_secret();
                        eprintln!("atserver: CRAM secret for {}: {s}", at.as_str());
                        s
                    }
                };
                provision::create_cram(at, &server, &secret)
            }
        }
    };
    build().map_err(|e| {
        let _ = std::fs::remove_dir_all(&sdir);
        format!("creating {}: {e}", at.as_str())
    })
}

/// The outbound federation settings from `--peer-root` and `--trust`.
fn peers_from_args(args: &Args, own_ca: &Path) -> Result<peer::Peers, String> {
    let mut roots = Vec::new();
    for r in args.peer_root.iter().flat_map(|s| s.split(',')) {
        let r = r.trim();
        if !r.is_empty() {
            roots.push(
                crate::at::conn::RootAddr::parse(r).map_err(|e| format!("--peer-root {r}: {e}"))?,
            );
        }
    }
    let mut trust: Vec<PathBuf> = args.trust.iter().map(PathBuf::from).collect();
    trust.push(own_ca.to_path_buf());
    for t in &trust {
        crate::at::conn::add_trust_anchors_pem(t).map_err(|e| format!("--trust: {e}"))?;
    }
    if roots.is_empty() {
        return Ok(peer::Peers::default());
    }
    let tls = peer::client_config(&trust, None)?;
    Ok(peer::Peers::new(roots, tls))
}

fn bind(ip: IpAddr, port: u16) -> std::io::Result<Async<TcpListener>> {
    Async::<TcpListener>::bind(SocketAddr::new(ip, port))
}

/// Binds an atSign's listener, preferring the port it had before (clients cache directory
/// answers for up to an hour).
fn bind_atsign(ip: IpAddr, sdir: &Path) -> Result<Async<TcpListener>, String> {
    let port_file = sdir.join("port");
    let previous = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok());
    let l = match previous.and_then(|p| bind(ip, p).ok()) {
        Some(l) => l,
        None => bind(ip, 0).map_err(|e| format!("binding {ip}:0: {e}"))?,
    };
    let port = l.get_ref().local_addr().map_err(|e| e.to_string())?.port();
    let _ = crate::runtime::fs::write_atomic_0600(&port_file, port.to_string().as_bytes());
    Ok(l)
}

async fn run(args: Args) -> Result<(), String> {
    let dir = PathBuf::from(&args.dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ip: IpAddr = args
        .bind
        .parse()
        .map_err(|_| format!("--bind {}: not an IP address", args.bind))?;
    let host = args.host.clone().unwrap_or_else(|| {
        if ip.is_unspecified() {
            "127.0.0.1".into()
        } else {
            ip.to_string()
        }
    });
    // Each new atSign on a thread of its own (RSA key generation is most of the work).
    let creates = parse_creates(&args)?;
    std::thread::scope(|s| {
        let jobs: Vec<_> = creates
            .iter()
            .map(|c| {
                (
                    c,
                    std::thread::Builder::new().spawn_scoped(s, || provision(&dir, c)),
                )
            })
            .collect();
        jobs.into_iter().try_for_each(|(c, job)| match job {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err("provisioning thread failed".into())),
            Err(_) => provision(&dir, c),
        })
    })?;
    let certs = tls::load_or_create(&dir, &[host.clone(), ip.to_string()])?;
    let peers = peers_from_args(&args, &certs.ca_path)?;
    let acceptor = TlsAcceptor::from(certs.config.clone());
    let mut servers = Vec::new();
    let mut listeners = Vec::new();
    for at in existing(&dir) {
        let sdir = provision::state_dir(&dir, &at);
        let server = Arc::new(
            AtServer::open(at.as_str(), &sdir).map_err(|e| format!("{}: {e}", sdir.display()))?,
        );
        provision::ensure_signing_keys(&server).map_err(|e| format!("{}: {e}", at.as_str()))?;
        let l = bind_atsign(ip, &sdir)?;
        let port = l.get_ref().local_addr().map_err(|e| e.to_string())?.port();
        server.port.store(port, Ordering::SeqCst);
        servers.push(server.clone());
        listeners.push((l, Some(server)));
    }
    let root =
        bind(ip, args.root_port).map_err(|e| format!("binding {ip}:{}: {e}", args.root_port))?;
    let root_port = root
        .get_ref()
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    listeners.push((root, None));
    let mut hub = Hub::new(
        servers,
        host.clone(),
        args.max_connections.max(1),
        Duration::from_secs(args.idle_timeout.max(1)),
    );
    hub.peers = peers;
    hub.auth_timeout = Duration::from_secs(args.auth_timeout.max(1));
    hub.max_unauth_per_source = args.max_unauth_per_source.max(1);
    let hub = Arc::new(hub);
    let mut tasks = Vec::new();
    for (l, target) in listeners {
        tasks.push(crate::runtime::spawn(accept_loop(
            l,
            acceptor.clone(),
            hub.clone(),
            target,
        )));
    }
    let sweep_hub = hub.clone();
    tasks.push(crate::runtime::spawn(async move {
        loop {
            crate::runtime::sleep(SWEEP_INTERVAL).await;
            for s in sweep_hub.all() {
                s.state().sweep();
            }
            sweep_hub.peers.sweep();
            crate::runtime::mem::release_soon();
        }
    }));
    if hub.peers.enabled() {
        tasks.push(crate::runtime::spawn(delivery::run(hub.clone())));
    }
    // What provisioning wrote (keys, secrets) is on disk before anyone is told it is ready.
    store::flush_blocking().map_err(|e| format!("writing the key store to disk: {e}"))?;
    // Install the signal handlers before announcing readiness.
    let mut signal = Box::pin(crate::runtime::shutdown_signal());
    let _ = futures_lite::future::poll_once(&mut signal).await;
    for s in hub.all() {
        log::info!(
            "{} served on {host}:{}",
            s.atsign,
            s.port.load(Ordering::SeqCst)
        );
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "ready root={host}:{root_port} ca={}",
        certs.ca_path.display()
    );
    let _ = out.flush();
    drop(out);
    signal.await;
    log::info!("shutting down");
    drop(tasks);
    Ok(())
}

async fn accept_loop(
    listener: Async<TcpListener>,
    acceptor: TlsAcceptor,
    hub: Arc<Hub>,
    target: Option<Arc<AtServer>>,
) {
    // The listener owns its connections: they end when it does (at shutdown).
    let conns = crate::runtime::TaskSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                log::debug!("connection from {peer}");
                let (acceptor, hub, target) = (acceptor.clone(), hub.clone(), target.clone());
                conns.spawn(async move {
                    handle_conn(tcp, peer.ip(), acceptor, hub, target.clone()).await;
                    if let Some(server) = target {
                        server.forget_closed();
                    }
                    crate::runtime::mem::release_soon();
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept failed: {e}");
                crate::runtime::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn handle_conn(
    tcp: Async<std::net::TcpStream>,
    peer: IpAddr,
    acceptor: TlsAcceptor,
    hub: Arc<Hub>,
    target: Option<Arc<AtServer>>,
) {
    let slot = ConnSlot::take(&hub, peer);
    // An evicted connection (unauthenticated, at a connection limit) ends wherever it is, and
    // so does an atSign connection still unauthenticated at the deadline (TLS included): slow
    // or silent peers cannot hold a slot for long. After the handshake it is told why
    // (AT0012), so a legitimate client turned away in a burst knows to retry.
    let deadline = target.is_some().then_some(hub.auth_timeout);
    let mut cut = Box::pin(async {
        match &slot {
            Some(s) => s.cut_off(deadline).await,
            None => std::future::pending().await,
        }
    });
    let handshake = async { accept_tls(&acceptor, tcp).await };
    let interrupted = async {
        let why = (&mut cut).await;
        log::debug!("{peer}: {why} during the TLS handshake, closing");
        None
    };
    let Some(tls) = futures_lite::future::or(handshake, interrupted).await else {
        return;
    };
    let (reader, out) = split_with_writer(tls);
    let tx = out.tx.clone();
    let why = match &slot {
        None => {
            log::warn!(
                "inbound connection limit {} reached (all authenticated)",
                hub.max_connections
            );
            let _ = tx
                .send(b"error:AT0012-Inbound connection limit exceeded\n".to_vec())
                .await;
            None
        }
        Some(slot) => {
            let work = async {
                match target {
                    None => root::serve(hub.clone(), reader, tx.clone(), slot.spoke.clone()).await,
                    Some(server) => {
                        let mut session = session::Session::new(hub.clone(), server, tx.clone());
                        session.authed = slot.authed.clone();
                        session.spoke = slot.spoke.clone();
                        session.run(reader, out.stopped.clone()).await
                    }
                }
                None
            };
            futures_lite::future::or(work, async { Some((&mut cut).await) }).await
        }
    };
    // A cut connection is told why, gets a short drain and frees its slot at once; any other
    // drains for up to 5 s unless cut meanwhile.
    match why {
        Some(why) => {
            drop(cut);
            drop(slot);
            log::debug!("{peer}: {why}, closing");
            let line = format!("error:AT0012-Inbound connection limit exceeded: {why}\n");
            let _ = tx.try_send(line.into_bytes());
            tx.close();
            let _ = crate::runtime::timeout(Duration::from_millis(500), out.task).await;
        }
        None => {
            tx.close();
            let drained = async {
                let _ = crate::runtime::timeout(Duration::from_secs(5), out.task).await;
            };
            futures_lite::future::or(drained, async {
                let _ = (&mut cut).await;
            })
            .await;
        }
    }
}
