//! Two atserver processes reaching each other's atSigns (atprotocol.md §4.4, §7.3, §7.4, §8):
//! A hosts @fed_a, B hosts @fed_b, each names the other with `--peer-root` and `--trust`.
//! Over real TLS: plookup across servers, notify with the verified sender and delivery status,
//! autoNotify caching, lookup over a pol connection, forged pol refused, directory forwarding
//! (one `--root-domain` reaches both), queued notifications resumed after a restart, and
//! `errored` after the retry limit.
#![cfg(feature = "atserver")]
#[path = "common/atserver.rs"]
mod atserver_harness;

use std::process::Command;
use std::time::{Duration, Instant};

use atserver_harness::{Client, TestAtServer};

const WAIT: Duration = Duration::from_secs(20);
/// Fast retries so the undeliverable case ends quickly.
const RETRY_ENV: [(&str, &str); 2] = [
    ("NOPORTS_ATSERVER_RETRY_MS", "300"),
    ("NOPORTS_ATSERVER_MAX_ATTEMPTS", "12"),
];

/// A (@fed_a) and B (@fed_b), each with the other as peer root and trust anchor.
fn pair() -> (TestAtServer, TestAtServer) {
    let mut a = TestAtServer::start(&["@fed_a"]);
    let a_ca = a.ca.display().to_string();
    let a_root = a.root.clone();
    let b = TestAtServer::start_with(&["@fed_b"], &["--peer-root", &a_root, "--trust", &a_ca]);
    let (b_root, b_ca) = (b.root.clone(), b.ca.display().to_string());
    a.restart_with(&["--peer-root", &b_root, "--trust", &b_ca], &RETRY_ENV);
    assert_eq!(a.root, a_root, "A keeps its directory port");
    (a, b)
}

/// Polls `notify:status:<id>` until it is no longer `queued` (deadline [`WAIT`]).
fn final_status(c: &mut Client, id: &str) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let s = c.cmd(&format!("notify:status:{id}"));
        if s != "data:queued" || Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls a command until its reply is `want` (deadline [`WAIT`]); returns the last reply.
