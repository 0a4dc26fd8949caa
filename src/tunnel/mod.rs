//! Data plane: the cipher and splice of one relay session, used by `srv`, the daemon and the
//! clients (noports.md §5).
//!
//! Three crypto modes, a closed set ([`SessionCrypto`]):
//! - `Plain`: bytes as they are (`--no-et`);
//! - `Official`: AES-256-CTR, one keystream per direction starting at the IV, no framing
//!   (noports.md §5.2–§5.4), byte-compatible with the official srv;
//! - `Suite`: our "nps1" suite (docs/suite-v1.md): AEAD records, and in multi mode every local
//!   connection multiplexed over the one relay socket pair (`tunnel/mux.rs`).
//!
//! Every wait on a peer has a deadline; every splice uses two fixed 64 KiB buffers allocated
//! once per connection.

use std::fmt;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};

mod mux;
mod net;
mod outbox;
mod splice;

#[doc(hidden)]
pub use mux::fuzz_mux;
pub(crate) use net::io_err;
pub use net::{
    connect_tcp, TunnelError, TunnelStats, HALF_CLOSE_LINGER, LOCAL_CONNECT_TIMEOUT,
    RELAY_CONNECT_TIMEOUT,
};
pub use splice::{splice, Direction, SPLICE_BUF};
use splice::{Counters, Tracker};

use crate::crypto::aes_ctr::CtrStream;
use crate::crypto::{b64, random, CryptoError};
use crate::noports::control::{ControlDecoder, ControlMsg};
use crate::noports::suite::SuiteKeys;
use crate::runtime;
use crate::runtime::dial::Route;

/// The key material of one session's data plane.
pub enum SessionCrypto {
    /// No encryption (`encryptRvdTraffic:false`).
    Plain,
    /// The official AES-256-CTR stream (noports.md §5.2).
    Official {
        /// AES-256 key.
        key: [u8; 32],
        /// Initial 128-bit counter block.
        iv: [u8; 16],
    },
    /// Our negotiated AEAD suite (docs/suite-v1.md).
    Suite(SuiteKeys),
}

impl fmt::Debug for SessionCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionCrypto::Plain => "Plain",
            SessionCrypto::Official { .. } => "Official(***)",
            SessionCrypto::Suite(_) => "Suite(***)",
        })
    }
}

impl SessionCrypto {
    /// Builds the official mode from the base64 strings of `RV_AES`/`RV_IV` (§3 step 5).
    ///
    /// # Errors
    /// `CryptoError::Base64` or `CryptoError::Length` unless they decode to 32 and 16 bytes.
    pub fn official_b64(key_b64: &str, iv_b64: &str) -> Result<Self, CryptoError> {
        let key: [u8; 32] = b64::decode(key_b64)?
            .try_into()
            .map_err(|_| CryptoError::Length("AES key"))?;
        let iv: [u8; 16] = b64::decode(iv_b64)?
            .try_into()
            .map_err(|_| CryptoError::Length("AES IV"))?;
        Ok(SessionCrypto::Official { key, iv })
    }
}

/// Where to reach the relay, and the auth line (with or without its `\n`) to send first.
#[derive(Clone)]
pub struct RelayTarget {
    /// Host name or address from the relay response.
    pub host: String,
    /// portA (client) or portB (daemon).
    pub port: u16,
    /// The signed auth line (noports.md §4.3), or `None` when this side is unauthenticated.
    pub auth_line: Option<String>,
}

impl fmt::Debug for RelayTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} (auth: {})",
            self.host,
            self.port,
            self.auth_line.is_some()
        )
    }
}

