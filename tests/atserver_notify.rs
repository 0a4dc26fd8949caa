//! atserver notifications end to end: notify → in-process delivery → monitor, notify:status,
//! regex filtering, epoch replay, autoNotify of shared keys with caching (atprotocol.md §7.7–§8).
#![cfg(feature = "atserver")]
#[path = "common/atserver.rs"]
mod atserver_harness;

use std::time::Duration;

use atserver_harness::TestAtServer;

const WAIT: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn notify_reaches_monitor_with_verified_sender() {
    let s = TestAtServer::start(&["@alice", "@bob"]);
    let mut mon = s.login("@bob", true);
    mon.send(r"monitor .*\.sshnp@");
    // Give the subscription a moment; monitor writes no reply.
    assert_eq!(mon.cmd("noop:100"), "data:ok");
    let mut a = s.login("@alice", false);
    let id = "5c3e8a6d-9d3e-4f52-8a8c-111111111111";
    let r = a.cmd(&format!(
        "notify:id:{id}:update:messageType:key:priority:low:strategy:all:notifier:SYSTEM:ttln:86400000:ttl:10000:isEncrypted:true:sharedKeyEnc:RVNL:pubKeyCS:0123abcd:ivNonce:AAECAwQFBgcICQoLDA0ODw==:@bob:ping.mydev.sshnp@alice:Q0lQSEVS"
    ));
    assert_eq!(r, format!("data:{id}"));
    let line = mon
        .wait_for(id, WAIT)
        .expect("notification on bob's monitor");
    assert!(line.starts_with("notification: {"), "{line}");
    for part in [
        r#""from":"@alice""#,
        r#""to":"@bob""#,
        r#""key":"@bob:ping.mydev.sshnp@alice""#,
        r#""value":"Q0lQSEVS""#,
        r#""operation":"update""#,
        r#""messageType":"MessageType.key""#,
        r#""isEncrypted":true"#,
        r#""ivNonce":"AAECAwQFBgcICQoLDA0ODw==""#,
        r#""sharedKeyEnc":"RVNL""#,
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert_eq!(a.cmd(&format!("notify:status:{id}")), "data:delivered");
    assert_eq!(a.cmd("notify:status:unknown-id"), "data:null");
    // C-SDK form without id; monitor regex filters by key.
    let r = a.cmd("notify:update:ttl:10000:isEncrypted:true:ivNonce:AAECAwQFBgcICQoLDA0ODw==:@bob:other.mydev.sshrvd@alice:WA==");
    let other_id = r.strip_prefix("data:").unwrap().to_string();
    let r = a.cmd("notify:update:@bob:second.mydev.sshnp@alice:WQ==");
    let second = r.strip_prefix("data:").unwrap().to_string();
    let line = mon.wait_for("notification:", WAIT).unwrap();
    assert!(
        line.contains(&second) && !line.contains(&other_id),
        "regex filtered: {line}"
    );
    // Replies on the monitor connection still carry the prompt.
    assert_eq!(mon.cmd_raw("noop:0"), "data:ok\n@bob@");
    // No one can claim another sender: the owner in the key must be the connection's atSign.
    let mut b = s.login("@bob", false);
    assert!(b
        .cmd("notify:@alice:x.sshnp@carol:v")
        .starts_with("error:AT0009"));
    // Undeliverable (not hosted here) → errored.
    let r = a.cmd("notify:@carol:x.sshnp@alice:v");
    let cid = r.strip_prefix("data:").unwrap();
    assert_eq!(a.cmd(&format!("notify:status:{cid}")), "data:errored");
    // notify:status needs no authentication.
    let mut anon = s.client("@alice");
    assert_eq!(anon.cmd(&format!("notify:status:{id}")), "data:delivered");
    // notify:list on the receiver.
    let list = b.cmd("notify:list");
    assert!(
        list.contains(id) && list.contains(r#""from":"@alice""#),
        "{list}"
    );
}

#[test]
fn monitor_epoch_replay_and_self_notifications() {
    let s = TestAtServer::start(&["@alice", "@bob"]);
    let mut a = s.login("@alice", true);
    let before = now_ms() - 1;
    let r = a.cmd("notify:ttln:60000:@bob:replay.dev.sshnp@alice:T0xE");
    let old_id = r.strip_prefix("data:").unwrap().to_string();
    std::thread::sleep(Duration::from_millis(20));
    let mut mon = s.login("@bob", false);
    mon.send(&format!("monitor:selfNotifications:{before}"));
    let line = mon.wait_for(&old_id, WAIT).expect("replayed");
    assert!(
        line.contains(r#""from":"@alice""#) && line.contains("expiresAt"),
        "replay variant: {line}"
    );
    // Epoch after the notification: nothing replayed, live ones still arrive.
    let mut mon2 = s.login("@bob", false);
    mon2.send(&format!("monitor:{}", now_ms()));
    assert_eq!(mon2.cmd("noop:100"), "data:ok");
    let r = a.cmd("notify:@bob:live.dev.sshnp@alice:TElWRQ==");
    let live_id = r.strip_prefix("data:").unwrap().to_string();
    let line = mon2.wait_for("notification:", WAIT).unwrap();
    assert!(line.contains(&live_id), "no replay, only live: {line}");
    // Notifications to self are delivered to own monitors.
    let mut amon = s.login("@alice", true);
    amon.send("monitor");
    assert_eq!(amon.cmd("noop:50"), "data:ok");
    let r = a.cmd("notify:@alice:note.sshnp@alice:c2VsZg==");
    let self_id = r.strip_prefix("data:").unwrap();
    let line = amon.wait_for(self_id, WAIT).unwrap();
    assert!(line.contains(r#""from":"@alice","to":"@alice""#), "{line}");
    assert_eq!(a.cmd(&format!("notify:status:{self_id}")), "data:delivered");
}

#[test]
fn shared_key_auto_notify_cache_and_lookup() {
    let s = TestAtServer::start(&["@alice", "@bob"]);
    let mut mon = s.login("@bob", true);
    mon.send("monitor");
    assert_eq!(mon.cmd("noop:50"), "data:ok");
    let mut a = s.login("@alice", true);
    // Dart SDK writes "their copy" with ttr; autoNotify pushes it to bob, who caches it.
    a.cmd("update:shared_key.bob@alice TXlDb3B5");
    let r =
        a.cmd("update:ttr:3888000:ccd:true:isEncrypted:false:@bob:shared_key@alice VGhlaXJDb3B5");
    assert!(r.starts_with("data:"), "{r}");
    let line = mon
        .wait_for("@bob:shared_key@alice", WAIT)
        .expect("autoNotify");
    assert!(
        line.contains(r#""from":"@alice""#) && line.contains(r#""value":"VGhlaXJDb3B5""#),
        "{line}"
    );
    let mut b = s.login("@bob", false);
    assert_eq!(
        b.cmd("llookup:cached:@bob:shared_key@alice"),
        "data:VGhlaXJDb3B5"
    );
    assert_eq!(b.cmd("lookup:shared_key@alice"), "data:VGhlaXJDb3B5");
    // Alice's own copy is not visible to bob.
    assert!(b
        .cmd("lookup:shared_key.bob@alice")
        .starts_with("error:AT0015"));
    // Delete: bob gets a delete notification; ccd:true removes his cached copy.
    a.cmd("delete:@bob:shared_key@alice");
    let line = mon
        .wait_for(r#""operation":"delete""#, WAIT)
        .expect("delete notification");
    assert!(line.contains("@bob:shared_key@alice"), "{line}");
    assert!(b
        .cmd("llookup:cached:@bob:shared_key@alice")
        .starts_with("error:AT0015"));
    // Without ttr nothing is cached, but lookup still resolves from alice's store.
    a.cmd("update:@bob:plain.sshnp@alice UGxhaW4=");
    mon.wait_for("@bob:plain.sshnp@alice", WAIT)
        .expect("autoNotify without ttr");
    assert!(b
        .cmd("llookup:cached:@bob:plain.sshnp@alice")
        .starts_with("error:AT0015"));
    assert_eq!(b.cmd("lookup:plain.sshnp@alice"), "data:UGxhaW4=");
}
