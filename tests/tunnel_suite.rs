//! Our "nps1" suite (docs/suite-v1.md) end to end through the real relay table: many local
//! connections multiplexed over one relay pair, tampering and truncation detected, rekeying,
//! flow control without head-of-line blocking.
#[path = "common/tunnel.rs"]
mod common_tunnel;
use common_tunnel::{loopback, port, suite_keys};

use std::io::ErrorKind::ConnectionReset;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use noports::crypto::aead::EphemeralSecret;
use noports::crypto::rsa::RsaPrivateKey;
use noports::noports::relay_msg::auth_line;
use noports::noports::suite::{self, Aead, Role, SuiteKeys};
use noports::relay::{RelayConfig, SessionSpec, SessionTable};
use noports::runtime::{block_on, spawn, timeout};
use noports::tunnel::{self, RelayTarget, SessionCrypto, TunnelError};

const DEADLINE: Duration = Duration::from_secs(60);
const IDLE: Duration = Duration::from_secs(1);

fn rsa() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static K: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    K.get_or_init(|| {
        (
            RsaPrivateKey::generate().unwrap(),
            RsaPrivateKey::generate().unwrap(),
        )
    })
}

async fn connect(port: u16) -> Async<TcpStream> {
    Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap()
}

/// The application's connection to a tunnel end's listener: a blocking connect, done once the
/// handshake is, so a reset that follows at once (a stream refused at the other end) is met by
/// the reads, not by the connect.
fn connect_app(port: u16) -> Async<TcpStream> {
    let s = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    Async::new(s).unwrap()
}

fn echo_server() -> u16 {
    let l = loopback();
    let p = port(&l);
    spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            spawn(async move {
                let _ = futures_lite::io::copy(&s, &mut &s).await;
                let _ = s.get_ref().shutdown(Shutdown::Write);
            })
            .detach();
        }
    })
    .detach();
    p
}

fn table() -> SessionTable {
    SessionTable::new(RelayConfig {
        bind: Ipv4Addr::LOCALHOST.into(),
        session_timeout: Duration::from_secs(5),
        half_close_linger: Duration::from_millis(300),
        ..RelayConfig::default()
    })
}

/// A single-pair relay session (multiplexing needs only one); (client, daemon) targets.
fn relay_session(t: &SessionTable, sid: &str) -> (RelayTarget, RelayTarget) {
    let (ka, kb) = rsa();
    let spec = SessionSpec {
        session_id: sid.into(),
        atsign_a: "@client".into(),
        atsign_b: "@device".into(),
        client_nonce: "cn".into(),
        rvd_nonce: format!("rn-{sid}"),
        key_a: Some(ka.public_key()),
        key_b: Some(kb.public_key()),
        single_pair: true,
    };
    let p = t.open(spec.clone()).unwrap();
    let line =
        |k| Some(auth_line(&spec.session_id, &spec.client_nonce, &spec.rvd_nonce, k).unwrap());
    (
        RelayTarget {
            host: "127.0.0.1".into(),
            port: p.port_a,
            auth_line: line(ka),
        },
        RelayTarget {
            host: "127.0.0.1".into(),
            port: p.port_b,
            auth_line: line(kb),
        },
    )
}

/// What a man in the middle does to the bytes it forwards.
#[derive(Clone, Copy, Default)]
struct Mitm {
    /// Flip one bit at this offset of the stream towards the tunnel end (downstream).
    flip_down: Option<u64>,
    /// Flip one bit at this offset of the stream away from the tunnel end (upstream).
    flip_up: Option<u64>,
    /// Close both sockets once this many downstream bytes have passed.
    cut_down: Option<u64>,
}

