//! Typed NoPorts payloads: npt_request (N6), ssh_request (N7), the session response (N8),
//! the ping reply (N2/R1/P1) and the policy RPC (P2/P3).
//!
//! `to_object` builds each payload with members in the exact order of the spec (signed
//! payloads are verified by re-serialization, noports.md §2.2); `from_object` applies the
//! spec's type checks. Parsing a signed payload happens only after its envelope verified.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::cast_possible_truncation
    )
)]

use std::fmt;

use crate::json::{self, JsonError, Object, Value};

/// Member name of our negotiated data-plane suite (appended to N6/N7/N8 only when used;
/// official daemons and clients ignore unknown members).
pub const SUITE_MEMBER: &str = "suite";
/// Member carrying the client's suite public key in N6/N7.
pub const CLIENT_SUITE_PK_MEMBER: &str = "clientSuitePK";
/// Member carrying the daemon's suite public key in N8.
pub const DAEMON_SUITE_PK_MEMBER: &str = "daemonSuitePK";
/// Member naming our suite's AEAD: in N6/N7 the client's offer, in N8 the daemon's choice;
/// absent means ChaCha20-Poly1305 (docs/suite-v1.md §1).
pub const SUITE_AEAD_MEMBER: &str = "suiteAead";
/// Our suite's binding: `"v1"` in a request offers it; the daemon's signed answer carries the
/// whole binding string (docs/suite-v1.md §2).
pub const SUITE_BINDING_MEMBER: &str = "suiteBinding";
/// When our client made a session request (unix milliseconds, signed with it): the daemon
/// refuses a request dated outside what its replay memory covers.
pub const REQUESTED_AT_MEMBER: &str = "requestedAt";

/// The only `clientEphemeralPKType` the reference daemons accept (noports.md §3).
pub const EPHEMERAL_PK_TYPE_RSA2048: &str = "rsa2048";

/// Default npt `timeout` when the member is absent, in ms (noports.md §6.8).
pub const DEFAULT_NPT_TIMEOUT_MS: i64 = 60_000;

/// Why a payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The text is not valid JSON.
    Json(JsonError),
    /// The JSON (or a nested member) is not an object where one is required.
    NotAnObject,
    /// A required member is absent; names it.
    Missing(&'static str),
    /// A member has the wrong JSON type; names it.
    WrongType(&'static str),
    /// A member has an invalid value (port out of range, unknown status); names it.
    BadValue(&'static str),
    /// A well-formed request we do not support, e.g. `ssh_request` with `"direct":false`
    /// (legacy reverse ssh, noports.md §1.6); names the member.
    Unsupported(&'static str),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Json(e) => write!(f, "{e}"),
            MessageError::NotAnObject => f.write_str("expected a JSON object"),
            MessageError::Missing(m) => write!(f, "missing member {m}"),
            MessageError::WrongType(m) => write!(f, "member {m} has the wrong type"),
            MessageError::BadValue(m) => write!(f, "member {m} has an invalid value"),
            MessageError::Unsupported(m) => write!(f, "unsupported value of member {m}"),
        }
    }
}

impl std::error::Error for MessageError {}

fn parse_object(text: &str) -> Result<Object, MessageError> {
    match json::parse(text).map_err(MessageError::Json)? {
        Value::Object(o) => Ok(o),
        _ => Err(MessageError::NotAnObject),
    }
}

fn req_str(o: &Object, name: &'static str) -> Result<String, MessageError> {
    match o.get(name) {
        None => Err(MessageError::Missing(name)),
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(_) => Err(MessageError::WrongType(name)),
    }
}

/// Absent or `null` is `None`.
fn opt_str(o: &Object, name: &'static str) -> Result<Option<String>, MessageError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MessageError::WrongType(name)),
    }
}

fn req_bool(o: &Object, name: &'static str) -> Result<bool, MessageError> {
    match o.get(name) {
        None => Err(MessageError::Missing(name)),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(MessageError::WrongType(name)),
    }
}

