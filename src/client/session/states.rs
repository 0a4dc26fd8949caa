//! The session set-up as states, as rustls' `client/hs.rs` writes a handshake: each state is
//! a type whose `handle` consumes it and returns the next, so no step runs twice or early.
//!
//! ```text
//! open ─► PingSent ─► Checked ─► RelayReady ─► Requested ─► Answered ─► Established
//!         feature     relay's    signed        daemon's      data-plane
//!         check       ports      request       answer        keys
//! ```
use std::time::{Duration, Instant};

use super::answers::{monitor_regex, Answer, Answers};
use super::params::{Established, Kind, Progress, SessionParams, SuitePref, SUITE_NAME};
use crate::at::{AtClient, AtError, AtSign, Monitor, MonitorStart, NotifyOptions};
use crate::client::ephemeral::EphemeralKey;
use crate::client::error::SessionError;
use crate::crypto::aead::EphemeralSecret;
use crate::crypto::rsa::RsaPrivateKey;
use crate::crypto::{b64, random};
use crate::json::Object;
use crate::noports::messages::{Feature, NptRequest, PingResponse, SessionResponse, SshRequest};
use crate::noports::relay_msg::{self, RelayRequest, RelayResponse};
use crate::noports::suite::{self, Aead, Role};
use crate::noports::{envelope, messages};
use crate::runtime::{self, timeout, utc_timestamp};
use crate::tunnel::{RelayTarget, SessionCrypto};

const SESSION_NOTIFY: NotifyOptions = NotifyOptions {
    ttl_ms: Some(10_000),
    ttln_ms: Some(60_000),
    ttr: None,
    ccd: None,
};
const RELAY_DEADLINE: Duration = Duration::from_secs(20);
const DAEMON_DEADLINE: Duration = Duration::from_secs(15);
/// How long fetching the relay's shared key may overlap the feature check: longer than one
/// atServer request may take (at/ gives each 20 s), so it ends only a fetch that at/'s own
/// timeouts left hanging, never a slow one.
const WARM_LIMIT: Duration = Duration::from_secs(30);

/// What every step reads: the caller's parameters, this session's id and nonce, its answers.
pub(super) struct Setup<'a> {
    client: &'a AtClient,
    p: &'a SessionParams,
    progress: Progress,
    sid: String,
    /// Ours for the relay auth line; both requests carry it.
    client_nonce: String,
    answers: Answers,
}

/// Subscribes, sends the ping, and (with the official suite) the relay request too.
pub(super) async fn open<'a>(
    client: &'a AtClient,
    p: &'a SessionParams,
    progress: Progress,
    first: Option<(String, Monitor)>,
) -> Result<(Setup<'a>, PingSent), SessionError> {
    let started = Instant::now();
    // A session id chosen earlier comes with the monitor already opened for it.
    let (sid, monitor) = match first {
        Some((sid, m)) => (sid, Some(m)),
        None => (random::uuid_v4(), None),
    };
    // The monitor's own connection and authentication overlap with fetching the shared key
    // that the ping will be encrypted with (a failure here shows again, with its explanation,
    // when the ping is sent).
    let warm = warm_key(client, &p.device);
    let monitor = match monitor {
        // Opened together with the worker connection (first session of a run).
        Some(m) => {
            warm.await;
            m
        }
        None => {
            let (m, ()) = futures_lite::future::zip(
                client.monitor(&monitor_regex(&p.device_name, &sid), MonitorStart::Live),
                warm,
            )
            .await;
            m?
        }
    };
    let answers = Answers::route(monitor, p, &sid);

    progress.say("Sending daemon feature check request");
    client
        .notify(
            &p.device,
            &format!("ping.{}.sshnp", p.device_name),
            "ping",
            SESSION_NOTIFY,
        )
        .await
        .map_err(|e| about(e, &p.device, "device atSign", "-t"))?;
    let s = Setup {
        client,
        p,
        progress,
        sid,
        client_nonce: utc_timestamp('T'),
        answers,
    };
    // With the official suite the relay request goes out now, in parallel with the ping. When
    // our suite may be used it waits for the ping, so the request can say `suite:"nps1"` and
    // the relay pairs exactly once (strangers cannot add pairs; official relays ignore it).
    let relay_deadline = if p.suite == SuitePref::Official {
        s.send_relay_request(None).await?;
        Some(started + RELAY_DEADLINE)
    } else {
        None
    };
    Ok((
        s,
        PingSent {
            ping_deadline: started + p.ping_timeout,
            relay_deadline,
        },
    ))
}

