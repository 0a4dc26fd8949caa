//! Measuring helpers shared by the benchmarks: an echo server, 1-byte round trips, quantiles.
#![allow(dead_code)] // each benchmark uses part of it

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// An echo server on its own threads (one per connection), like a real application.
pub fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 64 * 1024];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    p
}

/// `n` one-byte round trips through `port` on one connection; each round trip's time in µs.
pub fn round_trips(port: u16, n: usize) -> std::io::Result<Vec<f64>> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut times = Vec::with_capacity(n);
    let mut b = [0u8; 1];
    for i in 0..n {
        let t = Instant::now();
        s.write_all(&[i as u8])?;
        s.read_exact(&mut b)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if b[0] != i as u8 {
            return Err(std::io::Error::other("echoed a different byte"));
        }
    }
    Ok(times)
}

/// (median, p99) of `v`.
pub fn median_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// A sink that counts the bytes of each connection (its own thread each) and reports the
/// total at EOF.
pub fn counting_sink() -> (u16, std::sync::mpsc::Receiver<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    total += n as u64;
                }
                let _ = tx.send(total);
            });
        }
    });
    (p, rx)
}

/// Writes `bytes` into `port`, half-closes, waits for the sink's total (which must match):
/// MB/s from the first write to the sink's EOF.
pub fn push_blocking(port: u16, bytes: u64, done: &std::sync::mpsc::Receiver<u64>) -> f64 {
    use std::io::Write;
    while done.try_recv().is_ok() {} // totals of earlier connections (warm-ups)
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = done.recv_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(got, bytes, "sink received a different volume");
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The least work a process in the path can do: a chain of `hops` forwarders in front of
/// `target`, each a listener whose connections are moved to the next port by two blocking
/// threads (splice(2) through a pipe, as our relay does), with no event loop, cipher or
/// protocol. Our path has three such stops (npt, srvd, sshnpd), rathole's two (its client and
/// server), so the chain gives the floor that any tool of either shape meets on this machine.
/// Returns the entry port.
pub fn forwarder_chain(target: u16, hops: usize) -> u16 {
    (0..hops).fold(target, |next, _| forwarder(next))
}

fn forwarder(next: u16) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(a) = s else { continue };
            let Ok(b) = TcpStream::connect(("127.0.0.1", next)) else {
                continue;
            };
            for s in [&a, &b] {
                let _ = s.set_nodelay(true);
            }
            let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            std::thread::spawn(move || splice_one_way(&a, &b));
            std::thread::spawn(move || splice_one_way(&b2, &a2));
        }
    });
    p
}

/// Moves `from` to `to` until EOF (forwarded as a half-close) or an error.
fn splice_one_way(from: &TcpStream, to: &TcpStream) {
    use rustix::pipe::{pipe, splice, SpliceFlags};
    let Ok((r, w)) = pipe() else { return };
    loop {
        let n = match splice(from, None, &w, None, 64 * 1024, SpliceFlags::MOVE) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut left = n;
        while left > 0 {
            match splice(&r, None, to, None, left, SpliceFlags::MOVE) {
                Ok(0) | Err(_) => return,
                Ok(m) => left -= m,
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