/// Absent or `null` is `false` (Dart ssh_request semantics, noports.md §6.9).
fn opt_bool(o: &Object, name: &'static str) -> Result<bool, MessageError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(MessageError::WrongType(name)),
    }
}

fn req_int(o: &Object, name: &'static str) -> Result<i64, MessageError> {
    match o.get(name) {
        None => Err(MessageError::Missing(name)),
        Some(Value::Int(i)) => Ok(*i),
        Some(_) => Err(MessageError::WrongType(name)),
    }
}

/// Absent or `null` is `None`.
fn opt_int(o: &Object, name: &'static str) -> Result<Option<i64>, MessageError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Int(i)) => Ok(Some(*i)),
        Some(_) => Err(MessageError::WrongType(name)),
    }
}

/// A TCP port member: an integer in 1..=65535.
fn req_port(o: &Object, name: &'static str) -> Result<u16, MessageError> {
    match u16::try_from(req_int(o, name)?) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(MessageError::BadValue(name)),
    }
}

fn push_opt(o: &mut Object, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        o.push(name, v.as_str());
    }
}

/// The `npt_request` payload N6 (noports.md §1.3 step 7, §6.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NptRequest {
    /// Session id (lowercase UUID v4).
    pub session_id: String,
    /// Relay host from N4.
    pub rvd_host: String,
    /// Relay portB (the daemon's side).
    pub rvd_port: u16,
    /// Device-side port to connect to.
    pub requested_port: u16,
    /// Device-side host to connect to (default `localhost`).
    pub requested_host: String,
    /// Whether the daemon must send an auth line to the relay.
    pub authenticate_to_rvd: bool,
    /// The client's relay nonce.
    pub client_nonce: String,
    /// The relay's nonce from N4.
    pub rvd_nonce: String,
    /// Whether the data plane is AES-CTR encrypted.
    pub encrypt_rvd_traffic: bool,
    /// Client ephemeral RSA public key, base64 DER SubjectPublicKeyInfo.
    pub client_ephemeral_pk: String,
    /// Always `rsa2048` ([`EPHEMERAL_PK_TYPE_RSA2048`]).
    pub client_ephemeral_pk_type: String,
    /// Session idle timeout in ms, non-negative; [`DEFAULT_NPT_TIMEOUT_MS`] when absent.
    pub timeout_ms: i64,
    /// Our negotiated suite name (member `suite`), appended only when `Some`.
    pub suite: Option<String>,
    /// Our suite's client public key (member `clientSuitePK`), appended only when `Some`.
    pub client_suite_pk: Option<String>,
    /// The AEAD the client offers for our suite (member `suiteAead`), appended only when `Some`.
    pub suite_aead: Option<String>,
    /// The binding version the client offers (member `suiteBinding`), appended only when `Some`.
    pub suite_binding: Option<String>,
    /// When the request was made, unix milliseconds (member `requestedAt`, ours), appended
    /// only when `Some`.
    pub requested_at: Option<i64>,
}

impl NptRequest {
    /// Builds the payload in the member order of noports.md §1.3 step 7.
    pub fn to_object(&self) -> Object {
        let mut o = Object::new()
            .with("sessionId", self.session_id.as_str())
            .with("rvdHost", self.rvd_host.as_str())
            .with("rvdPort", self.rvd_port)
            .with("requestedPort", self.requested_port)
            .with("requestedHost", self.requested_host.as_str())
            .with("authenticateToRvd", self.authenticate_to_rvd)
            .with("clientNonce", self.client_nonce.as_str())
            .with("rvdNonce", self.rvd_nonce.as_str())
            .with("encryptRvdTraffic", self.encrypt_rvd_traffic)
            .with("clientEphemeralPK", self.client_ephemeral_pk.as_str())
            .with(
                "clientEphemeralPKType",
                self.client_ephemeral_pk_type.as_str(),
            )
            .with("timeout", self.timeout_ms);
        push_opt(&mut o, SUITE_MEMBER, &self.suite);
        push_opt(&mut o, CLIENT_SUITE_PK_MEMBER, &self.client_suite_pk);
        push_opt(&mut o, SUITE_AEAD_MEMBER, &self.suite_aead);
        push_opt(&mut o, SUITE_BINDING_MEMBER, &self.suite_binding);
        if let Some(t) = self.requested_at {
            o.push(REQUESTED_AT_MEMBER, t);
        }
        o
    }

