//! Notification dispatch: authorise first, then route by verb (noports.md §6.2), one task per
//! notification so sessions are independent.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::authorized_keys::{self, PublicKeyLine};
use super::config::Config;
use super::policy::{Decision, PolicyRpc};
use crate::at::{AtClient, AtSign, Monitor, Notification, NotifyOptions};
use crate::crypto::aead::EphemeralSecret;
use crate::crypto::{b64, random, rsa::RsaPublicKey};
use crate::json::Object;
use crate::noports::messages::{NptRequest, PingResponse, SessionResponse, SshRequest};
use crate::noports::names::valid_session_id;
use crate::noports::permit::PermitOpen;
use crate::noports::suite::{self, Aead, Role};
use crate::noports::{envelope, relay_msg};
use crate::runtime::{self, timeout, TaskSet};
use crate::tunnel::{self, RelayTarget, SessionCrypto};

/// Session traffic: key ttl 10 s, notification ttl 60 s (noports.md §1.2).
const SESSION_NOTIFY: NotifyOptions = NotifyOptions {
    ttl_ms: Some(10_000),
    ttln_ms: Some(60_000),
    ttr: None,
    ccd: None,
};
/// How long the daemon side may take to reach the relay before we report failure (§5.6: 3 s
/// for the official srv; we allow a little more for a slow uplink).
const RELAY_READY: Duration = Duration::from_secs(10);
/// How long handling one notification may take: longer than the waits it makes in turn
/// (look-ups, the policy service's 10 s, the relay's 10 s, up to 16 relays measured 5 s each).
/// The session it starts runs on under its own idle and close rules.
const HANDLER_DEADLINE: Duration = Duration::from_secs(120);
/// Our data-plane suite's name in requests and responses (docs/suite-v1.md).
pub const SUITE_NAME: &str = "nps1";

pub struct Daemon {
    pub(super) config: Config,
    pub(super) client: AtClient,
    /// Questions to the policy service and its answers (policy.rs).
    policy: PolicyRpc,
    /// Session ids already served, so a replayed request is refused (replay.rs).
    replay: super::replay::ReplayMemory,
    /// Last refusal log line and how many were suppressed since.
    refusal_log: std::sync::Mutex<(Option<Instant>, u64)>,
    /// Clients already told (once, at WARN) that their session runs the official suite.
    official_warned: std::sync::Mutex<Vec<AtSign>>,
    /// Held while relays are measured for a client (one measurement at a time).
    latency_turn: async_lock::Mutex<()>,
    /// The running sessions' tunnels: they end with the daemon.
    sessions: TaskSet,
}

/// How many client atSigns [`Daemon::first_official`] remembers.
const OFFICIAL_WARNED_MAX: usize = 1024;

/// `$HOME/.sshnp/<device>/seen_requests`, the daemon's replay memory.
fn seen_path(device: &str) -> Option<std::path::PathBuf> {
    let home = crate::runtime::fs::home_dir().ok()?;
    Some(home.join(".sshnp").join(device).join("seen_requests"))
}

impl Daemon {
    pub fn new(config: Config, client: AtClient) -> Daemon {
        let replay = super::replay::ReplayMemory::open(seen_path(&config.device));
        let c = &config;
        let policy = PolicyRpc::new(client.clone(), &c.atsign, &c.device, &c.device_group);
        Daemon {
            config,
            client,
            policy,
            replay,
            refusal_log: std::sync::Mutex::new((None, 0)),
            official_warned: std::sync::Mutex::new(Vec::new()),
            latency_turn: async_lock::Mutex::new(()),
            sessions: TaskSet::new(),
        }
    }

