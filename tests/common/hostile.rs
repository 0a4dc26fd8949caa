//! Hostile clients for the lock-out tests: pools of connections that connect and then say
//! nothing, trickle a byte a second of a line that never ends, or never finish a TLS handshake,
//! each pool from its own loopback source address and re-opened as the server closes them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Raises the soft open-file limit to the hard one (tests hold hundreds of sockets).
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// A TCP connection from `src` (any 127.0.0.0/8 address works on Linux loopback).
pub fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::bind(&fd, &SocketAddr::from((src, 0)))?;
    rustix::net::connect(&fd, &dst)?;
    Ok(TcpStream::from(fd))
}

/// What a hostile connection does once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Completes the opening (`open`), then is silent.
    Idle,
    /// Completes the opening, then sends one byte a second, never a newline.
    Slow,
    /// Plain TCP, silent (no TLS handshake, no auth line).
    Raw,
    /// Plain TCP, one byte a second of garbage (a handshake or auth line that never ends).
    RawSlow,
}

/// An opened hostile connection: how to poke it and how to tell it was closed.
pub trait Held: Send {
    /// Sends one byte; false once the server has closed it.
    fn trickle(&mut self) -> bool;
    /// True once the server has closed it (polls without blocking for long).
    fn is_closed(&mut self) -> bool;
}

impl Held for TcpStream {
    fn trickle(&mut self) -> bool {
        self.write_all(b"a").is_ok()
    }
    fn is_closed(&mut self) -> bool {
        let _ = self.set_nonblocking(true);
        let mut b = [0u8; 512];
        let closed = loop {
            match self.read(&mut b) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        let _ = self.set_nonblocking(false);
        closed
    }
}

/// Opens one connection of the pool's protocol (e.g. TLS + greeting) over `tcp`.
pub type Opener = Arc<dyn Fn(TcpStream) -> Option<Box<dyn Held>> + Send + Sync>;

/// Pools of hostile connections, each kept at its size by a thread until dropped.
pub struct Hostiles {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Connections opened so far (re-openings included).
    pub opened: Arc<AtomicUsize>,
    /// Connections the server closed so far.
    pub closed: Arc<AtomicUsize>,
    /// Connections currently held open.
    pub held: Arc<AtomicUsize>,
}

impl Hostiles {
    pub fn new() -> Hostiles {
        Hostiles {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            opened: Arc::default(),
            closed: Arc::default(),
            held: Arc::default(),
        }
    }

    /// Keeps `n` connections of `kind` from `src` to `dst` open, re-opening what closes.
    /// `open` completes the protocol's opening for Idle/Slow (Raw kinds ignore it).
    pub fn pool(&mut self, kind: Kind, n: usize, src: Ipv4Addr, dst: SocketAddr, open: Opener) {
        let (stop, opened, closed, held) = (
            self.stop.clone(),
            self.opened.clone(),
            self.closed.clone(),
            self.held.clone(),
        );
        self.threads.push(std::thread::spawn(move || {
            let mut conns: Vec<Option<Box<dyn Held>>> = (0..n).map(|_| None).collect();
            let mut last_trickle = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let trickle = last_trickle.elapsed() >= Duration::from_secs(1);
                if trickle {
                    last_trickle = Instant::now();
                }
                for c in conns.iter_mut() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(h) = c {
                        let slow = matches!(kind, Kind::Slow | Kind::RawSlow);
                        let gone = if slow && trickle {
                            !h.trickle() || h.is_closed()
                        } else {
                            h.is_closed()
                        };
                        if gone {
                            *c = None;
                            closed.fetch_add(1, Ordering::Relaxed);
                            held.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    if c.is_none() {
                        let Ok(tcp) = connect_from(src, dst) else {
                            continue;
                        };
                        let _ = tcp.set_read_timeout(Some(Duration::from_secs(3)));
                        let _ = tcp.set_write_timeout(Some(Duration::from_secs(3)));
                        let h: Option<Box<dyn Held>> = match kind {
                            Kind::Raw | Kind::RawSlow => Some(Box::new(tcp)),
                            Kind::Idle | Kind::Slow => open(tcp),
                        };
                        if let Some(h) = h {
                            *c = Some(h);
                            opened.fetch_add(1, Ordering::Relaxed);
                            held.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }

    /// Stops the flood and returns its final counts: (opened, closed by the server).
    pub fn stop(&mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (
            self.opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Hostiles {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain-TCP opener (for servers without TLS: the relay, npt's local port).
pub fn tcp_opener() -> Opener {
    Arc::new(|tcp: TcpStream| Some(Box::new(tcp) as Box<dyn Held>))
}