/// A TCP proxy in front of `target` that applies `m`; returns its port.
fn proxy(target: u16, m: Mitm) -> u16 {
    let l = loopback();
    let p = port(&l);
    spawn(async move {
        while let Ok((near, _)) = l.accept().await {
            let far = connect(target).await;
            spawn(async move {
                let pump = |from: &Async<TcpStream>,
                            to: &Async<TcpStream>,
                            flip: Option<u64>,
                            cut: Option<u64>| {
                    let (from, to) = (
                        from.get_ref().try_clone().unwrap(),
                        to.get_ref().try_clone().unwrap(),
                    );
                    async move {
                        let (from, to) = (Async::new(from).unwrap(), Async::new(to).unwrap());
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut off = 0u64;
                        loop {
                            let n = match (&from).read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if let Some(at) = flip.filter(|at| (off..off + n as u64).contains(at)) {
                                buf[(at - off) as usize] ^= 0x01;
                            }
                            if let Some(c) = cut.filter(|c| off + n as u64 >= *c) {
                                let keep = (c - off) as usize;
                                let _ = (&to).write_all(&buf[..keep]).await;
                                let _ = from.get_ref().shutdown(Shutdown::Both);
                                let _ = to.get_ref().shutdown(Shutdown::Both);
                                break;
                            }
                            off += n as u64;
                            if (&to).write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to.get_ref().shutdown(Shutdown::Write);
                    }
                };
                let up = pump(&near, &far, m.flip_up, None);
                let down = pump(&far, &near, m.flip_down, m.cut_down);
                futures_lite::future::zip(up, down).await;
            })
            .detach();
        }
    })
    .detach();
    p
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

async fn round_trip(s: &Async<TcpStream>, data: &[u8]) -> Vec<u8> {
    let w = async { (&*s).write_all(data).await.unwrap() };
    let r = async {
        let mut got = vec![0u8; data.len()];
        (&*s).read_exact(&mut got).await.unwrap();
        got
    };
    futures_lite::future::zip(w, r).await.1
}

/// Reads until EOF or error: what arrived, and how it ended (`None` for a clean EOF, else the
/// error, e.g. `ConnectionReset` for a RST).
async fn drain_end(s: &Async<TcpStream>) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match (&*s).read(&mut buf).await {
            Ok(0) => return (all, None),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => return (all, Some(e.kind())),
        }
    }
}

/// Reads until EOF or error; returns what arrived.
async fn drain(s: &Async<TcpStream>) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = (&*s).read(&mut buf).await {
        all.extend_from_slice(&buf[..n]);
    }
    all
}

#[test]
fn many_connections_share_one_relay_pair() {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (client, daemon) = relay_session(&t, "mux");
        let (ck, dk) = suite_keys("mux");
        let echo = echo_server();
        let control = tunnel::daemon_connect(daemon, SessionCrypto::Suite(dk))
            .await
            .unwrap();
        let d = spawn(control.run(("127.0.0.1".into(), echo), IDLE));
        let local = loopback();
        let lp = port(&local);
        let c = spawn(tunnel::client_multi(
            client,
            local,
            SessionCrypto::Suite(ck),
            IDLE,
        ));
        let mut conns = Vec::new();
        for i in 0..20u8 {
            conns.push(spawn(async move {
                let app = connect(lp).await;
                let data = payload(200_000 + usize::from(i) * 1000, i);
                assert!(
                    round_trip(&app, &data).await == data,
                    "stream {i} corrupted"
                );
            }));
        }
        for j in conns {
            j.await;
        }
        let cs = c.await.unwrap();
        let ds = d.await.unwrap();
        assert_eq!((cs.connections, ds.connections), (20, 20));
        let total: u64 = (0..20u64).map(|i| 200_000 + i * 1000).sum();
        assert_eq!(
            (cs.bytes_out, cs.bytes_in, ds.bytes_in),
            (total, total, total)
        );
        let r = t.next_report().await.unwrap();
        assert_eq!(
            (r.pairs, r.rejected),
            (1, 0),
            "all streams over one relay socket pair"
        );
        // Sealed records cost more than the plaintext, but only a little.
        assert!(
            r.bytes_ab > total && r.bytes_ab < total + total / 50,
            "overhead {}",
            r.bytes_ab - total
        );
    }))
    .unwrap();
}