    pub fn ping_response(&self) -> PingResponse {
        let mut features = PingResponse::standard_features(self.config.accept_public_keys);
        // Official npt sends `heartbeat:<n>` on the control channel when this is listed; the
        // tunnel reads and ignores it (features.dart, sshnpd_impl.dart: docs/protocol-notes.md).
        features.push(("controlChannelHeartbeats".to_string(), true));
        // Our negotiated data-plane suite; official clients ignore unknown features.
        features.push((SUITE_NAME.to_string(), true));
        PingResponse {
            device_name: self.config.device.clone(),
            device_group_name: Some(self.config.device_group.clone()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            core_package_version: format!("rs{}", env!("CARGO_PKG_VERSION")),
            supported_features: features,
            allowed_services: self.config.permit_open.entries(),
        }
    }

    /// Heartbeats to the policy service, when there is one (policy.rs); never ends.
    pub(super) async fn policy_heartbeats(&self) {
        if let Some(p) = &self.config.policy {
            let beat = self.ping_response().to_json();
            self.policy.heartbeat_loop(p, &beat).await;
        }
    }

    pub async fn serve(self: &Arc<Self>, mut monitor: Monitor) {
        // Here, not in the Daemon: a handler holds the Daemon, and ends when serving does.
        let handlers = TaskSet::new();
        while let Some(n) = monitor.next().await {
            let me = self.clone();
            handlers.spawn_within(HANDLER_DEADLINE, async move { me.handle(n).await });
        }
    }

    async fn authorize(&self, from: &AtSign) -> Decision {
        if self.config.managers.contains(from) {
            return Decision::allow(PermitOpen::any(), "in --managers");
        }
        match &self.config.policy {
            Some(p) if p == from => Decision::allow(PermitOpen::any(), "is the policy manager"),
            Some(p) => self.policy.ask(p, from).await,
            None => Decision::deny(&format!("{from} is not in --managers list")),
        }
    }

    /// Opens a sealed value (only ever for a sender already trusted); `None` after logging.
    async fn open(&self, n: &mut Notification, what: &str) -> Option<String> {
        match self.client.unseal(n).await {
            Ok(()) => Some(n.value.clone().unwrap_or_default()),
            Err(e) => {
                log::warn!("{what} from {}: cannot decrypt: {e}", n.from);
                None
            }
        }
    }

    /// Logs an ignored notification ("Notification ignored from X" then `why`) at most once a
    /// second, counting the rest (a flood must not become a log flood).
    fn log_refusal(&self, from: &AtSign, why: &str) {
        let mut last = self.refusal_log.lock().unwrap_or_else(|p| p.into_inner());
        let (at, suppressed) = &mut *last;
        if at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let more = if *suppressed > 0 {
                format!(" ({suppressed} more refused since the last report)")
            } else {
                String::new()
            };
            log::warn!("Notification ignored from {from}{why}{more}");
            *at = Some(Instant::now());
            *suppressed = 0;
        } else {
            *suppressed += 1;
        }
    }

    /// True the first time `from` gets an official-suite session (remembered for up to
    /// [`OFFICIAL_WARNED_MAX`] clients, so the WARN stays one line per client).
    fn first_official(&self, from: &AtSign) -> bool {
        let mut seen = self
            .official_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A list, not a set: a few hundred entries at most, and no hash table's code to carry.
        if seen.contains(from) || seen.len() >= OFFICIAL_WARNED_MAX {
            return false;
        }
        seen.push(from.clone());
        true
    }

    /// The session's binding string (docs/suite-v1.md §2) when the client offered our version.
    fn binding(&self, from: &AtSign, offered: Option<&str>, target: &str) -> Option<String> {
        (offered == Some(suite::BINDING_VERSION))
            .then(|| suite::binding(from.as_str(), self.config.atsign.as_str(), target))
    }

    /// Logs a clear (unencrypted) notification from `from`, through the same once-a-second
    /// limit as refusals.
    fn log_clear(&self, from: &AtSign, what: &str) {
        self.log_refusal(
            from,
            &format!(": {what} not encrypted (an atServer may have written it)"),
        );
    }

