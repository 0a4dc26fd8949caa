//! Error replies (atprotocol.md §2.5): the code table and the three textual forms.
use crate::json::ObjectWriter;

/// An `ATxxxx` error code the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtCode {
    DataStore,
    InvalidSyntax,
    BufferLimit,
    SecondaryNotFound,
    Handshake,
    Unauthorized,
    Internal,
    KeyNotFound,
    InvalidKey,
    UnableToConnect,
    IllegalArguments,
    Timeout,
    ApkamDenied,
    ApkamPending,
    ApkamRevoked,
    ApkamExpired,
    SelfRevoke,
    AuthFailed,
}

impl AtCode {
    /// Every code, for reverse lookup.
    const ALL: [AtCode; 18] = [
        AtCode::DataStore,
        AtCode::InvalidSyntax,
        AtCode::BufferLimit,
        AtCode::SecondaryNotFound,
        AtCode::Handshake,
        AtCode::Unauthorized,
        AtCode::Internal,
        AtCode::KeyNotFound,
        AtCode::InvalidKey,
        AtCode::UnableToConnect,
        AtCode::IllegalArguments,
        AtCode::Timeout,
        AtCode::ApkamDenied,
        AtCode::ApkamPending,
        AtCode::ApkamRevoked,
        AtCode::ApkamExpired,
        AtCode::SelfRevoke,
        AtCode::AuthFailed,
    ];

    /// The wire code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            AtCode::DataStore => "AT0002",
            AtCode::InvalidSyntax => "AT0003",
            AtCode::BufferLimit => "AT0005",
            AtCode::SecondaryNotFound => "AT0007",
            AtCode::Handshake => "AT0008",
            AtCode::Unauthorized => "AT0009",
            AtCode::Internal => "AT0011",
            AtCode::KeyNotFound => "AT0015",
            AtCode::InvalidKey => "AT0016",
            AtCode::UnableToConnect => "AT0021",
            AtCode::IllegalArguments => "AT0022",
            AtCode::Timeout => "AT0023",
            AtCode::ApkamDenied => "AT0025",
            AtCode::ApkamPending => "AT0026",
            AtCode::ApkamRevoked => "AT0027",
            AtCode::ApkamExpired => "AT0028",
            AtCode::SelfRevoke => "AT0031",
            AtCode::AuthFailed => "AT0401",
        }
    }

    /// The code for a wire code such as `AT0015`, if this server uses it.
    pub(crate) fn from_wire(code: &str) -> Option<AtCode> {
        AtCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The standard description (at_commons `error_message.dart`).
    pub(crate) fn description(self) -> &'static str {
        match self {
            AtCode::DataStore => "DataStore exception",
            AtCode::InvalidSyntax => "Invalid syntax",
            AtCode::BufferLimit => "Buffer limit exceeded",
            AtCode::SecondaryNotFound => "Secondary server not found",
            AtCode::Handshake => "Handshake failure",
            AtCode::Unauthorized => "UnAuthorized client in request",
            AtCode::Internal => "Internal server exception",
            AtCode::KeyNotFound => "key not found",
            AtCode::InvalidKey => "Invalid key",
            AtCode::UnableToConnect => "Unable to connect to secondary",
            AtCode::IllegalArguments => "Illegal arguments",
            AtCode::Timeout => "Timeout waiting for response",
            AtCode::ApkamDenied => "Apkam Auth Denied",
            AtCode::ApkamPending => "Apkam Auth Failed",
            AtCode::ApkamRevoked => "Apkam Access Revoked",
            AtCode::ApkamExpired => "Apkam Enrollment Expired",
            AtCode::SelfRevoke => "Cannot revoke self enrollment",
            AtCode::AuthFailed => "Client authentication failed",
        }
    }
}

/// A verb's failure: code, message, and whether it is a form-3 status error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AtErr {
    pub code: AtCode,
    pub msg: String,
    /// Form 3 (`error:<code>:<message>`), used for APKAM enrollment states.
    pub status_form: bool,
    /// Close the connection after replying.
    pub close: bool,
}

impl AtErr {
    pub(crate) fn new(code: AtCode, msg: impl Into<String>) -> AtErr {
        AtErr {
            code,
            msg: msg.into(),
            status_form: false,
            close: false,
        }
    }
    pub(crate) fn status(code: AtCode, msg: impl Into<String>) -> AtErr {
        AtErr {
            code,
            msg: msg.into(),
            status_form: true,
            close: false,
        }
    }
    pub(crate) fn closing(mut self) -> AtErr {
        self.close = true;
        self
    }
    pub(crate) fn syntax(msg: impl Into<String>) -> AtErr {
        AtErr::new(AtCode::InvalidSyntax, msg)
    }
    pub(crate) fn not_found(key: &str) -> AtErr {
        AtErr::new(
            AtCode::KeyNotFound,
            format!("{key} does not exist in keystore"),
        )
    }
    pub(crate) fn unauthorized(msg: impl Into<String>) -> AtErr {
        AtErr::new(AtCode::Unauthorized, msg)
    }

    /// The reply body: form 3 for status errors, form 2 when `json_form`, else form 1 with the
    /// unauthenticated (`Exception: …`) or authenticated (`<description> : …`) text.
    pub(crate) fn render(&self, authenticated: bool, json_form: bool) -> String {
        let msg = self.msg.replace(['\n', '\r'], " ");
        if self.status_form {
            return format!("error:{}:{}", self.code.code(), msg);
        }
        if json_form {
            let o = ObjectWriter::new().str("errorCode", self.code.code()).str(
                "errorDescription",
                &format!("{} : {}", self.code.description(), msg),
            );
            return format!("error:{}", o.end());
        }
        if authenticated {
            format!(
                "error:{}-{} : {}",
                self.code.code(),
                self.code.description(),
                msg
            )
        } else {
            format!("error:{}-Exception: {}", self.code.code(), msg)
        }
    }
}

/// Result of a verb handler.
pub(crate) type VerbResult<T> = Result<T, AtErr>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let e = AtErr::new(AtCode::KeyNotFound, "x@a does not exist in keystore");
        assert_eq!(
            e.render(true, false),
            "error:AT0015-key not found : x@a does not exist in keystore"
        );
        assert_eq!(
            e.render(false, false),
            "error:AT0015-Exception: x@a does not exist in keystore"
        );
        assert!(e
            .render(true, true)
            .starts_with("error:{\"errorCode\":\"AT0015\""));
        let s = AtErr::status(AtCode::ApkamPending, "enrollment_id: 1 is pending");
        assert_eq!(
            s.render(false, true),
            "error:AT0026:enrollment_id: 1 is pending"
        );
    }
}
