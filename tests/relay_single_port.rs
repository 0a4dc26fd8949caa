//! Issue 13 (networks that only let one port out, e.g. 443): `srvd --port-range P-P` serves
//! every session on the one port P. The real binaries as separate processes (atserver, srvd,
//! sshnpd, npt) on loopback; P is a free high port (the mode does not depend on the number;
//! 443 itself needs root).
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/stack.rs"]
mod stack;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hostile::{raise_fd_limit, tcp_opener, Hostiles, Kind};
use noports::at::{
    AtClient, AtKeys, AtSign, ClientConfig, Monitor, MonitorStart, NotifyOptions, RootAddr,
};
use noports::noports::relay_msg::{RelayRequest, RelayResponse};
use noports::runtime::{block_on, timeout};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// A stack whose srvd serves every session on one free loopback port; returns the port.
fn single_port_stack(tag: &str) -> (Stack, u16) {
    let mut stack = Stack::start(bin(), tag, &[]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let range = format!("{port}-{port}");
    stack.start_srvd_with(&["--bind", "127.0.0.1", "--port-range", &range]);
    stack
        .srvd
        .as_ref()
        .unwrap()
        .wait_for(
            &format!("serving every session on the shared port {port}"),
            Duration::from_secs(10),
        )
        .unwrap();
    (stack, port)
}

/// Every session reply srvd sent so far names `port` for both sides.
fn replies_name_only(srvd: &Proc, port: u16, at_least: usize) {
    let out = srvd.output();
    let replies: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("Sending response data for requested session"))
        .collect();
    assert!(
        replies.len() >= at_least,
        "{} replies, expected {at_least}:\n{out}",
        replies.len()
    );
    for r in replies {
        assert!(r.contains(&format!("[127.0.0.1,{port},{port},")), "{r}");
    }
}

fn dump(procs: &[&Proc]) {
    for p in procs {
        let out = p.output();
        let tail: Vec<&str> = out.lines().rev().take(40).collect();
        eprintln!("--- {} (newest first)\n{}", p.name, tail.join("\n"));
    }
}

/// Two concurrent npt sessions, one per suite (nps1: one multiplexed pair; official: a
/// control pair plus a pair per connection), move verified data through the one relay port.
#[test]
fn two_concurrent_sessions_share_one_relay_port() {
    let (stack, port) = single_port_stack("relay-1port");
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let nps1 = stack.npt(CLIENT, "dev1", "127.0.0.1", service, &["-T", "60s", "-v"]);
    let official = stack.npt(
        CLIENT,
        "dev1",
        "127.0.0.1",
        service,
        &["-T", "60s", "-v", "--suite", "official"],
    );
    let srvd = stack.srvd.as_ref().unwrap();
    let run = || {
        let (p1, p2) = (npt_port(&nps1).unwrap(), npt_port(&official).unwrap());
        // Both sessions live at once, each with several connections, in parallel.
        let workers: Vec<_> = [p1, p2, p1, p2]
            .into_iter()
            .map(|p| std::thread::spawn(move || transfer_and_verify(p, 512 * 1024)))
            .collect();
        for w in workers {
            w.join().unwrap().unwrap();
        }
        (p1, p2)
    };
    let (p1, p2) = std::panic::catch_unwind(run).unwrap_or_else(|e| {
        dump(&[srvd, &nps1, &official, &daemon]);
        std::panic::resume_unwind(e)
    });
    replies_name_only(srvd, port, 2);
    // Still both alive: one more round each.
    transfer_and_verify(p1, 1000).unwrap();
    transfer_and_verify(p2, 1000).unwrap();
    assert!(
        srvd.count("Authentication failed") == 0,
        "{}",
        srvd.output()
    );
}