    /// Reads the payload with the Dart daemon's type checks (noports.md §6.8): every member
    /// required and typed except `timeout`; ports must be 1..=65535, `timeout` non-negative.
    ///
    /// # Errors
    /// `Missing` / `WrongType` / `BadValue` naming the member.
    pub fn from_object(o: &Object) -> Result<Self, MessageError> {
        let timeout_ms = match o.get("timeout") {
            None | Some(Value::Null) => DEFAULT_NPT_TIMEOUT_MS,
            Some(Value::Int(t)) if *t >= 0 => *t,
            Some(Value::Int(_)) => return Err(MessageError::BadValue("timeout")),
            Some(_) => return Err(MessageError::WrongType("timeout")),
        };
        Ok(NptRequest {
            session_id: req_str(o, "sessionId")?,
            rvd_host: req_str(o, "rvdHost")?,
            rvd_port: req_port(o, "rvdPort")?,
            requested_port: req_port(o, "requestedPort")?,
            requested_host: req_str(o, "requestedHost")?,
            authenticate_to_rvd: req_bool(o, "authenticateToRvd")?,
            client_nonce: req_str(o, "clientNonce")?,
            rvd_nonce: req_str(o, "rvdNonce")?,
            encrypt_rvd_traffic: req_bool(o, "encryptRvdTraffic")?,
            client_ephemeral_pk: req_str(o, "clientEphemeralPK")?,
            client_ephemeral_pk_type: req_str(o, "clientEphemeralPKType")?,
            timeout_ms,
            suite: opt_str(o, SUITE_MEMBER)?,
            client_suite_pk: opt_str(o, CLIENT_SUITE_PK_MEMBER)?,
            suite_aead: opt_str(o, SUITE_AEAD_MEMBER)?,
            suite_binding: opt_str(o, SUITE_BINDING_MEMBER)?,
            requested_at: opt_int(o, REQUESTED_AT_MEMBER)?,
        })
    }
}

/// The `ssh_request` payload N7 (noports.md §1.4 step 10, §6.9). Always `"direct":true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshRequest {
    /// Session id.
    pub session_id: String,
    /// Relay host from N4.
    pub host: String,
    /// Relay portB.
    pub port: u16,
    /// Whether the daemon must send an auth line (absent means false).
    pub authenticate_to_rvd: bool,
    /// The client's relay nonce.
    pub client_nonce: Option<String>,
    /// The relay's nonce.
    pub rvd_nonce: Option<String>,
    /// Whether the data plane is encrypted (absent means false).
    pub encrypt_rvd_traffic: bool,
    /// Client ephemeral RSA public key, base64 SPKI.
    pub client_ephemeral_pk: Option<String>,
    /// `rsa2048`.
    pub client_ephemeral_pk_type: Option<String>,
    /// Our negotiated suite name (member `suite`), appended only when `Some`.
    pub suite: Option<String>,
    /// Our suite's client public key (member `clientSuitePK`), appended only when `Some`.
    pub client_suite_pk: Option<String>,
    /// The AEAD the client offers for our suite (member `suiteAead`), appended only when `Some`.
    pub suite_aead: Option<String>,
    /// The binding version the client offers (member `suiteBinding`), appended only when `Some`.
    pub suite_binding: Option<String>,
    /// When the request was made, unix milliseconds (member `requestedAt`, ours), appended
    /// only when `Some`.
    pub requested_at: Option<i64>,
}

