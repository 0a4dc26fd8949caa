//! Outbound TCP through an HTTP CONNECT or SOCKS5 proxy, for networks that only let traffic out
//! through a proxy (issue 13 item 4). Used for atDirectory and atServer connections and for the
//! relay sockets; local connections (the device's sshd, npt's local listener) never use it.
//!
//! The proxy only ever sees an opaque byte stream: TLS to the atServer runs end to end through
//! the tunnel, with the usual certificate and host-name checks.
//!
//! Configuration, once per process, by [`configure`]: the `--proxy URL` flag, else the first
//! non-empty of `ALL_PROXY`, `all_proxy`, `HTTPS_PROXY`, `https_proxy`. `NO_PROXY`/`no_proxy`
//! (comma-separated host names or `.domain` suffixes, `*` for all) names hosts reached directly.
//! URLs: `http://[user:pass@]host:port`, `socks5://…` (names resolved locally) and
//! `socks5h://…` (names resolved by the proxy). Credentials are never logged or displayed.
use std::fmt;
use std::io;
use std::net::{IpAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::runtime::timeout;

/// The command-line flag, named in errors.
pub const FLAG: &str = "--proxy";
/// Environment variables consulted, in order, when the flag is absent.
pub const ENV_VARS: [&str; 4] = ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"];
/// Longest HTTP reply head we read before giving up.
const MAX_HTTP_HEAD: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// HTTP `CONNECT`.
    Http,
    /// SOCKS5, names resolved here.
    Socks5,
    /// SOCKS5, names resolved by the proxy.
    Socks5h,
}

impl Kind {
    fn scheme(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Socks5 => "socks5",
            Kind::Socks5h => "socks5h",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    /// User name and password; never shown.
    auth: Option<(String, String)>,
}

/// Shows `scheme://host:port` only: the credentials stay out of logs and errors.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.kind.scheme(), self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.kind.scheme(), self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self}")?;
        if self.auth.is_some() {
            write!(f, ", with credentials")?;
        }
        write!(f, ")")
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape in the credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8".to_string())
}

fn bad_host_char(c: char) -> bool {
    c.is_whitespace() || c.is_control() || "/?#@[]".contains(c)
}

impl Proxy {
    /// Parses `scheme://[user:pass@]host:port[/]`. Errors never echo the credentials.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let t = text.trim();
        let (scheme, rest) = t
            .split_once("://")
            .ok_or("expected scheme://host:port (http, socks5 or socks5h)")?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => Kind::Http,
            "socks5" => Kind::Socks5,
            "socks5h" => Kind::Socks5h,
            other => {
                return Err(format!(
                    "unsupported proxy scheme {other:?} (use http, socks5 or socks5h)"
                ))
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err("a proxy URL has no path, query or fragment".into());
        }
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let (u, p) = (percent_decode(u)?, percent_decode(p)?);
                if u.is_empty() {
                    return Err("empty user name before '@'".into());
                }
                if kind != Kind::Http && (u.len() > 255 || p.len() > 255) {
                    return Err("SOCKS5 user name and password are at most 255 bytes".into());
                }
                (Some((u, p)), hp)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6
                .split_once("]:")
                .ok_or("expected [IPv6]:port after the scheme")?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{h:?} is not an IPv6 address"))?;
            (h, p)
        } else {
            hostport
                .rsplit_once(':')
                .ok_or("missing :port (e.g. http://proxy:3128)")?
        };
        if host.is_empty() || host.len() > 253 || host.chars().any(bad_host_char) {
            return Err(format!("invalid proxy host {host:?}"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("invalid proxy port {port:?}"))?;
        Ok(Proxy {
            kind,
            host: host.to_string(),
            port,
            auth,
        })
    }
}

struct Setting {
    proxy: Option<Proxy>,
    no_proxy: Vec<String>,
    /// The URL as given, credentials included, for child processes.
    url: Option<String>,
}

static SETTING: OnceLock<Setting> = OnceLock::new();

