//! NoPorts v5 wire formats shared by every applet: pure, sans-IO codecs.
//!
//! - [`json`]: the crate's JSON module ([`crate::json`]), re-exported here under its old path.
//! - [`envelope`]: the signed envelope, sign / parse / verify (§2).
//! - [`relay_msg`]: relay session request N3 and response N4 (§4.1), the auth line (§4.3).
//! - [`control`]: multi-mode `connect:K:IV` control messages and their decoder (§5.4).
//! - [`permit`]: the permit-open list (§6.4): the daemon enforces it, clients check a
//!   request against what a ping reply advertises.
//! - [`messages`]: npt_request, ssh_request, session response, ping reply, policy RPC
//!   (§1.3, §1.4, §6.3, §6.7–§6.9).
//!
//! These codec modules open no sockets, read no files, log nothing and spawn no tasks: parsers
//! take `&str`/`&[u8]`, return typed errors, and never panic on peer input. Every JSON or text
//! form that noports.md §11 requires byte-for-byte is produced by them. The data plane
//! (`tunnel` with its `mux`, `suite`) and `names` live beside them and document themselves.

pub mod control;
pub mod envelope;
pub mod messages;
pub mod names;
pub mod permit;
pub mod relay_msg;

pub use crate::json;
pub use crate::json::{JsonError, JsonErrorKind, Object, Value};
pub use control::{ControlDecoder, ControlError, ControlMsg};
pub use envelope::{Envelope, EnvelopeError, SigningAlgo};
pub use messages::{
    Feature, MessageError, NptRequest, PingResponse, PolicyDecision, PolicyRequest, PolicyResponse,
    RpcRespType, SessionResponse, SshRequest,
};
pub use relay_msg::{AuthLineError, RelayMsgError, RelayRequest, RelayResponse};

// Data plane (owned by the relay/data-plane work): tunnel.rs opens sockets, unlike the codecs above.
pub mod suite;
pub mod tunnel;
