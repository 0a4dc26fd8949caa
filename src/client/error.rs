//! Why a client session could not be set up, and whether asking again can help. Its own
//! module so that the session set-up and its helpers (the ephemeral key) both use it without
//! importing each other.
use crate::at::AtError;

/// Why a session could not be set up; the text is what the user sees after `Error : `.
#[derive(Debug)]
pub struct SessionError(pub String, Retry);

/// Whether trying the same session again (`-K`) can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Timeouts, lost connections: the next attempt may work.
    Maybe,
    /// The daemon lacks a feature, or does not allow what was asked: the answer will not
    /// change by asking again.
    Never,
}

impl SessionError {
    pub fn new(message: impl Into<String>) -> SessionError {
        SessionError(message.into(), Retry::Maybe)
    }

    pub fn fatal(message: impl Into<String>) -> SessionError {
        SessionError(message.into(), Retry::Never)
    }

    pub fn retry(&self) -> Retry {
        self.1
    }
}

impl From<AtError> for SessionError {
    fn from(e: AtError) -> Self {
        SessionError::new(e.to_string())
    }
}

impl From<String> for SessionError {
    fn from(e: String) -> Self {
        SessionError::new(e)
    }
}