/// Silent and garbage-trickling sockets held against the shared port (hundreds, from other
/// loopback addresses) neither stop a session from being set up through it nor its data.
#[test]
fn strangers_on_the_shared_port_do_not_stop_a_legitimate_pair() {
    raise_fd_limit();
    let (stack, port) = single_port_stack("relay-1port-lockout");
    let service = start_plus_one_service();
    let daemon = stack.start_daemon("dev1", CLIENT, &format!("127.0.0.1:{service}"));
    let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut h = Hostiles::new();
    for j in 0..8u8 {
        let kind = if j % 2 == 0 { Kind::Raw } else { Kind::RawSlow };
        h.pool(kind, 40, Ipv4Addr::new(127, 0, 0, 2 + j), dst, tcp_opener());
    }
    std::thread::sleep(Duration::from_secs(2));
    let held = h.held.load(Ordering::Relaxed);
    // The session is requested and both sides connect while the flood runs.
    let npt = stack.npt(
        CLIENT,
        "dev1",
        "127.0.0.1",
        service,
        &["-T", "60s", "-v", "--suite", "official"],
    );
    let srvd = stack.srvd.as_ref().unwrap();
    let took = std::panic::catch_unwind(|| {
        let p = npt_port(&npt).unwrap();
        let mut took = Vec::new();
        for r in 0..3 {
            let t = Instant::now();
            transfer_and_verify(p, 256 * 1024).unwrap_or_else(|e| panic!("round {r}: {e}"));
            let d = t.elapsed();
            assert!(d < Duration::from_secs(5), "round {r} took {d:?}");
            took.push(d);
            std::thread::sleep(Duration::from_millis(500));
        }
        took
    })
    .unwrap_or_else(|e| {
        dump(&[srvd, &npt, &daemon]);
        std::panic::resume_unwind(e)
    });
    let (opened, closed) = h.stop();
    eprintln!(
        "shared port {port}: {opened} hostile connections opened, {closed} closed by srvd, {held} held before the session; rounds {took:?}"
    );
    replies_name_only(srvd, port, 1);
    assert!(opened >= 300, "the flood must be hundreds strong: {opened}");
    assert!(
        closed >= 200,
        "srvd must cut strangers off (deadline, per-source caps): {closed} closed"
    );
}

async fn at_client(stack: &Stack, atsign: &str) -> AtClient {
    let cfg = ClientConfig {
        atsign: AtSign::parse(atsign).unwrap(),
        keys: AtKeys::load(&stack.keys(atsign)).unwrap(),
        root: RootAddr::parse(&stack.root).unwrap(),
    };
    AtClient::connect(cfg).await.unwrap()
}

/// Sends a session request for `sid` and returns srvd's answer: the N4, or `error:`'s reason.
async fn request(
    client: &AtClient,
    mon: &mut Monitor,
    sid: &str,
    auth: bool,
) -> Result<RelayResponse, String> {
    let req = RelayRequest {
        session_id: sid.into(),
        atsign_a: CLIENT.into(),
        atsign_b: DEVICE.into(),
        authenticate_socket_a: auth,
        authenticate_socket_b: auth,
        client_nonce: "2026-12-03T02:40:00.000000".into(),
        extra: Default::default(),
    };
    let opts = NotifyOptions {
        ttl_ms: Some(10_000),
        ttln_ms: Some(60_000),
        ..Default::default()
    };
    let relay = AtSign::parse(RELAY).unwrap();
    client
        .notify(&relay, "dev1.request_ports.sshrvd", &req.to_json(), opts)
        .await
        .unwrap();
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
    timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no answer for {sid}"))
}

/// In single-port mode a request that leaves a side unauthenticated cannot be dispatched:
/// srvd refuses it (even with --allow-unauthenticated) with `error:` and a log line; an
/// authenticated one gets the shared port twice. A port srvd cannot bind stops it at start.
#[test]
fn unauthenticated_requests_are_refused_in_single_port_mode() {
    let mut stack = Stack::start(bin(), "relay-1port-unauth", &[]);
    // A shared port srvd cannot bind stops it at start, saying why.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let mut c = stack.command("srvd");
    c.args(["-a", RELAY, "-i", "127.0.0.1", "--root-domain", &stack.root]);
    c.args([
        "--bind",
        "127.0.0.1",
        "--port-range",
        &format!("{busy}-{busy}"),
    ]);
    c.arg("-k").arg(stack.keys(RELAY));
    let mut failing = Proc::spawn("srvd-busy", c);
    let status = failing
        .wait_exit(Duration::from_secs(30))
        .expect("srvd must exit");
    assert!(!status.success());
    failing
        .wait_for(
            "--port-range: binding session listener",
            Duration::from_secs(5),
        )
        .unwrap();
    drop(taken);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let range = format!("{port}-{port}");
    stack.start_srvd_with(&[
        "--bind",
        "127.0.0.1",
        "--port-range",
        &range,
        "--allow-unauthenticated",
    ]);
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    let srvd = stack.srvd.as_ref().unwrap();
    block_on(Box::pin(timeout(Duration::from_secs(120), async {
        let client = at_client(&stack, CLIENT).await;
        let mut mon = client.monitor("sshrvd@", MonitorStart::Live).await.unwrap();
        let sid = "7a1c2b3d-0000-4000-8000-000000000001";
        let why = request(&client, &mut mon, sid, false).await.unwrap_err();
        assert!(why.contains("one port"), "{why}");
        srvd.wait_for(
            &format!("Unable to provide the socket pair for session {sid}"),
            Duration::from_secs(10),
        )
        .unwrap();
        let sid = "7a1c2b3d-0000-4000-8000-000000000002";
        let ok = request(&client, &mut mon, sid, true).await.unwrap();
        assert_eq!((ok.port_a, ok.port_b), (port, port));
        assert!(ok.rvd_nonce.is_some());
    })))
    .unwrap();
}
