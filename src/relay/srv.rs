//! The `srv` applet: the parent-facing contract of noports.md §5.6 around `tunnel`.
//!
//! `srv -h <relayHost> -p <relayPort> --local-port <port> --local-host <host> --timeout <s>
//!  [--multi] [--bind-local-port] [--rv-auth] [--rv-e2ee]`, with `RV_AUTH`, `RV_AES`, `RV_IV`
//! in the environment. Prints `rv started successfully` on stderr when ready; on failure prints
//! `Exception running srv : <error>` and exits 200; argument errors exit 1.
//!
//! Deviation: the client-side listener binds 127.0.0.1, not 0.0.0.0 (noports.md §12 notes
//! the official one is reachable from the LAN); parents connect to `localhost` anyway.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use async_io::Async;
use futures_lite::FutureExt;

use crate::runtime;
use crate::tunnel::{self, RelayTarget, SessionCrypto, TunnelError, TunnelStats};

/// Exit status of an srv that failed after argument parsing (§5.6).
const EXIT_EXCEPTION: u8 = 200;
/// The readiness line parents wait for (§5.6).
const READY_LINE: &str = "rv started successfully";

#[derive(FromArgs)]
/// NoPorts socket rendezvous bridge (internal; started by sshnp, npt and sshnpd).
struct Args {
    /// relay host
    #[argh(option, short = 'h')]
    host: String,
    /// relay port
    #[argh(option, short = 'p')]
    port: u16,
    /// local port (default 22)
    #[argh(option, default = "22")]
    local_port: u16,
    /// local host (default localhost)
    #[argh(option, default = "String::from(\"localhost\")")]
    local_host: String,
    /// idle timeout in seconds (default 60)
    #[argh(option, default = "60")]
    timeout: u64,
    /// client side: listen on --local-port
    #[argh(switch)]
    bind_local_port: bool,
    /// send RV_AUTH as the auth line on every relay socket
    #[argh(switch)]
    rv_auth: bool,
    /// do not authenticate to the relay (default)
    #[argh(switch)]
    no_rv_auth: bool,
    /// encrypt with RV_AES / RV_IV (AES-256-CTR)
    #[argh(switch)]
    rv_e2ee: bool,
    /// do not encrypt (default)
    #[argh(switch)]
    no_rv_e2ee: bool,
    /// multi-connection mode (npt)
    #[argh(switch)]
    multi: bool,
}

struct Config {
    relay: RelayTarget,
    local: (String, u16),
    idle: Duration,
    client: bool,
    multi: bool,
    crypto: SessionCrypto,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Turns arguments and environment into a [`Config`]; `Err` carries the usage message.
fn config(a: Args) -> Result<Result<Config, String>, String> {
    let auth = a.rv_auth && !a.no_rv_auth;
    let e2ee = a.rv_e2ee && !a.no_rv_e2ee;
    let auth_line = match auth {
        true => {
            Some(env("RV_AUTH").ok_or("--rv-auth required, but RV_AUTH is not in environment")?)
        }
        false => None,
    };
    let crypto = if e2ee {
        let key = env("RV_AES").ok_or("--rv-e2ee required, but RV_AES is not in environment")?;
        let iv = env("RV_IV").ok_or("--rv-e2ee required, but RV_IV is not in environment")?;
        match SessionCrypto::official_b64(&key, &iv) {
            Ok(c) => c,
            // Bad key material is a run-time failure in the reference (exit 200), not usage.
            Err(e) => return Ok(Err(format!("RV_AES/RV_IV: {e}"))),
        }
    } else {
        SessionCrypto::Plain
    };
    // Proxy from the environment only (ALL_PROXY, HTTPS_PROXY, NO_PROXY): set by npt/sshnp -x.
    if let Err(e) = crate::runtime::dial::configure(None) {
        return Ok(Err(e));
    }
    Ok(Ok(Config {
        relay: RelayTarget {
            host: a.host,
            port: a.port,
            auth_line,
        },
        local: (a.local_host, a.local_port),
        idle: Duration::from_secs(a.timeout),
        client: a.bind_local_port,
        multi: a.multi,
        crypto,
    }))
}

/// Entry point; `argv[0]` is the applet name.
pub(crate) fn main(argv: &[String]) -> ExitCode {
    let args: Args = match runtime::cli::parse(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(false);
    let cfg = match config(args) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return exception(&e),
        Err(usage) => {
            eprintln!("srv {}", env!("CARGO_PKG_VERSION"));
            eprintln!("{usage}");
            return ExitCode::from(1);
        }
    };
    match runtime::block_on(run(cfg)) {
        Ok(stats) => {
            log::info!(
                "srv completing: {} connections, {} bytes out, {} bytes in",
                stats.connections,
                stats.bytes_out,
                stats.bytes_in
            );
            ExitCode::SUCCESS
        }
        Err(e) => exception(&e.to_string()),
    }
}

fn exception(e: &str) -> ExitCode {
    eprintln!("Exception running srv : {e}");
    ExitCode::from(EXIT_EXCEPTION)
}

async fn run(cfg: Config) -> Result<TunnelStats, TunnelError> {
    let Config {
        relay,
        local,
        idle,
        client,
        multi,
        crypto,
    } = cfg;
    if client {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, local.1));
        let listener = Async::<TcpListener>::bind(addr).map_err(|source| TunnelError::Io {
            op: "binding the local port",
            source,
        })?;
        if !multi {
            eprintln!("{READY_LINE}");
            return tunnel::client_single(relay, listener, crypto, idle).await;
        }
        let (tx, rx) = async_channel::bounded(1);
        return with_ready(
            tunnel::client_multi_ready(relay, listener, crypto, idle, tx),
            rx,
        )
        .await;
    }
    if multi {
        let control = tunnel::daemon_connect(relay, crypto).await?;
        eprintln!("{READY_LINE}");
        return control.run(local, idle).await;
    }
    let (tx, rx) = async_channel::bounded(1);
    with_ready(
        tunnel::daemon_single_ready(relay, local, crypto, idle, tx),
        rx,
    )
    .await
}

/// Runs `fut`, printing the readiness line when it signals.
async fn with_ready<T>(
    fut: impl std::future::Future<Output = T>,
    ready: async_channel::Receiver<()>,
) -> T {
    let announce = async {
        if ready.recv().await.is_ok() {
            eprintln!("{READY_LINE}");
        }
        std::future::pending::<T>().await
    };
    let out = fut.or(announce).await;
    if ready.try_recv().is_ok() {
        eprintln!("{READY_LINE}");
    }
    out
}
