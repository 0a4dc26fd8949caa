//! `npt`: open a local port that reaches a TCP port on (or near) a device (noports.md §7.3).
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use async_io::Async;

use super::ephemeral::EphemeralKey;
use super::error::{Retry, SessionError};
use super::session::{establish, monitor_regex, Kind, Progress, SessionParams, SuitePref};
use crate::at::{AtClient, AtKeys, AtSign, ClientConfig, Monitor, MonitorStart, RootAddr};
use crate::noports::names::validate_device_name;
use crate::noports::suite::Aead;
use crate::runtime::{self, cli, parse_duration, sleep};
use crate::tunnel;

const DIALECT: cli::Dialect<'static> = cli::Dialect {
    aliases: &[
        ("--rp", "--remote-port"),
        ("--rh", "--remote-host"),
        ("--lp", "--local-port"),
        ("--keyFile", "--key-file"),
        ("--dpt", "--daemon-ping-timeout"),
        ("--pss", "--per-session-storage"),
        ("--no-pss", "--no-per-session-storage"),
        ("--et", "--encrypt-rvd-traffic"),
        ("--no-et", "--no-encrypt-rvd-traffic"),
    ],
    switches: &['v', 'q', 'x', 'K'],
    negatable: &[("verbose", 'v')],
};

/// A year: what the official npt uses for `-T 0` ("never").
const NEVER: Duration = Duration::from_secs(365 * 86_400);

#[derive(FromArgs)]
#[argh(help_triggers("--help"))]
/// NoPorts tunnel: a local port that reaches a TCP port on a device with no open ports.
struct Args {
    /// client atSign (mandatory)
    #[argh(option, short = 'f')]
    from: Option<String>,
    /// device atSign (mandatory)
    #[argh(option, short = 't')]
    to: Option<String>,
    /// relay (srvd) atSign (mandatory)
    #[argh(option, short = 'r')]
    srvd: Option<String>,
    /// device name (mandatory)
    #[argh(option, short = 'd')]
    device: Option<String>,
    /// remote port to reach (mandatory)
    #[argh(option, short = 'p')]
    remote_port: Option<u16>,
    /// remote host as seen from the device (default localhost)
    #[argh(option, short = 'h', default = "String::from(\"localhost\")")]
    remote_host: String,
    /// local port (0 = pick a free one)
    #[argh(option, short = 'l', default = "0")]
    local_port: u16,
    /// atKeys file (default ~/.atsign/keys/<from>_key.atKeys)
    #[argh(option, short = 'k')]
    key_file: Option<String>,
    /// atDirectory host or host:port (default root.atsign.org:64)
    #[argh(option, default = "String::from(\"root.atsign.org\")")]
    root_domain: String,
    /// HTTP CONNECT or SOCKS5 proxy for atServer and relay connections:
    /// http://[user:pass@]host:port, socks5://... or socks5h://... (default $ALL_PROXY or
    /// $HTTPS_PROXY)
    #[argh(option)]
    proxy: Option<String>,
    /// seconds to wait for the daemon's feature check (default 20)
    #[argh(option, default = "20")]
    daemon_ping_timeout: u64,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// no progress output
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// start the tunnel in the background, print the local port and exit
    #[argh(switch, short = 'x')]
    exit_when_connected: bool,
    /// re-establish the session whenever it ends
    #[argh(switch, short = 'K')]
    keep_alive: bool,
    /// idle timeout, e.g. 30s, 1h, 7d; 0 = never (default 30s; 24h with -K)
    #[argh(option, short = 'T')]
    timeout: Option<String>,
    /// encrypt relay traffic (default on)
    #[argh(switch)]
    encrypt_rvd_traffic: bool,
    /// do not encrypt relay traffic
    #[argh(switch)]
    no_encrypt_rvd_traffic: bool,
    /// accepted for compatibility (no local storage is used)
    #[argh(switch)]
    per_session_storage: bool,
    /// accepted for compatibility
    #[argh(switch)]
    no_per_session_storage: bool,
    /// data plane: auto (ours when the daemon offers it), official, or nps1
    #[argh(option, default = "String::from(\"auto\")")]
    suite: String,
}

