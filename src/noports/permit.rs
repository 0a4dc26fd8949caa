//! Permit-open (noports.md §6.4): which `host:port` a session may reach.
//!
//! Matching is exact string comparison, as in the official daemon: no DNS, no case folding,
//! `localhost` is not `127.0.0.1`. `*` stands for any host or any port.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Any,
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitEntry {
    host: Part,
    port: Part,
}

/// A parsed `--permit-open` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitOpen(Vec<PermitEntry>);

impl PermitOpen {
    /// Comma-separated `host:port` entries; entries are trimmed; `[v6]:port` is accepted.
    pub fn parse(text: &str) -> Result<PermitOpen, String> {
        Self::parse_with(text, false)
    }

    /// A list as a daemon's ping reply advertises it: as [`parse`](Self::parse), and port 0
    /// is any port (csshnpd lists `--permit-open 127.0.0.1:*` as `127.0.0.1:0`).
    pub fn parse_advertised(text: &str) -> Result<PermitOpen, String> {
        Self::parse_with(text, true)
    }

    fn parse_with(text: &str, zero_is_any: bool) -> Result<PermitOpen, String> {
        let mut out = Vec::new();
        for raw in text.split(',') {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("permit-open entry \"{entry}\" is not host:port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("permit-open entry \"{entry}\" has an invalid host"));
            }
            let port = match port {
                "*" => Part::Any,
                p => {
                    let n: u16 = p.parse().map_err(|_| {
                        format!("permit-open entry \"{entry}\" has an invalid port")
                    })?;
                    match n {
                        0 if zero_is_any => Part::Any,
                        0 => return Err(format!("permit-open entry \"{entry}\" has port 0")),
                        n => Part::Exact(n.to_string()),
                    }
                }
            };
            let host = if host == "*" {
                Part::Any
            } else {
                Part::Exact(host.to_string())
            };
            out.push(PermitEntry { host, port });
        }
        if out.is_empty() {
            return Err("permit-open list is empty".into());
        }
        Ok(PermitOpen(out))
    }

    pub fn any() -> PermitOpen {
        PermitOpen(vec![PermitEntry {
            host: Part::Any,
            port: Part::Any,
        }])
    }

    /// True if `host:port` is allowed: an entry equal to `H:P`, `*:P`, `H:*` or `*:*`.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let port = port.to_string();
        self.0.iter().any(|e| {
            let host_ok = match &e.host {
                Part::Any => true,
                Part::Exact(h) => h == host,
            };
            let port_ok = match &e.port {
                Part::Any => true,
                Part::Exact(p) => *p == port,
            };
            host_ok && port_ok
        })
    }

    /// Entries as the ping reply's `allowedServices` lists them.
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(|e| e.to_string()).collect()
    }
}

impl fmt::Display for PermitEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = match &self.host {
            Part::Any => "*",
            Part::Exact(h) => h.as_str(),
        };
        let p = match &self.port {
            Part::Any => "*",
            Part::Exact(p) => p.as_str(),
        };
        if h.contains(':') {
            write!(f, "[{h}]:{p}")
        } else {
            write!(f, "{h}:{p}")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcards() {
        let p = PermitOpen::parse("localhost:22, localhost:3389").unwrap();
        assert!(p.allows("localhost", 22));
        assert!(p.allows("localhost", 3389));
        assert!(!p.allows("localhost", 80));
        assert!(
            !p.allows("127.0.0.1", 22),
            "no canonicalisation, like the official daemon"
        );
        assert!(!p.allows("LOCALHOST", 22));
        let p = PermitOpen::parse("*:80,db:*").unwrap();
        assert!(p.allows("anything", 80));
        assert!(p.allows("db", 5432));
        assert!(!p.allows("dbx", 5432));
        assert!(PermitOpen::parse("*:*").unwrap().allows("x", 1));
        assert_eq!(
            PermitOpen::parse("[::1]:22").unwrap().entries(),
            vec!["[::1]:22"]
        );
    }

    #[test]
    fn an_advertised_port_0_is_any_port_and_a_configured_one_is_refused() {
        let c = PermitOpen::parse_advertised("127.0.0.1:0, localhost:22").unwrap();
        assert!(c.allows("127.0.0.1", 5432));
        assert!(c.allows("localhost", 22));
        assert!(!c.allows("localhost", 80));
        assert!(!c.allows("10.0.0.1", 5432));
        assert!(PermitOpen::parse("127.0.0.1:0").is_err());
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(PermitOpen::parse("").is_err());
        assert!(PermitOpen::parse("localhost").is_err());
        assert!(PermitOpen::parse("localhost:abc").is_err());
        assert!(PermitOpen::parse("localhost:0").is_err());
        assert!(PermitOpen::parse("localhost:70000").is_err());
        assert!(PermitOpen::parse(":22").is_err());
        assert!(PermitOpen::parse("a b:22").is_err());
    }
}