    async fn handle(self: Arc<Self>, mut n: Notification) {
        let key = n.key_name().to_string();
        // Policy answers come from the policy atSign on their own key family.
        if self.config.policy.as_ref() == Some(&n.from)
            && key.ends_with(".auth_checks.__rpcs.sshnp")
        {
            if !n.encrypted {
                self.log_clear(&n.from, "policy answer");
                return;
            }
            if let Some(value) = self.open(&mut n, "policy answer").await {
                self.policy.on_response(&key, &value).await;
            }
            return;
        }
        let suffix = format!(".{}.sshnp", self.config.device);
        let Some(verb) = key.strip_suffix(&suffix) else {
            return;
        };
        let verb = verb.to_lowercase();
        if !matches!(
            verb.as_str(),
            "ping" | "npt_request" | "ssh_request" | "sshpublickey" | "relay_latency_request"
        ) {
            return;
        }
        // Authorisation before anything else looks at the request: no look-up, no decryption
        // for senders that are neither managers nor allowed by the policy atSign.
        let decision = self.authorize(&n.from).await;
        if !decision.allowed {
            self.log_refusal(
                &n.from,
                &format!(" which is not authorized: {}", decision.reason),
            );
            return;
        }
        // Only an encrypted value is the sender's word: an atServer can write a clear one under
        // any name (a forged `sshpublickey` would install its key). Every official client
        // encrypts every notification.
        if !n.encrypted {
            self.log_clear(&n.from, &verb);
            return;
        }
        let Some(value) = self.open(&mut n, &verb).await else {
            return;
        };
        log::info!("{verb} received from {}", n.from);
        match verb.as_str() {
            "ping" => self.on_ping(&n.from).await,
            "npt_request" => self.on_npt_request(&n.from, &value, &decision).await,
            "ssh_request" => self.on_ssh_request(&n.from, &value, &decision).await,
            "sshpublickey" => self.on_public_key(&n.from, &value),
            "relay_latency_request" => self.on_relay_latency(&n.from, &value).await,
            _ => {}
        }
    }

