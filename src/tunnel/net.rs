//! What every data-plane file shares: the connect timeouts, the tunnel's result and error
//! types, and the TCP connect with a deadline. Depends on nothing else in the data plane.
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use async_io::Async;

use crate::crypto::CryptoError;
use crate::runtime::dial::{self, DialError, Route};

/// Connect timeout for relay sockets: 10 s, as the official client's control socket (§5.1).
pub const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout for the daemon's local target.
pub const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a bridged connection may stay half-closed without moving data.
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(30);

/// What a finished tunnel moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    /// Local connections bridged.
    pub connections: u64,
    /// Plaintext bytes read from local sockets and sent towards the relay.
    pub bytes_out: u64,
    /// Plaintext bytes received from the relay and written to local sockets.
    pub bytes_in: u64,
}

/// Why a tunnel ended abnormally.
#[derive(Debug)]
pub enum TunnelError {
    /// A TCP connect failed (`what` names the target: "relay", "local").
    Connect {
        /// Which connection.
        what: &'static str,
        /// `host:port`.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// An I/O error on an established socket.
    Io {
        /// The operation.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A deadline passed.
    Timeout(&'static str),
    /// An AEAD record failed authentication: the relay or the network changed bytes.
    Tampered,
    /// The peer broke the suite's framing rules.
    Protocol(&'static str),
    /// The relay connection ended without the suite's CLOSE record.
    Truncated,
    /// Key material was unusable.
    Crypto(CryptoError),
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelError::Connect { what, addr, source } => {
                write!(f, "connecting to {what} {addr}: {source}")
            }
            TunnelError::Io { op, source } => write!(f, "{op}: {source}"),
            TunnelError::Timeout(what) => write!(f, "timed out {what}"),
            TunnelError::Tampered => {
                f.write_str("record authentication failed: data was tampered with")
            }
            TunnelError::Protocol(what) => write!(f, "protocol violation: {what}"),
            TunnelError::Truncated => f.write_str("relay connection closed without CLOSE record"),
            TunnelError::Crypto(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TunnelError {}

impl From<CryptoError> for TunnelError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Tampered => TunnelError::Tampered,
            other => TunnelError::Crypto(other),
        }
    }
}

pub(crate) fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> TunnelError {
    move |source| TunnelError::Io { op, source }
}

/// The next connection on a tunnel's local listener, with Nagle off (interactive traffic).
///
/// # Errors
/// `Io` when accepting fails.
pub(crate) async fn accept_local(
    listener: &Async<TcpListener>,
) -> Result<(Async<TcpStream>, SocketAddr), TunnelError> {
    let (local, peer) = listener
        .accept()
        .await
        .map_err(io_err("accepting local connections"))?;
    let _ = local.get_ref().set_nodelay(true);
    Ok((local, peer))
}

/// Connects to `host:port` (first resolved address, §5.1) by `route` within `limit`.
///
/// # Errors
/// `Connect` (including resolution failures) or `Timeout`.
pub async fn connect_tcp(
    host: &str,
    port: u16,
    what: &'static str,
    route: Route,
    limit: Duration,
) -> Result<Async<TcpStream>, TunnelError> {
    // Names resolve on the runtime's helper threads: a slow resolver must not stall the
    // executor (and so every other session).
    dial::connect(host, port, route, limit)
        .await
        .map_err(|e| match e {
            DialError::Timeout(_) => TunnelError::Timeout(what),
            DialError::Proxy(p, source) => TunnelError::Connect {
                what,
                addr: format!("{host}:{port} via {p}"),
                source,
            },
            e => TunnelError::Connect {
                what,
                addr: format!("{host}:{port}"),
                source: e.into_io(),
            },
        })
}

/// One read of `sock` into `buf`, waiting for readiness only after a read found nothing.
/// (`AsyncRead::read` also retries once on the readiness event that the successful read
/// already consumed: one wasted `recvfrom` per message at each tunnel end.)
pub(super) async fn read_some(sock: &Async<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    sock.read_with(|s| io::Read::read(&mut &*s, buf)).await
}

/// Writes as much of `data` as the non-blocking socket takes now: the bytes written, and the
/// error that stopped it early (`None` when all went or the socket would block).
pub(super) fn write_nonblocking(
    sock: &Async<TcpStream>,
    data: &[u8],
) -> (usize, Option<io::ErrorKind>) {
    use std::io::Write;
    let mut n = 0;
    while n < data.len() {
        match sock.get_ref().write(data.get(n..).unwrap_or_default()) {
            Ok(0) => return (n, Some(io::ErrorKind::WriteZero)),
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return (n, Some(e.kind())),
        }
    }
    (n, None)
}

/// Makes the coming close of `sock` a reset (RST) instead of an orderly end (FIN): SO_LINGER
/// on, with no time to linger. For a stream the peer reset or a session that was cut, so the
/// local application sees an error, never an end that looks complete.
pub(super) fn reset_on_close(sock: &TcpStream) {
    if let Err(e) = rustix::net::sockopt::set_socket_linger(sock, Some(Duration::ZERO)) {
        log::debug!("cannot make the local connection end in a reset: {e}");
    }
}
