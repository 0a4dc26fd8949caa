//! The official data plane (noports.md §5): AES-256-CTR byte layout against the §5.7
//! known-answer vector, and single and multi mode end to end through the real relay table.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use noports::crypto::rsa::RsaPrivateKey;
use noports::noports::relay_msg::auth_line;
use noports::relay::{RelayConfig, SessionSpec, SessionTable};
use noports::runtime::{block_on, spawn, timeout};
use noports::tunnel::{self, RelayTarget, SessionCrypto};

const DEADLINE: Duration = Duration::from_secs(60);
const KAT_KEY: &str = "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=";
const KAT_IV: &str = "MTIzNDU2Nzg5MEFCQ0RFRg==";
const KAT_PLAIN: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const KAT_CIPHER: &str = "f79020f51385b6a0c2d7371d058d93c1ac7b02624df784e5af5b";

fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static K: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    K.get_or_init(|| {
        (
            RsaPrivateKey::generate().unwrap(),
            RsaPrivateKey::generate().unwrap(),
        )
    })
}

fn kat() -> SessionCrypto {
    SessionCrypto::official_b64(KAT_KEY, KAT_IV).unwrap()
}

fn loopback() -> Async<TcpListener> {
    Async::<TcpListener>::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

fn port(l: &Async<TcpListener>) -> u16 {
    l.get_ref().local_addr().unwrap().port()
}

async fn connect(port: u16) -> Async<TcpStream> {
    Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap()
}

/// An echo server on loopback; returns its port.
fn echo_server() -> u16 {
    let l = loopback();
    let p = port(&l);
    spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            spawn(async move {
                let _ = futures_lite::io::copy(&s, &mut &s).await;
                let _ = s.get_ref().shutdown(std::net::Shutdown::Write);
            })
            .detach();
        }
    })
    .detach();
    p
}

/// A relay session with both sides authenticated; returns (client target, daemon target).
fn relay_session(table: &SessionTable, sid: &str) -> (RelayTarget, RelayTarget) {
    let (ka, kb) = keys();
    let spec = SessionSpec {
        session_id: sid.into(),
        atsign_a: "@client".into(),
        atsign_b: "@device".into(),
        client_nonce: "2024-10-24T10:20:30.123456".into(),
        rvd_nonce: format!("rvd-{sid}"),
        key_a: Some(ka.public_key()),
        key_b: Some(kb.public_key()),
        single_pair: false,
    };
    let p = table.open(spec.clone()).unwrap();
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

fn table() -> SessionTable {
    SessionTable::new(RelayConfig {
        bind: Ipv4Addr::LOCALHOST.into(),
        session_timeout: Duration::from_secs(5),
        half_close_linger: Duration::from_millis(300),
        ..RelayConfig::default()
    })
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Writes `data` and reads back exactly as much through `s` (an echo path).
async fn round_trip(s: &Async<TcpStream>, data: &[u8]) -> Vec<u8> {
    let w = async { (&*s).write_all(data).await.unwrap() };
    let r = async {
        let mut got = vec![0u8; data.len()];
        (&*s).read_exact(&mut got).await.unwrap();
        got
    };
    futures_lite::future::zip(w, r).await.1
}

/// noports.md §5.7 on the wire: after the auth line the relay sees exactly the vector's
/// ciphertext, and the same keystream decrypts the other direction from offset 0 (§5.2).
#[test]
fn official_wire_bytes_match_the_known_answer_vector() {
    block_on(timeout(DEADLINE, async {
        let fake_relay = loopback();
        let relay = RelayTarget {
            host: "127.0.0.1".into(),
            port: port(&fake_relay),
            auth_line: Some("AUTH".into()),
        };
        let local = loopback();
        let local_port = port(&local);
        let tunnel = spawn(tunnel::client_single(
            relay,
            local,
            kat(),
            Duration::from_secs(10),
        ));
        let app = connect(local_port).await;
        (&app).write_all(&KAT_PLAIN[..5]).await.unwrap();
        let (r, _) = fake_relay.accept().await.unwrap();
        let mut head = [0u8; 5];
        (&r).read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"AUTH\n", "auth line goes first, in clear");
        (&app).write_all(&KAT_PLAIN[5..]).await.unwrap();
        let mut ct = [0u8; 26];
        (&r).read_exact(&mut ct).await.unwrap();
        assert_eq!(noports::crypto::hash::hex(&ct), KAT_CIPHER);
        // Reverse direction: the daemon side encrypts with its own state from the IV.
        (&r).write_all(&ct).await.unwrap();
        let mut back = [0u8; 26];
        (&app).read_exact(&mut back).await.unwrap();
        assert_eq!(&back[..], KAT_PLAIN);
        drop((app, r));
        let stats = tunnel.await.unwrap();
        assert_eq!((stats.bytes_out, stats.bytes_in), (26, 26));
    }))
    .unwrap();
}

#[test]
fn single_mode_end_to_end_through_the_relay() {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (client, daemon) = relay_session(&t, "single");
        let echo = echo_server();
        let local = loopback();
        let local_port = port(&local);
        let c = spawn(tunnel::client_single(
            client,
            local,
            kat(),
            Duration::from_secs(10),
        ));
        let app = connect(local_port).await;
        let d = spawn(tunnel::daemon_single(
            daemon,
            ("127.0.0.1".into(), echo),
            kat(),
            Duration::from_secs(10),
        ));
        let data = payload(1 << 20, 7);
        assert!(round_trip(&app, &data).await == data, "echo mismatch");
        drop(app);
        let (cs, ds) = (c.await.unwrap(), d.await.unwrap());
        assert_eq!((cs.bytes_out, cs.bytes_in), (1 << 20, 1 << 20));
        assert_eq!((ds.bytes_out, ds.bytes_in), (1 << 20, 1 << 20));
    }))
    .unwrap();
}

