//! noports-rs: NoPorts (sshnpd, sshnp, npt, srvd, srv, at_activate, npp_file, npp_atserver,
//! atserver) as one multicall binary.
//!
//! Layering (see docs/architecture.md): applets -> tunnel/ -> noports/ -> at/ -> crypto/, json/,
//! runtime/.
//! Applets never import each other.
#![forbid(unsafe_code)]

pub mod at;
pub mod crypto;
pub mod json;
pub mod noports;
pub mod runtime;
pub mod tunnel;

pub mod activate;
#[cfg(feature = "atserver")]
pub mod atserver;
pub mod client;
pub mod daemon;
#[cfg(feature = "policy")]
pub mod policy;
pub mod relay;