/// Opens a socket to the relay and writes the auth line (in clear, §4.3).
///
/// # Errors
/// As [`connect_tcp`], or `Io` if the auth line cannot be written.
pub async fn connect_relay(relay: &RelayTarget) -> Result<Async<TcpStream>, TunnelError> {
    let sock = connect_tcp(
        &relay.host,
        relay.port,
        "relay",
        Route::Outbound,
        RELAY_CONNECT_TIMEOUT,
    )
    .await?;
    if let Some(line) = &relay.auth_line {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.trim_end_matches('\n').as_bytes());
        bytes.push(b'\n');
        (&sock)
            .write_all(&bytes)
            .await
            .map_err(io_err("writing auth line"))?;
    }
    Ok(sock)
}

/// Bridges a local socket with a relay socket under one official key/IV (or none).
async fn bridge(
    local: &Async<TcpStream>,
    relay: &Async<TcpStream>,
    kv: Option<(&[u8; 32], &[u8; 16])>,
    c: &Counters,
) -> io::Result<()> {
    let cipher = || kv.map(|(k, iv)| CtrStream::new(k, iv));
    c.conns.fetch_add(1, Ordering::Relaxed);
    let up = Direction {
        pre: &[],
        cipher: cipher(),
        count: &c.out,
    };
    let down = Direction {
        pre: &[],
        cipher: cipher(),
        count: &c.inn,
    };
    splice(local, relay, up, down, HALF_CLOSE_LINGER).await
}

/// Daemon side, single mode: [`daemon_single_ready`] without a readiness signal.
///
/// # Errors
/// As [`daemon_single_ready`].
pub async fn daemon_single(
    relay: RelayTarget,
    local: (String, u16),
    crypto: SessionCrypto,
    idle: Duration,
) -> Result<TunnelStats, TunnelError> {
    daemon_single_ready(relay, local, crypto, idle, async_channel::bounded(1).0).await
}

/// Daemon side, single mode (§5.1): connects the local target first, then the relay, writes
/// the auth line and bridges until the connection ends. `ready` gets one message once both
/// sockets are connected and the auth line is sent (where srv prints its readiness line).
///
/// # Errors
/// Connect failures, `Tampered`/`Protocol`/`Truncated` in the suite.
pub async fn daemon_single_ready(
    relay: RelayTarget,
    local: (String, u16),
    crypto: SessionCrypto,
    idle: Duration,
    ready: async_channel::Sender<()>,
) -> Result<TunnelStats, TunnelError> {
    let local_sock = connect_tcp(
        &local.0,
        local.1,
        "local",
        Route::Direct,
        LOCAL_CONNECT_TIMEOUT,
    )
    .await?;
    let relay_sock = connect_relay(&relay).await?;
    let _ = ready.try_send(());
    match crypto {
        SessionCrypto::Suite(keys) => {
            mux::run(
                relay_sock,
                keys,
                mux::Side::Daemon {
                    local,
                    pre: Some(local_sock),
                    single: true,
                },
                idle,
            )
            .await
        }
        SessionCrypto::Plain => bridge_one(&local_sock, &relay_sock, None).await,
        SessionCrypto::Official { key, iv } => {
            bridge_one(&local_sock, &relay_sock, Some((&key, &iv))).await
        }
    }
}

async fn bridge_one(
    local: &Async<TcpStream>,
    relay: &Async<TcpStream>,
    kv: Option<(&[u8; 32], &[u8; 16])>,
) -> Result<TunnelStats, TunnelError> {
    let c = Counters::default();
    bridge(local, relay, kv, &c)
        .await
        .map_err(io_err("bridging"))?;
    Ok(c.snapshot())
}

