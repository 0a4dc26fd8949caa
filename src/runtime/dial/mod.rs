//! Dialing: every outbound TCP connection of the binary starts here — atDirectory and atServer
//! connections (`at::conn`), relay sockets and local services (`tunnel`), the daemon's relay
//! latency probes. One resolver (the capped helper threads of `runtime::blocking`), one proxy
//! setting ([`proxy`]), one place that sets `TCP_NODELAY`.

mod proxy;

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::time::Duration;

use async_io::Async;

pub use super::blocking::resolve;
pub use proxy::{configure, configured_url, for_host, handshake, Kind, Proxy, Target, FLAG};

/// Whether a connection may leave through the configured proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Always straight to the address: local services (the device's sshd, a permitted host).
    Direct,
    /// Through the proxy when one is configured and `NO_PROXY` does not exempt the host.
    Outbound,
}

/// The stage of a dial that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Resolve,
    Connect,
}

/// Why a dial failed: callers map these onto their own layer's errors.
#[derive(Debug)]
pub enum DialError {
    /// `limit` passed during `Stage`.
    Timeout(Stage),
    /// The name resolved to no address.
    NoAddress,
    /// Resolution or connect failed.
    Io(io::Error),
    /// The proxy could not be reached or refused the tunnel (its message names the stage).
    Proxy(&'static Proxy, io::Error),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Timeout(Stage::Resolve) => f.write_str("DNS resolution timed out"),
            DialError::Timeout(Stage::Connect) => f.write_str("TCP connect timed out"),
            DialError::NoAddress => f.write_str("no address found"),
            DialError::Io(e) => write!(f, "{e}"),
            DialError::Proxy(p, e) => write!(f, "via {p}: {e}"),
        }
    }
}

impl DialError {
    /// As an `io::Error` of the matching kind, for callers that report the cause as I/O.
    pub fn into_io(self) -> io::Error {
        match self {
            DialError::Timeout(_) => io::Error::new(io::ErrorKind::TimedOut, self.to_string()),
            DialError::NoAddress => io::Error::new(io::ErrorKind::NotFound, "no address"),
            DialError::Io(e) | DialError::Proxy(_, e) => e,
        }
    }
}

/// Connects to `host:port` by `route`, resolution and connect together within `limit` (through
/// a proxy: its connect and its handshake each within `limit`).
///
/// # Errors
/// [`DialError`] naming the stage that failed.
pub async fn connect(
    host: &str,
    port: u16,
    route: Route,
    limit: Duration,
) -> Result<Async<TcpStream>, DialError> {
    if route == Route::Outbound {
        if let Some(p) = for_host(host) {
            return proxy::connect_via(p, host, port, limit)
                .await
                .map_err(|e| DialError::Proxy(p, e));
        }
    }
    let start = std::time::Instant::now();
    let addr = match super::timeout(limit, resolve(host, port)).await {
        Err(_) => return Err(DialError::Timeout(Stage::Resolve)),
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => return Err(DialError::NoAddress),
        Ok(r) => r.map_err(DialError::Io)?,
    };
    let left = limit.saturating_sub(start.elapsed());
    let sock = super::timeout(left, Async::<TcpStream>::connect(addr))
        .await
        .map_err(|_| DialError::Timeout(Stage::Connect))?
        .map_err(DialError::Io)?;
    let _ = sock.get_ref().set_nodelay(true);
    Ok(sock)
}
