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
use noports::noports::suite::{self, Role};
use noports::noports::tunnel::{self, RelayTarget, SessionCrypto};
use noports::relay::{RelayConfig, SessionSpec, SessionTable};
use noports::runtime::{block_on, spawn, timeout};

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

/// A sink that counts bytes of one connection and reports the total at EOF.
fn sink() -> (u16, async_channel::Receiver<u64>) {
    let l = loopback();
    let p = port(&l);
    let (tx, rx) = async_channel::bounded(1);
    spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        while let Ok(n @ 1..) = (&s).read(&mut buf).await {
            total += n as u64;
        }
        let _ = tx.send(total).await;
    })
    .detach();
    (p, rx)
}

/// Writes `bytes` into `port`, half-closes, and waits until the sink has them all.
async fn push(port: u16, bytes: u64, done: async_channel::Receiver<u64>) -> f64 {
    let s = Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap();
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

#[derive(Clone, Copy)]
enum Path {
    Direct,
    Relay,
    Official,
    Suite,
}

async fn run(path: Path, relay: &mut Relay, bytes: u64) -> f64 {
    let (sink_port, done) = sink();
    let idle = Duration::from_secs(30);
    let local = loopback();
    let lp = port(&local);
    let (client, daemon, sid) = relay.session();
    let crypto = |role| match path {
        Path::Direct | Path::Relay => unreachable!(),
        Path::Official => SessionCrypto::official_b64(
            "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=",
            "MTIzNDU2Nzg5MEFCQ0RFRg==",
        )
        .unwrap(),
        Path::Suite => SessionCrypto::Suite(role),
    };
    match path {
        Path::Direct => push(sink_port, bytes, done).await,
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
        Path::Official | Path::Suite => {
            let (ce, de) = (EphemeralSecret::generate(), EphemeralSecret::generate());
            let (cp, dp) = (ce.public_bytes(), de.public_bytes());
            let ck = suite::derive(Role::Client, ce, &dp, &sid).unwrap();
            let dk = suite::derive(Role::Daemon, de, &cp, &sid).unwrap();
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

/// rathole (from crates.io) as the peer: the same bytes through a `rathole` server and client
/// on loopback (its TCP transport: token auth, no encryption), when `RATHOLE` names its binary.
struct Rathole {
    procs: Vec<std::process::Child>,
    entry: u16,
    done: async_channel::Receiver<u64>,
}

impl Drop for Rathole {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_rathole() -> Option<Rathole> {
    let bin = std::env::var_os("RATHOLE")?;
    // A sink that serves every connection rathole's client makes, one total per connection.
    let l = loopback();
    let sink_port = port(&l);
    let (tx, rx) = async_channel::bounded(4);
    spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                while let Ok(n @ 1..) = (&s).read(&mut buf).await {
                    total += n as u64;
                }
                let _ = tx.send(total).await;
            })
            .detach();
        }
    })
    .detach();
    let (control, entry) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("np-rathole-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = dir.join("server.toml");
    let client = dir.join("client.toml");
    std::fs::write(&server, format!("[server]\nbind_addr = \"127.0.0.1:{control}\"\ndefault_token = \"bench\"\n[server.services.bench]\nbind_addr = \"127.0.0.1:{entry}\"\n")).unwrap();
    std::fs::write(&client, format!("[client]\nremote_addr = \"127.0.0.1:{control}\"\ndefault_token = \"bench\"\n[client.services.bench]\nlocal_addr = \"127.0.0.1:{sink_port}\"\n")).unwrap();
    let quiet = |c: &mut std::process::Command| {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    };
    let mut s = std::process::Command::new(&bin);
    s.arg("-s").arg(&server);
    quiet(&mut s);
    let mut c = std::process::Command::new(&bin);
    c.arg("-c").arg(&client);
    quiet(&mut c);
    let procs = vec![s.spawn().ok()?, c.spawn().ok()?];
    // Let the client register its service with the server.
    std::thread::sleep(Duration::from_secs(2));
    Some(Rathole {
        procs,
        entry,
        done: rx,
    })
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
        (Path::Official, "relay + official AES-256-CTR"),
        (Path::Suite, "relay + nps1 ChaCha20-Poly1305"),
    ];
    let mut best = [0f64; 4];
    block_on(timeout(Duration::from_secs(600), async {
        // Interleave the paths so drift (thermal, other load) hits them alike.
        for _ in 0..runs {
            for (i, (path, _)) in paths.iter().enumerate() {
                best[i] = best[i].max(run(*path, &mut relay, bytes).await);
            }
        }
    }))
    .expect("benchmark overran 10 minutes");
    let rathole = start_rathole().map(|rh| {
        let mut best_rh = 0f64;
        block_on(async {
            for _ in 0..runs {
                let direct = run(Path::Direct, &mut relay, bytes).await;
                best[0] = best[0].max(direct);
                best_rh = best_rh.max(push(rh.entry, bytes, rh.done.clone()).await);
            }
        });
        best_rh
    });
    println!("\none tunnel through the relay on loopback, {mb} MiB one way, best of {runs}");
    for (i, (_, name)) in paths.iter().enumerate() {
        println!(
            "BENCH {name:<34} {:>9.1} MB/s  ratio {:.3}",
            best[i],
            best[i] / best[0]
        );
    }
    match rathole {
        Some(r) => println!(
            "BENCH {:<34} {r:>9.1} MB/s  ratio {:.3}",
            "rathole (TCP, no encryption)",
            r / best[0]
        ),
        None => println!("BENCH rathole: not measured (set RATHOLE=<path to rathole>)"),
    }
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
    let mut sealer = noports::crypto::aead::Sealer::new([5u8; 32]);
    let mut rec = Vec::with_capacity(buf.len() + 16);
    let start = Instant::now();
    for _ in 0..rounds {
        rec.clear();
        rec.extend_from_slice(&buf);
        sealer.seal(&[0, 0], &mut rec).unwrap();
    }
    let chacha = (rounds * buf.len()) as f64 / start.elapsed().as_secs_f64() / 1e6;
    println!("BENCH cipher AES-256-CTR (one core)       {aes:>9.1} MB/s");
    println!("BENCH cipher ChaCha20-Poly1305 (one core) {chacha:>9.1} MB/s");
}