/// Sets the process-wide proxy from the flag (wins) or the environment. Call once, before the
/// first connection; later calls keep the first setting. Errors name the flag or variable.
pub fn configure(flag: Option<&str>) -> Result<Option<Proxy>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (source, text) = match flag.filter(|f| !f.trim().is_empty()) {
        Some(f) => (FLAG, Some(f.to_string())),
        None => ENV_VARS
            .iter()
            .find_map(|v| env(v).map(|t| (*v, Some(t))))
            .unwrap_or(("", None)),
    };
    let proxy = match &text {
        Some(t) => Some(Proxy::parse(t).map_err(|e| format!("{source}: {e}"))?),
        None => None,
    };
    let no_proxy = env("NO_PROXY")
        .or_else(|| env("no_proxy"))
        .map(|v| {
            v.split([',', ' '])
                .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(p) = &proxy {
        log::info!(
            "connections to the atDirectory, atServers and relays go through {p} (from {source})"
        );
    }
    let _ = SETTING.set(Setting {
        proxy: proxy.clone(),
        no_proxy,
        url: text.map(|t| t.trim().to_string()),
    });
    Ok(proxy)
}

/// The configured proxy URL, credentials included: only for handing to a child process in its
/// environment (never on its command line, where `ps` would show it).
pub fn configured_url() -> Option<&'static str> {
    SETTING.get()?.url.as_deref()
}

/// The proxy to use for `host`, if any (`NO_PROXY` exempts hosts).
pub fn for_host(host: &str) -> Option<&'static Proxy> {
    let s = SETTING.get()?;
    let p = s.proxy.as_ref()?;
    (!exempt(&s.no_proxy, host)).then_some(p)
}

/// True when `NO_PROXY` entries `list` name `host` or a domain above it.
fn exempt(list: &[String], host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    list.iter().any(|n| {
        n == "*"
            || h == *n
            || h.strip_suffix(n.as_str())
                .is_some_and(|above| above.ends_with('.'))
    })
}

fn proxy_err(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

/// Printable, bounded copy of a line the proxy sent, for error messages.
fn shown(bytes: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(120)
        .collect();
    s.trim().to_string()
}

/// Where the proxy should connect.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// Connects to `host:port` through `proxy` within `limit` (connect and handshake each).
/// `host:port` resolved on the runtime's capped helper threads, within `limit`.
async fn resolve_within(
    host: &str,
    port: u16,
    limit: Duration,
) -> io::Result<std::net::SocketAddr> {
    match timeout(limit, crate::runtime::dial::resolve(host, port)).await {
        Ok(Ok(addr)) => Ok(addr),
        Ok(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("resolving {host}:{port}: {e}"),
        )),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "resolving {host}:{port}: no answer within {} s",
                limit.as_secs()
            ),
        )),
    }
}

pub async fn connect_via(
    proxy: &Proxy,
    host: &str,
    port: u16,
    limit: Duration,
) -> io::Result<Async<TcpStream>> {
    let addr = resolve_within(&proxy.host, proxy.port, limit)
        .await
        .map_err(|e| proxy_err(e.kind(), format!("proxy {proxy}: {e}")))?;
    let mut tcp = timeout(limit, Async::<TcpStream>::connect(addr))
        .await
        .map_err(|_| {
            proxy_err(
                io::ErrorKind::TimedOut,
                format!("timed out connecting to proxy {proxy}"),
            )
        })?
        .map_err(|e| proxy_err(e.kind(), format!("connecting to proxy {proxy}: {e}")))?;
    let _ = tcp.get_ref().set_nodelay(true);
    let ip;
    let target = match (proxy.kind, host.parse::<IpAddr>()) {
        (_, Ok(a)) => Target::Ip(a),
        (Kind::Socks5, Err(_)) => {
            ip = resolve_within(host, port, limit)
                .await
                .map_err(|e| proxy_err(e.kind(), e.to_string()))?
                .ip();
            Target::Ip(ip)
        }
        (_, Err(_)) => Target::Name(host),
    };
    let r = timeout(limit, handshake(&mut tcp, proxy, target, port))
        .await
        .unwrap_or_else(|_| {
            Err(proxy_err(
                io::ErrorKind::TimedOut,
                format!("proxy {proxy} did not complete the handshake in time"),
            ))
        });
    if let Err(e) = &r {
        log::warn!("proxy: reaching {host}:{port}: {e}");
    }
    r.map(|()| tcp)
}

