//! The responder side of the policy RPC (noports.md §6.3): requests arrive as
//! `request.<reqId>.auth_checks.__rpcs.sshnp`; each gets `ack`, then `success` with the decision
//! (or `nack` when it cannot be read). Duplicates of a request (sender retries, monitor
//! replays) are answered once. Heartbeats (`<device>.devices.policy.sshnp`) extend the list of
//! known daemons; for `npp_atserver`, self notifications on `<id>.groups.policy.sshnp` update
//! the groups in place. Every decision is one log line.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::rules::{self, Answer, Group, Mode, Request};
use super::store;
use crate::at::{now_millis, AtClient, AtSign, MonitorStart, Notification, NotifyOptions};
use crate::json::{self, Object, Value};
use crate::runtime::{sleep, TaskSet};

/// What the service subscribes to: RPC requests, heartbeats, group updates (and our own logs,
/// which are skipped).
pub const MONITOR_REGEX: &str = r"(auth_checks\.__rpcs|policy)\.sshnp@";
const RPC_SUFFIX: &str = ".auth_checks.__rpcs.sshnp";
/// Responses live as long as the official AtRpc's (30 s).
const RESPONSE_TTLN_MS: u64 = 30_000;
/// Decision log notifications to ourselves (P4) expire after an hour.
const LOG_TTLN_MS: u64 = 3_600_000;
/// A request id is remembered this long, well past the request's own 30 s lifetime.
const DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// At most this many remembered request ids per daemon: one busy or hostile daemon forgets its
/// own oldest ids (answering a late duplicate twice is harmless), never another daemon's.
const DEDUP_PER_DAEMON: usize = 1024;
/// At most this many daemons heard by heartbeat or devices remembered.
const HEARD_MAX: usize = 4096;
/// Requests from atSigns the policy does not name are counted, not answered, and logged at
/// most this often.
const IGNORED_LOG_EVERY: Duration = Duration::from_secs(60);
/// How long one request's handling may take: its answers are of no use later (the daemon
/// waits 10 s, the request lives 30 s), and they are sent within [`SEND_DELAYS_MS`].
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// The official AtRpc's send attempts: first try, then after 200 ms, 1 s and 5 s.
const SEND_DELAYS_MS: [u64; 4] = [0, 200, 1000, 5000];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running service: its groups (swapped whole on reload) and its memory of requests.
pub struct Service {
    client: AtClient,
    mode: Mode,
    groups: RwLock<Arc<Vec<Group>>>,
    /// `--daemon-atsigns`.
    configured: Vec<AtSign>,
    /// Daemons heard from by heartbeat.
    heard: Mutex<Vec<AtSign>>,
    /// (daemon, device) pairs heard from.
    devices: Mutex<Vec<(AtSign, String)>>,
    /// Request ids answered recently, per daemon the policy names (nobody else is remembered).
    seen: Mutex<HashMap<AtSign, VecDeque<(i64, Instant)>>>,
    /// Requests from atSigns the policy does not name, since the last log line about them.
    ignored: Mutex<Ignored>,
}

#[derive(Default)]
struct Ignored {
    count: u64,
    logged: Option<Instant>,
}

impl Service {
    /// A service answering with `groups` under `mode`.
    pub fn new(client: AtClient, mode: Mode, groups: Vec<Group>, configured: Vec<AtSign>) -> Self {
        Service {
            client,
            mode,
            groups: RwLock::new(Arc::new(groups)),
            configured,
            heard: Mutex::new(Vec::new()),
            devices: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            ignored: Mutex::new(Ignored::default()),
        }
    }

    /// Replaces the groups; requests in flight keep the set they started with.
    pub fn set_groups(&self, groups: Vec<Group>) {
        let mut g = self.groups.write().unwrap_or_else(|p| p.into_inner());
        *g = Arc::new(groups);
        drop(g);
        log::info!("Daemon atSigns: {}", self.daemons_text());
    }

    fn groups(&self) -> Arc<Vec<Group>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn known_daemons(&self) -> Vec<AtSign> {
        let mut all = self.configured.clone();
        for d in rules::daemons_of(&self.groups())
            .into_iter()
            .chain(lock(&self.heard).iter().cloned())
        {
            if !all.contains(&d) {
                all.push(d);
            }
        }
        all
    }

