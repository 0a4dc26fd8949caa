//! One client session: ping the daemon, ask the relay for ports, send the signed session
//! request, and verify the daemon's signed answer (noports.md §1.3, §7.1).
use std::time::{Duration, Instant};

use super::ephemeral::EphemeralKey;
use super::error::SessionError;
use crate::at::{AtClient, AtError, AtSign, Monitor, MonitorStart, Notification, NotifyOptions};
use crate::crypto::aead::EphemeralSecret;
use crate::crypto::{b64, random};
use crate::noports::messages::{Feature, NptRequest, PingResponse, SessionResponse, SshRequest};
use crate::noports::relay_msg::{self, RelayRequest, RelayResponse};
use crate::noports::suite::{self, Aead, Role};
use crate::tunnel::{RelayTarget, SessionCrypto};
use crate::noports::{envelope, messages};
use crate::runtime::{self, timeout, utc_timestamp};

const SESSION_NOTIFY: NotifyOptions = NotifyOptions {
    ttl_ms: Some(10_000),
    ttln_ms: Some(60_000),
    ttr: None,
    ccd: None,
};
const RELAY_DEADLINE: Duration = Duration::from_secs(20);
const DAEMON_DEADLINE: Duration = Duration::from_secs(15);
/// What a client session's monitor subscribes to: the device's heartbeat and the daemon's and
/// relay's answers for this session only. (It was every `sshnp@`/`sshrvd@` notification, so
/// each of N sessions of one client atSign started at once received all N sessions' answers:
/// N² notifications for the atServer to send and the clients to decrypt and discard.)
pub fn monitor_regex(device_name: &str, sid: &str) -> String {
    let escape = |s: &str| s.replace('.', "\\.");
    let (d, sid) = (escape(device_name), escape(sid));
    format!("heartbeat\\.{d}\\.sshnp@|{sid}\\.({d}\\.sshnp|sshrvd)@")
}

/// Our negotiated data-plane suite (docs/suite-v1.md).
pub const SUITE_NAME: &str = "nps1";

/// Which data plane to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuitePref {
    /// Ours when the daemon advertises it, else the official suite.
    Auto,
    Official,
    Ours,
}

/// A progress reporter: `<timestamp> : <message>` on stderr unless quiet.
#[derive(Clone, Copy)]
pub struct Progress {
    pub quiet: bool,
}

impl Progress {
    pub fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{} : {msg}", utc_timestamp(' '));
        }
    }
}

/// What the session is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `npt_request`: any host:port as seen from the device, multi mode.
    Npt {
        remote_host: String,
        remote_port: u16,
    },
    /// `ssh_request`: the device's sshd, single mode.
    Ssh { public_keys: bool },
}

pub struct SessionParams {
    pub device: AtSign,
    pub relay: AtSign,
    pub device_name: String,
    pub kind: Kind,
    pub timeout: Duration,
    /// `-T` was given: only then must the daemon honour a timeout other than its default
    /// (csshnpd has no adjustable timeout and ignores the field).
    pub timeout_given: bool,
    pub encrypt: bool,
    pub suite: SuitePref,
    pub ping_timeout: Duration,
}

/// What a successful set-up hands to the data plane.
pub struct Established {
    pub session_id: String,
    pub relay: RelayTarget,
    pub crypto: SessionCrypto,
    pub suite_name: &'static str,
    /// Base64 key and IV of the official suite, for handing to a detached `srv`.
    pub official_b64: Option<(String, String)>,
}

enum Event {
    Relay(String),
    Ping(String),
    Session(String),
}

