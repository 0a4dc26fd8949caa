//! What the tunnel tests share: both ends' nps1 keys and loopback listeners.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use async_io::Async;
use noports::crypto::aead::EphemeralSecret;
use noports::noports::suite::{self, Aead, Role, SuiteKeys};

/// Both ends' keys, derived as the client and the daemon do from the signed exchange.
pub fn suite_keys(sid: &str) -> (SuiteKeys, SuiteKeys) {
    let (c, d) = (
        EphemeralSecret::generate().unwrap(),
        EphemeralSecret::generate().unwrap(),
    );
    let (cp, dp) = (c.public_bytes(), d.public_bytes());
    (
        suite::derive(Role::Client, c, &dp, sid, None, Aead::ChaCha20Poly1305).unwrap(),
        suite::derive(Role::Daemon, d, &cp, sid, None, Aead::ChaCha20Poly1305).unwrap(),
    )
}

pub fn loopback() -> Async<TcpListener> {
    Async::<TcpListener>::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

pub fn port(l: &Async<TcpListener>) -> u16 {
    l.get_ref().local_addr().unwrap().port()
}