    /// `{@a, @b}`: the allow-list, for the start-up and reload lines.
    pub fn daemons_text(&self) -> String {
        let list: Vec<String> = self.known_daemons().iter().map(|d| d.to_string()).collect();
        format!("{{{}}}", list.join(", "))
    }

    /// Answers requests until the monitor ends.
    ///
    /// # Errors
    /// The monitor cannot be started.
    pub async fn serve(self: Arc<Self>) -> Result<(), String> {
        let mut monitor = self
            .client
            .monitor(MONITOR_REGEX, MonitorStart::Live)
            .await
            .map_err(|e| e.to_string())?;
        log::warn!(
            "{} listening for requests at auth_checks.__rpcs.sshnp; daemon atSigns {}",
            self.client.atsign(),
            self.daemons_text()
        );
        // Requests in flight end with the service.
        let requests = TaskSet::new();
        while let Some(n) = monitor.next().await {
            let me = self.client.atsign().clone();
            let name = n.key_name().to_string();
            if let Some(id) = name
                .strip_prefix("request.")
                .and_then(|r| r.strip_suffix(RPC_SUFFIX))
            {
                // The sender first: a daemon the policy does not name is denied whatever it
                // asks, so its requests cost no memory, task or answer (a stranger's flood
                // neither fills the memory of ids nor queues notifications ahead of a daemon's).
                if self.names(&n.from) {
                    let id = id.to_string();
                    requests.spawn_within(REQUEST_DEADLINE, self.clone().on_request(n, id));
                } else {
                    self.ignore(&n.from);
                }
            } else if let Some(device) = name.strip_suffix(".devices.policy.sshnp") {
                let device = device.to_string();
                self.on_heartbeat(&n, &device).await;
            } else if n.from == me && name.ends_with(".groups.policy.sshnp") {
                self.on_group_notification(&n, &name);
            }
        }
        Err("monitor ended".into())
    }

    async fn on_heartbeat(&self, n: &Notification, device: &str) {
        if rules::check_name("device", device).is_err() || device.contains(['.', ':', '@']) {
            log::warn!(
                "heartbeat from {} with a bad device name {device:?}",
                n.from
            );
            return;
        }
        let (new_daemon, new_device) = {
            let mut heard = lock(&self.heard);
            let new_daemon = !heard.contains(&n.from)
                && !self.configured.contains(&n.from)
                && heard.len() < HEARD_MAX;
            if new_daemon {
                heard.push(n.from.clone());
            }
            let mut devices = lock(&self.devices);
            let pair = (n.from.clone(), device.to_string());
            let new_device = !devices.contains(&pair);
            if new_device && devices.len() < HEARD_MAX {
                devices.push(pair);
            }
            (new_daemon, new_device)
        };
        // The first heartbeat of each device always shows (the service's view of its
        // daemons); the 5-minutely repeats only with -v.
        if new_device {
            log::warn!("heartbeat from daemon {} device {device}", n.from);
        } else {
            log::info!("heartbeat from daemon {} device {device}", n.from);
        }
        if new_daemon {
            log::warn!("Daemon atSigns: {}", self.daemons_text());
        }
        // Records only for daemons the policy names (or --daemon-atsigns): a stranger's
        // heartbeats must not create records on our atServer.
        let named = self.configured.contains(&n.from)
            || rules::daemons_of(&self.groups()).contains(&n.from);
        if self.mode == Mode::AtServer && named {
            let value = n.value.clone().unwrap_or_default();
            if json::parse(&value).is_err() {
                log::warn!("heartbeat from {} is not JSON; not stored", n.from);
                return;
            }
            let key = format!("{device}.devices.policy.sshnp{}", self.client.atsign());
            if let Err(e) = store::put_self(&self.client, &key, &value).await {
                log::warn!("cannot store the device record {key}: {e}");
            }
        }
    }

