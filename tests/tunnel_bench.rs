//! Throughput of one tunnel through the relay on loopback, for both suites, against direct
//! loopback TCP measured in the same run. Ignored by default; run by `scripts/bench.sh`
//! (`cargo test --release --test tunnel_bench -- --ignored --nocapture`).
//!
//! Every path moves the same bytes one way (app → sink) with the same async sockets and
//! executor, so the ratio isolates what the relay hop and the cipher cost. `BENCH_MB` sets the
//! volume per run (default 256); each path is measured `BENCH_RUNS` times (default 3) and the
//! best run is reported.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use noports::crypto::aead::EphemeralSecret;
use noports::crypto::rsa::RsaPrivateKey;
use noports::noports::relay_msg::auth_line;
use noports::noports::suite::{self, Aead, Role};
use noports::relay::{RelayConfig, SessionSpec, SessionTable};
use noports::runtime::{block_on, spawn, timeout};
use noports::tunnel::{self, RelayTarget, SessionCrypto};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loopback() -> Async<TcpListener> {
    Async::<TcpListener>::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

fn port(l: &Async<TcpListener>) -> u16 {
    l.get_ref().local_addr().unwrap().port()
}

/// Bytes read from `s` until EOF (or an error).
async fn count_to_eof(s: &Async<TcpStream>) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    while let Ok(n @ 1..) = (&*s).read(&mut buf).await {
        total += n as u64;
    }
    total
}

/// A sink that counts bytes of one connection and reports the total at EOF.
fn sink() -> (u16, async_channel::Receiver<u64>) {
    let l = loopback();
    let p = port(&l);
    let (tx, rx) = async_channel::bounded(1);
    spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let _ = tx.send(count_to_eof(&s).await).await;
    })
    .detach();
    (p, rx)
}

/// Writes `bytes` into `port`, half-closes, and waits until the sink has them all.
async fn push(port: u16, bytes: u64, done: async_channel::Receiver<u64>) -> f64 {
    let s = Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap();
    push_into(s, bytes, done).await
}

/// [`push`] into a connected socket.
async fn push_into(s: Async<TcpStream>, bytes: u64, done: async_channel::Receiver<u64>) -> f64 {
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        (&s).write_all(&chunk[..n]).await.unwrap();
        left -= n as u64;
    }
    s.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
    let got = done.recv().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, bytes, "sink received a different volume");
    bytes as f64 / secs / 1e6
}

struct Relay {
    table: SessionTable,
    ka: RsaPrivateKey,
    kb: RsaPrivateKey,
    n: usize,
}

impl Relay {
    fn session(&mut self) -> (RelayTarget, RelayTarget, String) {
        self.n += 1;
        let sid = format!("bench-{}", self.n);
        let spec = SessionSpec {
            session_id: sid.clone(),
            atsign_a: "@client".into(),
            atsign_b: "@device".into(),
            client_nonce: "cn".into(),
            rvd_nonce: format!("rn-{sid}"),
            key_a: Some(self.ka.public_key()),
            key_b: Some(self.kb.public_key()),
            single_pair: false,
        };
        let p = self.table.open(spec.clone()).unwrap();
        let line =
            |k| Some(auth_line(&spec.session_id, &spec.client_nonce, &spec.rvd_nonce, k).unwrap());
        (
            RelayTarget {
                host: "127.0.0.1".into(),
                port: p.port_a,
                auth_line: line(&self.ka),
            },
            RelayTarget {
                host: "127.0.0.1".into(),
                port: p.port_b,
                auth_line: line(&self.kb),
            },
            sid,
        )
    }
}

/// CPU seconds (user + system) this process has used so far, from /proc/self/stat: the work
/// a path costs per MiB, which other load on the machine does not inflate as it does MB/s.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted after the ")" ending field 2.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// A socket to one side of a relay session, its auth line sent.
async fn relay_socket(t: &RelayTarget) -> Async<TcpStream> {
    let s = Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, t.port)))
        .await
        .unwrap();
    let line = format!(
        "{}\n",
        t.auth_line.as_deref().unwrap_or_default().trim_end()
    );
    (&s).write_all(line.as_bytes()).await.unwrap();
    s
}