    /// Measures the relays a client is choosing between and answers on
    /// `relay_latency_response.<device>` (latency.rs). One measurement at a time: a request
    /// that comes while one runs is dropped (the client then picks on its own figures).
    async fn on_relay_latency(&self, from: &AtSign, value: &str) {
        let probes = match super::latency::parse(value) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("relay_latency_request from {from}: {e}; not answered");
                return;
            }
        };
        let Some(_turn) = self.latency_turn.try_lock() else {
            log::info!("relay_latency_request from {from}: busy; not answered");
            return;
        };
        let answer = super::latency::measure(&probes).await;
        let key = format!("relay_latency_response.{}.sshnp", self.config.device);
        match self
            .client
            .notify(from, &key, &answer, SESSION_NOTIFY)
            .await
        {
            Ok(_) => log::info!("relay_latency_request from {from}: answered"),
            Err(e) => log::warn!("relay_latency_request from {from}: cannot reply: {e}"),
        }
    }

    async fn on_ping(&self, from: &AtSign) {
        let key = format!("heartbeat.{}.sshnp", self.config.device);
        let reply = self.ping_response().to_json();
        match self.client.notify(from, &key, &reply, SESSION_NOTIFY).await {
            Ok(_) => log::info!("ping from {from}: answered"),
            Err(e) => log::warn!("ping from {from}: cannot reply: {e}"),
        }
    }

    fn on_public_key(&self, from: &AtSign, value: &str) {
        if !self.config.accept_public_keys {
            log::warn!("Ignoring sshpublickey from {from} (daemon not started with -s)");
            return;
        }
        let key = match PublicKeyLine::parse(value.trim()) {
            Ok(k) => k,
            Err(e) => {
                log::warn!("sshpublickey from {from} refused: {e}");
                return;
            }
        };
        let path = match authorized_keys_target(&self.config).1 {
            Ok(p) => p,
            Err(e) => {
                log::warn!("sshpublickey from {from}: {e}");
                return;
            }
        };
        match authorized_keys::add_key(&path, &key, &self.config.public_key_options) {
            Ok(true) => log::info!("sshpublickey from {from}: added to {}", path.display()),
            Ok(false) => log::info!("sshpublickey from {from}: already present"),
            Err(e) => log::warn!("Error writing to .ssh/authorized_keys file : {e}"),
        }
    }

    /// Fetch the sender's key and verify the envelope; refetch once on failure (key rotation).
    async fn verify_envelope(&self, from: &AtSign, value: &str) -> Result<Object, String> {
        let env =
            envelope::parse(value).map_err(|e| format!("Failed to extract parameters: {e}"))?;
        for attempt in 0..2 {
            let pk: RsaPublicKey = self.client.public_key(from).await.map_err(|e| {
                format!("Signature not verified: cannot fetch public key of {from}: {e}")
            })?;
            match env.verify(&pk) {
                Ok(()) => return Ok(env.into_payload()),
                Err(e) if attempt == 1 => return Err(format!("Signature not verified: {e}")),
                Err(_) => self.client.forget_public_key(from),
            }
        }
        Err("Signature not verified".into())
    }

    async fn reply(&self, to: &AtSign, session_id: &str, text: &str) {
        let key = format!("{session_id}.{}.sshnp", self.config.device);
        if let Err(e) = self.client.notify(to, &key, text, SESSION_NOTIFY).await {
            log::warn!("session {session_id}: cannot reply to {to}: {e}");
        }
    }

    async fn on_npt_request(&self, from: &AtSign, value: &str, decision: &Decision) {
        let env = match envelope::parse(value) {
            Ok(e) => e,
            Err(e) => {
                log::warn!("npt_request from {from}: Failed to extract parameters: {e}");
                return;
            }
        };
        let req = match NptRequest::from_object(&env.payload) {
            Ok(r) if valid_session_id(&r.session_id) => r,
            Ok(r) => {
                log::warn!(
                    "npt_request from {from}: invalid session id {:?}",
                    r.session_id
                );
                return;
            }
            Err(e) => {
                log::warn!("npt_request from {from}: Failed to extract parameters: {e}");
                return;
            }
        };
        let sid = req.session_id.clone();
        if let Err(msg) = self.verify_envelope(from, value).await {
            log::warn!("npt_request from {from} session {sid}: {msg}");
            self.reply(from, &sid, &msg).await;
            return;
        }
        if let Err(why) = self.replay.admit(&sid, req.requested_at).await {
            log::warn!("npt_request from {from} session {sid}: refused: {why}");
            return;
        }
        let (host, port) = (req.requested_host.as_str(), req.requested_port);
        if !self
            .permitted("npt_request", from, &sid, host, port, decision)
            .await
        {
            return;
        }
        let started = self.start_npt(from, &req).await;
        let relay = format!("{}:{}", req.rvd_host, req.rvd_port);
        self.answer(
            "npt",
            from,
            &sid,
            &format!("{host}:{port}"),
            &relay,
            started,
        )
        .await;
    }

    /// Build the session's key material, connect the control socket, and return the
    /// response payload (unsigned). The tunnel runs on as a task of the daemon's sessions.
    async fn start_npt(&self, from: &AtSign, req: &NptRequest) -> Result<Object, String> {
        let target = format!("{}:{}", req.requested_host, req.requested_port);
        let offer = SuiteOffer {
            binding: self.binding(from, req.suite_binding.as_deref(), &target),
            session_id: &req.session_id,
            suite: req.suite.as_deref(),
            client_suite_pk: req.client_suite_pk.as_deref(),
            aead: req.suite_aead.as_deref(),
            encrypt: req.encrypt_rvd_traffic,
            pk_type: &req.client_ephemeral_pk_type,
            pk: &req.client_ephemeral_pk,
        };
        let nonces = req
            .authenticate_to_rvd
            .then_some((req.client_nonce.as_str(), req.rvd_nonce.as_str()));
        let (auth_line, response, crypto) = self.prepare_session(&offer, nonces)?;
        let relay = RelayTarget {
            host: req.rvd_host.clone(),
            port: req.rvd_port,
            auth_line,
        };
        let control = timeout(RELAY_READY, tunnel::daemon_connect(relay, crypto))
            .await
            .map_err(|_| {
                format!(
                    "timed out connecting to the relay {}:{}",
                    req.rvd_host, req.rvd_port
                )
            })?
            .map_err(|e| e.to_string())?;
        let local = (req.requested_host.clone(), req.requested_port);
        let idle = Duration::from_millis(req.timeout_ms.clamp(1_000, 366 * 86_400_000) as u64);
        let sid = req.session_id.clone();
        self.sessions.spawn(async move {
            match control.run(local, idle).await {
                Ok(s) => log::info!(
                    "npt session {sid} ended: {} connections, {} bytes out, {} bytes in",
                    s.connections,
                    s.bytes_out,
                    s.bytes_in
                ),
                Err(e) => log_session_end_error("npt", &sid, &e),
            }
            runtime::mem::release_soon();
        });
        Ok(response.to_object())
    }

    /// The relay auth line (signed when the client asked for relay authentication), the
    /// data-plane keys, and the response payload that carries the client's share of them.
    fn prepare_session(
        &self,
        offer: &SuiteOffer<'_>,
        nonces: Option<(&str, &str)>,
    ) -> Result<(Option<String>, SessionResponse, SessionCrypto), String> {
        let auth_line = match nonces {
            Some((client_nonce, rvd_nonce)) => Some(
                relay_msg::auth_line(
                    offer.session_id,
                    client_nonce,
                    rvd_nonce,
                    &self.client.keys().encrypt_private,
                )
                .map_err(|e| format!("cannot sign the relay auth line: {e}"))?,
            ),
            None => None,
        };
        let mut response = SessionResponse {
            session_id: offer.session_id.to_string(),
            session_aes_key: None,
            session_iv: None,
            ephemeral_private_key: None,
            suite: None,
            daemon_suite_pk: None,
            suite_aead: None,
            suite_binding: None,
        };
        let crypto = self.session_crypto(offer, &mut response)?;
        Ok((auth_line, response, crypto))
    }

    /// Choose the data-plane suite: ours when the client offered it, else the official
    /// AES-CTR stream (keys wrapped for the client's ephemeral RSA key), else plain.
    fn session_crypto(
        &self,
        req: &SuiteOffer<'_>,
        response: &mut SessionResponse,
    ) -> Result<SessionCrypto, String> {
        if req.suite == Some(SUITE_NAME) {
            if let Some(peer) = req.client_suite_pk {
                let peer: [u8; 32] = b64::decode(peer)
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                    .ok_or("clientSuitePK is not a 32-byte base64 key")?;
                // AES-256-GCM when the client offers it and it is the faster AEAD here too;
                // an offer of anything else is ignored, as an older daemon would.
                let aes = Aead::Aes256Gcm;
                let aead = if req.aead == Some(aes.name()) && Aead::fastest_here() == aes {
                    response.suite_aead = Some(aes.name().to_string());
                    aes
                } else {
                    Aead::ChaCha20Poly1305
                };
                let secret = EphemeralSecret::generate().map_err(|e| e.to_string())?;
                response.suite = Some(SUITE_NAME.to_string());
                response.daemon_suite_pk = Some(b64::encode(&secret.public_bytes()));
                let binding = req.binding.as_deref();
                let keys =
                    suite::derive(Role::Daemon, secret, &peer, req.session_id, binding, aead)
                        .map_err(|e| e.to_string())?;
                response.suite_binding = req.binding.clone();
                return Ok(SessionCrypto::Suite(keys));
            }
            // The client asked for our suite but gave no key: it cannot be honoured, and the
            // session falls back to what an official client gets. Rare and worth a look.
            log::warn!(
                "session {}: {SUITE_NAME} offered without clientSuitePK: official suite",
                req.session_id
            );
        }
        if !req.encrypt {
            return Ok(SessionCrypto::Plain);
        }
        if req.pk_type != "rsa2048" {
            return Err(format!("Unknown ephemeralPKType: {}", req.pk_type));
        }
        let client_pk =
            RsaPublicKey::from_spki_b64(req.pk).map_err(|e| format!("clientEphemeralPK: {e}"))?;
        let key = random::bytes::<32>();
        let iv = random::bytes::<16>();
        let wrap = |b: &[u8]| -> Result<String, String> {
            client_pk
                .encrypt(b64::encode(b).as_bytes())
                .map(|ct| b64::encode(&ct))
                .map_err(|e| e.to_string())
        };
        response.session_aes_key = Some(wrap(&key)?);
        response.session_iv = Some(wrap(&iv)?);
        Ok(SessionCrypto::Official { key, iv })
    }

    async fn on_ssh_request(&self, from: &AtSign, value: &str, decision: &Decision) {
        let req = match envelope::parse(value)
            .map_err(|e| e.to_string())
            .and_then(|e| SshRequest::from_object(&e.payload).map_err(|e| e.to_string()))
        {
            Ok(r) if valid_session_id(&r.session_id) => r,
            Ok(r) => {
                log::warn!(
                    "ssh_request from {from}: invalid session id {:?}",
                    r.session_id
                );
                return;
            }
            Err(e) => {
                log::warn!("ssh_request from {from}: Failed to extract parameters: {e}");
                return;
            }
        };
        let sid = req.session_id.clone();
        if let Err(msg) = self.verify_envelope(from, value).await {
            // As the official daemon: a bad signature on ssh_request is logged, not answered.
            log::warn!("ssh_request from {from} session {sid}: {msg}");
            return;
        }
        if let Err(why) = self.replay.admit(&sid, req.requested_at).await {
            log::warn!("ssh_request from {from} session {sid}: refused: {why}");
            return;
        }
        let port = self.config.local_sshd_port;
        if !self
            .permitted("ssh_request", from, &sid, "localhost", port, decision)
            .await
        {
            return;
        }
        let started = self.start_ssh(from, &req).await;
        let relay = format!("{}:{}", req.host, req.port);
        self.answer(
            "ssh",
            from,
            &sid,
            &format!("localhost:{port}"),
            &relay,
            started,
        )
        .await;
    }

    /// Both permit-open checks (noports.md §6.4); a refusal is logged and answered with the
    /// official text.
    async fn permitted(
        &self,
        what: &str,
        from: &AtSign,
        sid: &str,
        host: &str,
        port: u16,
        decision: &Decision,
    ) -> bool {
        let refusal = if !self.config.permit_open.allows(host, port) {
            format!("Daemon does not permit connections to {host}:{port}")
        } else if !decision.client_permit.allows(host, port) {
            format!("Client is not permitted connections to {host}:{port}")
        } else {
            return true;
        };
        log::warn!("{what} from {from} session {sid}: refused: {refusal}");
        self.reply(from, sid, &refusal).await;
        false
    }

    /// Send the signed session response, or the official failure text.
    async fn answer(
        &self,
        what: &str,
        from: &AtSign,
        sid: &str,
        target: &str,
        relay: &str,
        started: Result<Object, String>,
    ) {
        let failure = match started {
            Ok(payload) => match envelope::sign(&payload, &self.client.keys().encrypt_private) {
                Ok(signed) => {
                    let suite = if payload.contains_key("daemonSuitePK") {
                        "nps1"
                    } else {
                        "official"
                    };
                    let aead = if payload.contains_key("suiteAead") {
                        ", AES-256-GCM"
                    } else {
                        ""
                    };
                    if suite == "official" && self.first_official(from) {
                        log::warn!(
                            "{what} session {sid} for {from}: no {SUITE_NAME} offered (an official client, or --suite official): official suite, without integrity or forward secrecy (said once per client)"
                        );
                    }
                    log::info!("{what} session {sid} for {from} to {target} via {relay}: started (suite {suite}{aead})");
                    super::status::session(from.as_str(), target, suite);
                    self.reply(from, sid, &signed).await;
                    return;
                }
                Err(e) => format!("cannot sign the response: {e}"),
            },
            Err(e) => e,
        };
        let msg =
            format!("Failed to start up the daemon side of the srv socket tunnel : {failure}");
        log::warn!("{what} session {sid} for {from}: {msg}");
        self.reply(from, sid, &msg).await;
    }

    /// Encrypted ssh sessions need no ephemeral ssh key (as the C daemon): the tunnel is
    /// bridged in single mode to the local sshd, and the user's own key logs in.
    async fn start_ssh(&self, from: &AtSign, req: &SshRequest) -> Result<Object, String> {
        if !req.encrypt_rvd_traffic {
            return Err("Encrypt rvd traffic flag is false, this feature must be enabled".into());
        }
        let (client_nonce, rvd_nonce) = match (&req.client_nonce, &req.rvd_nonce) {
            (Some(c), Some(r)) => (c.clone(), r.clone()),
            _ if req.authenticate_to_rvd => {
                return Err("clientNonce and rvdNonce are required for relay authentication".into())
            }
            _ => (String::new(), String::new()),
        };
        let offer = SuiteOffer {
            binding: self.binding(from, req.suite_binding.as_deref(), "sshd"),
            session_id: &req.session_id,
            suite: req.suite.as_deref(),
            client_suite_pk: req.client_suite_pk.as_deref(),
            aead: req.suite_aead.as_deref(),
            encrypt: true,
            pk_type: req.client_ephemeral_pk_type.as_deref().unwrap_or(""),
            pk: req.client_ephemeral_pk.as_deref().unwrap_or(""),
        };
        let nonces = req
            .authenticate_to_rvd
            .then_some((client_nonce.as_str(), rvd_nonce.as_str()));
        let (auth_line, response, crypto) = self.prepare_session(&offer, nonces)?;
        let relay = RelayTarget {
            host: req.host.clone(),
            port: req.port,
            auth_line,
        };
        let local = ("localhost".to_string(), self.config.local_sshd_port);
        let sid = req.session_id.clone();
        self.sessions.spawn(async move {
            match tunnel::daemon_single(relay, local, crypto, Duration::from_secs(30)).await {
                Ok(s) => log::info!(
                    "ssh session {sid} ended: {} bytes out, {} bytes in",
                    s.bytes_out,
                    s.bytes_in
                ),
                Err(e) => log_session_end_error("ssh", &sid, &e),
            }
            runtime::mem::release_soon();
        });
        Ok(response.to_object())
    }
}