    fn on_group_notification(&self, n: &Notification, name: &str) {
        let Some(id) = name.strip_suffix(".groups.policy.sshnp") else {
            return;
        };
        if self.mode != Mode::AtServer || rules::check_id(id).is_err() {
            return;
        }
        let mut groups: Vec<Group> = self.groups().as_ref().clone();
        groups.retain(|g| g.id != id);
        if n.operation == "delete" {
            log::warn!("group {id} deleted");
        } else {
            match Group::from_json(n.value.as_deref().unwrap_or("")) {
                Ok(mut g) => {
                    g.id = id.to_string();
                    log::warn!("group {id} ({}) updated", g.name);
                    groups.push(g);
                }
                Err(e) => {
                    log::warn!("group {id}: update ignored, keeping the current groups: {e}");
                    return;
                }
            }
        }
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        self.set_groups(groups);
    }

    /// Whether the policy names `daemon` (a group's daemonAtSigns, or `--daemon-atsigns`):
    /// only those can be allowed anything.
    fn names(&self, daemon: &AtSign) -> bool {
        self.configured.contains(daemon) || rules::daemons_of(&self.groups()).contains(daemon)
    }

    fn ignore(&self, from: &AtSign) {
        let mut ignored = lock(&self.ignored);
        ignored.count += 1;
        if ignored
            .logged
            .is_some_and(|t| t.elapsed() < IGNORED_LOG_EVERY)
        {
            return;
        }
        log::warn!(
            "ignored {} request(s) from atSigns no group's daemonAtSigns or --daemon-atsigns names (latest from {from}); add the daemon's atSign there to serve it",
            ignored.count
        );
        ignored.count = 0;
        ignored.logged = Some(Instant::now());
    }

    /// True the first time `id` comes from `from` within the window.
    fn first_time(&self, from: &AtSign, id: i64) -> bool {
        let mut seen = lock(&self.seen);
        let ids = seen.entry(from.clone()).or_default();
        while ids
            .front()
            .is_some_and(|(_, t)| t.elapsed() >= DEDUP_WINDOW)
        {
            ids.pop_front();
        }
        if ids.iter().any(|(i, _)| *i == id) {
            return false;
        }
        if ids.len() >= DEDUP_PER_DAEMON {
            ids.pop_front();
        }
        ids.push_back((id, Instant::now()));
        true
    }

    async fn on_request(self: Arc<Self>, n: Notification, id_text: String) {
        let from = n.from.clone();
        let Ok(id) = id_text.parse::<i64>() else {
            log::warn!("request from {from} with a bad request id {id_text:?}; ignored");
            return;
        };
        if !self.first_time(&from, id) {
            log::warn!("duplicate request {id} from {from}; already answered");
            return;
        }
        let value = n.value.unwrap_or_default();
        let req = match parse_request(&value, id) {
            Ok(r) => r,
            Err(msg) => {
                log::warn!("request {id} from {from}: {msg}; sending nack");
                self.respond(&from, id, "nack", Object::new(), Some(&msg))
                    .await;
                return;
            }
        };
        self.respond(&from, id, "ack", Object::new(), None).await;
        let answer = if req.daemon != from {
            // The answer goes to the sender: it may only ask about itself.
            Answer::deny(format!(
                "daemonAtsign {} does not match the requesting atSign {from}",
                req.daemon
            ))
        } else {
            rules::decide(&self.groups(), self.mode, &req)
        };
        log::warn!(
            "decision client={} daemon={} device={} deviceGroup={} result={} permitOpen=[{}] reason=\"{}\"",
            req.client,
            from,
            req.device,
            req.device_group,
            if answer.authorized { "allowed" } else { "denied" },
            answer.permit_open.join(","),
            answer.message
        );
        // The question repeated, so a daemon can tell the answer is about what it asked
        // (official daemons read only authorized, message and permitOpen).
        let payload = answer
            .to_object()
            .with("clientAtsign", req.client.as_str())
            .with("daemonAtsign", req.daemon.as_str())
            .with("daemonDeviceName", req.device.as_str());
        self.respond(&from, id, "success", payload.clone(), None)
            .await;
        self.log_event(&from, id, &value, payload).await;
    }

