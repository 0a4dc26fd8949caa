//! One TLS connection to an atDirectory or atServer: strict request/response (atprotocol.md §2).
//!
//! Certificate and host-name verification are always on. Trust anchors are the Mozilla roots
//! (webpki-roots) plus any PEM certificates in the file named by `NOPORTS_CA_FILE`, for
//! self-hosted atServers.
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use rustls::pki_types::{CertificateDer, ServerName};

use super::framing::{LineReader, Response};
use super::{AtError, AtSign};
use crate::runtime::dial::{self, DialError, Route, Stage};
use crate::runtime::timeout;

/// Environment variable naming a PEM file of extra trust anchors.
pub const CA_FILE_ENV: &str = "NOPORTS_CA_FILE";
/// Default atDirectory port.
pub const ROOT_PORT: u16 = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--root-domain`: `host` (port 64) or `host:port`; with the official `proxy:` prefix
/// (`proxy:host[:port]`) there is no atDirectory lookup: every atSign's atServer is reached at
/// `host:port` (a reverse proxy in front of the atServers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootAddr {
    pub host: String,
    pub port: u16,
    /// `proxy:` prefix: `host:port` is the atServer address for every atSign.
    pub reverse_proxy: bool,
}

/// The official prefix marking a reverse proxy in `--root-domain`.
const REVERSE_PROXY_PREFIX: &str = "proxy:";

impl RootAddr {
    pub fn parse(text: &str) -> Result<RootAddr, AtError> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix(REVERSE_PROXY_PREFIX) {
            if rest.trim().is_empty() || rest.starts_with(REVERSE_PROXY_PREFIX) {
                return Err(AtError::Invalid(format!("invalid root domain \"{t}\"")));
            }
            let mut r = RootAddr::parse(rest)?;
            r.reverse_proxy = true;
            return Ok(r);
        }
        if t.is_empty() {
            return Err(AtError::Invalid("root domain is empty".into()));
        }
        match t.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.starts_with('[') => {
                let port: u16 = port.parse().map_err(|_| {
                    AtError::Invalid(format!("invalid port in root domain \"{t}\""))
                })?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return Err(AtError::Invalid(format!("invalid root domain \"{t}\"")));
                }
                Ok(RootAddr {
                    host: host.to_string(),
                    port,
                    reverse_proxy: false,
                })
            }
            _ => Ok(RootAddr {
                host: t.to_string(),
                port: ROOT_PORT,
                reverse_proxy: false,
            }),
        }
    }
}

impl Default for RootAddr {
    fn default() -> Self {
        RootAddr {
            host: "root.atsign.org".into(),
            port: ROOT_PORT,
            reverse_proxy: false,
        }
    }
}

impl std::fmt::Display for RootAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = if self.reverse_proxy {
            REVERSE_PROXY_PREFIX
        } else {
            ""
        };
        write!(f, "{prefix}{}:{}", self.host, self.port)
    }
}

/// Extra trust anchors added by the process before its first connection.
static EXTRA_ANCHORS: std::sync::Mutex<Vec<CertificateDer<'static>>> =
    std::sync::Mutex::new(Vec::new());

/// Adds the certificates of a PEM file as trust anchors for every later connection (call before
/// the first connection; the configuration is built once). Returns how many were added.
pub fn add_trust_anchors_pem(path: &std::path::Path) -> Result<usize, AtError> {
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| AtError::io(format!("reading {shown}"), e))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        certs.push(cert.map_err(|e| AtError::Invalid(format!("{shown}: bad PEM: {e}")))?);
    }
    if certs.is_empty() {
        return Err(AtError::Invalid(format!("{shown}: no certificates found")));
    }
    let n = certs.len();
    EXTRA_ANCHORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(certs);
    Ok(n)
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, AtError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let extra = EXTRA_ANCHORS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            for cert in extra {
                roots
                    .add(cert)
                    .map_err(|e| format!("extra trust anchor: bad certificate: {e}"))?;
            }
            if let Some(path) = std::env::var_os(CA_FILE_ENV).filter(|p| !p.is_empty()) {
                use rustls::pki_types::pem::PemObject;
                let pem = std::fs::read(&path)
                    .map_err(|e| format!("{CA_FILE_ENV}={}: {e}", path.to_string_lossy()))?;
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("{CA_FILE_ENV}: bad PEM: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{CA_FILE_ENV}: bad certificate: {e}"))?;
                    added += 1;
                }
                if added == 0 {
                    return Err(format!(
                        "{CA_FILE_ENV}={}: no certificates found",
                        path.to_string_lossy()
                    ));
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS configuration: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(AtError::Invalid)
}

/// TCP (directly or through the configured proxy) + TLS with host-name verification.
pub(super) async fn tls_connect(
    host: &str,
    port: u16,
) -> Result<TlsStream<Async<TcpStream>>, AtError> {
    let peer = format!("{host}:{port}");
    // TLS below still verifies the server when a proxy relays the bytes.
    let tcp = dial::connect(host, port, Route::Outbound, CONNECT_TIMEOUT)
        .await
        .map_err(|e| match e {
            DialError::Timeout(Stage::Resolve) => AtError::Timeout("DNS resolution"),
            DialError::Timeout(Stage::Connect) => AtError::Timeout("TCP connect"),
            DialError::NoAddress => AtError::Invalid(format!("{peer}: no address found")),
            DialError::Io(e) => AtError::io(format!("connecting to {peer}"), e),
            DialError::Proxy(p, e) => AtError::io(format!("connecting to {peer} via {p}"), e),
        })?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| AtError::Invalid(format!("invalid server name {host}")))?;
    let connector = TlsConnector::from(tls_config()?);
    // The handshake future holds a whole rustls connection: keep it off the caller's stack.
    timeout(CONNECT_TIMEOUT, Box::pin(connector.connect(name, tcp)))
        .await
        .map_err(|_| AtError::Timeout("TLS handshake"))?
        .map_err(|source| {
            if unknown_issuer(&source) {
                AtError::UntrustedCertificate { peer, source }
            } else {
                AtError::Tls { peer, source }
            }
        })
}

/// Whether a failed handshake's error is rustls refusing a certificate from an unknown CA.
fn unknown_issuer(e: &std::io::Error) -> bool {
    use rustls::{CertificateError, Error};
    let rustls = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
    matches!(
        rustls,
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer))
    )
}

pub struct Connection {
    // Boxed: a TLS stream is several KiB, and it would otherwise be copied into every future
    // that holds a connection.
    stream: Box<TlsStream<Async<TcpStream>>>,
    reader: LineReader,
    peer: String,
    /// Read buffer, allocated once per connection rather than on every future's stack.
    rbuf: Vec<u8>,
}

impl Connection {
    /// TCP + TLS handshake with host-name verification.
    pub async fn connect(host: &str, port: u16) -> Result<Connection, AtError> {
        let stream = tls_connect(host, port).await?;
        Ok(Connection {
            stream: Box::new(stream),
            reader: LineReader::new(),
            peer: format!("{host}:{port}"),
            rbuf: vec![0u8; 16 * 1024],
        })
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Send one command line. Refuses embedded line breaks: they would smuggle a second command.
    pub async fn send(&mut self, command: &str) -> Result<(), AtError> {
        if command.contains('\n') || command.contains('\r') {
            return Err(AtError::Invalid("command contains a line break".into()));
        }
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\n');
        self.stream
            .write_all(&line)
            .await
            .map_err(|e| AtError::io(format!("writing to {}", self.peer), e))?;
        self.stream
            .flush()
            .await
            .map_err(|e| AtError::io(format!("writing to {}", self.peer), e))
    }

    /// Next complete, prompt-stripped line (no deadline; wrap in `timeout`).
    pub async fn read_line(&mut self) -> Result<String, AtError> {
        loop {
            if let Some(line) = self.reader.next_line() {
                return line;
            }
            let n = self
                .stream
                .read(&mut self.rbuf)
                .await
                .map_err(|e| AtError::io(format!("reading from {}", self.peer), e))?;
            if n == 0 {
                return Err(AtError::Closed);
            }
            self.reader.feed(self.rbuf.get(..n).unwrap_or(&[]));
        }
    }

    /// Next response line (data/error/notification) within `deadline`.
    pub async fn read_response(&mut self, deadline: Duration) -> Result<Response, AtError> {
        let line = timeout(deadline, self.read_line())
            .await
            .map_err(|_| AtError::Timeout("server response"))??;
        Response::parse(&line)
    }

    /// One request, one response: `data:` value or the server error.
    pub async fn request(&mut self, command: &str, deadline: Duration) -> Result<String, AtError> {
        self.send(command).await?;
        loop {
            match self.read_response(deadline).await? {
                // A stray notification (only on monitor connections) is not our answer.
                Response::Notification(_) => continue,
                other => return other.into_data(),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.send("@exit").await;
        let _ = self.stream.close().await;
    }
}

/// Ask the atDirectory where `atsign`'s atServer lives (atprotocol.md §3).
pub async fn lookup_server(root: &RootAddr, atsign: &AtSign) -> Result<(String, u16), AtError> {
    if root.reverse_proxy {
        return Ok((root.host.clone(), root.port));
    }
    let mut conn = Connection::connect(&root.host, root.port).await?;
    conn.send(atsign.name()).await?;
    let line = timeout(Duration::from_secs(10), conn.read_line())
        .await
        .map_err(|_| AtError::Timeout("atDirectory answer"))??;
    conn.close().await;
    let answer = line.trim();
    // A directory at its connection limit answers `error:AT0012-…` (retried by the caller).
    if let Ok(Response::Error { code, message }) = Response::parse(answer) {
        return Err(AtError::Server { code, message });
    }
    if answer == "null" || answer.is_empty() {
        return Err(AtError::UnknownAtSign(format!(
            "atSign {atsign} not found in atDirectory {root}"
        )));
    }
    let (host, port) = answer.rsplit_once(':').ok_or_else(|| {
        AtError::Malformed(format!("atDirectory answer {answer:?} is not host:port"))
    })?;
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| AtError::Malformed(format!("atDirectory answer {answer:?} has a bad port")))?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_domain_forms() {
        let r = RootAddr::parse("root.example").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.reverse_proxy),
            ("root.example", 64, false)
        );
        let r = RootAddr::parse("proxy:atproxy.example:443").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.reverse_proxy),
            ("atproxy.example", 443, true)
        );
        assert_eq!(r.to_string(), "proxy:atproxy.example:443");
        let r = RootAddr::parse("proxy:[::1]:6464").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.reverse_proxy),
            ("::1", 6464, true)
        );
        for bad in ["", "proxy:", "proxy:proxy:h:1", "proxy:h:x", "h:99999"] {
            assert!(RootAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// The untrusted-CA advice follows rustls' typed error, not its text.
    #[test]
    fn unknown_issuer_is_told_by_the_rustls_error_inside() {
        use rustls::{CertificateError, Error};
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert!(unknown_issuer(&io(Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))));
        assert!(!unknown_issuer(&io(Error::InvalidCertificate(
            CertificateError::Expired
        ))));
        let text = std::io::Error::other("UnknownIssuer");
        assert!(!unknown_issuer(&text));
    }
}
