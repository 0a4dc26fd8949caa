//! Clients: `npt` (any TCP port) and `sshnp` (ssh). Shared session set-up lives in
//! [`session`]: feature check, relay request, signed session request, reply verification.
mod npt;
mod session;

use std::process::ExitCode;

pub use npt::main as npt_main;

pub fn sshnp_main(argv: &[String]) -> ExitCode {
    let _ = argv;
    eprintln!("sshnp: not built yet in noports-rs; use npt to reach sshd, e.g. npt -f @client -t @device -r @relay -d dev -p 22, then ssh -p <port> localhost");
    ExitCode::from(1)
}