fn until(c: &mut Client, cmd: &str, want: &str) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let r = c.cmd(cmd);
        if r == want || Instant::now() > end {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn atsigns_on_two_servers_reach_each_other() {
    let (a, b) = pair();
    let mut ca = a.login("@fed_a", true);
    let mut cb = b.login("@fed_b", true);

    // §7.4: plookup of a key hosted on the other server.
    let b_key = cb.cmd("llookup:public:publickey@fed_b");
    assert!(b_key.starts_with("data:MII"), "{b_key}");
    assert_eq!(ca.cmd("plookup:publickey@fed_b"), b_key);
    assert!(ca
        .cmd("plookup:all:publickey@fed_b")
        .contains(r#""key":"public:publickey@fed_b""#));
    assert!(ca
        .cmd("plookup:nosuchkey@fed_b")
        .starts_with("error:AT0015"));
    assert!(ca
        .cmd("plookup:publickey@fed_nobody")
        .starts_with("error:AT0007"));

    // §7.7/§8: notify to @fed_b arrives on B's monitor with the verified sender.
    let mut mon = b.login("@fed_b", true);
    mon.send(r"monitor .*\.fedtest@");
    assert_eq!(mon.cmd("noop:100"), "data:ok");
    let id = "0b8e3f6a-1111-4c2d-9e0f-222222222222";
    let r = ca.cmd(&format!(
        "notify:id:{id}:update:messageType:key:ttln:86400000:ttl:10000:isEncrypted:true:sharedKeyEnc:RVNL:ivNonce:AAECAwQFBgcICQoLDA0ODw==:@fed_b:ping.dev.fedtest@fed_a:Q0lQSEVS"
    ));
    assert_eq!(r, format!("data:{id}"));
    let line = mon.wait_for(id, WAIT).expect("notification on B's monitor");
    for part in [
        r#""from":"@fed_a""#,
        r#""to":"@fed_b""#,
        r#""key":"@fed_b:ping.dev.fedtest@fed_a""#,
        r#""value":"Q0lQSEVS""#,
        r#""isEncrypted":true"#,
        r#""ivNonce":"AAECAwQFBgcICQoLDA0ODw==""#,
        r#""sharedKeyEnc":"RVNL""#,
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert_eq!(final_status(&mut ca, id), "data:delivered");

    // §8.5: autoNotify with ttr caches on B; B's lookup is answered from the cache.
    assert!(ca
        .cmd("update:ttr:86400:ccd:true:isEncrypted:false:@fed_b:shared_key@fed_a U2hhcmVk")
        .starts_with("data:"));
    assert_eq!(
        until(&mut cb, "lookup:shared_key@fed_a", "data:U2hhcmVk"),
        "data:U2hhcmVk"
    );
    assert!(cb
        .cmd("llookup:cached:@fed_b:shared_key@fed_a")
        .starts_with("data:U2hhcmVk"));

    // §7.3: no ttr → not cached; B fetches it from A over a pol connection as @fed_b.
    assert!(ca
        .cmd("update:@fed_b:nocache.fedtest@fed_a Tm9DYWNoZQ==")
        .starts_with("data:"));
    assert_eq!(cb.cmd("lookup:nocache.fedtest@fed_a"), "data:Tm9DYWNoZQ==");
    assert!(cb
        .cmd("llookup:cached:@fed_b:nocache.fedtest@fed_a")
        .starts_with("error:AT0015"));
    // Only what was shared with @fed_b: A's key for someone else is not visible.
    ca.cmd("update:@fed_c:secret.fedtest@fed_a c2VjcmV0");
    assert!(cb
        .cmd("lookup:secret.fedtest@fed_a")
        .starts_with("error:AT0015"));

    // §4.4: a client pretending to be @fed_a's server cannot pass pol.
    let mut forger = b.client("@fed_b");
    assert!(
        forger.cmd("pol").starts_with("error:AT0401"),
        "pol without from"
    );
    let proof = forger.cmd("from:@fed_a");
    assert!(proof.starts_with("data:proof:_"), "{proof}");
    assert!(forger.cmd("pol").starts_with("error:AT0401"));
    // Still unauthenticated: notify is refused.
    assert!(forger
        .cmd("notify:@fed_b:forged.fedtest@fed_a:eA==")
        .starts_with("error:AT0401"));

    // Directory forwarding: A's directory answers for @fed_b.
    let via_a = {
        let mut root = a.root_client();
        let reply = root.cmd_raw("fed_b");
        reply.trim_end_matches('@').trim().to_string()
    };
    assert_eq!(via_a, b.address("@fed_b"));
    assert_eq!(a.root_client().cmd_raw("fed_nobody"), "null\r\n@");
    // A client of A's directory (trusting both CAs) reaches and authenticates to @fed_b.
    let both = a.dir.join("both-ca.pem");
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(&a.ca).unwrap(),
        std::fs::read_to_string(&b.ca).unwrap()
    );
    std::fs::write(&both, pem).unwrap();
    let mut c = Client::connect(&via_a, &b.ca);
    assert_eq!(c.read_exact_str(1), "@");
    assert_eq!(c.pkam("@fed_b", &b.keys("@fed_b"), true), "data:success");
    let out = Command::new(env!("CARGO_BIN_EXE_noports"))
        .args(["at_activate", "status", "-a", "@fed_b", "-r", &a.root])
        .env("NOPORTS_CA_FILE", &both)
        .output()
        .expect("run noports at_activate status");
    assert!(
        out.status.success(),
        "at_activate status via A's root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn queued_notifications_survive_restart_then_error_after_retries() {
    let (mut a, mut b) = pair();
    // B down: the notification stays queued, and survives a kill -9 of A.
    b.stop();
    let mut ca = a.login("@fed_a", true);
    let r = ca.cmd("notify:@fed_b:resume.fedtest@fed_a:UmVzdW1l");
    let resumed = r.strip_prefix("data:").expect("id").to_string();
    assert_eq!(ca.cmd(&format!("notify:status:{resumed}")), "data:queued");
    a.kill9();
    b.start_again();
    a.start_again();
    let mut ca = a.login("@fed_a", true);
    assert_eq!(final_status(&mut ca, &resumed), "data:delivered");
    let mut cb = b.login("@fed_b", true);
    let list = cb.cmd("notify:list");
    assert!(
        list.contains(&resumed) && list.contains(r#""from":"@fed_a""#),
        "{list}"
    );

    // B gone for good: errored after the (test-shortened) retry limit.
    b.stop();
    let r = ca.cmd("notify:@fed_b:lost.fedtest@fed_a:TG9zdA==");
    let lost = r.strip_prefix("data:").expect("id").to_string();
    assert_eq!(final_status(&mut ca, &lost), "data:errored");
}
