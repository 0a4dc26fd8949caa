//! atserver durability: a clean restart loses nothing, and a `kill -9` during a burst of
//! updates loses no acknowledged update (fsync'd append-only log, replayed at start).
#![cfg(feature = "atserver")]
#[path = "common/atserver.rs"]
mod atserver_harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atserver_harness::TestAtServer;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn restart_keeps_keys_notifications_and_commit_ids() {
    let mut s = TestAtServer::start(&["@alice", "@bob"]);
    let before = now_ms() - 1;
    let (commit, id) = {
        let mut a = s.login("@alice", true);
        a.cmd("update:ttl:600000:isEncrypted:true:ivNonce:AAECAwQFBgcICQoLDA0ODw==:@bob:device.mydev.sshnp@alice QUJD");
        a.cmd("update:ttr:-1:@bob:shared_key@alice S0VZ");
        let c = a.cmd("update:public:location.sshnp@alice home");
        let r = a.cmd("notify:ttln:600000:@bob:ping.mydev.sshnp@alice:UElORw==");
        (
            c.strip_prefix("data:").unwrap().parse::<i64>().unwrap(),
            r.strip_prefix("data:").unwrap().to_string(),
        )
    };
    let addr = s.address("@alice");
    s.restart();
    assert_eq!(
        s.address("@alice"),
        addr,
        "atSign keeps its port across restarts"
    );
    let mut a = s.login("@alice", true);
    assert_eq!(a.cmd("llookup:@bob:device.mydev.sshnp@alice"), "data:QUJD");
    let meta = a.cmd("llookup:meta:@bob:device.mydev.sshnp@alice");
    assert!(
        meta.contains(r#""ttl":600000"#)
            && meta.contains(r#""ivNonce":"AAECAwQFBgcICQoLDA0ODw==""#),
        "{meta}"
    );
    assert_eq!(a.cmd(&format!("notify:status:{id}")), "data:delivered");
    let c2 = a
        .cmd("update:after.sshnp@alice x")
        .strip_prefix("data:")
        .unwrap()
        .parse::<i64>()
        .unwrap();
    assert!(c2 > commit, "commit ids continue: {c2} > {commit}");
    // Bob: cached shared key and the received notification survive; monitor replay works.
    let mut b = s.login("@bob", false);
    assert_eq!(b.cmd("llookup:cached:@bob:shared_key@alice"), "data:S0VZ");
    b.send(&format!("monitor:{before}"));
    let line = b
        .wait_for(&id, Duration::from_secs(10))
        .expect("replay after restart");
    assert!(line.contains(r#""from":"@alice""#), "{line}");
    // The created atKeys still work (APKAM and legacy) after restart.
    drop(s.login("@bob", true));
}

#[test]
fn kill9_during_update_burst_loses_no_acknowledged_update() {
    let mut s = TestAtServer::start(&["@alice"]);
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let last_counter = Arc::new(Mutex::new(-1i64));
    let mut threads = Vec::new();
    for t in 0..3 {
        let mut c = s.login("@alice", t % 2 == 0);
        c.set_read_timeout(Duration::from_secs(5));
        let acked = acked.clone();
        let last_counter = last_counter.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..100_000 {
                let key = format!("k{t}_{i}.burst@alice");
                let value = format!("v{t}_{i}");
                let cmd = format!("update:{key} {value}\n");
                if c.send_bytes(cmd.as_bytes()).is_err() {
                    break;
                }
                match c.read_response() {
                    Some(r) if r.starts_with("data:") => acked.lock().unwrap().push((key, value)),
                    _ => break,
                }
                if t == 0 {
                    if c.send_bytes(format!("update:counter.burst@alice {i}\n").as_bytes())
                        .is_err()
                    {
                        break;
                    }
                    match c.read_response() {
                        Some(r) if r.starts_with("data:") => *last_counter.lock().unwrap() = i,
                        _ => break,
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let last = *last_counter.lock().unwrap();
    assert!(acked.len() > 10, "burst made progress: {}", acked.len());
    s.start_again();
    let mut a = s.login("@alice", true);
    for (k, v) in &acked {
        assert_eq!(
            a.cmd(&format!("llookup:{k}")),
            format!("data:{v}"),
            "acknowledged {k} survived kill -9"
        );
    }
    let counter: i64 = a
        .cmd("llookup:counter.burst@alice")
        .strip_prefix("data:")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        counter >= last,
        "counter {counter} >= last acknowledged {last}"
    );
    eprintln!(
        "kill -9 test: {} acknowledged updates verified",
        acked.len()
    );
}
