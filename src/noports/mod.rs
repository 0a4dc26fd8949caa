//! NoPorts v5 wire formats shared by every applet: pure, sans-IO codecs.
//!
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
//! form that noports.md §11 requires byte-for-byte is produced by them. [`suite`] is the nps1
//! record layer (seal/open of records and frames, equally sans-IO) and [`names`] the device-name
//! rules; the sockets that carry them live in `crate::tunnel`.

pub mod control;
pub mod envelope;
pub mod messages;
pub mod names;
pub mod permit;
pub mod relay_msg;

pub use control::{ControlDecoder, ControlError, ControlMsg};
pub use envelope::{Envelope, EnvelopeError, SigningAlgo};
pub use messages::{
    Feature, MessageError, NptRequest, PingResponse, PolicyDecision, PolicyRequest, PolicyResponse,
    RpcRespType, SessionResponse, SshRequest,
};
pub use relay_msg::{AuthLineError, RelayMsgError, RelayRequest, RelayResponse};
pub mod suite;