impl SshRequest {
    /// Builds the payload in the member order of noports.md §1.4 step 10. Absent optional
    /// strings are written as `null`, as Dart does (§2.2).
    pub fn to_object(&self) -> Object {
        let mut o = Object::new()
            .with("direct", true)
            .with("sessionId", self.session_id.as_str())
            .with("host", self.host.as_str())
            .with("port", self.port)
            .with("authenticateToRvd", self.authenticate_to_rvd)
            .with("clientNonce", self.client_nonce.clone())
            .with("rvdNonce", self.rvd_nonce.clone())
            .with("encryptRvdTraffic", self.encrypt_rvd_traffic)
            .with("clientEphemeralPK", self.client_ephemeral_pk.clone())
            .with(
                "clientEphemeralPKType",
                self.client_ephemeral_pk_type.clone(),
            );
        push_opt(&mut o, SUITE_MEMBER, &self.suite);
        push_opt(&mut o, CLIENT_SUITE_PK_MEMBER, &self.client_suite_pk);
        push_opt(&mut o, SUITE_AEAD_MEMBER, &self.suite_aead);
        push_opt(&mut o, SUITE_BINDING_MEMBER, &self.suite_binding);
        if let Some(t) = self.requested_at {
            o.push(REQUESTED_AT_MEMBER, t);
        }
        o
    }

    /// Reads the payload as the Dart daemon does (§6.9): `direct`, `sessionId`, `host`,
    /// `port` required; the v5 members optional (absent or `null` booleans mean false).
    ///
    /// # Errors
    /// `Missing` / `WrongType` / `BadValue` naming the member;
    /// `Unsupported("direct")` for `"direct":false` (legacy reverse ssh is not supported).
    pub fn from_object(o: &Object) -> Result<Self, MessageError> {
        if !req_bool(o, "direct")? {
            return Err(MessageError::Unsupported("direct"));
        }
        Ok(SshRequest {
            session_id: req_str(o, "sessionId")?,
            host: req_str(o, "host")?,
            port: req_port(o, "port")?,
            authenticate_to_rvd: opt_bool(o, "authenticateToRvd")?,
            client_nonce: opt_str(o, "clientNonce")?,
            rvd_nonce: opt_str(o, "rvdNonce")?,
            encrypt_rvd_traffic: opt_bool(o, "encryptRvdTraffic")?,
            client_ephemeral_pk: opt_str(o, "clientEphemeralPK")?,
            client_ephemeral_pk_type: opt_str(o, "clientEphemeralPKType")?,
            suite: opt_str(o, SUITE_MEMBER)?,
            client_suite_pk: opt_str(o, CLIENT_SUITE_PK_MEMBER)?,
            suite_aead: opt_str(o, SUITE_AEAD_MEMBER)?,
            suite_binding: opt_str(o, SUITE_BINDING_MEMBER)?,
            requested_at: opt_int(o, REQUESTED_AT_MEMBER)?,
        })
    }
}

/// The success payload of the session response N8 (noports.md §1.3 step 8, §1.4 step 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionResponse {
    /// Session id.
    pub session_id: String,
    /// Base64 RSA ciphertext of the base64 session key; `None` (`null`) without encryption.
    pub session_aes_key: Option<String>,
    /// Base64 RSA ciphertext of the base64 session IV; `None` (`null`) without encryption.
    pub session_iv: Option<String>,
    /// ssh_request only: the ephemeral ssh private key (PEM). Written after `sessionId`
    /// (Dart order) when `Some`, omitted otherwise.
    pub ephemeral_private_key: Option<String>,
    /// Our negotiated suite name (member `suite`), appended only when `Some`.
    pub suite: Option<String>,
    /// Our suite's daemon public key (member `daemonSuitePK`), appended only when `Some`.
    pub daemon_suite_pk: Option<String>,
    /// The AEAD the daemon chose for our suite (member `suiteAead`), appended only when `Some`.
    pub suite_aead: Option<String>,
    /// The binding string the daemon derived its keys with (member `suiteBinding`), appended
    /// only when `Some`.
    pub suite_binding: Option<String>,
}