impl Setup<'_> {
    /// Notifications the session request needs beside it (`sshnp -s`: the public key), sent
    /// once the feature check said the daemon takes them, before anything else.
    pub(super) async fn send_before_request(
        &self,
        before_request: &[(&str, &str)],
    ) -> Result<(), SessionError> {
        for (key, value) in before_request {
            if *key == "sshpublickey" {
                self.progress.say("Sharing ssh public key");
            }
            let key = format!("{key}.{}.sshnp", self.p.device_name);
            self.client
                .notify(&self.p.device, &key, value, SESSION_NOTIFY)
                .await?;
        }
        Ok(())
    }
}

/// Fetches (or creates) the shared key for `peer` ahead of the notification that needs it; a
/// failure is only logged: that notification reports it.
async fn warm_key(client: &AtClient, peer: &AtSign) {
    if let Err(e) = client.prepare_shared_key(peer).await {
        log::debug!("shared key for {peer} not ready yet: {e}");
    }
}

/// The ping is out; the relay request too when `relay_deadline` is set.
pub(super) struct PingSent {
    ping_deadline: Instant,
    relay_deadline: Option<Instant>,
}

impl PingSent {
    /// Waits for the feature check reply and checks it.
    pub(super) async fn handle(self, s: &mut Setup<'_>) -> Result<Checked, SessionError> {
        let (client, p) = (s.client, s.p);
        s.progress.say("Waiting for daemon feature check response");
        // The relay's shared key while the daemon answers (the answer waits in the channel;
        // the deadline is the ping's either way). In this task, not one of its own, and
        // awaited even when the check fails: dropped mid-request it would desynchronise the
        // worker connection a -K retry reuses, and the relay request waits for that key
        // anyway. The official suite's request, already sent, fetched it.
        if self.relay_deadline.is_none() {
            let _ = timeout(WARM_LIMIT, warm_key(client, &p.relay)).await;
        }
        let Some(ping) = s.answers.until(Answer::Ping, self.ping_deadline).await? else {
            let late = ping_timeout(client, p);
            return Err(no_answer(client, &p.device, "device atSign", "-t", late).await);
        };
        s.progress.say("Received daemon feature check response");
        let ping = PingResponse::parse(&ping).map_err(|e| {
            SessionError::new(format!(
                "invalid feature check response from {}: {e}",
                p.device
            ))
        })?;
        check_features(p, &ping)?;
        s.progress.say("Required daemon features are supported");
        check_permitted(p, &ping)?;
        // Whether the (unsigned) feature check says the daemon speaks our suite. It decides
        // only the relay request's pairing hint and an early, clear refusal for `--suite
        // nps1`: the offer itself always travels in the signed request, and the daemon's
        // signed answer alone picks the suite, so an atServer that alters the ping cannot
        // downgrade the session.
        let ping_says_ours = ping.supports(SUITE_NAME);
        if p.suite == SuitePref::Ours && !ping_says_ours {
            return Err(SessionError::fatal(format!(
                "This device daemon does not support the {SUITE_NAME} data-plane suite (--suite nps1); use --suite auto or official"
            )));
        }
        Ok(Checked {
            ping_says_ours,
            relay_deadline: self.relay_deadline,
        })
    }
}

/// The features every session needs, an adjustable timeout when `-T` asks for another, and
/// accepting public keys for `sshnp -s`.
fn check_features(p: &SessionParams, ping: &PingResponse) -> Result<(), SessionError> {
    let mut required = vec![
        Feature::SrAuth,
        Feature::SrE2ee,
        Feature::SupportsPortChoice,
    ];
    if p.timeout_given && p.timeout != Duration::from_secs(30) {
        required.push(Feature::AdjustableTimeout);
    }
    // `-s` to a daemon that keeps no keys would end in ssh's "Permission denied".
    if let Kind::Ssh { public_keys: true } = p.kind {
        required.push(Feature::AcceptsPublicKeys);
    }
    match ping.first_missing(&required) {
        Some(missing) => Err(SessionError::fatal(missing.missing_message())),
        None => Ok(()),
    }
}