/// What a request offers for the data plane.
struct SuiteOffer<'a> {
    /// The binding string, when the client offered the binding version we speak.
    binding: Option<String>,
    session_id: &'a str,
    suite: Option<&'a str>,
    client_suite_pk: Option<&'a str>,
    aead: Option<&'a str>,
    encrypt: bool,
    pk_type: &'a str,
    pk: &'a str,
}

/// The ssh server on `--local-sshd-port` and the authorized_keys file it reads, found anew
/// each time (the server may have been restarted or replaced since start-up).
pub(super) fn authorized_keys_target(
    config: &Config,
) -> (super::sshd::Sshd, Result<PathBuf, String>) {
    let server = super::sshd::identify(config.local_sshd_port);
    let path = match config.authorized_keys.as_deref() {
        Some(p) => Ok(p.to_path_buf()),
        None => crate::runtime::fs::home_dir()
            .map(|h| super::sshd::authorized_keys_path(&server, &h))
            .map_err(|e| e.to_string()),
    };
    (server, path)
}

/// A session's end with an error: the client going away without a goodbye (Ctrl-C, a dropped
/// link) is routine; anything else (tampering, protocol violations) needs attention.
fn log_session_end_error(what: &str, sid: &str, e: &crate::tunnel::TunnelError) {
    match e {
        crate::tunnel::TunnelError::Truncated => log::info!(
            "{what} session {sid} ended: the client went away without closing the tunnel"
        ),
        e => log::warn!("{what} session {sid} ended with error: {e}"),
    }
}