struct Config {
    from: AtSign,
    key_file: PathBuf,
    root: RootAddr,
    params: SessionParams,
    local_port: u16,
    exit_when_connected: bool,
    keep_alive: bool,
    quiet: bool,
}

fn mandatory<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, String> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("Option {name} is mandatory."))
}

impl Config {
    fn from_args(a: Args) -> Result<Config, String> {
        let from = AtSign::parse(mandatory(&a.from, "from")?).map_err(|e| e.to_string())?;
        let device = AtSign::parse(mandatory(&a.to, "to")?).map_err(|e| e.to_string())?;
        let relay = AtSign::parse(mandatory(&a.srvd, "srvd")?).map_err(|e| e.to_string())?;
        let device_name = validate_device_name(mandatory(&a.device, "device")?)?;
        let remote_port = a.remote_port.ok_or("Option remote-port is mandatory.")?;
        if remote_port == 0 {
            return Err("remote port must be 1-65535".into());
        }
        if a.keep_alive && a.exit_when_connected {
            return Err("--keep-alive and --exit-when-connected are mutually exclusive".into());
        }
        let timeout = match a.timeout.as_deref() {
            Some(t) => match parse_duration(t)? {
                Duration::ZERO => {
                    log::info!("Requested \"never\" timeout: set to 365 days");
                    NEVER
                }
                d => d,
            },
            None if a.keep_alive => {
                log::info!("Requested keep-alive without specifying a timeout: setting timeout to 24 hours");
                Duration::from_secs(86_400)
            }
            None => Duration::from_secs(30),
        };
        let suite = match (a.suite.as_str(), a.exit_when_connected) {
            ("nps1", true) => {
                return Err("--suite nps1 cannot be used with -x: the detached srv that keeps the tunnel \
                            after npt exits speaks the official suite only. Run npt without -x to use nps1, \
                            or choose --suite official"
                    .into())
            }
            // A detached srv speaks the official suite (its contract has no suite keys).
            ("auto", true) => {
                log::info!("-x: the detached srv uses the official suite (AES-256-CTR)");
                SuitePref::Official
            }
            ("auto", false) => SuitePref::Auto,
            ("official", _) => SuitePref::Official,
            ("nps1", false) => SuitePref::Ours,
            (other, _) => {
                return Err(format!(
                    "\"{other}\" is not an allowed value for option \"suite\"."
                ))
            }
        };
        let remote_host = a.remote_host.trim().to_string();
        if remote_host.is_empty()
            || remote_host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("invalid remote host \"{}\"", a.remote_host));
        }
        let key_file = match &a.key_file {
            Some(k) => PathBuf::from(k),
            None => AtKeys::default_path(&from).map_err(|e| e.to_string())?,
        };
        let root = RootAddr::parse(&a.root_domain).map_err(|e| e.to_string())?;
        crate::runtime::dial::configure(a.proxy.as_deref())?;
        let _ = (
            a.encrypt_rvd_traffic,
            a.per_session_storage,
            a.no_per_session_storage,
        );
        Ok(Config {
            from,
            key_file,
            root,
            params: SessionParams {
                device,
                relay,
                device_name,
                kind: Kind::Npt {
                    remote_host,
                    remote_port,
                },
                timeout,
                timeout_given: a.timeout.is_some(),
                encrypt: !a.no_encrypt_rvd_traffic,
                suite,
                ping_timeout: Duration::from_secs(a.daemon_ping_timeout.max(1)),
            },
            local_port: a.local_port,
            exit_when_connected: a.exit_when_connected,
            keep_alive: a.keep_alive,
            quiet: a.quiet,
        })
    }
}