/// csshnpd drops a request it does not permit without a word (the Dart daemon and ours
/// answer with the reason): the ping already said what it permits, so with the C daemon an
/// npt request outside that fails here, at once.
fn check_permitted(p: &SessionParams, ping: &PingResponse) -> Result<(), SessionError> {
    let Kind::Npt {
        remote_host,
        remote_port,
    } = &p.kind
    else {
        return Ok(());
    };
    if ping.is_c_daemon()
        && !ping.allowed_services.is_empty()
        && crate::noports::permit::PermitOpen::parse_advertised(&ping.allowed_services.join(","))
            .is_ok_and(|permitted| !permitted.allows(remote_host, *remote_port))
    {
        return Err(SessionError::fatal(format!(
            "The device daemon {} ({}) does not permit {remote_host}:{remote_port}; it permits: {}",
            p.device,
            p.device_name,
            ping.allowed_services.join(", ")
        )));
    }
    Ok(())
}

/// The daemon has what the session needs.
pub(super) struct Checked {
    ping_says_ours: bool,
    relay_deadline: Option<Instant>,
}

impl Checked {
    /// Asks the relay for ports (unless that went out with the ping) and takes its answer.
    pub(super) async fn handle(self, s: &mut Setup<'_>) -> Result<RelayReady, SessionError> {
        let deadline = match self.relay_deadline {
            Some(d) => d,
            None => {
                let suite = self.ping_says_ours.then_some(SUITE_NAME);
                s.send_relay_request(suite).await?;
                Instant::now() + RELAY_DEADLINE
            }
        };
        let Some(answer) = s.answers.until(Answer::Relay, deadline).await? else {
            let late = relay_timeout(s.client, s.p);
            return Err(no_answer(s.client, &s.p.relay, "relay atSign", "-r", late).await);
        };
        if let Some(why) = answer.trim().strip_prefix("error:") {
            return Err(SessionError::fatal(format!(
                "The relay {} (-r) refused the session: {}",
                s.p.relay,
                why.trim()
            )));
        }
        let relay = RelayResponse::parse(&answer).map_err(|e| {
            SessionError::new(format!("invalid response from srvd {}: {e}", s.p.relay))
        })?;
        s.progress.say("Received host and port from srvd");
        Ok(RelayReady {
            relay,
            ping_says_ours: self.ping_says_ours,
        })
    }
}

impl Setup<'_> {
    /// Sends the relay session request N3; `suite` adds our extra member (noports.md §4.1
    /// allows extra members: the official relay ignores them).
    async fn send_relay_request(&self, suite: Option<&str>) -> Result<(), SessionError> {
        let p = self.p;
        self.progress.say("Fetching host and port from srvd");
        let mut extra = Object::new();
        if let Some(s) = suite {
            extra.push("suite", s);
        }
        let request = RelayRequest {
            session_id: self.sid.clone(),
            atsign_a: self.client.atsign().as_str().to_string(),
            atsign_b: p.device.as_str().to_string(),
            authenticate_socket_a: true,
            authenticate_socket_b: true,
            client_nonce: self.client_nonce.clone(),
            extra,
        };
        self.client
            .notify(
                &p.relay,
                &format!("{}.request_ports.sshrvd", p.device_name),
                &request.to_json(),
                SESSION_NOTIFY,
            )
            .await
            .map_err(|e| about(e, &p.relay, "relay atSign", "-r"))?;
        Ok(())
    }
}

/// The relay gave us ports.
pub(super) struct RelayReady {
    relay: RelayResponse,
    ping_says_ours: bool,
}

/// What the signed request asked for, which the daemon's answer must match.
struct Asked<'e> {
    relay: RelayResponse,
    rvd_nonce: String,
    /// Our suite's key share when the request offered it.
    secret: Option<EphemeralSecret>,
    aead: Aead,
    binding: String,
    ephemeral: &'e RsaPrivateKey,
    ping_says_ours: bool,
}