/// Client side, single mode (§5.1, sshnp): waits up to `idle` for the first local
/// connection, stops listening, connects the relay and bridges.
///
/// # Errors
/// `Timeout` when nobody connects locally in time; otherwise as [`daemon_single`].
pub async fn client_single(
    relay: RelayTarget,
    listener: Async<TcpListener>,
    crypto: SessionCrypto,
    idle: Duration,
) -> Result<TunnelStats, TunnelError> {
    let (local, _) = runtime::timeout(idle, listener.accept())
        .await
        .map_err(|_| TunnelError::Timeout("waiting for the local connection"))?
        .map_err(io_err("accepting the local connection"))?;
    drop(listener);
    let _ = local.get_ref().set_nodelay(true);
    let relay_sock = connect_relay(&relay).await?;
    match crypto {
        SessionCrypto::Suite(keys) => {
            mux::run(relay_sock, keys, mux::Side::ClientSingle(local), idle).await
        }
        SessionCrypto::Plain => bridge_one(&local, &relay_sock, None).await,
        SessionCrypto::Official { key, iv } => {
            bridge_one(&local, &relay_sock, Some((&key, &iv))).await
        }
    }
}

/// The daemon's connected and authenticated control socket (multi mode). Reply to the client
/// once you hold one: that is the moment the Dart srv prints `rv started successfully`.
pub struct DaemonControl {
    relay: RelayTarget,
    sock: Async<TcpStream>,
    crypto: SessionCrypto,
}

impl fmt::Debug for DaemonControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DaemonControl({:?}, {:?})", self.relay, self.crypto)
    }
}

/// Connects the daemon's control socket and sends its auth line (§5.4).
///
/// # Errors
/// As [`connect_relay`].
pub async fn daemon_connect(
    relay: RelayTarget,
    crypto: SessionCrypto,
) -> Result<DaemonControl, TunnelError> {
    let sock = connect_relay(&relay).await?;
    Ok(DaemonControl {
        relay,
        sock,
        crypto,
    })
}

