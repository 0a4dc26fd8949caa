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
    /// Bad local input (arguments, key files).
    Invalid(String),
    Crypto(CryptoError),
    /// The connection is gone.
    Closed,
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

    /// True when reconnecting may help.
    pub fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            AtError::Io { .. } | AtError::Closed | AtError::Timeout(_)
        )
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
            AtError::Invalid(m) => write!(f, "{m}"),
            AtError::Crypto(e) => write!(f, "{e}"),
            AtError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for AtError {}

impl From<CryptoError> for AtError {
    fn from(e: CryptoError) -> Self {
        AtError::Crypto(e)
    }
}