/// Route the monitor's notifications for this session into one channel.
fn route(
    mut monitor: Monitor,
    p: &SessionParams,
    sid: &str,
) -> (async_channel::Receiver<Event>, runtime::Task<()>) {
    let (tx, rx) = async_channel::bounded(16);
    let (device, relay) = (p.device.clone(), p.relay.clone());
    let relay_key = format!("{sid}.sshrvd");
    let ping_key = format!("heartbeat.{}.sshnp", p.device_name);
    let session_key = format!("{sid}.{}.sshnp", p.device_name);
    let task = runtime::spawn(async move {
        while let Some(n) = monitor.next().await {
            let Notification {
                ref from,
                ref value,
                ..
            } = n;
            let key = n.key_name().to_lowercase();
            let value = value.clone().unwrap_or_default();
            let ev = if *from == relay && key == relay_key {
                Event::Relay(value)
            } else if *from == device && key == ping_key {
                Event::Ping(value)
            } else if *from == device && key == session_key {
                Event::Session(value)
            } else {
                continue;
            };
            // Official daemons and relays encrypt all three; a clear value under their name
            // can have been written by any atServer on the way (a forged feature check reply
            // or relay answer).
            if !n.encrypted {
                log::warn!(
                    "ignored {} from {from}: not encrypted (an atServer may have written it)",
                    n.key_name()
                );
                continue;
            }
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    (rx, task)
}

/// Sends the relay session request N3; `suite` adds our extra member (noports.md §4.1 allows
/// extra members: the official relay ignores them).
async fn send_relay_request(
    client: &AtClient,
    p: &SessionParams,
    sid: &str,
    client_nonce: &str,
    suite: Option<&str>,
    progress: Progress,
) -> Result<(), SessionError> {
    progress.say("Fetching host and port from srvd");
    let mut extra = crate::json::Object::new();
    if let Some(s) = suite {
        extra.push("suite", s);
    }
    let request = RelayRequest {
        session_id: sid.to_string(),
        atsign_a: client.atsign().as_str().to_string(),
        atsign_b: p.device.as_str().to_string(),
        authenticate_socket_a: true,
        authenticate_socket_b: true,
        client_nonce: client_nonce.to_string(),
        extra,
    };
    client
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

/// Set up one session. Consumes nothing persistent: call again for `-K` re-connects.
pub async fn establish(
    client: &AtClient,
    p: &SessionParams,
    ephemeral: &EphemeralKey,
    progress: Progress,
    before_request: &[(&str, &str)],
    first: Option<(String, Monitor)>,
) -> Result<Established, SessionError> {
    let started = Instant::now();
    // A session id chosen earlier comes with the monitor already opened for it.
    let (sid, monitor) = match first {
        Some((sid, m)) => (sid, Some(m)),
        None => (random::uuid_v4(), None),
    };
    // The monitor's own connection and authentication overlap with fetching the shared key
    // that the ping will be encrypted with (a failure here shows again, with its explanation,
    // when the ping is sent).
    let warm = async {
        if let Err(e) = client.prepare_shared_key(&p.device).await {
            log::debug!("shared key for {} not ready yet: {e}", p.device);
        }
    };
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
    let (events, _router) = route(monitor, p, &sid);
    for (key, value) in before_request {
        client
            .notify(
                &p.device,
                &format!("{key}.{}.sshnp", p.device_name),
                value,
                SESSION_NOTIFY,
            )
            .await?;
    }

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
    // The relay's shared key while the daemon answers. Detached, not dropped: a request cut off
    // mid-flight would desynchronise the worker connection; a relay request waits for it.
    let relay_warm = {
        let (client, relay) = (client.clone(), p.relay.clone());
        async move {
            if let Err(e) = client.prepare_shared_key(&relay).await {
                log::debug!("shared key for {relay} not ready yet: {e}");
            }
        }
    };
    runtime::spawn(relay_warm).detach();

    let client_nonce = utc_timestamp('T');
    // With the official suite the relay request goes out now, in parallel with the ping. When
    // our suite may be used it waits for the ping, so the request can say `suite:"nps1"` and
    // the relay pairs exactly once (strangers cannot add pairs; official relays ignore it).
    let early = p.suite == SuitePref::Official;
    if early {
        send_relay_request(client, p, &sid, &client_nonce, None, progress).await?;
    }

    let mut ping: Option<String> = None;
    let mut relay_answer: Option<String> = None;
    let mut session_answer: Option<String> = None;
    progress.say("Waiting for daemon feature check response");
    let ping_deadline = started + p.ping_timeout.max(RELAY_DEADLINE.min(p.ping_timeout));
    while ping.is_none() {
        let left = ping_deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Ok(Event::Ping(v))) => ping = Some(v),
            Ok(Ok(Event::Session(v))) => session_answer = Some(v),
            Ok(Ok(Event::Relay(v))) => relay_answer = Some(v),
            Ok(Err(_)) => return Err(SessionError::new("monitor ended")),
            Err(_) => return Err(ping_timeout(client, p).await),
        }
    }
    progress.say("Received daemon feature check response");
    let ping = PingResponse::parse(ping.as_deref().unwrap_or("")).map_err(|e| {
        SessionError::new(format!(
            "invalid feature check response from {}: {e}",
            p.device
        ))
    })?;
    let mut required = vec![
        Feature::SrAuth,
        Feature::SrE2ee,
        Feature::SupportsPortChoice,
    ];
    if p.timeout_given && p.timeout != Duration::from_secs(30) {
        required.push(Feature::AdjustableTimeout);
    }
    if let Some(missing) = ping.first_missing(&required) {
        return Err(SessionError::fatal(missing.missing_message()));
    }
    progress.say("Required daemon features are supported");
    if let Kind::Npt {
        remote_host,
        remote_port,
    } = &p.kind
    {
        // csshnpd drops a request it does not permit without a word (the Dart daemon and ours
        // answer with the reason): the ping already said what it permits, so with the C daemon
        // a request outside that fails here, at once.
        if ping.is_c_daemon()
            && !ping.allowed_services.is_empty()
            && crate::noports::permit::PermitOpen::parse(&ping.allowed_services.join(","))
                .is_ok_and(|permitted| !permitted.allows(remote_host, *remote_port))
        {
            return Err(SessionError::fatal(format!(
                "The device daemon {} ({}) does not permit {remote_host}:{remote_port}; it permits: {}",
                p.device,
                p.device_name,
                ping.allowed_services.join(", ")
            )));
        }
    }

    // Whether the (unsigned) feature check says the daemon speaks our suite. It decides only
    // the relay request's pairing hint and an early, clear refusal for `--suite nps1`: the
    // offer itself always travels in the signed request, and the daemon's signed answer alone
    // picks the suite, so an atServer that alters the ping cannot downgrade the session.
    let ping_says_ours = ping.supports(SUITE_NAME);
    if p.suite == SuitePref::Ours && !ping_says_ours {
        return Err(SessionError::fatal(format!(
            "This device daemon does not support the {SUITE_NAME} data-plane suite (--suite nps1); use --suite auto or official"
        )));
    }
    let offer_ours = p.suite != SuitePref::Official;
    let relay_deadline = if early {
        started + RELAY_DEADLINE
    } else {
        let suite = ping_says_ours.then_some(SUITE_NAME);
        send_relay_request(client, p, &sid, &client_nonce, suite, progress).await?;
        Instant::now() + RELAY_DEADLINE
    };
    while relay_answer.is_none() {
        let left = relay_deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Ok(Event::Relay(v))) => relay_answer = Some(v),
            Ok(Ok(Event::Ping(_))) => {}
            Ok(Ok(Event::Session(v))) => session_answer = Some(v),
            Ok(Err(_)) => return Err(SessionError::new("monitor ended")),
            Err(_) => return Err(relay_timeout(client, p).await),
        }
    }
    let relay_answer = relay_answer.unwrap_or_default();
    if let Some(why) = relay_answer.trim().strip_prefix("error:") {
        return Err(SessionError::fatal(format!(
            "The relay {} (-r) refused the session: {}",
            p.relay,
            why.trim()
        )));
    }
    let relay = RelayResponse::parse(&relay_answer)
        .map_err(|e| SessionError::new(format!("invalid response from srvd {}: {e}", p.relay)))?;
    progress.say("Received host and port from srvd");

    let suite_secret = offer_ours
        .then(EphemeralSecret::generate)
        .transpose()
        .map_err(|e| SessionError::new(format!("cannot make the session key: {e}")))?;
    let rvd_nonce = relay
        .rvd_nonce
        .clone()
        .unwrap_or_else(|| "null".to_string());
    let suite = suite_secret.as_ref().map(|_| SUITE_NAME.to_string());
    let client_suite_pk = suite_secret
        .as_ref()
        .map(|s| b64::encode(&s.public_bytes()));
    // Offered only where AES-256-GCM is the faster AEAD; the daemon takes it only if it is
    // there too, so a session never runs at the slower end's software AES.
    let offered_aead = Aead::fastest_here();
    let suite_aead =
        (offer_ours && offered_aead == Aead::Aes256Gcm).then(|| offered_aead.name().to_string());
    // The binding the daemon's signed answer must name (docs/suite-v1.md §2).
    let suite_binding = offer_ours.then(|| suite::BINDING_VERSION.to_string());
    let target = match &p.kind {
        Kind::Npt {
            remote_host,
            remote_port,
        } => format!("{remote_host}:{remote_port}"),
        Kind::Ssh { .. } => "sshd".to_string(),
    };
    let expected_binding = suite::binding(client.atsign().as_str(), p.device.as_str(), &target);
    let ephemeral = ephemeral.get().await?;
    // Signed with the request: the daemon refuses it outside what its replay memory covers.
    let requested_at = runtime::unix_millis();
    let (payload, verb) = match &p.kind {
        Kind::Npt {
            remote_host,
            remote_port,
        } => {
            let req = NptRequest {
                session_id: sid.clone(),
                rvd_host: relay.host.clone(),
                rvd_port: relay.port_b,
                requested_port: *remote_port,
                requested_host: remote_host.clone(),
                authenticate_to_rvd: true,
                client_nonce: client_nonce.clone(),
                rvd_nonce: rvd_nonce.clone(),
                encrypt_rvd_traffic: p.encrypt,
                client_ephemeral_pk: ephemeral.public_key().to_spki_b64(),
                client_ephemeral_pk_type: "rsa2048".into(),
                timeout_ms: p.timeout.as_millis().min(i64::MAX as u128) as i64,
                suite,
                client_suite_pk,
                suite_aead,
                suite_binding,
                requested_at: Some(requested_at),
            };
            (req.to_object(), "npt_request")
        }
        Kind::Ssh { .. } => {
            let req = SshRequest {
                session_id: sid.clone(),
                host: relay.host.clone(),
                port: relay.port_b,
                authenticate_to_rvd: true,
                client_nonce: Some(client_nonce.clone()),
                rvd_nonce: Some(rvd_nonce.clone()),
                encrypt_rvd_traffic: p.encrypt,
                client_ephemeral_pk: Some(ephemeral.public_key().to_spki_b64()),
                client_ephemeral_pk_type: Some("rsa2048".into()),
                suite,
                client_suite_pk,
                suite_aead,
                suite_binding,
                requested_at: Some(requested_at),
            };
            (req.to_object(), "ssh_request")
        }
    };
    let signed = envelope::sign(&payload, &client.keys().encrypt_private)
        .map_err(|e| SessionError::new(format!("cannot sign the session request: {e}")))?;
    progress.say("Sending session request to the device daemon");
    let key = format!("{verb}.{}.sshnp", p.device_name);
    client
        .notify(&p.device, &key, &signed, SESSION_NOTIFY)
        .await?;

    progress.say("Waiting for response from the device daemon");
    let daemon_deadline = Instant::now() + DAEMON_DEADLINE;
    while session_answer.is_none() {
        let left = daemon_deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Ok(Event::Session(v))) => session_answer = Some(v),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(SessionError::new("monitor ended")),
            Err(_) => {
                return Err(SessionError::new(format!(
                    "No response from the device daemon {} ({}) within {} s: it did not accept the session request. \
                     Check that it permits {} (-m/--managers, or its policy service) and, for npt, that the \
                     remote host:port is in its --permit-open list; its log says why",
                    p.device,
                    p.device_name,
                    DAEMON_DEADLINE.as_secs(),
                    client.atsign()
                )))
            }
        }
    }
    let answer = session_answer.unwrap_or_default();
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
    if resp.session_id != sid {
        return Err(SessionError::new("daemon response is for another session"));
    }
    progress.say("Received response from the device daemon");

    let auth_line = relay_msg::auth_line(
        &sid,
        &client_nonce,
        &rvd_nonce,
        &client.keys().encrypt_private,
    )
    .map_err(|e| SessionError::new(format!("cannot sign the relay auth line: {e}")))?;
    let target = RelayTarget {
        host: relay.host.clone(),
        port: relay.port_a,
        auth_line: Some(auth_line),
    };

    let unwrap = |wrapped: &str| -> Result<String, SessionError> {
        let ct =
            b64::decode(wrapped).map_err(|_| SessionError::new("session key is not base64"))?;
        let plain = ephemeral
            .decrypt(&ct)
            .map_err(|e| SessionError::new(format!("cannot decrypt the session key: {e}")))?;
        String::from_utf8(plain).map_err(|_| SessionError::new("session key is not text"))
    };
    let chose_ours = resp.suite.as_deref() == Some(SUITE_NAME) && suite_secret.is_some();
    if chose_ours && !ping_says_ours {
        log::warn!(
            "{}'s feature check said no {SUITE_NAME}, its signed answer chose it: the check was altered on the way",
            p.device
        );
    }
    if !chose_ours {
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
    }
    match (
        resp.suite.as_deref(),
        resp.daemon_suite_pk.as_deref(),
        suite_secret,
    ) {
        (Some(SUITE_NAME), Some(peer), Some(secret)) => {
            let peer: [u8; 32] = b64::decode(peer)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or_else(|| SessionError::new("daemonSuitePK is not a 32-byte key"))?;
            let aead = match resp.suite_aead.as_deref() {
                None => Aead::ChaCha20Poly1305,
                Some(name) if name == offered_aead.name() => offered_aead,
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
                Some(b) if b == expected_binding => Some(b),
                Some(b) => {
                    return Err(SessionError::fatal(format!(
                        "The device daemon's signed answer is bound to \"{b}\", not to this session (\"{expected_binding}\")"
                    )))
                }
            };
            let keys = suite::derive(Role::Client, secret, &peer, &sid, binding, aead)
                .map_err(|e| SessionError::new(e.to_string()))?;
            Ok(Established {
                session_id: sid,
                relay: target,
                crypto: SessionCrypto::Suite(keys),
                suite_name: SUITE_NAME,
                official_b64: None,
            })
        }
        _ if !p.encrypt => Ok(Established {
            session_id: sid,
            relay: target,
            crypto: SessionCrypto::Plain,
            suite_name: "plain",
            official_b64: None,
        }),
        _ => {
            let (Some(k), Some(iv)) = (resp.session_aes_key.as_deref(), resp.session_iv.as_deref())
            else {
                return Err(SessionError::new("daemon response has no session key"));
            };
            let (k, iv) = (unwrap(k)?, unwrap(iv)?);
            let crypto = SessionCrypto::official_b64(&k, &iv)
                .map_err(|e| SessionError::new(format!("bad session key: {e}")))?;
            Ok(Established {
                session_id: sid,
                relay: target,
                crypto,
                suite_name: "official",
                official_b64: Some((k, iv)),
            })
        }
    }
}

