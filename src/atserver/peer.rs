//! Outbound server-to-server networking for atSigns hosted elsewhere (atprotocol.md §4.4, §7.3,
//! §7.4, §8.1): directory look-ups through the `--peer-root` atDirectories, TLS connections to
//! remote atServers (optionally presenting this server's certificate), the `from`/`pol`
//! handshake as a hosted atSign, and a small idle pool per (remote atSign, acting atSign).
//!
//! Every network step runs under a deadline; every failure is a typed [`PeerError`] that names
//! what went wrong. Nothing here panics on what a peer sends.
use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use rustls::pki_types::{CertificateDer, ServerName};

use super::error::{AtCode, AtErr};
use crate::at::conn::{lookup_server, RootAddr};
use crate::at::framing::{LineReader, Response};
use crate::at::AtSign;
use crate::crypto::{b64, rsa::HashAlgo, rsa::RsaPrivateKey};
use crate::runtime::dial::{self, Route};

/// Deadline of one remote operation (directory + connect + handshake + request), §2.6.
pub(crate) const REMOTE_DEADLINE: Duration = Duration::from_secs(10);
/// First and longest pause before a connection the remote turned away is retried.
const TURNED_AWAY_FIRST: Duration = Duration::from_millis(100);
const TURNED_AWAY_MAX: Duration = Duration::from_secs(2);
/// Pooled connections idle longer than this are closed instead of reused.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Idle connections kept per (remote, acting atSign).
const POOL_MAX: usize = 4;
/// Directory answers are reused this long.
const ADDR_TTL: Duration = Duration::from_secs(300);
/// Resolving and connecting to another atServer, together.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Proofs we sign for our own `pol` are kept this long (§4.4: 60 s).
pub(crate) const PROOF_TTL_MS: i64 = 60_000;

/// What went wrong talking to another atServer or atDirectory.
#[derive(Debug)]
pub(crate) enum PeerError {
    /// No `--peer-root` knows the atSign (or none is configured).
    NotFound(String),
    /// Directory, TCP or TLS failure; names the peer.
    Connect(String),
    /// A deadline passed; names the step.
    Timeout(&'static str),
    /// The remote server answered `error:`.
    Remote { code: String, message: String },
    /// The remote sent something we could not use.
    Protocol(String),
    /// The `from`/`pol` handshake or a proof check failed.
    Auth(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::NotFound(a) => write!(f, "{a} is not known to any peer atDirectory"),
            PeerError::Connect(m) => write!(f, "cannot connect: {m}"),
            PeerError::Timeout(w) => write!(f, "timed out during {w}"),
            PeerError::Remote { code, message } => write!(f, "remote error {code}: {message}"),
            PeerError::Protocol(m) => write!(f, "protocol error: {m}"),
            PeerError::Auth(m) => write!(f, "handshake failed: {m}"),
        }
    }
}

impl PeerError {
    /// The error a client of ours sees (§2.5; remote codes are propagated when we know them).
    pub(crate) fn to_at_err(&self) -> AtErr {
        match self {
            PeerError::NotFound(a) => AtErr::new(
                AtCode::SecondaryNotFound,
                format!("No secondary url found for atsign: {a}"),
            ),
            PeerError::Connect(m) => AtErr::new(AtCode::UnableToConnect, m.clone()),
            PeerError::Timeout(w) => {
                AtErr::new(AtCode::Timeout, format!("Timeout waiting for {w}"))
            }
            PeerError::Remote { code, message } => AtErr::new(
                AtCode::from_wire(code).unwrap_or(AtCode::Internal),
                message.clone(),
            ),
            PeerError::Protocol(m) => AtErr::new(AtCode::Internal, m.clone()),
            PeerError::Auth(m) => AtErr::new(AtCode::Handshake, m.clone()),
        }
    }

    /// The remote server refused the connection for its load (AT0012), not the request.
    fn is_turned_away(&self) -> bool {
        matches!(self, PeerError::Remote { code, .. } if code == "AT0012")
    }