/// Asks `proxy` (already connected on `s`) for a tunnel to `target:port`. On success the
/// stream carries the tunnelled bytes; nothing past the proxy's reply has been read.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &Proxy,
    target: Target<'_>,
    port: u16,
) -> io::Result<()> {
    if let Target::Name(n) = target {
        if n.is_empty() || n.len() > 255 || n.chars().any(bad_host_char) {
            return Err(proxy_err(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to ask proxy {proxy} for invalid host name {:?}",
                    shown(n.as_bytes())
                ),
            ));
        }
    }
    match proxy.kind {
        Kind::Http => http_connect(s, proxy, target, port).await,
        Kind::Socks5 | Kind::Socks5h => socks5(s, proxy, target, port).await,
    }
}

async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &Proxy,
    target: Target<'_>,
    port: u16,
) -> io::Result<()> {
    let authority = match target {
        Target::Ip(IpAddr::V6(a)) => format!("[{a}]:{port}"),
        Target::Ip(a) => format!("{a}:{port}"),
        Target::Name(n) => format!("{n}:{port}"),
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((u, p)) = &proxy.auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    // Byte by byte: whatever follows the reply head belongs to the tunnel.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !(head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n")) {
        if head.len() >= MAX_HTTP_HEAD {
            return Err(proxy_err(
                io::ErrorKind::InvalidData,
                format!("proxy {proxy} sent an oversized reply to CONNECT"),
            ));
        }
        let n = s.read(&mut byte).await?;
        if n == 0 {
            return Err(proxy_err(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "proxy {proxy} closed the connection during CONNECT (reply so far: {:?})",
                    shown(&head)
                ),
            ));
        }
        head.push(byte[0]);
    }
    let status_line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let mut words = status_line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let version_ok = words.next().is_some_and(|v| v.starts_with(b"HTTP/1."));
    let code = words
        .next()
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.trim().parse::<u16>().ok());
    match (version_ok, code) {
        (true, Some(200..=299)) => Ok(()),
        (true, Some(code)) => {
            let hint = match code {
                407 if proxy.auth.is_none() => {
                    " (the proxy wants a user name and password: http://user:pass@host:port)"
                }
                407 => " (the proxy rejected the user name and password)",
                _ => "",
            };
            Err(proxy_err(
                io::ErrorKind::PermissionDenied,
                format!(
                    "proxy {proxy} refused CONNECT to {authority}: {}{hint}",
                    shown(status_line)
                ),
            ))
        }
        _ => Err(proxy_err(
            io::ErrorKind::InvalidData,
            format!(
                "proxy {proxy} sent a reply that is not HTTP/1.x: {:?}",
                shown(status_line)
            ),
        )),
    }
}

fn socks_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

/// An I/O error during SOCKS5 step `what`, with the proxy named.
fn socks_eof(proxy: &Proxy, what: &str, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        proxy_err(
            e.kind(),
            format!("proxy {proxy} closed the connection during the SOCKS5 {what}"),
        )
    } else {
        proxy_err(e.kind(), format!("proxy {proxy}: SOCKS5 {what}: {e}"))
    }
}

async fn socks5<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &Proxy,
    target: Target<'_>,
    port: u16,
) -> io::Result<()> {
    socks5_authenticate(s, proxy).await?;
    s.write_all(&socks5_connect_request(target, port)).await?;
    s.flush().await?;
    socks5_read_reply(s, proxy, target, port).await
}