/// The daemon did not answer the ping: say what to check, and whether the atSign exists.
async fn ping_timeout(client: &AtClient, p: &SessionParams) -> SessionError {
    if client.is_registered(&p.device).await == Some(false) {
        return SessionError::fatal(format!(
            "The device atSign {} (-t) does not exist in the atDirectory",
            p.device
        ));
    }
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

/// The relay did not answer: say whether it exists, else that it is not answering.
async fn relay_timeout(client: &AtClient, p: &SessionParams) -> SessionError {
    if client.is_registered(&p.relay).await == Some(false) {
        return SessionError::fatal(format!(
            "The relay atSign {} (-r) does not exist in the atDirectory",
            p.relay
        ));
    }
    SessionError::new(format!(
        "Connection timeout to srvd {} service: the relay (-r) did not answer within {} s \
         (not running, or it does not serve {})",
        p.relay,
        RELAY_DEADLINE.as_secs(),
        client.atsign()
    ))
}

/// A failed notification to `who`: when its atServer says the atSign has no atServer at all
/// (AT0007), name the atSign and its role, and do not retry.
fn about(e: AtError, who: &AtSign, role: &str, flag: &str) -> SessionError {
    match &e {
        AtError::Server { code, .. } if code == "AT0007" => SessionError::fatal(format!(
            "The {role} {who} ({flag}) does not exist in the atDirectory ({e})"
        )),
        _ => SessionError::from(e),
    }
}