    /// Sends `<kind>.<id>.auth_checks.__rpcs.sshnp` to `to`, retrying like the official AtRpc.
    async fn respond(&self, to: &AtSign, id: i64, kind: &str, payload: Object, msg: Option<&str>) {
        let body = Object::new()
            .with("reqId", Value::Int(id))
            .with("respType", kind)
            .with("payload", Value::Object(payload))
            .with("message", msg.map(Value::from).unwrap_or(Value::Null))
            .to_json();
        let key = format!("{kind}.{id}{RPC_SUFFIX}");
        let opts = NotifyOptions {
            ttln_ms: Some(RESPONSE_TTLN_MS),
            ..Default::default()
        };
        for delay in SEND_DELAYS_MS {
            sleep(Duration::from_millis(delay)).await;
            match self.client.notify(to, &key, &body, opts.clone()).await {
                Ok(_) => return,
                Err(e) => log::warn!("sending {kind} for request {id} to {to} failed: {e}"),
            }
        }
        log::error!("gave up sending {kind} for request {id} to {to}");
    }

    /// P4: the decision as a notification to ourselves, for an admin front end.
    async fn log_event(&self, daemon: &AtSign, id: i64, request: &str, response: Object) {
        let me = self.client.atsign().clone();
        let ts = now_millis();
        let request = json::parse(request).unwrap_or(Value::Null);
        let body = Object::new()
            .with("daemon", daemon.as_str())
            .with("timestamp", Value::Int(ts))
            .with(
                "payload",
                Value::Object(
                    Object::new()
                        .with("request", request)
                        .with("response", Value::Object(response)),
                ),
            )
            .to_json();
        let opts = NotifyOptions {
            ttln_ms: Some(LOG_TTLN_MS),
            ..Default::default()
        };
        if let Err(e) = self
            .client
            .notify(&me, &format!("{ts}.logs.policy.sshnp"), &body, opts)
            .await
        {
            log::info!("decision log notification for request {id} not sent: {e}");
        }
    }
}

/// `{"reqId":<id>,"payload":{"daemonAtsign","daemonDeviceName","daemonDeviceGroupName",
/// "clientAtsign"}}` with the key's id.
fn parse_request(value: &str, id: i64) -> Result<Request, String> {
    let obj = match json::parse(value) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err("the request is not a JSON object".into()),
        Err(e) => return Err(format!("Failed to deserialize the request: {e}")),
    };
    match obj.get_i64("reqId") {
        Some(r) if r == id => {}
        Some(r) => {
            return Err(format!(
                "requestID from the notification key {id} does not match requestID from the payload {r}"
            ))
        }
        None => return Err("the request has no integer reqId".into()),
    }
    let p = obj
        .get_object("payload")
        .ok_or("the request has no payload")?;
    let field = |k: &str| {
        p.get_str(k)
            .map(str::to_string)
            .ok_or_else(|| format!("the request payload has no string \"{k}\""))
    };
    let atsign = |k: &str| -> Result<AtSign, String> {
        AtSign::parse(&field(k)?).map_err(|e| format!("{k}: {e}"))
    };
    Ok(Request {
        daemon: atsign("daemonAtsign")?,
        device: field("daemonDeviceName")?,
        device_group: field("daemonDeviceGroupName")?,
        client: atsign("clientAtsign")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_forms() {
        let ok = r#"{"reqId":7,"payload":{"daemonAtsign":"@d","daemonDeviceName":"box","daemonDeviceGroupName":"__none__","clientAtsign":"@c"}}"#;
        let r = parse_request(ok, 7).unwrap();
        assert_eq!(
            (r.daemon.as_str(), r.device.as_str(), r.client.as_str()),
            ("@d", "box", "@c")
        );
        for (text, id, needle) in [
            (ok, 8, "does not match"),
            ("nope", 7, "deserialize"),
            ("[1]", 7, "not a JSON object"),
            (r#"{"reqId":"7","payload":{}}"#, 7, "integer reqId"),
            (r#"{"reqId":7}"#, 7, "no payload"),
            (
                r#"{"reqId":7,"payload":{"daemonAtsign":"@d"}}"#,
                7,
                "daemonDeviceName",
            ),
            (
                r#"{"reqId":7,"payload":{"daemonAtsign":"@d x","daemonDeviceName":"b","daemonDeviceGroupName":"g","clientAtsign":"@c"}}"#,
                7,
                "daemonAtsign",
            ),
        ] {
            let e = parse_request(text, id).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
