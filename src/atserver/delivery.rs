//! Delivery of queued notifications to atSigns hosted elsewhere (atprotocol.md §8.1).
//!
//! The queue *is* the notification store: every sent notification with status `queued` whose
//! recipient is not hosted here. So queued notifications survive a restart (they are in the
//! log) and are resumed by the first round. A round runs when a notification is queued and every
//! retry interval (5 s); each recipient is tried once per round over a pol-authenticated pooled
//! connection. `data:success` → `delivered`; anything else counts an attempt and quarantines the
//! recipient until the next round; after the attempt limit (30) the status becomes `errored`.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::meta::{now_ms, FIELDS, IS_ENCRYPTED};
use super::notify::{Kind, Notification, Status};
use super::server::{AtServer, Hub};

/// The server-to-server `notify:` command for a stored sent notification (§7.7: id, operation,
/// messageType, notifier, ttln, metadata in wire order with `isEncrypted` always present, key,
/// value).
pub(crate) fn s2s_command(n: &Notification, now: i64) -> String {
    let ttln = (n.expires_at - now).max(1);
    let mut cmd = format!(
        "notify:id:{}:{}:messageType:{}:notifier:SYSTEM:ttln:{ttln}",
        n.id,
        if n.delete { "delete" } else { "update" },
        if n.text { "text" } else { "key" },
    );
    for (i, (name, _)) in FIELDS.iter().enumerate() {
        if i == IS_ENCRYPTED {
            cmd.push_str(&format!(":isEncrypted:{}", n.is_encrypted));
        } else if let Some(v) = n.meta.get(i).and_then(|m| m.as_deref()) {
            cmd.push_str(&format!(":{name}:{v}"));
        }
    }
    cmd.push(':');
    cmd.push_str(&n.key);
    if let Some(v) = &n.value {
        cmd.push(':');
        cmd.push_str(v);
    }
    cmd
}

/// Attempts so far per notification id.
type Attempts = Arc<Mutex<HashMap<String, u32>>>;

/// Runs delivery rounds until the process ends.
pub(crate) async fn run(hub: Arc<Hub>) {
    let attempts: Attempts = Arc::default();
    loop {
        round(&hub, &attempts).await;
        let wake = async {
            let _ = hub.peers.wake.1.recv().await;
        };
        futures_lite::future::or(wake, crate::runtime::sleep(hub.peers.retry_interval)).await;
    }
}

/// Queued notifications for recipients not hosted here, grouped by (sender, recipient).
fn pending(hub: &Hub) -> Vec<(Arc<AtServer>, String, Vec<Notification>)> {
    let now = now_ms();
    let mut out = Vec::new();
    for server in hub.all() {
        let mut by_to: HashMap<String, Vec<Notification>> = HashMap::new();
        for n in server.state().notes.iter() {
            if n.kind == Kind::Sent
                && n.status == Status::Queued
                && n.expires_at >= now
                && hub.get(&n.to).is_none()
            {
                by_to.entry(n.to.clone()).or_default().push(n.clone());
            }
        }
        for (to, notes) in by_to {
            out.push((server.clone(), to, notes));
        }
    }
    out
}

/// One round: every (sender, recipient) in parallel, each recipient's notifications in order.
async fn round(hub: &Arc<Hub>, attempts: &Attempts) {
    let mut tasks = Vec::new();
    for (server, to, notes) in pending(hub) {
        let (hub, attempts) = (hub.clone(), attempts.clone());
        tasks.push(crate::runtime::spawn(async move {
            deliver_to(&hub, &server, &to, notes, &attempts).await;
        }));
    }
    for t in tasks {
        t.await;
    }
}

fn set_status(server: &AtServer, id: &str, status: Status) {
    if let Err(e) = server.state().set_note_status(id, status) {
        log::error!(
            "{}: recording status of notification {id}: {e}",
            server.atsign
        );
    }
}

async fn deliver_to(
    hub: &Hub,
    server: &AtServer,
    to: &str,
    notes: Vec<Notification>,
    attempts: &Attempts,
) {
    for n in notes {
        let cmd = s2s_command(&n, now_ms());
        let result = hub.peers.request(to, Some(server), &cmd).await;
        let failure = match result {
            Ok(d) if d == "success" => None,
            Ok(d) => Some(format!("unexpected answer {d:.60?}")),
            Err(e) => Some(e.to_string()),
        };
        let mut map = attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match failure {
            None => {
                map.remove(&n.id);
                drop(map);
                log::info!("{}: notification {} delivered to {to}", server.atsign, n.id);
                set_status(server, &n.id, Status::Delivered);
            }
            Some(why) => {
                let count = map.entry(n.id.clone()).or_insert(0);
                *count += 1;
                let count = *count;
                let limit = hub.peers.max_attempts;
                if count >= limit {
                    map.remove(&n.id);
                }
                drop(map);
                if count >= limit {
                    log::warn!(
                        "{}: notification {} to {to} errored after {count} attempts: {why}",
                        server.atsign,
                        n.id
                    );
                    set_status(server, &n.id, Status::Errored);
                } else {
                    log::warn!(
                        "{}: delivering notification {} to {to} (attempt {count}/{limit}): {why}",
                        server.atsign,
                        n.id
                    );
                }
                // Quarantine the recipient until the next round (§8.1).
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_parseable_by_our_own_grammar() {
        let mut meta: [Option<String>; 16] = Default::default();
        meta[super::super::meta::TTR] = Some("86400".into());
        meta[super::super::meta::CCD] = Some("true".into());
        meta[super::super::meta::IV_NONCE] = Some("AAEC".into());
        let n = Notification {
            id: "abc-1".into(),
            from: "@a".into(),
            to: "@b".into(),
            key: "@b:shared_key@a".into(),
            value: Some("v:with:colons".into()),
            delete: false,
            epoch: 0,
            text: false,
            is_encrypted: true,
            meta,
            kind: Kind::Sent,
            status: Status::Queued,
            expires_at: 10_000,
        };
        let cmd = s2s_command(&n, 0);
        assert_eq!(cmd, "notify:id:abc-1:update:messageType:key:notifier:SYSTEM:ttln:10000:ttr:86400:ccd:true:isEncrypted:true:ivNonce:AAEC:@b:shared_key@a:v:with:colons");
        match super::super::verbs::parse(&cmd) {
            Ok(super::super::verbs::Verb::Notify(r)) => {
                assert_eq!(r.id.as_deref(), Some("abc-1"));
                assert_eq!(r.ttln, Some(10_000));
                assert_eq!(r.value.as_deref(), Some("v:with:colons"));
                assert_eq!(r.key.stored(), "@b:shared_key@a");
            }
            _ => panic!("unparseable: {cmd}"),
        }
    }
}
