//! Errors of the atProtocol layer: who is at fault, and what failed on what.
use std::fmt;

use crate::crypto::CryptoError;

#[derive(Debug)]
pub enum AtError {
    /// The peer sent bytes we could not parse; names what was wrong.
    Malformed(String),
    /// The server answered `error:<code>…`.
    Server {
        code: String,
        message: String,
    },
    /// Authentication was refused or a signature did not verify.
    Unauthorized(String),
    /// A wait ran past its deadline; names what we waited for.
    Timeout(&'static str),
    /// I/O failure; `op` names what we were doing.
    Io {
        op: String,
        source: std::io::Error,
    },
    /// The TLS handshake with `peer` (`host:port`) failed after TCP connected.
    Tls {
        peer: String,
        source: std::io::Error,
    },
    /// The TLS handshake with `peer` failed: its certificate chains to no CA this machine
    /// trusts (a self-hosted atServer or relay without `NOPORTS_CA_FILE`).
    UntrustedCertificate {
        peer: String,
        source: std::io::Error,
    },
    /// Bad local input (arguments, key files).
    Invalid(String),
    /// The atDirectory has no such atSign.
    UnknownAtSign(String),
    Crypto(CryptoError),
    /// The connection is gone.
    Closed,
    /// The server kept turning the login away (AT0012, or the connection cut before
    /// authentication) until we gave up; says where, how often and the last answer.
    TurnedAway(String),
}

impl AtError {
    pub fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        AtError::Io {
            op: op.into(),
            source,
        }
    }

    /// True for the server's "key not found" answer (AT0015).
    pub fn is_not_found(&self) -> bool {
        matches!(self, AtError::Server { code, .. } if code == "AT0015")
    }

    /// True when reconnecting may help. AT0012 as the answer to a request means the server
    /// shed this connection at its limit and closes it: the request was not carried out.
    pub fn is_connection_problem(&self) -> bool {
        match self {
            AtError::Io { .. }
            | AtError::Tls { .. }
            | AtError::Closed
            | AtError::Timeout(_)
            | AtError::TurnedAway(_) => true,
            AtError::Server { code, .. } => code == "AT0012",
            _ => false,
        }
    }

    /// True when a server that was reached ended the attempt before we were logged in: its
    /// connection limit (AT0012), or the connection closed or reset under us, which is how a
    /// server sheds unauthenticated connections during the TLS handshake. Trying again after a
    /// pause may succeed; a refused connect or a timeout is not this.
    pub fn is_turned_away(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match self {
            AtError::Server { code, .. } => code == "AT0012",
            AtError::Closed => true,
            AtError::Io { source, .. } | AtError::Tls { source, .. } => matches!(
                source.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
            ),
            _ => false,
        }
    }
}

impl fmt::Display for AtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtError::Malformed(m) => write!(f, "malformed response: {m}"),
            AtError::Server { code, message } => write!(f, "server error {code}: {message}"),
            AtError::Unauthorized(m) => write!(f, "not authorized: {m}"),
            AtError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            AtError::Io { op, source } => write!(f, "{op}: {source}"),
            AtError::Tls { peer, source } => write!(f, "TLS handshake with {peer}: {source}"),
            AtError::UntrustedCertificate { peer, source } => write!(
                f,
                "TLS handshake with {peer}: {source}: its certificate is not signed by a CA this \
                 machine trusts. For a self-hosted atServer or relay, set NOPORTS_CA_FILE to the \
                 file of its CA certificate (PEM)"
            ),
            AtError::Invalid(m) | AtError::UnknownAtSign(m) => write!(f, "{m}"),
            AtError::Crypto(e) => write!(f, "{e}"),
            AtError::Closed => write!(f, "connection closed"),
            AtError::TurnedAway(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for AtError {}

impl From<CryptoError> for AtError {
    fn from(e: CryptoError) -> Self {
        AtError::Crypto(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turned_away_is_a_cut_or_at0012_not_a_refusal() {
        let io = |k| AtError::io("x", std::io::Error::from(k));
        for e in [
            AtError::Server {
                code: "AT0012".into(),
                message: "Inbound connection limit exceeded".into(),
            },
            AtError::Closed,
            io(std::io::ErrorKind::UnexpectedEof),
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::BrokenPipe),
        ] {
            assert!(e.is_turned_away(), "{e}");
        }
        for e in [
            AtError::Server {
                code: "AT0401".into(),
                message: "Client authentication failed".into(),
            },
            io(std::io::ErrorKind::ConnectionRefused),
            AtError::Timeout("server response"),
            AtError::Unauthorized("pkam".into()),
            AtError::Invalid("not found".into()),
        ] {
            assert!(!e.is_turned_away(), "{e}");
        }
    }

    #[test]
    fn a_failed_handshake_is_a_connection_problem_unless_the_ca_is_untrusted() {
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let peer = || "h:1".to_string();
        let tls = AtError::Tls {
            peer: peer(),
            source: reset(),
        };
        assert!(tls.is_connection_problem() && tls.is_turned_away());
        assert_eq!(
            tls.to_string(),
            format!("TLS handshake with h:1: {}", reset())
        );
        let untrusted = AtError::UntrustedCertificate {
            peer: peer(),
            source: reset(),
        };
        assert!(!untrusted.is_connection_problem() && !untrusted.is_turned_away());
        assert!(untrusted.to_string().contains("set NOPORTS_CA_FILE"));
    }
}
