//! Clients: `npt` (any TCP port) and `sshnp` (ssh). Shared session set-up lives in
//! [`session`]: feature check, relay request, signed session request, reply verification.
mod detached;
mod ephemeral;
mod error;
mod list;
mod npt;
mod profile;
mod session;
mod sshnp;

pub use npt::main as npt_main;
pub use sshnp::main as sshnp_main;