impl SessionResponse {
    /// Builds `{"status":"connected","sessionId",["ephemeralPrivateKey"],"sessionAESKey",
    /// "sessionIV",["suite"],["daemonSuitePK"],["suiteAead"]}`.
    pub fn to_object(&self) -> Object {
        let mut o = Object::new()
            .with("status", "connected")
            .with("sessionId", self.session_id.as_str());
        push_opt(&mut o, "ephemeralPrivateKey", &self.ephemeral_private_key);
        o.push("sessionAESKey", self.session_aes_key.clone());
        o.push("sessionIV", self.session_iv.clone());
        push_opt(&mut o, SUITE_MEMBER, &self.suite);
        push_opt(&mut o, DAEMON_SUITE_PK_MEMBER, &self.daemon_suite_pk);
        push_opt(&mut o, SUITE_AEAD_MEMBER, &self.suite_aead);
        push_opt(&mut o, SUITE_BINDING_MEMBER, &self.suite_binding);
        o
    }

    /// Reads a success payload: `status` must be `"connected"`, `sessionId` a string (the
    /// client's check, §2.1); the rest string, `null` or absent. Accepts Dart and C orders.
    ///
    /// # Errors
    /// `Missing` / `WrongType` naming the member; `BadValue("status")`.
    pub fn from_object(o: &Object) -> Result<Self, MessageError> {
        if req_str(o, "status")? != "connected" {
            return Err(MessageError::BadValue("status"));
        }
        Ok(SessionResponse {
            session_id: req_str(o, "sessionId")?,
            session_aes_key: opt_str(o, "sessionAESKey")?,
            session_iv: opt_str(o, "sessionIV")?,
            ephemeral_private_key: opt_str(o, "ephemeralPrivateKey")?,
            suite: opt_str(o, SUITE_MEMBER)?,
            daemon_suite_pk: opt_str(o, DAEMON_SUITE_PK_MEMBER)?,
            suite_aead: opt_str(o, SUITE_AEAD_MEMBER)?,
            suite_binding: opt_str(o, SUITE_BINDING_MEMBER)?,
        })
    }
}

/// Whether an N8 value is a plain-text error reply rather than an envelope: clients only
/// test whether it starts with `{` (noports.md §1.5, §11 item 8).
pub fn is_error_reply(value: &str) -> bool {
    !value.starts_with('{')
}

/// A daemon feature advertised in `supportedFeatures` (noports.md §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `acceptsPublicKeys`.
    AcceptsPublicKeys,
    /// `srAuth`.
    SrAuth,
    /// `srE2ee`.
    SrE2ee,
    /// `supportsPortChoice`.
    SupportsPortChoice,
    /// `adjustableTimeout`.
    AdjustableTimeout,
}

impl Feature {
    /// All features in the Dart ping reply's order.
    pub const ALL: [Feature; 5] = [
        Feature::SrAuth,
        Feature::SrE2ee,
        Feature::AcceptsPublicKeys,
        Feature::SupportsPortChoice,
        Feature::AdjustableTimeout,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Feature::AcceptsPublicKeys => "acceptsPublicKeys",
            Feature::SrAuth => "srAuth",
            Feature::SrE2ee => "srE2ee",
            Feature::SupportsPortChoice => "supportsPortChoice",
            Feature::AdjustableTimeout => "adjustableTimeout",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The description used in `This device daemon does not <description>` (§6.7).
    pub fn description(self) -> &'static str {
        match self {
            Feature::AcceptsPublicKeys => "accept ssh public keys from the client",
            Feature::SrAuth => "authenticate to the socket rendezvous",
            Feature::SrE2ee => "encrypt traffic to the socket rendezvous",
            Feature::SupportsPortChoice => "support requests for specific device ports",
            Feature::AdjustableTimeout => "support the 'timeout' value in npt session requests",
        }
    }

    /// The client's error text when the daemon lacks this feature (§1.3 step 6).
    pub fn missing_message(self) -> String {
        format!("This device daemon does not {}", self.description())
    }
}

