//! atProtocol: codecs shared with the atserver applet, plus the client.
//!
//! Public face: [`AtSign`], [`AtKeys`], [`AtError`], [`AtClient`] with [`Monitor`] and
//! [`Notification`], [`RootAddr`]. The framing and response parsers are public for fuzzing.

mod atsign;
pub(crate) mod auth;
pub mod client;
pub mod conn;
mod error;
pub mod framing;
pub mod https;
pub mod keys;
pub mod notification;
pub(crate) mod regex;
pub(crate) mod verbs;

pub use atsign::AtSign;
pub use client::{
    now_millis, AtClient, ClientConfig, Monitor, MonitorStart, NotifyOptions, PutOptions,
};
pub use conn::RootAddr;
pub use error::AtError;
pub use keys::AtKeys;
pub use notification::{Notification, Sealed};