/// (client result, daemon result, bytes the app received, bytes it sent, how the app's
/// connection ended: `None` for a clean FIN)
type MitmOutcome = (
    Result<(), TunnelError>,
    Result<(), TunnelError>,
    Vec<u8>,
    Vec<u8>,
    Option<std::io::ErrorKind>,
);

/// Runs one stream through a MITM proxy on the client's relay connection; returns the
/// client's and daemon's results and what the local app received.
fn through_mitm(sid: &str, m: Mitm, keys: (SuiteKeys, SuiteKeys)) -> MitmOutcome {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (mut client, daemon) = relay_session(&t, sid);
        client.port = proxy(client.port, m);
        let echo = echo_server();
        let d = spawn(tunnel::daemon_multi(
            daemon,
            ("127.0.0.1".into(), echo),
            SessionCrypto::Suite(keys.1),
            IDLE,
        ));
        let local = loopback();
        let lp = port(&local);
        let c = spawn(tunnel::client_multi(
            client,
            local,
            SessionCrypto::Suite(keys.0),
            IDLE,
        ));
        let app = connect_app(lp);
        let data = payload(300_000, 3);
        let writer = async {
            let _ = (&app).write_all(&data).await;
            let _ = app.get_ref().shutdown(Shutdown::Write);
        };
        let (_, (got, end)) = futures_lite::future::zip(writer, drain_end(&app)).await;
        let cr = c.await.map(|_| ());
        let dr = timeout(Duration::from_secs(20), d)
            .await
            .unwrap()
            .map(|_| ());
        (cr, dr, got, data, end)
    }))
    .unwrap()
}

#[test]
fn tampering_towards_the_client_is_detected() {
    let keys = suite_keys("t1");
    let (c, _, got, sent, end) = through_mitm(
        "t1",
        Mitm {
            flip_down: Some(50_000),
            ..Default::default()
        },
        keys,
    );
    assert!(matches!(c, Err(TunnelError::Tampered)), "client: {c:?}");
    assert!(
        got.len() < sent.len() && sent.starts_with(&got),
        "only verified bytes reach the app"
    );
    assert_eq!(
        end,
        Some(ConnectionReset),
        "the app sees a reset, not an end"
    );
}

#[test]
fn tampering_towards_the_daemon_is_detected() {
    // Offset 2000 is past the ~600-byte auth line, inside the first sealed records.
    let keys = suite_keys("t2");
    let (c, d, got, sent, end) = through_mitm(
        "t2",
        Mitm {
            flip_up: Some(2_000),
            ..Default::default()
        },
        keys,
    );
    assert!(matches!(d, Err(TunnelError::Tampered)), "daemon: {d:?}");
    assert!(c.is_err(), "client must not report a clean end: {c:?}");
    assert!(got.len() < sent.len() && sent.starts_with(&got));
    assert_eq!(
        end,
        Some(ConnectionReset),
        "the app sees a reset, not an end"
    );
}

#[test]
fn truncation_by_the_relay_is_detected() {
    let keys = suite_keys("t3");
    let (c, _, got, sent, end) = through_mitm(
        "t3",
        Mitm {
            cut_down: Some(100_000),
            ..Default::default()
        },
        keys,
    );
    assert!(matches!(c, Err(TunnelError::Truncated)), "client: {c:?}");
    assert!(got.len() < sent.len() && sent.starts_with(&got));
    // A cut download must not look complete to the application.
    assert_eq!(
        end,
        Some(ConnectionReset),
        "the app sees a reset, not an end"
    );
}

#[test]
fn keys_bound_to_another_session_fail_at_the_first_record() {
    let (ck, _) = suite_keys("s-one");
    let (_, dk) = suite_keys("s-two");
    let (c, d, got, _, _) = through_mitm("t4", Mitm::default(), (ck, dk));
    assert!(matches!(d, Err(TunnelError::Tampered)), "daemon: {d:?}");
    assert!(c.is_err());
    assert!(got.is_empty());
}