/// The feature-name → description table of noports.md §6.7.
pub fn feature_description(name: &str) -> Option<&'static str> {
    Feature::from_name(name).map(Feature::description)
}

/// The ping reply (N2, also R1 and P1), noports.md §6.7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingResponse {
    /// `devicename`.
    pub device_name: String,
    /// `deviceGroupName` (Dart: `--device-group`, default `__none__`); the C daemon omits it.
    pub device_group_name: Option<String>,
    /// `version`.
    pub version: String,
    /// `corePackageVersion`.
    pub core_package_version: String,
    /// `supportedFeatures`, in order. May include names beyond [`Feature`].
    pub supported_features: Vec<(String, bool)>,
    /// `allowedServices`: the daemon's permit-open list, `host:port`.
    pub allowed_services: Vec<String>,
}

impl PingResponse {
    /// The Dart daemon's feature set, in its order: everything true except
    /// `acceptsPublicKeys`, which follows `-s`.
    pub fn standard_features(accepts_public_keys: bool) -> Vec<(String, bool)> {
        Feature::ALL
            .into_iter()
            .map(|f| {
                let on = f != Feature::AcceptsPublicKeys || accepts_public_keys;
                (f.name().to_owned(), on)
            })
            .collect()
    }

    /// The official C daemon (csshnpd): its `corePackageVersion` starts with `c` and it sends
    /// no `deviceGroupName` (noports.md §6.7). It answers no refused request.
    pub fn is_c_daemon(&self) -> bool {
        self.device_group_name.is_none() && self.core_package_version.starts_with('c')
    }

    /// Whether feature `name` is advertised as true.
    pub fn supports(&self, name: &str) -> bool {
        self.supported_features
            .iter()
            .any(|(n, on)| n == name && *on)
    }

    /// The first of `required` the daemon does not support.
    pub fn first_missing(&self, required: &[Feature]) -> Option<Feature> {
        required.iter().copied().find(|f| !self.supports(f.name()))
    }

    /// Builds the reply in the Dart member order of §6.7 (`deviceGroupName` only when `Some`).
    pub fn to_object(&self) -> Object {
        let mut o = Object::new().with("devicename", self.device_name.as_str());
        push_opt(&mut o, "deviceGroupName", &self.device_group_name);
        o.push("version", self.version.as_str());
        o.push("corePackageVersion", self.core_package_version.as_str());
        let mut features = Object::new();
        for (name, on) in &self.supported_features {
            features.push(name, *on);
        }
        o.push("supportedFeatures", features);
        let services: Vec<Value> = self
            .allowed_services
            .iter()
            .map(|s| Value::from(s.as_str()))
            .collect();
        o.push("allowedServices", services);
        o
    }

    /// The reply as JSON text.
    pub fn to_json(&self) -> String {
        self.to_object().to_json()
    }

    /// Reads a reply, tolerantly: Dart and C variants (§6.7); `version` and
    /// `corePackageVersion` default to empty; a reply without `supportedFeatures` is a v4
    /// daemon, assumed to support only `acceptsPublicKeys` (§1.6); non-boolean feature
    /// values and non-string services are skipped.
    ///
    /// # Errors
    /// `Missing("devicename")`; `WrongType` when a present member has the wrong JSON type.
    pub fn from_object(o: &Object) -> Result<Self, MessageError> {
        let supported_features = match o.get("supportedFeatures") {
            None | Some(Value::Null) => vec![(Feature::AcceptsPublicKeys.name().to_owned(), true)],
            Some(Value::Object(f)) => f
                .iter()
                .filter_map(|(k, v)| v.as_bool().map(|b| (k.to_owned(), b)))
                .collect(),
            Some(_) => return Err(MessageError::WrongType("supportedFeatures")),
        };
        let allowed_services = match o.get("allowedServices") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => return Err(MessageError::WrongType("allowedServices")),
        };
        Ok(PingResponse {
            device_name: req_str(o, "devicename")?,
            device_group_name: opt_str(o, "deviceGroupName")?,
            version: opt_str(o, "version")?.unwrap_or_default(),
            core_package_version: opt_str(o, "corePackageVersion")?.unwrap_or_default(),
            supported_features,
            allowed_services,
        })
    }

    /// Parses the reply text.
    ///
    /// # Errors
    /// `Json` / `NotAnObject`, else as [`PingResponse::from_object`].
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        Self::from_object(&parse_object(text)?)
    }
}