pub fn main(argv: &[String]) -> ExitCode {
    let args: Args = match cli::parse_dialect(argv, DIALECT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(args.verbose);
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("Invalid argument(s): {msg}");
            return ExitCode::from(1);
        }
    };
    let keys = match AtKeys::load(&config.key_file) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("\nError : {e}");
            return ExitCode::from(1);
        }
    };
    let quiet = config.quiet;
    runtime::block_on(async move {
        let run = run(config, keys);
        // Ctrl-C (or a service manager's SIGTERM) is how a tunnel is meant to end: not an error.
        let stop = async {
            runtime::shutdown_signal().await;
            Progress { quiet }.say("Interrupted: tunnel closed");
            Ok(())
        };
        match futures_lite::future::or(run, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("\nError : {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn run(config: Config, keys: AtKeys) -> Result<(), String> {
    let progress = Progress {
        quiet: config.quiet,
    };
    // One ephemeral RSA key per run, reused by -K sessions (noports.md §3): generated while we
    // connect and check the daemon's features.
    let ephemeral = EphemeralKey::start();
    if !config.quiet {
        eprint!("Connecting ... ");
    }
    // The first session's monitor (for its session id) connects alongside the worker
    // connection.
    let sid = crate::crypto::random::uuid_v4();
    let (client, monitor) = AtClient::connect_with_monitor(
        ClientConfig {
            atsign: config.from.clone(),
            keys,
            root: config.root.clone(),
        },
        &monitor_regex(&config.params.device_name, &sid),
        MonitorStart::Live,
    )
    .await
    .map_err(|e| e.to_string())?;
    if !config.quiet {
        eprintln!("Connected");
    }
    let mut monitor = Some((sid, monitor));
    let mut local_port = config.local_port;
    loop {
        let result = one_session(
            &client,
            &config,
            &ephemeral,
            &mut local_port,
            progress,
            monitor.take(),
        )
        .await;
        match result {
            Ok(()) if config.exit_when_connected => return Ok(()),
            Ok(()) if !config.keep_alive => {
                progress.say("Session ended");
                return Ok(());
            }
            Err(e) if !config.keep_alive || e.retry() == Retry::Never => return Err(e.0),
            Ok(()) => {
                progress.say("Session ended, keep-alive is set: will wait 5 seconds and retry")
            }
            Err(e) => progress.say(&format!(
                "{}; keep-alive is set: will wait 5 seconds and retry",
                e.0
            )),
        }
        sleep(Duration::from_secs(5)).await;
    }
}

async fn one_session(
    client: &AtClient,
    config: &Config,
    ephemeral: &EphemeralKey,
    local_port: &mut u16,
    progress: Progress,
    monitor: Option<(String, Monitor)>,
) -> Result<(), SessionError> {
    // The local port first: a port in use is the user's to fix, before any network round trip.
    // Loopback only: unlike the official client we never expose the tunnel to the LAN.
    let bind = || {
        Async::<TcpListener>::bind(([127, 0, 0, 1], *local_port)).map_err(|e| {
            format!("cannot listen on localhost:{local_port}: {e} (choose another port with -l, or -l 0 for any)")
        })
    };
    let listener = if config.exit_when_connected {
        // The detached srv binds it itself; only check that it can.
        drop(bind().map_err(SessionError::fatal)?);
        None
    } else {
        Some(bind().map_err(SessionError::fatal)?)
    };
    let est = establish(client, &config.params, ephemeral, progress, &[], monitor).await?;
    if *local_port == 0 {
        progress.say("Finding an available local port");
    } else {
        progress.say(&format!("Will use local port {local_port}"));
    }
    progress.say("Creating connection to socket rendezvous");
    if config.exit_when_connected {
        let port =
            super::detached::spawn_srv(&est, *local_port, config.params.timeout, true).await?;
        println!("{port}");
        return Ok(());
    }
    let Some(listener) = listener else {
        return Err(SessionError::new("internal: no local listener"));
    };
    let port = listener
        .get_ref()
        .local_addr()
        .map_err(|e| SessionError::new(e.to_string()))?
        .port();
    // -K keeps the same local port across sessions.
    *local_port = port;
    progress.say(&format!("npt is listening on localhost:{port}"));
    let aead = match &est.crypto {
        tunnel::SessionCrypto::Suite(keys) => match keys.aead() {
            Aead::Aes256Gcm => " (aes-256-gcm)",
            Aead::ChaCha20Poly1305 => " (chacha20-poly1305)",
        },
        _ => "",
    };
    log::info!(
        "session {} uses the {} data plane{aead}",
        est.session_id,
        est.suite_name
    );
    let stats = tunnel::client_multi(est.relay, listener, est.crypto, config.params.timeout)
        .await
        .map_err(|e| SessionError::new(e.to_string()))?;
    log::info!(
        "session {}: {} connections, {} bytes out, {} bytes in",
        est.session_id,
        stats.connections,
        stats.bytes_out,
        stats.bytes_in
    );
    Ok(())
}