impl RelayReady {
    /// Signs and sends the session request, offering our suite unless `--suite official`.
    pub(super) async fn handle<'e>(
        self,
        s: &Setup<'_>,
        ephemeral: &'e EphemeralKey,
    ) -> Result<Requested<'e>, SessionError> {
        let (client, p) = (s.client, s.p);
        let offer_ours = p.suite != SuitePref::Official;
        let secret = offer_ours
            .then(EphemeralSecret::generate)
            .transpose()
            .map_err(|e| SessionError::new(format!("cannot make the session key: {e}")))?;
        let rvd_nonce = self
            .relay
            .rvd_nonce
            .clone()
            .unwrap_or_else(|| "null".to_string());
        // Offered only where AES-256-GCM is the faster AEAD; the daemon takes it only if it is
        // there too, so a session never runs at the slower end's software AES.
        let aead = Aead::fastest_here();
        let target = match &p.kind {
            Kind::Npt {
                remote_host,
                remote_port,
            } => format!("{remote_host}:{remote_port}"),
            Kind::Ssh { .. } => "sshd".to_string(),
        };
        let asked = Asked {
            binding: suite::binding(client.atsign().as_str(), p.device.as_str(), &target),
            ephemeral: ephemeral.get().await?,
            relay: self.relay,
            rvd_nonce,
            secret,
            aead,
            ping_says_ours: self.ping_says_ours,
        };
        let (payload, verb) = asked.request(s);
        let signed = envelope::sign(&payload, &client.keys().encrypt_private)
            .map_err(|e| SessionError::new(format!("cannot sign the session request: {e}")))?;
        s.progress
            .say("Sending session request to the device daemon");
        let key = format!("{verb}.{}.sshnp", p.device_name);
        client
            .notify(&p.device, &key, &signed, SESSION_NOTIFY)
            .await?;
        Ok(Requested(asked))
    }
}

impl Asked<'_> {
    /// The session request's payload and its verb.
    fn request(&self, s: &Setup<'_>) -> (Object, &'static str) {
        let p = s.p;
        let suite = self.secret.as_ref().map(|_| SUITE_NAME.to_string());
        let client_suite_pk = self.secret.as_ref().map(|k| b64::encode(&k.public_bytes()));
        let suite_aead = (self.secret.is_some() && self.aead == Aead::Aes256Gcm)
            .then(|| self.aead.name().to_string());
        // The binding the daemon's signed answer must name (docs/suite-v1.md §2).
        let suite_binding = self
            .secret
            .is_some()
            .then(|| suite::BINDING_VERSION.to_string());
        let pk = self.ephemeral.public_key().to_spki_b64();
        // Signed with the request: the daemon refuses it outside what its replay memory covers.
        let requested_at = Some(runtime::unix_millis());
        match &p.kind {
            Kind::Npt {
                remote_host,
                remote_port,
            } => {
                let req = NptRequest {
                    session_id: s.sid.clone(),
                    rvd_host: self.relay.host.clone(),
                    rvd_port: self.relay.port_b,
                    requested_port: *remote_port,
                    requested_host: remote_host.clone(),
                    authenticate_to_rvd: true,
                    client_nonce: s.client_nonce.clone(),
                    rvd_nonce: self.rvd_nonce.clone(),
                    encrypt_rvd_traffic: p.encrypt,
                    client_ephemeral_pk: pk,
                    client_ephemeral_pk_type: "rsa2048".into(),
                    timeout_ms: p.timeout.as_millis().min(i64::MAX as u128) as i64,
                    suite,
                    client_suite_pk,
                    suite_aead,
                    suite_binding,
                    requested_at,
                };
                (req.to_object(), "npt_request")
            }
            Kind::Ssh { .. } => {
                let req = SshRequest {
                    session_id: s.sid.clone(),
                    host: self.relay.host.clone(),
                    port: self.relay.port_b,
                    authenticate_to_rvd: true,
                    client_nonce: Some(s.client_nonce.clone()),
                    rvd_nonce: Some(self.rvd_nonce.clone()),
                    encrypt_rvd_traffic: p.encrypt,
                    client_ephemeral_pk: Some(pk),
                    client_ephemeral_pk_type: Some("rsa2048".into()),
                    suite,
                    client_suite_pk,
                    suite_aead,
                    suite_binding,
                    requested_at,
                };
                (req.to_object(), "ssh_request")
            }
        }
    }
}

/// The signed request is out.
pub(super) struct Requested<'e>(Asked<'e>);