#[derive(Clone, Copy)]
enum Path {
    Direct,
    RelayAlone,
    Relay,
    Official,
    Suite(Aead),
    /// [`bench::forwarder_chain`] with one stop: the floor of `RelayAlone`.
    FloorAlone,
    /// Three stops: the floor of `Relay` (client end, relay, daemon end).
    Floor,
}

async fn run(path: Path, relay: &mut Relay, bytes: u64) -> f64 {
    let (sink_port, done) = sink();
    let idle = Duration::from_secs(30);
    let local = loopback();
    let lp = port(&local);
    let (client, daemon, sid) = relay.session();
    let crypto = |role| match path {
        Path::Direct | Path::RelayAlone | Path::Relay | Path::FloorAlone | Path::Floor => {
            unreachable!()
        }
        Path::Official => SessionCrypto::official_b64(
            "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=",
            "MTIzNDU2Nzg5MEFCQ0RFRg==",
        )
        .unwrap(),
        Path::Suite(_) => SessionCrypto::Suite(role),
    };
    match path {
        Path::Direct => push(sink_port, bytes, done).await,
        Path::FloorAlone => push(bench::forwarder_chain(sink_port, 1), bytes, done).await,
        Path::Floor => push(bench::forwarder_chain(sink_port, 3), bytes, done).await,
        Path::RelayAlone => {
            // The relay's own two hops and splice: the application and the sink are the
            // session's two sides (no tunnel ends).
            let b = relay_socket(&daemon).await;
            let (tx, rx) = async_channel::bounded(1);
            spawn(async move {
                let _ = tx.send(count_to_eof(&b).await).await;
            })
            .detach();
            drop(done);
            push_into(relay_socket(&client).await, bytes, rx).await
        }
        Path::Relay => {
            // The relay hop alone: plaintext tunnel ends.
            let c = spawn(tunnel::client_single(
                client,
                local,
                SessionCrypto::Plain,
                idle,
            ));
            let d = spawn(tunnel::daemon_single(
                daemon,
                ("127.0.0.1".into(), sink_port),
                SessionCrypto::Plain,
                idle,
            ));
            let r = push(lp, bytes, done).await;
            let _ = (c.await, d.await);
            r
        }
        Path::Official | Path::Suite(_) => {
            let (ce, de) = (
                EphemeralSecret::generate().unwrap(),
                EphemeralSecret::generate().unwrap(),
            );
            let (cp, dp) = (ce.public_bytes(), de.public_bytes());
            let aead = match path {
                Path::Suite(aead) => aead,
                _ => Aead::ChaCha20Poly1305,
            };
            let ck = suite::derive(Role::Client, ce, &dp, &sid, None, aead).unwrap();
            let dk = suite::derive(Role::Daemon, de, &cp, &sid, None, aead).unwrap();
            let c = spawn(tunnel::client_single(client, local, crypto(ck), idle));
            let d = spawn(tunnel::daemon_single(
                daemon,
                ("127.0.0.1".into(), sink_port),
                crypto(dk),
                idle,
            ));
            let r = push(lp, bytes, done).await;
            let _ = (c.await, d.await);
            r
        }
    }
}

#[path = "common/bench.rs"]
mod bench;
#[path = "common/rathole.rs"]
mod rathole;
use bench::{echo_server, median_p99, round_trips};
use rathole::Transport as RatholeTransport;

/// rathole with a counting sink behind its `bench` service (one total per connection).
struct Rathole {
    /// Kept for its drop (kills the processes).
    _procs: rathole::Rathole,
    entry: u16,
    echo_entry: u16,
    done: async_channel::Receiver<u64>,
}

fn start_rathole(transport: RatholeTransport, echo_port: u16) -> Option<Rathole> {
    let l = loopback();
    let sink_port = port(&l);
    let (tx, rx) = async_channel::bounded(4);
    spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            spawn(async move {
                let _ = tx.send(count_to_eof(&s).await).await;
            })
            .detach();
        }
    })
    .detach();
    let procs = rathole::start(transport, sink_port, echo_port)?;
    Some(Rathole {
        entry: procs.entry,
        echo_entry: procs.echo_entry,
        _procs: procs,
        done: rx,
    })
}

