//! The relay `srvd` and the data-plane bridge `srv` (noports.md §4, §5.6, §9.5, §9.6).
//!
//! - [`session`]: the public face, [`SessionTable`]: ports (two per session, or one shared
//!   port), limits, the session tasks it owns; library-level, so tests drive it with real
//!   sockets and no atServer. Behind it, each file importing only those after it:
//!   `pairing` (one session: queues, pairing, splicing, expiry, report), `accept` (accept
//!   loops, auth lines, per-source limits), `table` (live sessions and routes, one lock never
//!   held across an await), `types` (what they share) and `nonce`.
//! - `srvd`: the applet: atProtocol glue (monitor `request_ports`, fetch keys, reply N4).
//! - `srv`: the applet shell around `tunnel` (RV_* environment, readiness line,
//!   exit 200).
//!
//! Run: `srvd -a @relay -i relay.example.net [--port-range 40000-40999 | --port-range 443-443]
//! [--allow @alice,@bob]`.
use std::process::ExitCode;

mod accept;
mod nonce;
mod pairing;
pub mod session;
mod srv;
mod srvd;
mod table;
mod types;

pub use session::{
    EndReason, RelayConfig, RelayError, SessionPorts, SessionReport, SessionSpec, SessionTable,
};

/// Entry point of the `srvd` applet; `argv[0]` is the applet name.
pub fn srvd_main(argv: &[String]) -> ExitCode {
    srvd::main(argv)
}

/// Entry point of the `srv` applet; `argv[0]` is the applet name.
pub fn srv_main(argv: &[String]) -> ExitCode {
    srv::main(argv)
}
