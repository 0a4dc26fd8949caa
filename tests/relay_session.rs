//! The relay's session table over real loopback sockets: authentication, pairing, expiry,
//! limits (noports.md §4.3–§4.5). No atServer: keys are generated and auth lines signed here.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use noports::crypto::rsa::RsaPrivateKey;
use noports::noports::relay_msg::auth_line;
use noports::relay::{EndReason, RelayConfig, SessionPorts, SessionSpec, SessionTable};
use noports::runtime::{block_on, timeout};

const DEADLINE: Duration = Duration::from_secs(60);

/// Two generated atSign keys, shared by every test (RSA generation is slow).
fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey, RsaPrivateKey) {
    static K: OnceLock<(RsaPrivateKey, RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    K.get_or_init(|| {
        let g = || RsaPrivateKey::generate().unwrap();
        (g(), g(), g())
    })
}

fn config() -> RelayConfig {
    RelayConfig {
        bind: Ipv4Addr::LOCALHOST.into(),
        session_timeout: Duration::from_secs(2),
        auth_timeout: Duration::from_millis(500),
        half_close_linger: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

fn spec(sid: &str) -> SessionSpec {
    let (a, b, _) = keys();
    SessionSpec {
        session_id: sid.to_string(),
        atsign_a: "@alice".into(),
        atsign_b: "@device".into(),
        client_nonce: format!("cn-{sid}"),
        rvd_nonce: format!("rn-{sid}"),
        key_a: Some(a.public_key()),
        key_b: Some(b.public_key()),
        single_pair: false,
    }
}

fn line(s: &SessionSpec, key: &RsaPrivateKey) -> String {
    auth_line(&s.session_id, &s.client_nonce, &s.rvd_nonce, key).unwrap()
}

async fn connect(port: u16) -> Async<TcpStream> {
    Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap()
}

/// Connects to `port` and writes `first` (auth line and maybe more).
async fn side(port: u16, first: &[u8]) -> Async<TcpStream> {
    let s = connect(port).await;
    (&s).write_all(first).await.unwrap();
    s
}

/// True if the relay closed the socket (EOF or reset) within the deadline.
async fn closed_by_relay(s: &Async<TcpStream>) -> bool {
    let mut b = [0u8; 16];
    matches!(
        timeout(Duration::from_secs(5), (&*s).read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn echo_through(a: &Async<TcpStream>, b: &Async<TcpStream>, msg: &[u8]) {
    (&*a).write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    (&*b).read_exact(&mut got).await.unwrap();
    assert_eq!(got, msg);
}

/// The report of session `sid` (other sessions' reports are skipped).
async fn report_for(t: &SessionTable, sid: &str) -> noports::relay::SessionReport {
    loop {
        let r = t.next_report().await.unwrap();
        if r.session_id == sid {
            return r;
        }
    }
}

async fn open(t: &SessionTable, sid: &str) -> (SessionSpec, SessionPorts) {
    let s = spec(sid);
    let p = t.open(s.clone()).unwrap();
    (s, p)
}

#[test]
fn authenticated_session_end_to_end_with_leftover_bytes_and_counters() {
    block_on(timeout(DEADLINE, async {
        let t = SessionTable::new(config());
        let (s, p) = open(&t, "s1").await;
        let (ka, kb, _) = keys();
        // Bytes after the auth line in the same write must reach the peer (§4.3).
        let a = side(p.port_a, format!("{}early", line(&s, ka)).as_bytes()).await;
        let b = side(p.port_b, line(&s, kb).as_bytes()).await;
        let mut early = [0u8; 5];
        (&b).read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early");
        echo_through(&b, &a, b"from the device").await;
        echo_through(&a, &b, b"from the client").await;
        drop(a);
        // A session ends when either side closes.
        assert!(closed_by_relay(&b).await);
        let r = t.next_report().await.unwrap();
        assert_eq!(
            (r.session_id.as_str(), r.reason, r.pairs),
            ("s1", EndReason::Closed, 1)
        );
        assert_eq!((r.bytes_ab, r.bytes_ba), (5 + 15, 15));
        assert_eq!(t.active_sessions(), 0);
    }))
    .unwrap();
}

#[test]
fn bad_sockets_are_closed_without_affecting_the_session() {
    block_on(timeout(DEADLINE, async {
        let t = SessionTable::new(config());
        let (s, p) = open(&t, "s2").await;
        let (_, old_p) = open(&t, "s2-old").await;
        let (ka, kb, kx) = keys();
        let earlier = spec("s2-old");
        let cases: Vec<(&str, u16, Vec<u8>)> = vec![
            ("garbage", p.port_a, b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            ("wrong signer", p.port_a, line(&s, kx).into_bytes()),
            ("other side's line", p.port_a, line(&s, kb).into_bytes()),
            (
                "device line signed by client",
                p.port_b,
                line(&s, ka).into_bytes(),
            ),
            (
                "replay from an earlier session",
                p.port_a,
                line(&earlier, ka).into_bytes(),
            ),
            ("oversized line", p.port_b, vec![b'x'; 10_000]),
            ("nothing at all", p.port_a, Vec::new()),
        ];
        let mut bad = Vec::new();
        for (what, port, bytes) in &cases {
            bad.push((*what, side(*port, bytes).await));
        }
        for (what, sock) in &bad {
            assert!(closed_by_relay(sock).await, "{what}: relay kept the socket");
        }
        // The legitimate pair still works afterwards, and was not paired with any bad socket.
        let a = side(p.port_a, line(&s, ka).as_bytes()).await;
        let b = side(p.port_b, line(&s, kb).as_bytes()).await;
        echo_through(&a, &b, b"still fine").await;
        echo_through(&b, &a, b"indeed").await;
        drop((a, b));
        let r = report_for(&t, "s2").await;
        assert_eq!(r.pairs, 1);
        assert_eq!(r.rejected, cases.len() as u64);
        let _ = old_p;
    }))
    .unwrap();
}

#[test]
fn unpaired_sessions_expire_and_close_their_ports() {
    block_on(timeout(DEADLINE, async {
        let mut cfg = config();
        cfg.session_timeout = Duration::from_millis(300);
        cfg.auth_timeout = Duration::from_secs(5);
        let t = SessionTable::new(cfg);
        let (s, p) = open(&t, "s3").await;
        let (ka, _, _) = keys();
        // An authenticated A waiting for a B that never comes does not keep it alive.
        let a = side(p.port_a, line(&s, ka).as_bytes()).await;
        let r = t.next_report().await.unwrap();
        assert_eq!((r.reason, r.pairs), (EndReason::Expired, 0));
        assert!(closed_by_relay(&a).await);
        let refused =
            Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, p.port_a))).await;
        assert!(refused.is_err(), "listener still open after expiry");
    }))
    .unwrap();
}

#[test]
fn pairs_are_per_session_and_fifo_within_a_session() {
    block_on(timeout(DEADLINE, async {
        let t = SessionTable::new(config());
        let (s1, p1) = open(&t, "x1").await;
        let (s2, p2) = open(&t, "x2").await;
        let (ka, kb, _) = keys();
        // Interleave: B of session 2 arrives before B of session 1; each pairs within its own.
        let b2 = side(p2.port_b, line(&s2, kb).as_bytes()).await;
        let a1 = side(p1.port_a, line(&s1, ka).as_bytes()).await;
        let a2 = side(p2.port_a, line(&s2, ka).as_bytes()).await;
        let b1 = side(p1.port_b, line(&s1, kb).as_bytes()).await;
        echo_through(&a1, &b1, b"one").await;
        echo_through(&a2, &b2, b"two").await;
        // Multi mode: a second pair in session 1 (data connection) works alongside the first.
        let a1d = side(p1.port_a, line(&s1, ka).as_bytes()).await;
        let b1d = side(p1.port_b, line(&s1, kb).as_bytes()).await;
        echo_through(&b1d, &a1d, b"data").await;
        assert_eq!(t.active_sessions(), 2);
    }))
    .unwrap();
}

#[test]
fn single_pair_sessions_refuse_a_second_pair() {
    block_on(timeout(DEADLINE, async {
        let t = SessionTable::new(config());
        let mut s = spec("sp");
        s.single_pair = true;
        let p = t.open(s.clone()).unwrap();
        let (ka, kb, _) = keys();
        let a = side(p.port_a, line(&s, ka).as_bytes()).await;
        let b = side(p.port_b, line(&s, kb).as_bytes()).await;
        echo_through(&a, &b, b"x").await;
        let extra = side(p.port_a, line(&s, ka).as_bytes()).await;
        assert!(closed_by_relay(&extra).await);
        echo_through(&b, &a, b"y").await;
    }))
    .unwrap();
}

#[test]
fn duplicate_ids_and_session_limit() {
    block_on(timeout(DEADLINE, async {
        let mut cfg = config();
        cfg.max_sessions = 2;
        let t = SessionTable::new(cfg);
        t.open(spec("d1")).unwrap();
        assert!(t.open(spec("d1")).is_err());
        t.open(spec("d2")).unwrap();
        assert!(t.open(spec("d3")).is_err());
        t.shutdown();
        for _ in 0..2 {
            assert_eq!(t.next_report().await.unwrap().reason, EndReason::Shutdown);
        }
        assert!(t.open(spec("d4")).is_err());
    }))
    .unwrap();
}

#[test]
fn port_range_is_respected() {
    block_on(timeout(DEADLINE, async {
        // Find a free block by binding a probe; ranges are inclusive.
        let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let base = probe
            .local_addr()
            .unwrap()
            .port()
            .saturating_sub(50)
            .max(20_000);
        drop(probe);
        let mut cfg = config();
        cfg.port_range = Some((base, base + 40));
        let t = SessionTable::new(cfg);
        for i in 0..5 {
            let p = t.open(spec(&format!("r{i}"))).unwrap();
            for port in [p.port_a, p.port_b] {
                assert!((base..=base + 40).contains(&port), "{port} outside range");
            }
        }
    }))
    .unwrap();
}

#[test]
fn a_connection_flood_is_capped_and_shed() {
    block_on(timeout(DEADLINE, async {
        let mut cfg = config();
        cfg.max_connections = 8;
        cfg.max_pending_per_side = 4;
        cfg.auth_timeout = Duration::from_millis(400);
        let t = SessionTable::new(cfg);
        let (s, p) = open(&t, "flood").await;
        let mut flood = Vec::new();
        for _ in 0..100 {
            flood.push(connect(p.port_a).await);
            assert!(
                t.active_connections() <= 8,
                "cap exceeded: {}",
                t.active_connections()
            );
        }
        // Silent sockets are dropped at the auth deadline; then legitimate sockets get in.
        for sock in &flood {
            assert!(closed_by_relay(sock).await);
        }
        drop(flood);
        let (ka, kb, _) = keys();
        let a = side(p.port_a, line(&s, ka).as_bytes()).await;
        let b = side(p.port_b, line(&s, kb).as_bytes()).await;
        echo_through(&a, &b, b"after the flood").await;
    }))
    .unwrap();
}

#[test]
fn two_hundred_concurrent_sessions() {
    block_on(timeout(DEADLINE, async {
        let t = SessionTable::new(config());
        let (ka, kb, _) = keys();
        let mut jobs = Vec::new();
        // Every job holds its session open until all 200 have moved their data.
        let (done_tx, done_rx) = async_channel::unbounded::<()>();
        let (release_tx, release_rx) = async_channel::bounded::<()>(1);
        for i in 0..200 {
            let (s, p) = open(&t, &format!("c{i}")).await;
            let (la, lb) = (line(&s, ka), line(&s, kb));
            let (done_tx, release_rx) = (done_tx.clone(), release_rx.clone());
            jobs.push(noports::runtime::spawn(async move {
                let a = side(p.port_a, la.as_bytes()).await;
                let b = side(p.port_b, lb.as_bytes()).await;
                let msg = format!("payload of session {i}").repeat(500);
                let writer = async { (&a).write_all(msg.as_bytes()).await.unwrap() };
                let reader = async {
                    let mut got = vec![0u8; msg.len()];
                    (&b).read_exact(&mut got).await.unwrap();
                    got
                };
                let ((), got) = futures_lite::future::zip(writer, reader).await;
                assert_eq!(got, msg.as_bytes());
                done_tx.send(()).await.unwrap();
                let _ = release_rx.recv().await;
            }));
        }
        for _ in 0..200 {
            done_rx.recv().await.unwrap();
        }
        assert_eq!(t.active_sessions(), 200);
        drop(release_tx);
        for j in jobs {
            j.await;
        }
        let mut reports = 0;
        while reports < 200 {
            let r = t.next_report().await.unwrap();
            assert_eq!(
                (r.reason, r.pairs, r.rejected),
                (EndReason::Closed, 1, 0),
                "{}",
                r.session_id
            );
            reports += 1;
        }
    }))
    .unwrap();
}

/// Issue 16: hundreds of silent and garbage sockets (from the same address as the legitimate
/// sides, the hardest case) neither block nor delay the legitimate pair: authenticating
/// sockets hold no place in the pairing order, the oldest silent ones are evicted, and an nps1
/// (single-pair) session refuses any further pair, even one with a replayed valid auth line.
#[test]
fn strangers_cannot_stall_the_legitimate_pair() {
    block_on(timeout(DEADLINE, async {
        let mut cfg = config();
        cfg.auth_timeout = Duration::from_secs(5);
        cfg.session_timeout = Duration::from_secs(30);
        let per_source = cfg.max_auth_per_source;
        let t = SessionTable::new(cfg);
        let mut s = spec("siege");
        s.single_pair = true;
        let p = t.open(s.clone()).unwrap();
        let (ka, kb, kx) = keys();
        // 300 silent sockets, 150 on each port, held open.
        let mut silent = Vec::new();
        for i in 0..300 {
            silent.push(connect(if i % 2 == 0 { p.port_a } else { p.port_b }).await);
        }
        // A background flood for the whole test: more silent sockets, garbage lines, long
        // lines without a newline, and valid-looking lines signed by the wrong key.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flood = {
            let stop = stop.clone();
            let wrong = line(&s, kx);
            noports::runtime::spawn(async move {
                let mut held = Vec::new();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let port = if n.is_multiple_of(2) {
                        p.port_a
                    } else {
                        p.port_b
                    };
                    let Ok(c) =
                        Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                            .await
                    else {
                        continue;
                    };
                    let junk: Vec<u8> = match n % 4 {
                        0 => Vec::new(),
                        1 => b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                        2 => vec![b'{'; 4000],
                        _ => wrong.clone().into_bytes(),
                    };
                    let _ = (&c).write_all(&junk).await;
                    held.push(c);
                    if held.len() > 200 {
                        held.remove(0);
                    }
                    async_io::Timer::after(Duration::from_millis(2)).await;
                }
                n
            })
        };
        async_io::Timer::after(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        let a = side(p.port_a, line(&s, ka).as_bytes()).await;
        let b = side(p.port_b, line(&s, kb).as_bytes()).await;
        echo_through(&a, &b, b"verified data A to B").await;
        echo_through(&b, &a, b"verified data B to A").await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "legitimate pair bridged only after {took:?}"
        );
        // Strangers are capped per source and side, whatever the flood.
        let held = t.active_connections();
        assert!(
            held <= 2 * per_source + 2,
            "{held} sockets held for strangers"
        );
        // Single pair: a replayed valid auth line gets no second pair.
        let replay_a = side(p.port_a, line(&s, ka).as_bytes()).await;
        let replay_b = side(p.port_b, line(&s, kb).as_bytes()).await;
        assert!(closed_by_relay(&replay_a).await, "second pair accepted (A)");
        assert!(closed_by_relay(&replay_b).await, "second pair accepted (B)");
        echo_through(&a, &b, b"still bridged").await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let attempts = flood.await;
        assert!(attempts > 50, "flood too weak to mean anything: {attempts}");
        drop(silent);
        drop((a, b));
        let r = report_for(&t, "siege").await;
        assert_eq!(r.pairs, 1);
        assert!(r.rejected >= 300, "rejected {}", r.rejected);
    }))
    .unwrap();
}

/// Single-port mode (`port_range` of one port): every session on one port, each socket's
/// session found by its line's relay nonce and its side by the key that verifies it, whatever
/// the order of arrival; same-atSign sessions pair in arrival order; strangers, garbage and
/// wrong signers are closed; sessions with an unauthenticated side are refused.
#[test]
fn single_port_mode_dispatches_by_nonce_and_signer() {
    block_on(timeout(DEADLINE, async {
        let mut cfg = config();
        cfg.port_range = Some((0, 0));
        let t = SessionTable::new(cfg);
        let port = t.listen().unwrap().expect("single-port mode");
        assert_eq!(t.listen().unwrap(), Some(port), "bound once");
        let (ka, kb, kx) = keys();
        let (s1, p1) = open(&t, "sp1").await;
        let (s2, p2) = open(&t, "sp2").await;
        assert_eq!((p1.port_a, p1.port_b), (port, port));
        assert_eq!((p2.port_a, p2.port_b), (port, port));
        let mut same = spec("sp3");
        same.key_b = Some(ka.public_key());
        t.open(same.clone()).unwrap();
        let mut unauth = spec("sp4");
        unauth.key_b = None;
        assert!(matches!(
            t.open(unauth),
            Err(noports::relay::RelayError::NeedsAuthentication)
        ));
        assert_eq!(t.active_sessions(), 3);
        // Strangers first: silence, garbage, a line signed by a third key, a line of a
        // session that does not exist. None may stop or take the place of the pairs below.
        let silent = connect(port).await;
        let garbage = side(port, b"GET / HTTP/1.1\r\n\r\n").await;
        let forged = side(port, line(&s1, kx).as_bytes()).await;
        let mut ghost = spec("nope");
        ghost.rvd_nonce = "rn-nope".into();
        let unknown = side(port, line(&ghost, ka).as_bytes()).await;
        // Session 1: device first; session 2: client first.
        let b1 = side(port, line(&s1, kb).as_bytes()).await;
        let a2 = side(port, line(&s2, ka).as_bytes()).await;
        let a1 = side(port, format!("{}early", line(&s1, ka)).as_bytes()).await;
        let b2 = side(port, line(&s2, kb).as_bytes()).await;
        let mut early = [0u8; 5];
        (&b1).read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early");
        echo_through(&a1, &b1, b"one: client to device").await;
        echo_through(&b1, &a1, b"one: device to client").await;
        echo_through(&a2, &b2, b"two: client to device").await;
        echo_through(&b2, &a2, b"two: device to client").await;
        // Same atSign on both sides: the first socket is A, the second B.
        let x = side(port, line(&same, ka).as_bytes()).await;
        let y = side(port, line(&same, ka).as_bytes()).await;
        echo_through(&x, &y, b"same atSign").await;
        echo_through(&y, &x, b"same atSign back").await;
        for (what, s) in [
            ("garbage", &garbage),
            ("forged", &forged),
            ("unknown session", &unknown),
            ("silent", &silent),
        ] {
            assert!(closed_by_relay(s).await, "{what} socket left open");
        }
        drop((a1, b2));
        let r1 = report_for(&t, "sp1").await;
        assert_eq!((r1.reason, r1.pairs), (EndReason::Closed, 1));
        assert!(r1.rejected >= 1, "the forged line counts against sp1");
        assert_eq!(r1.bytes_ab, 5 + 21);
        drop((x, y));
        t.shutdown();
        assert!(
            timeout(Duration::from_secs(5), connect_refused(port))
                .await
                .unwrap_or(false),
            "shared port still open after shutdown"
        );
    }))
    .unwrap();
}

/// True once connecting to `port` is refused.
async fn connect_refused(port: u16) -> bool {
    loop {
        if Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .is_err()
        {
            return true;
        }
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
}