    /// Worth dropping the cached directory answer and the pooled connection.
    fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            PeerError::Connect(_) | PeerError::Timeout(_) | PeerError::Protocol(_)
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `fut` under `d`, mapping expiry to [`PeerError::Timeout`].
pub(crate) async fn within<T>(
    d: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    crate::runtime::timeout(d, fut)
        .await
        .unwrap_or(Err(PeerError::Timeout(what)))
}

/// The hosted atSign an outbound connection speaks for (`server::AtServer` implements it), so
/// that this file needs nothing of the server's state.
pub(crate) trait LocalAtSign: Sync {
    /// `@alice`.
    fn atsign(&self) -> &str;
    /// The server signing key (PKCS#8, base64), if any.
    fn signing_key(&self) -> Option<String>;
    /// Publishes the signature of a `pol` proof for `session`, for the remote's lookup (§4.4).
    fn add_proof(&self, session: &str, signature_b64: String);
}

/// One outbound TLS connection to an atServer, strict request/response.
pub(crate) struct OutConn {
    stream: TlsStream<Async<TcpStream>>,
    reader: LineReader,
    peer: String,
}

impl OutConn {
    async fn connect(
        tls: &Arc<rustls::ClientConfig>,
        host: &str,
        port: u16,
    ) -> Result<OutConn, PeerError> {
        let peer = format!("{host}:{port}");
        // The runtime's dialer: capped resolver threads and a deadline on both stages.
        let tcp = dial::connect(host, port, Route::Direct, CONNECT_LIMIT)
            .await
            .map_err(|e| PeerError::Connect(format!("{peer}: {e}")))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| PeerError::Connect(format!("{host}: invalid server name")))?;
        let handshake = TlsConnector::from(tls.clone()).connect(name, tcp);
        let stream = crate::runtime::timeout(CONNECT_LIMIT, handshake)
            .await
            .map_err(|_| PeerError::Connect(format!("TLS with {peer}: timed out")))?
            .map_err(|e| PeerError::Connect(format!("TLS with {peer}: {e}")))?;
        Ok(OutConn {
            stream,
            reader: LineReader::new(),
            peer,
        })
    }

