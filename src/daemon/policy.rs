//! The daemon side of the policy RPC (noports.md §6.3): ask the policy atSign whether a client
//! may connect, with a 10 s deadline and a 15 s per-client cache; heartbeat every 5 minutes.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::at::{AtClient, AtSign, NotifyOptions};
use crate::json::{self, Object, Value};
use crate::noports::permit::PermitOpen;
use crate::runtime::{sleep, timeout};

const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
const CACHE_FOR: Duration = Duration::from_secs(15);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(300);
const RPC_SUFFIX: &str = ".auth_checks.__rpcs.sshnp";

/// A fresh request id: 52 random bits, in the official ids' integer range (below 2^53, so any
/// JSON reader keeps it exact). The official ids are the time in microseconds; anyone who can
/// guess one can address an answer to it, and two daemons sharing an atSign asking in the same
/// microsecond would take each other's answers.
fn new_request_id() -> i64 {
    let b: [u8; 8] = crate::crypto::random::bytes();
    let bits = u64::from_le_bytes(b) & ((1u64 << 52) - 1);
    (bits | (1u64 << 52)) as i64
}

/// Whether a sender may use this daemon, and within which client permit-open list.
#[derive(Clone, Debug)]
pub struct Decision {
    pub allowed: bool,
    pub client_permit: PermitOpen,
    pub reason: String,
    /// The policy service gave no answer: the question was not sent, or not answered in time.
    pub unanswered: bool,
}

impl Decision {
    pub fn allow(client_permit: PermitOpen, reason: &str) -> Decision {
        Decision {
            allowed: true,
            client_permit,
            reason: reason.to_string(),
            unanswered: false,
        }
    }

    pub fn deny(reason: &str) -> Decision {
        Decision {
            allowed: false,
            ..Decision::allow(PermitOpen::any(), reason)
        }
    }

    fn unanswered(reason: &str) -> Decision {
        Decision {
            unanswered: true,
            ..Decision::deny(reason)
        }
    }
}

/// A question waiting for its answer: what was asked, and where the answer goes.
struct PendingQuestion {
    client: AtSign,
    device: String,
    answers: async_channel::Sender<(String, Object)>,
}

/// The daemon's end of the policy RPC: the questions waiting for answers and the answers
/// remembered. Knows the daemon only by its atSign, device and group.
pub(super) struct PolicyRpc {
    client: AtClient,
    daemon: AtSign,
    device: String,
    device_group: String,
    /// Questions waiting for their answers, by request id.
    pending: async_lock::Mutex<HashMap<i64, PendingQuestion>>,
    cache: async_lock::Mutex<HashMap<AtSign, (Instant, Decision)>>,
}

impl PolicyRpc {
    pub(super) fn new(client: AtClient, daemon: &AtSign, device: &str, group: &str) -> Self {
        PolicyRpc {
            client,
            daemon: daemon.clone(),
            device: device.to_string(),
            device_group: group.to_string(),
            pending: async_lock::Mutex::new(HashMap::new()),
            cache: async_lock::Mutex::new(HashMap::new()),
        }
    }

    /// Ask the policy service about `client` (cached for 15 s).
    pub(super) async fn ask(&self, policy: &AtSign, client: &AtSign) -> Decision {
        if let Some((at, d)) = self.cache.lock().await.get(client) {
            if at.elapsed() < CACHE_FOR {
                return d.clone();
            }
        }
        let decision = self.ask_uncached(policy, client).await;
        self.cache
            .lock()
            .await
            .insert(client.clone(), (Instant::now(), decision.clone()));
        decision
    }

    async fn ask_uncached(&self, policy: &AtSign, client: &AtSign) -> Decision {
        let req_id = new_request_id();
        let (tx, rx) = async_channel::bounded::<(String, Object)>(4);
        let question = PendingQuestion {
            client: client.clone(),
            device: self.device.clone(),
            answers: tx,
        };
        self.pending.lock().await.insert(req_id, question);
        let payload = Object::new()
            .with("daemonAtsign", self.daemon.as_str())
            .with("daemonDeviceName", self.device.as_str())
            .with("daemonDeviceGroupName", self.device_group.as_str())
            .with("clientAtsign", client.as_str());
        let body = Object::new()
            .with("reqId", Value::Int(req_id))
            .with("payload", Value::Object(payload));
        log::info!("Asking {policy} whether {client} may connect to this daemon");
        let opts = NotifyOptions {
            ttln_ms: Some(30_000),
            ..Default::default()
        };
        let key = format!("request.{req_id}{RPC_SUFFIX}");
        let mut sent = false;
        for delay in [0u64, 200, 1000, 5000] {
            sleep(Duration::from_millis(delay)).await;
            match self
                .client
                .notify(policy, &key, &body.to_json(), opts.clone())
                .await
            {
                Ok(_) => {
                    sent = true;
                    break;
                }
                Err(e) => log::warn!("policy request to {policy} failed: {e}"),
            }
        }
        let result = if !sent {
            Decision::unanswered("could not send the request to the policy service")
        } else {
            let wait = async {
                loop {
                    let Ok((kind, resp)) = rx.recv().await else {
                        return Decision::deny("policy channel closed");
                    };
                    match kind.as_str() {
                        "ack" => log::info!("policy service acknowledged request {req_id}"),
                        "success" => return decision_from(&resp),
                        other => {
                            let msg = resp.get_str("message").unwrap_or("").to_string();
                            return Decision::deny(&format!(
                                "Got non-success response {other} from policy service {msg}"
                            ));
                        }
                    }
                }
            };
            match timeout(ANSWER_DEADLINE, wait).await {
                Ok(d) => d,
                Err(_) => Decision::unanswered("Timed out waiting for authorizer response"),
            }
        };
        self.pending.lock().await.remove(&req_id);
        result
    }