impl DaemonControl {
    /// Serves `connect` requests until the control socket ends (§5.4, §5.5: the daemon follows
    /// the client, which owns the session lifetime). Each request connects `local`, then a new
    /// relay data socket. A failed local connect ends only that connection (C srv behaviour).
    ///
    /// # Errors
    /// I/O errors on the control socket; `Tampered`/`Protocol`/`Truncated` in the suite.
    pub async fn run(
        self,
        local: (String, u16),
        idle: Duration,
    ) -> Result<TunnelStats, TunnelError> {
        let DaemonControl {
            relay,
            sock,
            crypto,
        } = self;
        let (key, iv) = match crypto {
            SessionCrypto::Suite(keys) => {
                return mux::run(
                    sock,
                    keys,
                    mux::Side::Daemon {
                        local,
                        pre: None,
                        single: false,
                    },
                    idle,
                )
                .await;
            }
            SessionCrypto::Plain => (None, None),
            SessionCrypto::Official { key, iv } => (Some(key), Some(iv)),
        };
        let mut ctl = key.zip(iv).map(|(k, iv)| CtrStream::new(&k, &iv));
        let counters = Arc::new(Counters::default());
        let local = Arc::new(local);
        let mut dec = ControlDecoder::new();
        let mut buf = vec![0u8; 4096];
        let mut tasks: Vec<runtime::Task<()>> = Vec::new();
        loop {
            let n = (&sock)
                .read(&mut buf)
                .await
                .map_err(io_err("reading control socket"))?;
            let Some(chunk) = buf.get_mut(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            if let Some(c) = ctl.as_mut() {
                c.apply(chunk);
            }
            dec.feed(chunk);
            while let Some(msg) = dec.next() {
                let kv = match msg {
                    Ok(ControlMsg::Connect { key_b64, iv_b64 }) if ctl.is_some() => {
                        match SessionCrypto::official_b64(&key_b64, &iv_b64) {
                            Ok(SessionCrypto::Official { key, iv }) => Some((key, iv)),
                            _ => {
                                log::warn!("control socket: bad connect key material");
                                continue;
                            }
                        }
                    }
                    Ok(ControlMsg::ConnectNoEncrypt) if ctl.is_none() => None,
                    Ok(ControlMsg::Heartbeat(n)) => {
                        log::debug!("control socket: heartbeat {n}");
                        continue;
                    }
                    Ok(other) => {
                        log::warn!(
                            "control socket: {other:?} does not match the session's encryption"
                        );
                        continue;
                    }
                    Err(e) => {
                        log::warn!("control socket: {e}");
                        if dec.is_poisoned() {
                            return Err(TunnelError::Protocol("control stream overflow"));
                        }
                        continue;
                    }
                };
                tasks.retain(|t| !t.is_finished());
                // The relay pairs each side's data sockets in the order they arrive, and the
                // client opened its own in the order of these messages: open ours in the same
                // order, here, before anything that may take a varying time (the local connect).
                let relay_sock = match connect_relay(&relay).await {
                    Ok(r) => r,
                    Err(e) => {
                        log::warn!("data connection to the relay: {e}");
                        continue;
                    }
                };
                let (local, counters) = (local.clone(), counters.clone());
                tasks.push(runtime::spawn(async move {
                    if let Err(e) = daemon_data_conn(relay_sock, &local, kv, &counters).await {
                        log::warn!("data connection to {}:{}: {e}", local.0, local.1);
                    }
                }));
            }
        }
        let _ = idle;
        Ok(counters.snapshot())
    }
}

async fn daemon_data_conn(
    relay_sock: Async<TcpStream>,
    local: &(String, u16),
    kv: Option<([u8; 32], [u8; 16])>,
    c: &Counters,
) -> Result<(), TunnelError> {
    // On a failed local connect the relay data socket (already open) is closed here, so the
    // relay pairs it with the client's waiting socket and the client's user sees a close
    // instead of a hang.
    let local_sock = connect_tcp(
        &local.0,
        local.1,
        "local",
        Route::Direct,
        LOCAL_CONNECT_TIMEOUT,
    )
    .await?;
    bridge(
        &local_sock,
        &relay_sock,
        kv.as_ref().map(|(k, iv)| (k, iv)),
        c,
    )
    .await
    .map_err(io_err("bridging"))
}

/// Daemon side, multi mode: [`daemon_connect`] then [`DaemonControl::run`].
///
/// # Errors
/// As those two.
pub async fn daemon_multi(
    relay: RelayTarget,
    local: (String, u16),
    crypto: SessionCrypto,
    idle: Duration,
) -> Result<TunnelStats, TunnelError> {
    daemon_connect(relay, crypto).await?.run(local, idle).await
}

/// Client side, multi mode: [`client_multi_ready`] without a readiness signal.
///
/// # Errors
/// As [`client_multi_ready`].
pub async fn client_multi(
    relay: RelayTarget,
    listener: Async<TcpListener>,
    crypto: SessionCrypto,
    idle: Duration,
) -> Result<TunnelStats, TunnelError> {
    client_multi_ready(relay, listener, crypto, idle, async_channel::bounded(1).0).await
}

/// Client side, multi mode (npt, §5.4): one control socket, then per accepted local
/// connection a fresh key/IV in a `connect` message and a new relay data socket (official),
/// or one multiplexed stream (suite). Ends under the grace rule of §5.5, or when the daemon
/// closes the control socket. `ready` gets one message once the control socket is connected.
///
/// # Errors
/// Relay connect failures; `Tampered`/`Protocol`/`Truncated` in the suite.
pub async fn client_multi_ready(
    relay: RelayTarget,
    listener: Async<TcpListener>,
    crypto: SessionCrypto,
    idle: Duration,
    ready: async_channel::Sender<()>,
) -> Result<TunnelStats, TunnelError> {
    let control = connect_relay(&relay).await?;
    let _ = ready.try_send(());
    let (key, iv) = match crypto {
        SessionCrypto::Suite(keys) => {
            return mux::run(control, keys, mux::Side::Client(listener), idle).await
        }
        SessionCrypto::Plain => (None, None),
        SessionCrypto::Official { key, iv } => (Some(key), Some(iv)),
    };
    let mut ctl = key.zip(iv).map(|(k, iv)| CtrStream::new(&k, &iv));
    let counters = Arc::new(Counters::default());
    let tracker = Tracker::new();
    let mut tasks: Vec<runtime::Task<()>> = Vec::new();
    let accept_loop = async {
        loop {
            let (local, peer) = net::accept_local(&listener).await?;
            log::debug!("local connection from {peer}");
            let guard = tracker.enter();
            let (msg, kv) = if ctl.is_some() {
                let (k, iv) = (random::bytes::<32>(), random::bytes::<16>());
                (ControlMsg::connect(&k, &iv), Some((k, iv)))
            } else {
                (ControlMsg::ConnectNoEncrypt, None)
            };
            let relay = relay.clone();
            let counters = counters.clone();
            let data =
                // Each data socket leaves the way its control socket did (through the proxy
                // when one is configured).
                match connect_tcp(
                    &relay.host,
                    relay.port,
                    "relay",
                    Route::Outbound,
                    RELAY_CONNECT_TIMEOUT,
                )
                .await
                {
                    Ok(d) => d,
                    Err(e) => {
                        log::warn!("{e}");
                        continue;
                    }
                };
            let mut line = Vec::new();
            msg.encode(&mut line);
            if let Some(c) = ctl.as_mut() {
                c.apply(&mut line);
            }
            (&control)
                .write_all(&line)
                .await
                .map_err(io_err("writing control socket"))?;
            tasks.retain(|t| !t.is_finished());
            tasks.push(runtime::spawn(async move {
                let _guard = guard;
                if let Some(auth) = &relay.auth_line {
                    let bytes = format!("{}\n", auth.trim_end_matches('\n'));
                    if let Err(e) = (&data).write_all(bytes.as_bytes()).await {
                        log::warn!("writing auth line: {e}");
                        return;
                    }
                }
                let kv = kv.as_ref().map(|(k, iv)| (k, iv));
                if let Err(e) = bridge(&local, &data, kv, &counters).await {
                    log::debug!("data connection from {peer}: {e}");
                }
            }));
        }
    };
    let control_watch = async {
        let mut buf = [0u8; 512];
        loop {
            match (&control).read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => log::info!("control socket: ignoring {n} bytes from the daemon"),
                Err(e) => {
                    return Err(TunnelError::Io {
                        op: "reading control socket",
                        source: e,
                    })
                }
            }
        }
    };
    let grace = async {
        tracker.grace(idle, false).await;
        Ok(())
    };
    let r: Result<(), TunnelError> = accept_loop.or(control_watch).or(grace).await;
    let _ = control.get_ref().shutdown(Shutdown::Both);
    r.map(|()| counters.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// noports.md §5.7: the known-answer vector, whole and split 5 + 21.
    #[test]
    fn official_known_answer_vector() {
        let Ok(SessionCrypto::Official { key, iv }) = SessionCrypto::official_b64(
            "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=",
            "MTIzNDU2Nzg5MEFCQ0RFRg==",
        ) else {
            panic!("vector key material must decode");
        };
        let want = "f79020f51385b6a0c2d7371d058d93c1ac7b02624df784e5af5b";
        let mut whole = *b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        CtrStream::new(&key, &iv).apply(&mut whole);
        assert_eq!(crate::crypto::hash::hex(&whole), want);
        let mut split = *b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut c = CtrStream::new(&key, &iv);
        let (a, b) = split.split_at_mut(5);
        c.apply(a);
        c.apply(b);
        assert_eq!(crate::crypto::hash::hex(&split), want);
    }

    #[test]
    fn official_b64_rejects_wrong_lengths() {
        assert!(SessionCrypto::official_b64("AAAA", "MTIzNDU2Nzg5MEFCQ0RFRg==").is_err());
        assert!(SessionCrypto::official_b64(
            "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=",
            "AAAA"
        )
        .is_err());
    }
}
