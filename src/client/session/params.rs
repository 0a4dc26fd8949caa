//! What a session is asked for and what it hands to the data plane.
use std::time::Duration;

use crate::at::AtSign;
use crate::runtime::utc_timestamp;
use crate::tunnel::{RelayTarget, SessionCrypto};

/// Our negotiated data-plane suite (docs/suite-v1.md).
pub const SUITE_NAME: &str = "nps1";

/// Which data plane to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuitePref {
    /// Ours when the daemon advertises it, else the official suite.
    Auto,
    Official,
    Ours,
}

/// A progress reporter: `<timestamp> : <message>` on stderr unless quiet.
#[derive(Clone, Copy)]
pub struct Progress {
    pub quiet: bool,
}

impl Progress {
    pub fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{} : {msg}", utc_timestamp(' '));
        }
    }
}

/// What the session is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `npt_request`: any host:port as seen from the device, multi mode.
    Npt {
        remote_host: String,
        remote_port: u16,
    },
    /// `ssh_request`: the device's sshd, single mode.
    Ssh { public_keys: bool },
}

pub struct SessionParams {
    pub device: AtSign,
    pub relay: AtSign,
    pub device_name: String,
    pub kind: Kind,
    pub timeout: Duration,
    /// `-T` was given: only then must the daemon honour a timeout other than its default
    /// (csshnpd has no adjustable timeout and ignores the field).
    pub timeout_given: bool,
    pub encrypt: bool,
    pub suite: SuitePref,
    pub ping_timeout: Duration,
}

/// What a successful set-up hands to the data plane.
pub struct Established {
    pub session_id: String,
    pub relay: RelayTarget,
    pub crypto: SessionCrypto,
    pub suite_name: &'static str,
    /// Base64 key and IV of the official suite, for handing to a detached `srv`.
    pub official_b64: Option<(String, String)>,
}