fn multi_mode(crypto: fn() -> SessionCrypto, sid: &str) {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (client, daemon) = relay_session(&t, sid);
        let echo = echo_server();
        let control = tunnel::daemon_connect(daemon, crypto()).await.unwrap();
        let d = spawn(control.run(("127.0.0.1".into(), echo), Duration::from_secs(1)));
        let local = loopback();
        let local_port = port(&local);
        let c = spawn(tunnel::client_multi(
            client,
            local,
            crypto(),
            Duration::from_secs(1),
        ));
        // Official multi mode pairs data sockets FIFO at the relay (§4.4), so connections
        // are opened one after another here.
        for i in 0..5u8 {
            let app = connect(local_port).await;
            let data = payload(100_000 + usize::from(i), i);
            assert!(round_trip(&app, &data).await == data, "connection {i}");
        }
        // After the grace timer with no connections left, the client ends, then the daemon.
        let cs = c.await.unwrap();
        let ds = d.await.unwrap();
        assert_eq!(cs.connections, 5);
        assert_eq!(ds.connections, 5);
        assert_eq!(cs.bytes_out, (0..5).map(|i| 100_000 + i).sum::<u64>());
    }))
    .unwrap();
}

#[test]
fn multi_mode_official_end_to_end() {
    multi_mode(kat, "multi-aes");
}

#[test]
fn multi_mode_plain_end_to_end() {
    multi_mode(|| SessionCrypto::Plain, "multi-plain");
}

/// A failed local connect ends only that connection, not the session (C srv behaviour).
#[test]
fn multi_mode_survives_a_refused_local_target() {
    block_on(timeout(DEADLINE, async {
        let t = table();
        let (client, daemon) = relay_session(&t, "refused");
        let dead = port(&loopback()); // bound then dropped: nothing listens there
        let d = spawn(tunnel::daemon_multi(
            daemon,
            ("127.0.0.1".into(), dead),
            kat(),
            Duration::from_secs(1),
        ));
        let local = loopback();
        let local_port = port(&local);
        let c = spawn(tunnel::client_multi(
            client,
            local,
            kat(),
            Duration::from_secs(1),
        ));
        let app = connect(local_port).await;
        let mut b = [0u8; 1];
        let r = timeout(Duration::from_secs(10), (&app).read(&mut b))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "the user's connection is closed, not left hanging"
        );
        drop(app);
        assert!(c.await.is_ok());
        assert!(d.await.is_ok());
    }))
    .unwrap();
}