/// The greeting and, when the proxy asks for it, user name and password (RFC 1929).
async fn socks5_authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &Proxy,
) -> io::Result<()> {
    let greeting: &[u8] = if proxy.auth.is_some() {
        &[5, 2, 0x00, 0x02]
    } else {
        &[5, 1, 0x00]
    };
    s.write_all(greeting).await?;
    s.flush().await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice)
        .await
        .map_err(|e| socks_eof(proxy, "greeting", e))?;
    if choice[0] != 5 {
        return Err(proxy_err(
            io::ErrorKind::InvalidData,
            format!(
                "proxy {proxy} is not a SOCKS5 proxy (version byte {:#04x})",
                choice[0]
            ),
        ));
    }
    match (choice[1], &proxy.auth) {
        (0x00, _) => Ok(()),
        (0x02, Some((u, p))) => {
            let mut msg = Vec::with_capacity(3 + u.len() + p.len());
            msg.push(1);
            msg.push(u8::try_from(u.len()).unwrap_or(255));
            msg.extend_from_slice(u.as_bytes());
            msg.push(u8::try_from(p.len()).unwrap_or(255));
            msg.extend_from_slice(p.as_bytes());
            s.write_all(&msg).await?;
            s.flush().await?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status)
                .await
                .map_err(|e| socks_eof(proxy, "authentication", e))?;
            if status[1] != 0 {
                return Err(proxy_err(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "proxy {proxy} rejected the user name and password (status {})",
                        status[1]
                    ),
                ));
            }
            Ok(())
        }
        (0xff, _) => {
            let hint = if proxy.auth.is_none() {
                " (it may want socks5://user:pass@host:port)"
            } else {
                ""
            };
            Err(proxy_err(
                io::ErrorKind::PermissionDenied,
                format!("proxy {proxy} accepts none of our authentication methods{hint}"),
            ))
        }
        (m, _) => Err(proxy_err(
            io::ErrorKind::InvalidData,
            format!("proxy {proxy} chose authentication method {m:#04x}, which we did not offer"),
        )),
    }
}

/// CONNECT to `target:port`.
fn socks5_connect_request(target: Target<'_>, port: u16) -> Vec<u8> {
    let mut req = vec![5, 1, 0];
    match target {
        Target::Ip(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Target::Ip(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Target::Name(n) => {
            req.push(3);
            req.push(u8::try_from(n.len()).unwrap_or(255));
            req.extend_from_slice(n.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    req
}

/// The reply to CONNECT: success, or the proxy's refusal in words.
async fn socks5_read_reply<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &Proxy,
    target: Target<'_>,
    port: u16,
) -> io::Result<()> {
    let eof = |e| socks_eof(proxy, "connect reply", e);
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(eof)?;
    let [ver, rep, _, atyp] = head;
    if ver != 5 {
        return Err(proxy_err(
            io::ErrorKind::InvalidData,
            format!("proxy {proxy} sent a SOCKS reply with version byte {ver:#04x}"),
        ));
    }
    if rep != 0 {
        let shown_target = match target {
            Target::Ip(a) => a.to_string(),
            Target::Name(n) => n.to_string(),
        };
        return Err(proxy_err(
            io::ErrorKind::ConnectionRefused,
            format!(
                "proxy {proxy} refused the connection to {shown_target}:{port}: SOCKS5 reply {rep} ({})",
                socks_reply_text(rep)
            ),
        ));
    }
    // The bound address that follows is of no use to us, but must be consumed.
    let len = match atyp {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.map_err(eof)?;
            usize::from(l[0])
        }
        other => {
            return Err(proxy_err(
                io::ErrorKind::InvalidData,
                format!("proxy {proxy} sent a SOCKS reply with address type {other}"),
            ))
        }
    };
    let mut rest = [0u8; 257];
    s.read_exact(rest.get_mut(..len + 2).unwrap_or(&mut []))
        .await
        .map_err(eof)?;
    Ok(())
}

#[cfg(test)]
mod tests;
