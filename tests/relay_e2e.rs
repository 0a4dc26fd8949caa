//! `srvd` end to end: the real binary behind the self-hosted atServer (tests/common/stack.rs).
//! A client asks for a session over the atProtocol, both sides connect with auth lines signed by
//! their real atSign keys (which srvd fetched from the atServer), and bytes flow; forged,
//! unauthenticated and legacy requests get no reply and a log line saying why.
#[path = "common/stack.rs"]
mod stack;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use noports::at::{
    AtClient, AtKeys, AtSign, ClientConfig, Monitor, MonitorStart, NotifyOptions, RootAddr,
};
use noports::noports::relay_msg::{auth_line, RelayRequest, RelayResponse};
use noports::runtime::{block_on, timeout};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

async fn at_client(stack: &Stack, atsign: &str) -> AtClient {
    let cfg = ClientConfig {
        atsign: AtSign::parse(atsign).unwrap(),
        keys: AtKeys::load(&stack.keys(atsign)).unwrap(),
        root: RootAddr::parse(&stack.root).unwrap(),
    };
    AtClient::connect(cfg).await.unwrap()
}

fn request(sid: &str, a: &str, auth: bool) -> RelayRequest {
    RelayRequest {
        session_id: sid.into(),
        atsign_a: a.into(),
        atsign_b: DEVICE.into(),
        authenticate_socket_a: auth,
        authenticate_socket_b: auth,
        client_nonce: "2024-10-24T10:20:30.123456".into(),
        extra: Default::default(),
    }
}

async fn ask(client: &AtClient, key: &str, value: &str) {
    let relay = AtSign::parse(RELAY).unwrap();
    let opts = NotifyOptions {
        ttl_ms: Some(10_000),
        ttln_ms: Some(60_000),
        ..Default::default()
    };
    client.notify(&relay, key, value, opts).await.unwrap();
}

/// The answer for `sid`, if one arrives within `limit`: the N4, or the refusal's reason
/// (`error:<reason>`).
async fn answer(
    mon: &mut Monitor,
    sid: &str,
    limit: Duration,
) -> Option<Result<RelayResponse, String>> {
    let wait = async {
        loop {
            let n = mon.next().await.unwrap();
            if n.key.contains(&format!("{sid}.sshrvd")) {
                let v = n.value.unwrap();
                return match v.strip_prefix("error:") {
                    Some(why) => Err(why.to_string()),
                    None => Ok(RelayResponse::parse(&v).unwrap()),
                };
            }
        }
    };
    timeout(limit, wait).await.ok()
}

/// The answers for every one of `sids` (in whatever order they come), within `limit`.
async fn answers(
    mon: &mut Monitor,
    sids: &[&str],
    limit: Duration,
) -> std::collections::HashMap<String, Result<RelayResponse, String>> {
    let mut got = std::collections::HashMap::new();
    let wait = async {
        while got.len() < sids.len() {
            let n = mon.next().await.unwrap();
            let Some(sid) = sids.iter().find(|s| n.key.contains(&format!("{s}.sshrvd"))) else {
                continue;
            };
            let v = n.value.unwrap();
            let r = match v.strip_prefix("error:") {
                Some(why) => Err(why.to_string()),
                None => Ok(RelayResponse::parse(&v).unwrap()),
            };
            got.insert(sid.to_string(), r);
        }
    };
    let _ = timeout(limit, wait).await;
    got
}

async fn side(port: u16, line: &str) -> Async<TcpStream> {
    let s = Async::<TcpStream>::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap();
    (&s).write_all(line.as_bytes()).await.unwrap();
    s
}