/// One nps1 session in multi mode (npt's data plane) from a local listener to `target`,
/// through the relay; returns the listener's port and the two tunnel ends.
fn nps1_session(
    relay: &mut Relay,
    target: u16,
) -> (u16, noports::runtime::Task<()>, noports::runtime::Task<()>) {
    let idle = Duration::from_secs(60);
    let local = loopback();
    let lp = port(&local);
    let (client, daemon, sid) = relay.session();
    let (ce, de) = (
        EphemeralSecret::generate().unwrap(),
        EphemeralSecret::generate().unwrap(),
    );
    let (cp, dp) = (ce.public_bytes(), de.public_bytes());
    // The AEAD both ends would negotiate on this machine.
    let aead = Aead::fastest_here();
    let ck = suite::derive(Role::Client, ce, &dp, &sid, None, aead).unwrap();
    let dk = suite::derive(Role::Daemon, de, &cp, &sid, None, aead).unwrap();
    let c = spawn(async move {
        let _ = tunnel::client_multi(client, local, SessionCrypto::Suite(ck), idle).await;
    });
    let d = spawn(async move {
        let _ = tunnel::daemon_multi(
            daemon,
            ("127.0.0.1".into(), target),
            SessionCrypto::Suite(dk),
            idle,
        )
        .await;
    });
    (lp, c, d)
}

/// Connect, send one byte, read its echo: the time in ms.
fn new_conn_ms(port: u16) -> std::io::Result<f64> {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// `n` connections at once, each moving 64 KiB through the echo and checking it: how many
/// succeeded.
fn parallel_conns(port: u16, n: usize) -> usize {
    use std::io::{Read, Write};
    let threads: Vec<_> = (0..n)
        .map(|k| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(20)))?;
                let data: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 + k) as u8).collect();
                let mut w = s.try_clone()?;
                let sent = data.clone();
                let writer = std::thread::spawn(move || w.write_all(&sent));
                let mut got = vec![0u8; data.len()];
                s.read_exact(&mut got)?;
                writer
                    .join()
                    .map_err(|_| std::io::Error::other("writer"))??;
                if got != data {
                    return Err(std::io::Error::other("corrupted echo"));
                }
                Ok(())
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().map(|r| r.is_ok()).unwrap_or(false))
        .filter(|ok| *ok)
        .count()
}