    async fn send(&mut self, command: &str) -> Result<(), PeerError> {
        if command.contains(['\n', '\r']) {
            return Err(PeerError::Protocol("command contains a line break".into()));
        }
        let line = format!("{command}\n");
        let io = |e: std::io::Error| PeerError::Connect(format!("writing to {}: {e}", self.peer));
        self.stream.write_all(line.as_bytes()).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    /// Reads more bytes into the line reader.
    async fn fill(&mut self) -> Result<(), PeerError> {
        let mut buf = vec![0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut buf)
            .await
            .map_err(|e| PeerError::Connect(format!("reading from {}: {e}", self.peer)))?;
        if n == 0 {
            return Err(PeerError::Connect(format!(
                "{} closed the connection",
                self.peer
            )));
        }
        self.reader.feed(buf.get(..n).unwrap_or_default());
        Ok(())
    }

    async fn response(&mut self) -> Result<Response, PeerError> {
        loop {
            if let Some(line) = self.reader.next_line() {
                let line = line.map_err(|e| PeerError::Protocol(e.to_string()))?;
                return Response::parse(&line).map_err(|e| PeerError::Protocol(e.to_string()));
            }
            self.fill().await?;
        }
    }

    /// One command, its `data:` value (or the remote error).
    pub(crate) async fn request(&mut self, command: &str) -> Result<String, PeerError> {
        self.send(command).await?;
        loop {
            match self.response().await? {
                Response::Data(d) => return Ok(d),
                Response::Error { code, message } => {
                    return Err(PeerError::Remote { code, message })
                }
                Response::Notification(_) => continue,
            }
        }
    }

    /// `from:@me` → `data:proof:<sessionId>:<proof>`, sign, publish, `pol` → `@me@` (§4.4).
    async fn pol_handshake(&mut self, me: &dyn LocalAtSign) -> Result<(), PeerError> {
        let reply = self.request(&format!("from:{}", me.atsign())).await?;
        let rest = reply
            .strip_prefix("proof:")
            .ok_or_else(|| PeerError::Auth(format!("from answered {reply:.60?}, not a proof")))?;
        let (session, proof) = rest
            .rsplit_once(':')
            .filter(|(s, p)| s.starts_with('_') && !p.is_empty())
            .ok_or_else(|| PeerError::Auth(format!("malformed proof {rest:.60?}")))?;
        let want_suffix = me.atsign();
        if !session.ends_with(want_suffix) {
            return Err(PeerError::Auth(format!(
                "proof session {session:.60} is not for us"
            )));
        }
        let key = me
            .signing_key()
            .ok_or_else(|| PeerError::Auth("no server signing key".into()))?;
        let key = RsaPrivateKey::from_pkcs8_b64(&key)
            .map_err(|e| PeerError::Auth(format!("server signing key: {e}")))?;
        let sig = key
            .sign(HashAlgo::Sha256, proof.as_bytes())
            .map_err(|e| PeerError::Auth(format!("signing proof: {e}")))?;
        me.add_proof(session, b64::encode(&sig));
        self.send("pol").await?;
        let expect = format!("{}@", me.atsign());
        loop {
            if let Some(line) = self.reader.next_line() {
                let line = line.map_err(|e| PeerError::Protocol(e.to_string()))?;
                return match Response::parse(&line) {
                    Ok(Response::Error { code, message }) => {
                        Err(PeerError::Auth(format!("pol refused: {code} {message}")))
                    }
                    _ => Err(PeerError::Auth(format!("unexpected pol reply {line:.60?}"))),
                };
            }
            // The success reply is the bare prompt `@me@` with no newline (§2.3).
            let pending = self.reader.pending();
            if pending.ends_with(expect.as_bytes()) && !pending.contains(&b':') {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    async fn close(mut self) {
        let _ = crate::runtime::timeout(Duration::from_secs(2), async {
            let _ = self.send("@exit").await;
            let _ = self.stream.close().await;
        })
        .await;
    }
}

/// A cached directory answer: (host, port) and when it was learnt.
type AddrEntry = ((String, u16), Instant);

/// Pool key: (remote atSign, acting atSign for pol or `None` for unauthenticated).
type PoolKey = (String, Option<String>);

/// Outbound federation state of the process.
pub(crate) struct Peers {
    roots: Vec<RootAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
    addrs: Mutex<HashMap<String, AddrEntry>>,
    pool: Mutex<HashMap<PoolKey, Vec<(OutConn, Instant)>>>,
    /// Directory look-ups this process is forwarding right now (loop guard).
    forwarding: Mutex<HashSet<String>>,
    /// Wakes the delivery task when a notification is queued.
    pub wake: (async_channel::Sender<()>, async_channel::Receiver<()>),
    /// Delivery retry interval and attempt limit (§8.1: 5 s, 30).
    pub retry_interval: Duration,
    pub max_attempts: u32,
}

impl Default for Peers {
    fn default() -> Peers {
        Peers {
            roots: Vec::new(),
            tls: None,
            addrs: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            forwarding: Mutex::new(HashSet::new()),
            wake: async_channel::bounded(1),
            retry_interval: Duration::from_secs(5),
            max_attempts: 30,
        }
    }
}

/// Builds the outbound TLS configuration: webpki roots, `NOPORTS_CA_FILE`, every `trust` PEM,
/// and (when given) this server's certificate chain as the client certificate.
pub(crate) fn client_config(
    trust: &[std::path::PathBuf],
    client_cert: Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut files: Vec<std::path::PathBuf> = trust.to_vec();
    if let Some(p) = std::env::var_os(crate::at::conn::CA_FILE_ENV).filter(|p| !p.is_empty()) {
        files.push(p.into());
    }
    for f in &files {
        let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{}: bad PEM: {e}", f.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: bad certificate: {e}", f.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

impl Peers {
    pub(crate) fn new(roots: Vec<RootAddr>, tls: Arc<rustls::ClientConfig>) -> Peers {
        let mut retry_interval = Duration::from_secs(5);
        let mut max_attempts = 30;
        // Undocumented knobs for tests: faster retries and a lower limit.
        if let Some(ms) = env_u64("NOPORTS_ATSERVER_RETRY_MS") {
            retry_interval = Duration::from_millis(ms.max(10));
        }
        if let Some(n) = env_u64("NOPORTS_ATSERVER_MAX_ATTEMPTS") {
            max_attempts = u32::try_from(n.max(1)).unwrap_or(30);
        }
        Peers {
            roots,
            tls: Some(tls),
            retry_interval,
            max_attempts,
            ..Peers::default()
        }
    }

    /// True when atSigns hosted elsewhere can be reached at all.
    pub(crate) fn enabled(&self) -> bool {
        !self.roots.is_empty() && self.tls.is_some()
    }

    /// Where `atsign` (`@bob`) is served, asking the peer directories in order (cached).
    pub(crate) async fn resolve(&self, atsign: &str) -> Result<(String, u16), PeerError> {
        if let Some((a, t)) = lock(&self.addrs).get(atsign) {
            if t.elapsed() < ADDR_TTL {
                return Ok(a.clone());
            }
        }
        let at = AtSign::parse(atsign).map_err(|e| PeerError::Protocol(e.to_string()))?;
        let mut last = PeerError::NotFound(atsign.to_string());
        for root in &self.roots {
            match crate::runtime::timeout(REMOTE_DEADLINE, Box::pin(lookup_server(root, &at))).await
            {
                Ok(Ok(a)) => {
                    lock(&self.addrs).insert(atsign.to_string(), (a.clone(), Instant::now()));
                    return Ok(a);
                }
                Ok(Err(crate::at::AtError::UnknownAtSign(_))) => {}
                Ok(Err(e)) => last = PeerError::Connect(format!("atDirectory {root}: {e}")),
                Err(_) => last = PeerError::Timeout("atDirectory look-up"),
            }
        }
        Err(last)
    }

    /// Directory forwarding for atSigns not hosted here; `None` on a miss or a loop.
    pub(crate) async fn forward_lookup(&self, atsign: &str) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        // A look-up we are already forwarding came back to us: answer "not found".
        if !lock(&self.forwarding).insert(atsign.to_string()) {
            return None;
        }
        let r = self.resolve(atsign).await;
        lock(&self.forwarding).remove(atsign);
        match r {
            Ok((h, p)) => Some(format!("{h}:{p}")),
            Err(e) => {
                log::info!("directory: forwarding {atsign}: {e}");
                None
            }
        }
    }

    /// A ready connection to `to`'s server: pooled if healthy, else new (and, with `me`,
    /// pol-authenticated as `me`). The bool says whether it came from the pool.
    async fn get(
        &self,
        to: &str,
        me: Option<&dyn LocalAtSign>,
    ) -> Result<(OutConn, bool), PeerError> {
        let key: PoolKey = (to.to_string(), me.map(|s| s.atsign().to_string()));
        let pooled = {
            let mut pool = lock(&self.pool);
            let list = pool.entry(key).or_default();
            let mut found = None;
            while let Some((c, t)) = list.pop() {
                if t.elapsed() < POOL_IDLE {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        if let Some(c) = pooled {
            return Ok((c, true));
        }
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| PeerError::NotFound(to.to_string()))?;
        let (host, port) = Box::pin(self.resolve(to)).await?;
        let mut c = match Box::pin(OutConn::connect(tls, &host, port)).await {
            Ok(c) => c,
            Err(e) => {
                lock(&self.addrs).remove(to);
                return Err(e);
            }
        };
        if let Some(me) = me {
            Box::pin(c.pol_handshake(me)).await?;
        }
        Ok((c, false))
    }

    fn put(&self, to: &str, me: Option<&dyn LocalAtSign>, c: OutConn) {
        let key: PoolKey = (to.to_string(), me.map(|s| s.atsign().to_string()));
        let mut pool = lock(&self.pool);
        let list = pool.entry(key).or_default();
        list.retain(|(_, t)| t.elapsed() < POOL_IDLE);
        if list.len() < POOL_MAX {
            list.push((c, Instant::now()));
        }
    }

    /// Sends `command` to `to`'s server (as `me` via pol, or unauthenticated) within
    /// [`REMOTE_DEADLINE`]; a stale pooled connection is replaced once.
    pub(crate) async fn request(
        &self,
        to: &str,
        me: Option<&dyn LocalAtSign>,
        command: &str,
    ) -> Result<String, PeerError> {
        // Boxed at each level: in-place futures of TLS connections are large, and every
        // connection task embeds this one.
        Box::pin(within(REMOTE_DEADLINE, "remote request", async {
            let mut stale_retries = 1;
            let mut backoff = crate::runtime::Backoff::new(TURNED_AWAY_FIRST, TURNED_AWAY_MAX);
            loop {
                let (mut c, pooled) = match Box::pin(self.get(to, me)).await {
                    Ok(got) => got,
                    Err(e) if e.is_turned_away() => {
                        crate::runtime::sleep(backoff.next_delay()).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match Box::pin(c.request(command)).await {
                    Ok(v) => {
                        self.put(to, me, c);
                        return Ok(v);
                    }
                    Err(e) if e.is_turned_away() => {
                        // The remote server shed this connection (its connection limit, or
                        // our handshake took too long on a loaded machine): retried within
                        // the deadline, as our clients retry turned-away logins.
                        log::debug!("{to} turned our connection away ({e}); retrying");
                        c.close().await;
                        crate::runtime::sleep(backoff.next_delay()).await;
                    }
                    Err(e @ PeerError::Remote { .. }) => {
                        self.put(to, me, c);
                        return Err(e);
                    }
                    Err(e) if pooled && stale_retries > 0 && e.is_connection_problem() => {
                        stale_retries -= 1;
                    }
                    Err(e) => {
                        c.close().await;
                        return Err(e);
                    }
                }
            }
        }))
        .await
    }

    /// Closes idle pooled connections past [`POOL_IDLE`].
    pub(crate) fn sweep(&self) {
        let mut pool = lock(&self.pool);
        for list in pool.values_mut() {
            list.retain(|(_, t)| t.elapsed() < POOL_IDLE);
        }
        pool.retain(|_, l| !l.is_empty());
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes() {
        let e = PeerError::Remote {
            code: "AT0015".into(),
            message: "x".into(),
        };
        assert_eq!(e.to_at_err().code, AtCode::KeyNotFound);
        let e = PeerError::Remote {
            code: "AT9999".into(),
            message: "x".into(),
        };
        assert_eq!(e.to_at_err().code, AtCode::Internal);
        assert_eq!(
            PeerError::NotFound("@x".into()).to_at_err().code,
            AtCode::SecondaryNotFound
        );
    }
}