impl<'e> Requested<'e> {
    /// Waits for the daemon's answer and verifies its signature and session id.
    pub(super) async fn handle(self, s: &mut Setup<'_>) -> Result<Answered<'e>, SessionError> {
        let (client, p) = (s.client, s.p);
        s.progress
            .say("Waiting for response from the device daemon");
        let deadline = Instant::now() + DAEMON_DEADLINE;
        let Some(answer) = s.answers.until(Answer::Session, deadline).await? else {
            return Err(SessionError::new(format!(
                "No response from the device daemon {} ({}) within {} s: it did not accept the session request. \
                 Check that it permits {} (-m/--managers, or its policy service) and, for npt, that the \
                 remote host:port is in its --permit-open list; its log says why",
                p.device,
                p.device_name,
                DAEMON_DEADLINE.as_secs(),
                client.atsign()
            )));
        };
        if messages::is_error_reply(&answer) {
            // A refusal (permit-open, policy) is the daemon's considered answer: asking again
            // every few seconds under -K would not change it.
            return Err(SessionError::fatal(format!(
                "Received error response from the device daemon: {answer}"
            )));
        }
        let env = envelope::parse(&answer)
            .map_err(|e| SessionError::new(format!("invalid daemon response: {e}")))?;
        let device_key = client.public_key(&p.device).await?;
        if env.verify(&device_key).is_err() {
            return Err(SessionError::new(format!(
                "Failed to verify signature of msg from {}",
                p.device
            )));
        }
        let resp = SessionResponse::from_object(&env.payload)
            .map_err(|e| SessionError::new(format!("invalid daemon response: {e}")))?;
        if resp.session_id != s.sid {
            return Err(SessionError::new("daemon response is for another session"));
        }
        s.progress.say("Received response from the device daemon");
        Ok(Answered {
            asked: self.0,
            resp,
        })
    }
}

/// The daemon's verified answer.
pub(super) struct Answered<'e> {
    asked: Asked<'e>,
    resp: SessionResponse,
}

impl Answered<'_> {
    /// The relay auth line and the data-plane keys the answer chose.
    pub(super) fn handle(self, s: &Setup<'_>) -> Result<Established, SessionError> {
        let (client, p) = (s.client, s.p);
        let auth_line = relay_msg::auth_line(
            &s.sid,
            &s.client_nonce,
            &self.asked.rvd_nonce,
            &client.keys().encrypt_private,
        )
        .map_err(|e| SessionError::new(format!("cannot sign the relay auth line: {e}")))?;
        let relay = RelayTarget {
            host: self.asked.relay.host.clone(),
            port: self.asked.relay.port_a,
            auth_line: Some(auth_line),
        };
        self.check_choice(p)?;
        self.keys(s, relay)
    }

    /// The `--suite` rules for an answer without ours: refused under `nps1`, a warning under
    /// `auto`; and a warning when the unsigned feature check contradicts the signed answer.
    fn check_choice(&self, p: &SessionParams) -> Result<(), SessionError> {
        let ping_says_ours = self.asked.ping_says_ours;
        let chose_ours =
            self.resp.suite.as_deref() == Some(SUITE_NAME) && self.asked.secret.is_some();
        if chose_ours && !ping_says_ours {
            log::warn!(
                "{}'s feature check said no {SUITE_NAME}, its signed answer chose it: the check was altered on the way",
                p.device
            );
        }
        if chose_ours {
            return Ok(());
        }
        match p.suite {
            SuitePref::Ours => {
                return Err(SessionError::fatal(format!(
                    "The device daemon {} ({}) answered without the {SUITE_NAME} data-plane suite (--suite nps1); use --suite auto or official",
                    p.device, p.device_name
                )))
            }
            SuitePref::Auto => {
                let how = if p.encrypt {
                    "AES-256-CTR: no integrity or forward secrecy"
                } else {
                    "without encryption"
                };
                let claimed = if ping_says_ours {
                    format!(" though its feature check said {SUITE_NAME}")
                } else {
                    String::new()
                };
                log::warn!(
                    "{} answered with the official suite ({how}){claimed}: update its sshnpd, or pass --suite official to accept it quietly",
                    p.device
                );
            }
            SuitePref::Official => {}
        }
        Ok(())
    }

    /// Our suite's keys when the answer chose it, else the official suite's (or none without
    /// `--encrypt`).
    fn keys(self, s: &Setup<'_>, relay: RelayTarget) -> Result<Established, SessionError> {
        let p = s.p;
        let Answered { mut asked, resp } = self;
        let done = |crypto, suite_name, official_b64| Established {
            session_id: s.sid.clone(),
            relay,
            crypto,
            suite_name,
            official_b64,
        };
        match (
            resp.suite.as_deref(),
            resp.daemon_suite_pk.as_deref(),
            asked.secret.take(),
        ) {
            (Some(SUITE_NAME), Some(peer), Some(secret)) => {
                let peer: [u8; 32] = b64::decode(peer)
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                    .ok_or_else(|| SessionError::new("daemonSuitePK is not a 32-byte key"))?;
                let aead = match resp.suite_aead.as_deref() {
                    None => Aead::ChaCha20Poly1305,
                    Some(name) if name == asked.aead.name() => asked.aead,
                    Some(_) => {
                        return Err(SessionError::fatal(
                            "The device daemon chose a suiteAead this client did not offer",
                        ))
                    }
                };
                // Keys bound to this client, device and target when the daemon says so in its
                // signed answer; a daemon of ours from before the binding sends none.
                let binding = match resp.suite_binding.as_deref() {
                    None => {
                        log::info!(
                            "{}: {SUITE_NAME} keys without binding (an older sshnpd)",
                            p.device
                        );
                        None
                    }
                    Some(b) if b == asked.binding => Some(b),
                    Some(b) => {
                        return Err(SessionError::fatal(format!(
                            "The device daemon's signed answer is bound to \"{b}\", not to this session (\"{}\")",
                            asked.binding
                        )))
                    }
                };
                let keys = suite::derive(Role::Client, secret, &peer, &s.sid, binding, aead)
                    .map_err(|e| SessionError::new(e.to_string()))?;
                Ok(done(SessionCrypto::Suite(keys), SUITE_NAME, None))
            }
            _ if !p.encrypt => Ok(done(SessionCrypto::Plain, "plain", None)),
            _ => {
                let (Some(k), Some(iv)) =
                    (resp.session_aes_key.as_deref(), resp.session_iv.as_deref())
                else {
                    return Err(SessionError::new("daemon response has no session key"));
                };
                let (k, iv) = (
                    unwrap_key(asked.ephemeral, k)?,
                    unwrap_key(asked.ephemeral, iv)?,
                );
                let crypto = SessionCrypto::official_b64(&k, &iv)
                    .map_err(|e| SessionError::new(format!("bad session key: {e}")))?;
                Ok(done(crypto, "official", Some((k, iv))))
            }
        }
    }
}