#[test]
#[ignore = "benchmark; run scripts/bench.sh"]
fn throughput() {
    let mb = env_num("BENCH_MB", 256);
    let runs = env_num("BENCH_RUNS", 3).max(1);
    let bytes = (mb as u64) << 20;
    let mut relay = Relay {
        table: SessionTable::new(RelayConfig {
            bind: Ipv4Addr::LOCALHOST.into(),
            ..RelayConfig::default()
        }),
        ka: RsaPrivateKey::generate().unwrap(),
        kb: RsaPrivateKey::generate().unwrap(),
        n: 0,
    };
    let paths = [
        (Path::Direct, "direct loopback TCP"),
        (Path::Relay, "relay, no cipher"),
        (Path::RelayAlone, "relay alone (no tunnel ends)"),
        (Path::Official, "relay + official AES-256-CTR"),
        (
            Path::Suite(Aead::ChaCha20Poly1305),
            "relay + nps1 ChaCha20-Poly1305",
        ),
        (Path::FloorAlone, "floor: 1 blocking splice stop"),
        (Path::Floor, "floor: 3 blocking splice stops"),
        (Path::Suite(Aead::Aes256Gcm), "relay + nps1 AES-256-GCM"),
    ];
    // The AEAD our ends negotiate on this machine: the nps1 row compared with rathole.
    let nps1 = match Aead::fastest_here() {
        Aead::Aes256Gcm => 7,
        Aead::ChaCha20Poly1305 => 4,
    };
    // BENCH_PATHS=0,1 measures only those rows (for profiling one path); default all.
    let only: Option<Vec<usize>> = std::env::var("BENCH_PATHS")
        .ok()
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect());
    let wanted = |i: usize| only.as_ref().is_none_or(|o| o.contains(&i));
    let mut best = [0f64; 8];
    let mut cpu = [f64::MAX; 8];
    block_on(timeout(Duration::from_secs(600), async {
        // Interleave the paths so drift (thermal, other load) hits them alike.
        for _ in 0..runs {
            for (i, (path, _)) in paths.iter().enumerate() {
                if !wanted(i) {
                    continue;
                }
                let c0 = cpu_secs();
                best[i] = best[i].max(run(*path, &mut relay, bytes).await);
                cpu[i] = cpu[i].min((cpu_secs() - c0) * 1e3 / mb as f64);
            }
        }
    }))
    .expect("benchmark overran 10 minutes");
    // rathole, each transport interleaved with direct TCP and nps1 so the ratio is same-run.
    let mut rathole = Vec::new();
    for (transport, name) in [
        (RatholeTransport::Tcp, "rathole (TCP, no encryption)"),
        (
            RatholeTransport::Noise,
            "rathole (Noise, ChaCha20-Poly1305)",
        ),
    ] {
        let Some(rh) = start_rathole(transport, echo_server()) else {
            continue;
        };
        let mut best_rh = 0f64;
        block_on(async {
            for _ in 0..runs {
                best[0] = best[0].max(run(Path::Direct, &mut relay, bytes).await);
                best[nps1] = best[nps1].max(run(paths[nps1].0, &mut relay, bytes).await);
                best_rh = best_rh.max(push(rh.entry, bytes, rh.done.clone()).await);
            }
        });
        rathole.push((transport, name, best_rh));
    }
    println!("\none tunnel through the relay on loopback, {mb} MiB one way, best of {runs}");
    for (i, (_, name)) in paths.iter().enumerate().filter(|(i, _)| wanted(*i)) {
        println!(
            "BENCH {name:<34} {:>9.1} MB/s  ratio {:.3}  cpu {:.2} ms/MiB",
            best[i],
            best[i] / best[0],
            cpu[i]
        );
    }
    for (_, name, r) in &rathole {
        println!("BENCH {name:<34} {r:>9.1} MB/s  ratio {:.3}", r / best[0]);
    }
    if rathole.is_empty() {
        println!("BENCH rathole: not measured (set RATHOLE=<path to rathole>)");
    }
    println!("KV relay_vs_direct={:.3}", best[1] / best[0]);
    println!("KV relay_alone_vs_direct={:.3}", best[2] / best[0]);
    if wanted(6) {
        println!("KV relay_floor_vs_direct={:.3}", best[6] / best[0]);
    }
    match rathole.iter().find(|r| r.0 == RatholeTransport::Noise) {
        Some((_, _, r)) => println!("KV nps1_vs_rathole_noise={:.2}", best[nps1] / r),
        None => println!("KV nps1_vs_rathole_noise=n/a"),
    }
}

