//! One client session: ping the daemon, ask the relay for ports, send the signed session
//! request, and verify the daemon's signed answer (noports.md §1.3, §7.1).
use std::time::{Duration, Instant};

use crate::at::{AtClient, AtError, AtSign, Monitor, MonitorStart, Notification, NotifyOptions};
use crate::crypto::aead::EphemeralSecret;
use crate::crypto::rsa::RsaPrivateKey;
use crate::crypto::{b64, random};
use crate::noports::messages::{Feature, NptRequest, PingResponse, SessionResponse, SshRequest};
use crate::noports::relay_msg::{self, RelayRequest, RelayResponse};
use crate::noports::suite::{self, Role};
use crate::noports::tunnel::{RelayTarget, SessionCrypto};
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

/// Why a session could not be set up; the text is what the user sees after `Error : `.
#[derive(Debug)]
pub struct SessionError(pub String);

impl From<AtError> for SessionError {
    fn from(e: AtError) -> Self {
        SessionError(e.to_string())
    }
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
    let mut extra = crate::noports::json::Object::new();
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
        .await?;
    Ok(())
}

/// Set up one session. Consumes nothing persistent: call again for `-K` re-connects.
pub async fn establish(
    client: &AtClient,
    p: &SessionParams,
    ephemeral: &RsaPrivateKey,
    progress: Progress,
    before_request: &[(&str, &str)],
) -> Result<Established, SessionError> {
    let started = Instant::now();
    let sid = random::uuid_v4();
    let monitor = client.monitor("sshnp@|sshrvd@", MonitorStart::Live).await?;
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
        .await?;

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
            Ok(Err(_)) => return Err(SessionError("monitor ended".into())),
            Err(_) => {
                return Err(SessionError(
                    "TimeoutException: Daemon feature check timed out".into(),
                ))
            }
        }
    }
    progress.say("Received daemon feature check response");
    let ping = PingResponse::parse(ping.as_deref().unwrap_or("")).map_err(|e| {
        SessionError(format!(
            "invalid feature check response from {}: {e}",
            p.device
        ))
    })?;
    let mut required = vec![
        Feature::SrAuth,
        Feature::SrE2ee,
        Feature::SupportsPortChoice,
    ];
    if p.timeout != Duration::from_secs(30) {
        required.push(Feature::AdjustableTimeout);
    }
    if let Some(missing) = ping.first_missing(&required) {
        return Err(SessionError(missing.missing_message()));
    }
    progress.say("Required daemon features are supported");

    let use_ours = match p.suite {
        SuitePref::Official => false,
        SuitePref::Ours => {
            if !ping.supports(SUITE_NAME) {
                return Err(SessionError(format!(
                    "This device daemon does not support the {SUITE_NAME} data-plane suite"
                )));
            }
            true
        }
        SuitePref::Auto => ping.supports(SUITE_NAME),
    };
    let relay_deadline = if early {
        started + RELAY_DEADLINE
    } else {
        let suite = use_ours.then_some(SUITE_NAME);
        send_relay_request(client, p, &sid, &client_nonce, suite, progress).await?;
        Instant::now() + RELAY_DEADLINE
    };
    while relay_answer.is_none() {
        let left = relay_deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Ok(Event::Relay(v))) => relay_answer = Some(v),
            Ok(Ok(Event::Ping(_))) => {}
            Ok(Ok(Event::Session(v))) => session_answer = Some(v),
            Ok(Err(_)) => return Err(SessionError("monitor ended".into())),
            Err(_) => {
                return Err(SessionError(format!(
                    "Connection timeout to srvd {} service",
                    p.relay
                )))
            }
        }
    }
    let relay = RelayResponse::parse(relay_answer.as_deref().unwrap_or(""))
        .map_err(|e| SessionError(format!("invalid response from srvd {}: {e}", p.relay)))?;
    progress.say("Received host and port from srvd");

    let suite_secret = use_ours.then(EphemeralSecret::generate);
    let rvd_nonce = relay
        .rvd_nonce
        .clone()
        .unwrap_or_else(|| "null".to_string());
    let suite = suite_secret.as_ref().map(|_| SUITE_NAME.to_string());
    let client_suite_pk = suite_secret
        .as_ref()
        .map(|s| b64::encode(&s.public_bytes()));
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
            };
            (req.to_object(), "ssh_request")
        }
    };
    let signed = envelope::sign(&payload, &client.keys().encrypt_private)
        .map_err(|e| SessionError(format!("cannot sign the session request: {e}")))?;
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
            Ok(Err(_)) => return Err(SessionError("monitor ended".into())),
            Err(_) => return Err(SessionError("No response from the device daemon".into())),
        }
    }
    let answer = session_answer.unwrap_or_default();
    if messages::is_error_reply(&answer) {
        log::warn!("invalid daemon response: {answer}");
        return Err(SessionError(format!(
            "Received error response from the device daemon: {answer}"
        )));
    }
    let env = envelope::parse(&answer)
        .map_err(|e| SessionError(format!("invalid daemon response: {e}")))?;
    let device_key = client.public_key(&p.device).await?;
    if env.verify(&device_key).is_err() {
        return Err(SessionError(format!(
            "Failed to verify signature of msg from {}",
            p.device
        )));
    }
    let resp = SessionResponse::from_object(&env.payload)
        .map_err(|e| SessionError(format!("invalid daemon response: {e}")))?;
    if resp.session_id != sid {
        return Err(SessionError(
            "daemon response is for another session".into(),
        ));
    }
    progress.say("Received response from the device daemon");

    let auth_line = relay_msg::auth_line(
        &sid,
        &client_nonce,
        &rvd_nonce,
        &client.keys().encrypt_private,
    )
    .map_err(|e| SessionError(format!("cannot sign the relay auth line: {e}")))?;
    let target = RelayTarget {
        host: relay.host.clone(),
        port: relay.port_a,
        auth_line: Some(auth_line),
    };

    let unwrap = |wrapped: &str| -> Result<String, SessionError> {
        let ct =
            b64::decode(wrapped).map_err(|_| SessionError("session key is not base64".into()))?;
        let plain = ephemeral
            .decrypt(&ct)
            .map_err(|e| SessionError(format!("cannot decrypt the session key: {e}")))?;
        String::from_utf8(plain).map_err(|_| SessionError("session key is not text".into()))
    };
    match (
        resp.suite.as_deref(),
        resp.daemon_suite_pk.as_deref(),
        suite_secret,
    ) {
        (Some(SUITE_NAME), Some(peer), Some(secret)) => {
            let peer: [u8; 32] = b64::decode(peer)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or_else(|| SessionError("daemonSuitePK is not a 32-byte key".into()))?;
            let keys = suite::derive(Role::Client, secret, &peer, &sid)
                .map_err(|e| SessionError(e.to_string()))?;
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
                return Err(SessionError("daemon response has no session key".into()));
            };
            let (k, iv) = (unwrap(k)?, unwrap(iv)?);
            let crypto = SessionCrypto::official_b64(&k, &iv)
                .map_err(|e| SessionError(format!("bad session key: {e}")))?;
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