/// The official suite's key or IV, sent encrypted to our ephemeral key (noports.md §3).
fn unwrap_key(ephemeral: &RsaPrivateKey, wrapped: &str) -> Result<String, SessionError> {
    let ct = b64::decode(wrapped).map_err(|_| SessionError::new("session key is not base64"))?;
    let plain = ephemeral
        .decrypt(&ct)
        .map_err(|e| SessionError::new(format!("cannot decrypt the session key: {e}")))?;
    String::from_utf8(plain).map_err(|_| SessionError::new("session key is not text"))
}

/// The daemon did not answer the ping: say what to check.
fn ping_timeout(client: &AtClient, p: &SessionParams) -> SessionError {
    SessionError::new(format!(
        "TimeoutException: Daemon feature check timed out: no device named \"{}\" answered from {} \
         within {} s. Check the device name (-d), that sshnpd runs as {} with -d {} on the device, \
         and that {} is one of its managers (-m) or is allowed by its policy service",
        p.device_name,
        p.device,
        p.ping_timeout.as_secs(),
        p.device,
        p.device_name,
        client.atsign()
    ))
}

/// The relay did not answer: say why it may not.
fn relay_timeout(client: &AtClient, p: &SessionParams) -> SessionError {
    SessionError::new(format!(
        "Connection timeout to srvd {} service: the relay (-r) did not answer within {} s \
         (not running, or it does not serve {})",
        p.relay,
        RELAY_DEADLINE.as_secs(),
        client.atsign()
    ))
}

/// `late` for a peer that did not answer, unless the atDirectory says `who` does not exist:
/// then that, and asking again cannot help.
async fn no_answer(
    client: &AtClient,
    who: &AtSign,
    role: &str,
    flag: &str,
    late: SessionError,
) -> SessionError {
    if client.is_registered(who).await == Some(false) {
        return unknown(role, who, flag, "");
    }
    late
}

/// `who` has no atServer; `detail` (with its leading space) says who said so.
fn unknown(role: &str, who: &AtSign, flag: &str, detail: &str) -> SessionError {
    SessionError::fatal(format!(
        "The {role} {who} ({flag}) does not exist in the atDirectory{detail}"
    ))
}

/// A failed notification to `who`: when its atServer says the atSign has no atServer at all
/// (AT0007), name the atSign and its role, and do not retry.
fn about(e: AtError, who: &AtSign, role: &str, flag: &str) -> SessionError {
    match &e {
        AtError::Server { code, .. } if code == "AT0007" => {
            unknown(role, who, flag, &format!(" ({e})"))
        }
        _ => SessionError::from(e),
    }
}