#[test]
fn srvd_serves_authenticated_sessions_and_refuses_bad_requests() {
    let stack = Stack::start(bin(), "relay-e2e", &["@stranger"]);
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    let srvd = stack.srvd.as_ref().unwrap();
    // Boxed: the at client's futures are large for a test thread's stack.
    block_on(Box::pin(timeout(Duration::from_secs(120), async {
        let client = at_client(&stack, CLIENT).await;
        let stranger = at_client(&stack, "@stranger").await;
        let mut mon = client.monitor("sshrvd@", MonitorStart::Live).await.unwrap();
        let mut stranger_mon = stranger
            .monitor("sshrvd@", MonitorStart::Live)
            .await
            .unwrap();
        let device_keys = AtKeys::load(&stack.keys(DEVICE)).unwrap();

        // A valid request: N4 arrives, both sides authenticate with their atSign keys.
        let sid = "0f6c2a9e-1b7d-4c1e-9a55-000000000001";
        let req = request(sid, CLIENT, true);
        ask(&client, "dev1.request_ports.sshrvd", &req.to_json()).await;
        let resp = answer(&mut mon, sid, Duration::from_secs(20))
            .await
            .expect("no N4 from srvd")
            .expect("refused");
        assert_eq!(resp.host, "127.0.0.1");
        let rvd = resp.rvd_nonce.clone().expect("an rvdNonce");
        let la = auth_line(sid, &req.client_nonce, &rvd, &client.keys().encrypt_private).unwrap();
        let lb = auth_line(sid, &req.client_nonce, &rvd, &device_keys.encrypt_private).unwrap();
        // The client's line on the device port is refused; the right ones pair.
        let wrong = side(resp.port_b, &la).await;
        let a = side(resp.port_a, &la).await;
        let b = side(resp.port_b, &lb).await;
        (&a).write_all(b"ping through srvd").await.unwrap();
        let mut got = [0u8; 17];
        (&b).read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping through srvd");
        let mut x = [0u8; 1];
        assert!(matches!(
            timeout(Duration::from_secs(10), (&wrong).read(&mut x)).await,
            Ok(Ok(0) | Err(_))
        ));
        drop((a, b));

        // A request signed by nobody but claiming someone else's atSignA: no reply.
        let forged = "0f6c2a9e-1b7d-4c1e-9a55-000000000002";
        ask(
            &stranger,
            "dev1.request_ports.sshrvd",
            &request(forged, CLIENT, true).to_json(),
        )
        .await;
        // Unauthenticated and legacy requests are refused by default.
        let unauth = "0f6c2a9e-1b7d-4c1e-9a55-000000000003";
        ask(
            &client,
            "dev1.request_ports.sshrvd",
            &request(unauth, CLIENT, false).to_json(),
        )
        .await;
        let legacy = "0f6c2a9e-1b7d-4c1e-9a55-000000000004";
        ask(&client, "dev1.sshrvd", legacy).await;
        // Each is refused: no N4, and the sender learns why.
        let refused = |a: Option<Result<RelayResponse, String>>, why: &str| match a {
            Some(Err(reason)) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected a refusal naming {why:?}, got {other:?}"),
        };
        refused(
            answer(&mut stranger_mon, forged, Duration::from_secs(10)).await,
            "sender @stranger is not atSignA",
        );
        // Handled concurrently by srvd, the two answers may come in either order.
        let both = answers(&mut mon, &[unauth, legacy], Duration::from_secs(20)).await;
        for sid in [unauth, legacy] {
            refused(both.get(sid).cloned(), "unauthenticated sockets requested");
        }
    })))
    .unwrap();
    let wait = Duration::from_secs(10);
    srvd.wait_for(
        &format!(
            "Session {} for {CLIENT} is denied: sender @stranger",
            "0f6c2a9e-1b7d-4c1e-9a55-000000000002"
        ),
        wait,
    )
    .unwrap();
    srvd.wait_for("unauthenticated sockets requested", wait)
        .unwrap();
    srvd.wait_for("Authentication failed on side B", wait)
        .unwrap();
    srvd.wait_for(
        &format!("Finished session 0f6c2a9e-1b7d-4c1e-9a55-000000000001 for {CLIENT} to {DEVICE}"),
        wait,
    )
    .unwrap();
}
