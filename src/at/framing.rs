//! Sans-IO response framing for atProtocol clients (atprotocol.md §2.3–§2.5).
//!
//! Bytes are fed in as they arrive; complete lines come out with any glued-on prompt removed
//! (`@alice@data:ok` -> `data:ok`). Leftover bytes stay buffered, so a cancelled read loses nothing.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::AtError;

/// Longest line we buffer before declaring the peer hostile. The server's own request cap is
/// 10,240,000 bytes (atprotocol.md §2.2); responses to our requests are far smaller.
pub const MAX_LINE: usize = 10_240_000;

#[derive(Default)]
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    pub fn new() -> Self {
        LineReader { buf: Vec::new() }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a line (e.g. a pending prompt).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete line, prompt-stripped, without `\r\n`/`\n`. Empty lines are skipped.
    pub fn next_line(&mut self) -> Option<Result<String, AtError>> {
        loop {
            let Some(pos) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_LINE {
                    self.buf.clear();
                    return Some(Err(AtError::Malformed(format!(
                        "line longer than {MAX_LINE} bytes"
                    ))));
                }
                return None;
            };
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let text = match String::from_utf8(line) {
                Ok(t) => t,
                Err(_) => return Some(Err(AtError::Malformed("response is not UTF-8".into()))),
            };
            let stripped = strip_prompt(&text);
            if stripped.is_empty() {
                continue;
            }
            return Some(Ok(stripped.to_string()));
        }
    }
}

/// Remove a leading prompt: if the line starts with `@`, drop everything up to and including
/// the last `@` before the first `:` (§2.4). A line of only prompts becomes empty.
pub fn strip_prompt(line: &str) -> &str {
    if !line.starts_with('@') {
        return line;
    }
    let head = match line.find(':') {
        Some(colon) => line.get(..colon).unwrap_or(line),
        None => line,
    };
    match head.rfind('@') {
        Some(at) => line.get(at + 1..).unwrap_or(""),
        None => line,
    }
}

/// One parsed server response line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `data:<value>` (value may be empty, or `null`).
    Data(String),
    /// `error:…` in any of the three forms.
    Error { code: String, message: String },
    /// `notification: <json>` on a monitor connection.
    Notification(String),
}

impl Response {
    pub fn parse(line: &str) -> Result<Response, AtError> {
        if let Some(rest) = line.strip_prefix("data:") {
            // `stats` and `notify:all` answer `data: ` with a space.
            return Ok(Response::Data(
                rest.strip_prefix(' ').unwrap_or(rest).to_string(),
            ));
        }
        if let Some(rest) = line.strip_prefix("notification:") {
            return Ok(Response::Notification(rest.trim_start().to_string()));
        }
        if let Some(rest) = line.strip_prefix("error:") {
            let (code, message) = parse_error(rest);
            return Ok(Response::Error { code, message });
        }
        let shown: String = line.chars().take(80).collect();
        Err(AtError::Malformed(format!(
            "unexpected response line: {shown:?}"
        )))
    }

    /// `data:` value, or the server error as an `AtError`.
    pub fn into_data(self) -> Result<String, AtError> {
        match self {
            Response::Data(d) => Ok(d),
            Response::Error { code, message } => Err(AtError::Server { code, message }),
            Response::Notification(_) => Err(AtError::Malformed(
                "notification where a response was expected".into(),
            )),
        }
    }
}

#[allow(non_snake_case)]
mod wire {
    #[derive(miniserde::Deserialize)]
    pub(super) struct JsonError {
        pub errorCode: Option<String>,
        pub errorDescription: Option<String>,
    }
}
use wire::JsonError;

/// The three error forms of §2.5: `AT0015-text`, `{"errorCode":…}`, `AT0026:text`.
fn parse_error(rest: &str) -> (String, String) {
    let rest = rest.trim();
    if rest.starts_with('{') {
        if let Ok(j) = miniserde::json::from_str::<JsonError>(rest) {
            return (
                j.errorCode.unwrap_or_else(|| "AT0011".into()),
                j.errorDescription.unwrap_or_default(),
            );
        }
    }
    let looks_like_code = |c: &str| {
        c.len() == 6 && c.starts_with("AT") && c.bytes().skip(2).all(|b| b.is_ascii_digit())
    };
    if let (Some(code), Some(sep)) = (rest.get(..6), rest.get(6..7)) {
        if looks_like_code(code) && (sep == "-" || sep == ":") {
            return (
                code.to_string(),
                rest.get(7..).unwrap_or("").trim().to_string(),
            );
        }
    }
    if let Some(code) = rest.get(..6).filter(|c| looks_like_code(c)) {
        return (
            code.to_string(),
            rest.get(6..).unwrap_or("").trim().to_string(),
        );
    }
    ("AT0011".to_string(), rest.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_stripped() {
        assert_eq!(strip_prompt("@alice@data:ok"), "data:ok");
        assert_eq!(strip_prompt("@data:x"), "data:x");
        assert_eq!(
            strip_prompt("@notification: {\"a\":\"@b\"}"),
            "notification: {\"a\":\"@b\"}"
        );
        assert_eq!(
            strip_prompt("@alice@notification: {\"key\":\"@b:x@c\"}"),
            "notification: {\"key\":\"@b:x@c\"}"
        );
        assert_eq!(strip_prompt("data:a@b"), "data:a@b");
        assert_eq!(strip_prompt("@alice@"), "");
    }

    #[test]
    fn lines_across_feeds() {
        let mut r = LineReader::new();
        r.feed(b"@");
        assert!(r.next_line().is_none());
        r.feed(b"data:_abc@alice:12");
        assert!(r.next_line().is_none());
        r.feed(b"3\n@alice@data:ok\r\n@al");
        assert_eq!(r.next_line().unwrap().unwrap(), "data:_abc@alice:123");
        assert_eq!(r.next_line().unwrap().unwrap(), "data:ok");
        assert!(r.next_line().is_none());
        assert_eq!(r.pending(), b"@al");
    }

    #[test]
    fn bad_utf8_is_an_error_not_a_panic() {
        let mut r = LineReader::new();
        r.feed(&[0xff, 0xfe, b'\n']);
        assert!(r.next_line().unwrap().is_err());
    }

    #[test]
    fn error_forms() {
        let r = Response::parse("error:AT0015-key not found : x@alice does not exist").unwrap();
        assert_eq!(
            r,
            Response::Error {
                code: "AT0015".into(),
                message: "key not found : x@alice does not exist".into()
            }
        );
        let r =
            Response::parse(r#"error:{"errorCode":"AT0401","errorDescription":"bad"}"#).unwrap();
        assert_eq!(
            r,
            Response::Error {
                code: "AT0401".into(),
                message: "bad".into()
            }
        );
        let r = Response::parse("error:AT0026:enrollment_id: 5b7 is pending").unwrap();
        assert_eq!(
            r,
            Response::Error {
                code: "AT0026".into(),
                message: "enrollment_id: 5b7 is pending".into()
            }
        );
        let r = Response::parse("error:weird").unwrap();
        assert!(matches!(r, Response::Error { ref code, .. } if code == "AT0011"));
        assert!(Response::parse("garbage").is_err());
        assert_eq!(
            Response::parse("data: [1]").unwrap(),
            Response::Data("[1]".into())
        );
    }
}