    /// Route a notification from the policy atSign whose key is
    /// `<ack|nack|success|error>.<reqId>.auth_checks.__rpcs.sshnp`.
    pub(super) async fn on_response(&self, key_name: &str, value: &str) {
        let Some(head) = key_name.strip_suffix(RPC_SUFFIX) else {
            return;
        };
        let Some((kind, id)) = head.split_once('.') else {
            return;
        };
        let Ok(req_id) = id.parse::<i64>() else {
            log::warn!("policy response with a bad request id {id:?}");
            return;
        };
        let resp = match json::parse(value) {
            Ok(Value::Object(o)) => o,
            _ => {
                log::warn!("policy response {req_id} is not a JSON object");
                return;
            }
        };
        if resp.get_i64("reqId") != Some(req_id) {
            log::warn!("policy response key id {req_id} does not match its body");
            return;
        }
        let payload = resp.get_object("payload").cloned().unwrap_or_default();
        let mut merged = payload;
        if let Some(m) = resp.get_str("message") {
            if !merged.contains_key("message") {
                merged.push("message", m);
            }
        }
        let pending = self.pending.lock().await;
        let Some(question) = pending.get(&req_id) else {
            // Another daemon's (one sharing this atSign), or late: not ours to take.
            log::debug!("policy response {req_id} answers no question of this daemon");
            return;
        };
        if let Some(wrong) = self.answers_another_question(question, &merged) {
            log::warn!(
                "policy response {req_id} ignored: it answers for {wrong}, not the question asked (client {}, device {})",
                question.client, question.device
            );
            return;
        }
        let _ = question.answers.try_send((kind.to_string(), merged));
    }

    /// Our policy service repeats the question in its answer (`clientAtsign`, `daemonAtsign`,
    /// `daemonDeviceName`; official services send none of them, and official daemons ignore
    /// them): when present they must be the question's. Returns the field that differs.
    fn answers_another_question(&self, q: &PendingQuestion, answer: &Object) -> Option<String> {
        let same_atsign = |field: &str, want: &AtSign| match answer.get_str(field) {
            None => true,
            Some(got) => AtSign::parse(got).is_ok_and(|a| &a == want),
        };
        if !same_atsign("clientAtsign", &q.client) {
            return Some(format!(
                "client {:?}",
                answer.get_str("clientAtsign").unwrap_or("")
            ));
        }
        if !same_atsign("daemonAtsign", &self.daemon) {
            return Some(format!(
                "daemon {:?}",
                answer.get_str("daemonAtsign").unwrap_or("")
            ));
        }
        match answer.get_str("daemonDeviceName") {
            Some(d) if d != q.device => Some(format!("device {d:?}")),
            _ => None,
        }
    }
}

/// Feed answers from `policy` on `monitor` to the pending requests of `rpc` (for a caller that
/// runs no full dispatcher, such as `sshnpd doctor`). Ends when the monitor does.
pub(super) async fn route_policy_answers(
    rpc: Arc<PolicyRpc>,
    policy: AtSign,
    mut monitor: crate::at::Monitor,
) {
    while let Some(n) = monitor.next().await {
        if n.from == policy {
            let value = n.value.clone().unwrap_or_default();
            rpc.on_response(n.key_name(), &value).await;
        }
    }
}

/// `{"authorized":bool,"message":…,"permitOpen":["h:p",…]}` -> Decision.
fn decision_from(payload: &Object) -> Decision {
    if payload.get_bool("authorized") != Some(true) {
        let msg = payload
            .get_str("message")
            .unwrap_or("not authorized by the policy service");
        return Decision::deny(msg);
    }
    let list: Vec<String> = payload
        .get_array("permitOpen")
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    match PermitOpen::parse(&list.join(",")) {
        Ok(p) => Decision::allow(p, "authorized by the policy service"),
        Err(e) => Decision::deny(&format!(
            "policy service sent an unusable permitOpen list: {e}"
        )),
    }
}

impl PolicyRpc {
    /// P1: tell `policy` this daemon exists (`beat`: its ping response), at start and every
    /// 5 minutes.
    pub(super) async fn heartbeat_loop(&self, policy: &AtSign, beat: &str) {
        loop {
            log::info!("Sending heartbeat to policy service {policy}");
            let opts = NotifyOptions {
                ttln_ms: Some(300_000),
                ..Default::default()
            };
            let key = format!("{}.devices.policy.sshnp", self.device);
            if let Err(e) = self.client.notify(policy, &key, beat, opts).await {
                log::warn!("policy heartbeat failed: {e}");
            }
            sleep(HEARTBEAT_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_random_positive_and_exact_in_any_json_reader() {
        let ids: Vec<i64> = (0..1000).map(|_| new_request_id()).collect();
        for id in &ids {
            assert!((1i64 << 52..1i64 << 53).contains(id), "{id}");
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "an id came twice");
        // Not a clock: successive ids are not in order (a clock's would all be).
        let rising = ids.windows(2).filter(|w| w[1] > w[0]).count();
        assert!((300..700).contains(&rising), "{rising} of 999 rising");
    }
}