#[test]
fn rekeying_keeps_the_stream_intact() {
    let (ck, dk) = suite_keys("rekey");
    let keys = (ck.with_rekey_interval(3), dk.with_rekey_interval(3));
    let (c, d, got, sent, end) = through_mitm("rekey", Mitm::default(), keys);
    assert!(c.is_ok() && d.is_ok(), "{c:?} {d:?}");
    assert!(got == sent);
    assert_eq!(end, None, "a complete stream ends with a FIN");
}

#[test]
fn low_order_peer_keys_are_refused() {
    let e = EphemeralSecret::generate().unwrap();
    assert!(suite::derive(
        Role::Client,
        e,
        &[0u8; 32],
        "sid",
        None,
        Aead::ChaCha20Poly1305
    )
    .is_err());
}

#[test]
fn single_mode_suite_end_to_end() {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (client, daemon) = relay_session(&t, "single");
        let (ck, dk) = suite_keys("single");
        let echo = echo_server();
        let local = loopback();
        let lp = port(&local);
        let c = spawn(tunnel::client_single(
            client,
            local,
            SessionCrypto::Suite(ck),
            IDLE * 10,
        ));
        let app = connect(lp).await;
        let d = spawn(tunnel::daemon_single(
            daemon,
            ("127.0.0.1".into(), echo),
            SessionCrypto::Suite(dk),
            IDLE,
        ));
        let data = payload(1 << 20, 9);
        assert!(round_trip(&app, &data).await == data);
        app.get_ref().shutdown(Shutdown::Write).unwrap();
        assert!(drain(&app).await.is_empty());
        let (cs, ds) = (c.await.unwrap(), d.await.unwrap());
        assert_eq!((cs.bytes_out, ds.bytes_in), (1 << 20, 1 << 20));
    }))
    .unwrap();
}

/// A stream whose local reader stalls must not block the others (per-stream windows).
#[test]
fn a_stalled_stream_does_not_block_the_others() {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (client, daemon) = relay_session(&t, "hol");
        let (ck, dk) = suite_keys("hol");
        let echo = echo_server();
        let d = spawn(tunnel::daemon_multi(
            daemon,
            ("127.0.0.1".into(), echo),
            SessionCrypto::Suite(dk),
            IDLE,
        ));
        let local = loopback();
        let lp = port(&local);
        let c = spawn(tunnel::client_multi(
            client,
            local,
            SessionCrypto::Suite(ck),
            IDLE,
        ));
        // Stream 1 pushes 16 MiB and never reads its echo: the echo server blocks, its
        // window closes, and the daemon stops forwarding for it.
        let stalled = connect(lp).await;
        let hog = spawn(async move {
            let _ = (&stalled).write_all(&vec![7u8; 16 << 20]).await;
            stalled
        });
        noports::runtime::sleep(Duration::from_millis(500)).await;
        for i in 0..3u8 {
            let app = connect(lp).await;
            let data = payload(64 * 1024, i);
            let got = timeout(Duration::from_secs(5), round_trip(&app, &data)).await;
            assert!(got.expect("stream blocked behind the stalled one") == data);
        }
        drop(hog);
        let _ = c.await;
        let _ = d.await;
    }))
    .unwrap();
}

#[test]
fn a_stream_the_daemon_resets_reaches_the_app_as_a_reset() {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (client, daemon) = relay_session(&t, "reset");
        let (ck, dk) = suite_keys("reset");
        // A target nobody listens on: the daemon's connect fails and it sends RESET.
        let closed = port(&loopback());
        let _d = spawn(tunnel::daemon_multi(
            daemon,
            ("127.0.0.1".into(), closed),
            SessionCrypto::Suite(dk),
            Duration::from_secs(10),
        ));
        let local = loopback();
        let lp = port(&local);
        let _c = spawn(tunnel::client_multi(
            client,
            local,
            SessionCrypto::Suite(ck),
            Duration::from_secs(10),
        ));
        let app = connect_app(lp);
        let (got, end) = drain_end(&app).await;
        assert!(got.is_empty());
        assert_eq!(
            end,
            Some(ConnectionReset),
            "a reset stream must not look like an end"
        );
    }))
    .unwrap();
}