/// Policy auth-check request P2 (noports.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequest {
    /// Request id: microseconds since the epoch at creation.
    pub req_id: i64,
    /// `daemonAtsign`.
    pub daemon_atsign: String,
    /// `daemonDeviceName`.
    pub daemon_device_name: String,
    /// `daemonDeviceGroupName`.
    pub daemon_device_group_name: String,
    /// `clientAtsign`: the atSign asking to connect.
    pub client_atsign: String,
}

impl PolicyRequest {
    /// Builds `{"reqId":..,"payload":{"daemonAtsign","daemonDeviceName",
    /// "daemonDeviceGroupName","clientAtsign"}}`.
    pub fn to_object(&self) -> Object {
        Object::new().with("reqId", self.req_id).with(
            "payload",
            Object::new()
                .with("daemonAtsign", self.daemon_atsign.as_str())
                .with("daemonDeviceName", self.daemon_device_name.as_str())
                .with(
                    "daemonDeviceGroupName",
                    self.daemon_device_group_name.as_str(),
                )
                .with("clientAtsign", self.client_atsign.as_str()),
        )
    }

    /// The request as JSON text.
    pub fn to_json(&self) -> String {
        self.to_object().to_json()
    }

    /// Reads a request (all members required strings, `reqId` an integer).
    ///
    /// # Errors
    /// `Missing` / `WrongType` naming the member.
    pub fn from_object(o: &Object) -> Result<Self, MessageError> {
        let p = match o.get("payload") {
            None => return Err(MessageError::Missing("payload")),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(MessageError::WrongType("payload")),
        };
        Ok(PolicyRequest {
            req_id: req_int(o, "reqId")?,
            daemon_atsign: req_str(p, "daemonAtsign")?,
            daemon_device_name: req_str(p, "daemonDeviceName")?,
            daemon_device_group_name: req_str(p, "daemonDeviceGroupName")?,
            client_atsign: req_str(p, "clientAtsign")?,
        })
    }

    /// Parses the request text.
    ///
    /// # Errors
    /// `Json` / `NotAnObject`, else as [`PolicyRequest::from_object`].
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        Self::from_object(&parse_object(text)?)
    }
}

/// `respType` of a policy RPC response; also the first label of its key (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcRespType {
    /// `ack`: received; only logged.
    Ack,
    /// `nack`: the request could not be deserialized.
    Nack,
    /// `success`: payload is a [`PolicyDecision`].
    Success,
    /// `error`.
    Error,
}

impl RpcRespType {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            RpcRespType::Ack => "ack",
            RpcRespType::Nack => "nack",
            RpcRespType::Success => "success",
            RpcRespType::Error => "error",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ack" => Some(RpcRespType::Ack),
            "nack" => Some(RpcRespType::Nack),
            "success" => Some(RpcRespType::Success),
            "error" => Some(RpcRespType::Error),
            _ => None,
        }
    }
}

/// Policy RPC response P3 (noports.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResponse {
    /// Must equal the request's id (and the one in the notification key).
    pub req_id: i64,
    /// Response type.
    pub resp_type: RpcRespType,
    /// Type-specific payload (empty for `ack`).
    pub payload: Object,
    /// Optional message.
    pub message: Option<String>,
}

impl PolicyResponse {
    /// Builds `{"reqId","respType","payload","message"}`.
    pub fn to_object(&self) -> Object {
        Object::new()
            .with("reqId", self.req_id)
            .with("respType", self.resp_type.name())
            .with("payload", self.payload.clone())
            .with("message", self.message.clone())
    }