/// Latency through one nps1 session (npt's multi mode) against rathole's Noise transport:
/// 1-byte round trips on one connection (added to direct loopback), the time from connect to
/// the first echoed byte of a new connection inside the established session, and 50
/// connections at once through that session.
#[test]
#[ignore = "benchmark; run scripts/bench.sh"]
fn latency() {
    let n = env_num("BENCH_RTT_N", 10_000);
    let conns = env_num("BENCH_CONN_N", 200);
    let echo = echo_server();
    let mut relay = Relay {
        table: SessionTable::new(RelayConfig {
            bind: Ipv4Addr::LOCALHOST.into(),
            ..RelayConfig::default()
        }),
        ka: RsaPrivateKey::generate().unwrap(),
        kb: RsaPrivateKey::generate().unwrap(),
        n: 0,
    };
    let (tunnel_port, c, d) = nps1_session(&mut relay, echo);
    let rathole = start_rathole(RatholeTransport::Noise, echo);
    let (direct, ours, theirs, new_conn, parallel) =
        block_on(noports::runtime::unblock(move || {
            // Warm up every path, then interleave them in blocks so drift hits all alike.
            let _ = new_conn_ms(tunnel_port);
            let (mut direct, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
            let block = (n / 10).max(1);
            for _ in 0..(n / block) {
                direct.extend(round_trips(echo, block).unwrap());
                ours.extend(round_trips(tunnel_port, block).unwrap());
                if let Some(rh) = &rathole {
                    theirs.extend(round_trips(rh.echo_entry, block).unwrap());
                }
            }
            let new_conn: Vec<f64> = (0..conns)
                .map(|_| new_conn_ms(tunnel_port).unwrap())
                .collect();
            let parallel = parallel_conns(tunnel_port, 50);
            (direct, ours, theirs, new_conn, parallel)
        }))
        .expect("latency measurements failed");
    drop((c, d));
    let (dm, dp) = median_p99(direct);
    let (om, op) = median_p99(ours);
    println!("\nround trips of 1 byte, {n} each (µs; added = minus direct)");
    println!(
        "BENCH {:<34} median {dm:>7.1}  p99 {dp:>7.1}",
        "direct loopback TCP"
    );
    println!(
        "BENCH {:<34} median {om:>7.1}  p99 {op:>7.1}  added {:.1} / {:.1}",
        "nps1 session through the relay",
        om - dm,
        op - dp
    );
    if theirs.is_empty() {
        println!("BENCH rathole: not measured (set RATHOLE=<path to rathole>)");
        println!("KV rtt_vs_rathole=n/a");
    } else {
        let (rm, rp) = median_p99(theirs);
        println!(
            "BENCH {:<34} median {rm:>7.1}  p99 {rp:>7.1}  added {:.1} / {:.1}",
            "rathole (Noise, ChaCha20-Poly1305)",
            rm - dm,
            rp - dp
        );
        println!(
            "BENCH added rtt ours/rathole: median {:.2}  p99 {:.2}",
            (om - dm) / (rm - dm),
            (op - dp) / (rp - dp)
        );
        println!("KV rtt_vs_rathole={:.2}", (om - dm) / (rm - dm));
    }
    let (cm, cp) = median_p99(new_conn);
    println!(
        "BENCH new connection in an nps1 session (connect to first echoed byte, {conns}): median {cm:.3} ms  p99 {cp:.3} ms"
    );
    println!("BENCH 50 parallel connections through one session: {parallel}/50 verified");
    println!("KV newconn_median_ms={cm:.3}");
}

/// Single-core cipher speed, for reading the ratios above: each tunnelled byte is encrypted
/// once and decrypted once, on top of four loopback hops.
#[test]
#[ignore = "benchmark; run scripts/bench.sh"]
fn cipher_speed() {
    let mb = env_num("BENCH_MB", 256);
    let mut buf = vec![0u8; 32 * 1024];
    let rounds = (mb << 20) / buf.len();
    let mut ctr = noports::crypto::aes_ctr::CtrStream::new(&[7u8; 32], &[9u8; 16]);
    let start = Instant::now();
    for _ in 0..rounds {
        ctr.apply(&mut buf);
    }
    let aes = (rounds * buf.len()) as f64 / start.elapsed().as_secs_f64() / 1e6;
    let aead_speed = |aead| {
        let mut sealer = noports::crypto::aead::Sealer::new(aead, [5u8; 32]);
        let mut rec = Vec::with_capacity(buf.len() + 16);
        let start = Instant::now();
        for _ in 0..rounds {
            rec.clear();
            rec.extend_from_slice(&buf);
            sealer.seal(&[0, 0], &mut rec).unwrap();
        }
        (rounds * buf.len()) as f64 / start.elapsed().as_secs_f64() / 1e6
    };
    let chacha = aead_speed(Aead::ChaCha20Poly1305);
    let gcm = aead_speed(Aead::Aes256Gcm);
    println!("BENCH cipher AES-256-CTR (one core)       {aes:>9.1} MB/s");
    println!("BENCH cipher ChaCha20-Poly1305 (one core) {chacha:>9.1} MB/s");
    println!("BENCH cipher AES-256-GCM (one core)       {gcm:>9.1} MB/s");
}