    /// The response as JSON text.
    pub fn to_json(&self) -> String {
        self.to_object().to_json()
    }

    /// Reads a response: `reqId` integer, `respType` a known name, `payload` an object
    /// (absent or `null` read as empty), `message` string, `null` or absent.
    ///
    /// # Errors
    /// `Missing` / `WrongType` / `BadValue("respType")`.
    pub fn from_object(o: &Object) -> Result<Self, MessageError> {
        let resp_type = RpcRespType::from_name(&req_str(o, "respType")?)
            .ok_or(MessageError::BadValue("respType"))?;
        let payload = match o.get("payload") {
            None | Some(Value::Null) => Object::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return Err(MessageError::WrongType("payload")),
        };
        Ok(PolicyResponse {
            req_id: req_int(o, "reqId")?,
            resp_type,
            payload,
            message: opt_str(o, "message")?,
        })
    }

    /// Parses the response text.
    ///
    /// # Errors
    /// `Json` / `NotAnObject`, else as [`PolicyResponse::from_object`].
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        Self::from_object(&parse_object(text)?)
    }

    /// The decision of a `success` response. Any other type means not authorized (§6.3).
    ///
    /// # Errors
    /// `BadValue("respType")` for a non-success response, else as
    /// [`PolicyDecision::from_object`].
    pub fn decision(&self) -> Result<PolicyDecision, MessageError> {
        if self.resp_type != RpcRespType::Success {
            return Err(MessageError::BadValue("respType"));
        }
        PolicyDecision::from_object(&self.payload)
    }
}

/// The payload of a `success` policy response (noports.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Whether the client may connect.
    pub authorized: bool,
    /// Optional message (reason).
    pub message: Option<String>,
    /// The client's permit-open list, `host:port` entries.
    pub permit_open: Vec<String>,
}

impl PolicyDecision {
    /// Builds `{"authorized","message","permitOpen"}`.
    pub fn to_object(&self) -> Object {
        let po: Vec<Value> = self
            .permit_open
            .iter()
            .map(|s| Value::from(s.as_str()))
            .collect();
        Object::new()
            .with("authorized", self.authorized)
            .with("message", self.message.clone())
            .with("permitOpen", po)
    }

    /// Reads a decision: `authorized` a required boolean, `message` optional, `permitOpen`
    /// an array of strings (absent or `null` read as empty).
    ///
    /// # Errors
    /// `Missing` / `WrongType` naming the member.
    pub fn from_object(o: &Object) -> Result<Self, MessageError> {
        let permit_open = match o.get("permitOpen") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or(MessageError::WrongType("permitOpen"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(MessageError::WrongType("permitOpen")),
        };
        Ok(PolicyDecision {
            authorized: req_bool(o, "authorized")?,
            message: opt_str(o, "message")?,
            permit_open,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_table() {
        assert_eq!(
            feature_description("srE2ee"),
            Some("encrypt traffic to the socket rendezvous")
        );
        assert_eq!(feature_description("nope"), None);
        assert_eq!(
            Feature::SrAuth.missing_message(),
            "This device daemon does not authenticate to the socket rendezvous"
        );
    }

    #[test]
    fn c_ping_reply() {
        let text = r#"{"devicename":"rpi","version":"0.2.0","corePackageVersion":"c0.1.0","supportedFeatures":{"srAuth":true,"srE2ee":true,"acceptsPublicKeys":false,"supportsPortChoice":true},"allowedServices":["localhost:0"]}"#;
        let p = PingResponse::parse(text).unwrap();
        assert_eq!(p.device_group_name, None);
        assert!(p.supports("srAuth"));
        assert_eq!(
            p.first_missing(&[Feature::SrAuth, Feature::AdjustableTimeout]),
            Some(Feature::AdjustableTimeout)
        );
        assert_eq!(p.to_json(), text);
    }
}
