//! APKAM enrollment (atprotocol.md §7.11–§7.13, §11.2, §11.5–§11.7): records, state rules,
//! `enroll:`, `otp:` and `keys:get`.
use std::time::Duration;

use super::error::{AtCode, AtErr, VerbResult};
use super::meta::now_ms;
use super::notify::{Kind, Notification, Status};
use super::server::AtServer;
use super::session::{Auth, Session};
use crate::crypto::random;
use crate::json::untyped::{get_int, get_str, get_str_list, get_str_map, parse_object};
use crate::json::{str_map, ObjectWriter};

/// Pending enrollments expire after 48 h (`expiryInHours`).
const PENDING_TTL_MS: i64 = 48 * 3600 * 1000;
/// Enrollment-request notifications live 24 h.
const REQUEST_NOTE_TTL_MS: i64 = 24 * 3600 * 1000;
/// `enroll:request` per connection per hour.
const MAX_REQUESTS_PER_HOUR: usize = 5;
/// Default OTP lifetime: 5 min.
const OTP_TTL_MS: i64 = 300_000;
/// OTP alphabet: upper-case letters and digits without `0` and `O` (§7.12).
const OTP_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNPQRSTUVWXYZ123456789";
/// Longest delay after a wrong OTP. The reference grows to 55 s; we stop earlier so a
/// misbehaving client cannot pin a connection for minutes.
const MAX_OTP_DELAY_S: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnrollState {
    Pending,
    Approved,
    Denied,
    Revoked,
}

impl EnrollState {
    fn as_str(self) -> &'static str {
        match self {
            EnrollState::Pending => "pending",
            EnrollState::Approved => "approved",
            EnrollState::Denied => "denied",
            EnrollState::Revoked => "revoked",
        }
    }
    fn parse(s: &str) -> Option<EnrollState> {
        Some(match s {
            "pending" => EnrollState::Pending,
            "approved" => EnrollState::Approved,
            "denied" => EnrollState::Denied,
            "revoked" => EnrollState::Revoked,
            _ => return None,
        })
    }
}

/// One enrollment record, stored as JSON under `<id>.new.enrollments.__manage@<atSign>`.
#[derive(Clone, Debug)]
pub(crate) struct Enrollment {
    pub id: String,
    pub session_id: String,
    pub app: String,
    pub device: String,
    pub namespaces: Vec<(String, String)>,
    pub apkam_public_key: String,
    pub state: EnrollState,
    pub enc_apkam_sym_key: Option<String>,
    pub expiry_ms: i64,
}

/// The store key of an enrollment record.
pub(crate) fn record_key(id: &str, atsign: &str) -> String {
    format!("{id}.new.enrollments.__manage{atsign}")
}

impl Enrollment {
    /// Storage JSON (§11.5).
    pub(crate) fn to_json(&self) -> String {
        ObjectWriter::new()
            .str("sessionId", &self.session_id)
            .str("appName", &self.app)
            .str("deviceName", &self.device)
            .raw("namespaces", &str_map(&self.namespaces))
            .str("apkamPublicKey", &self.apkam_public_key)
            .str("requestType", "newEnrollment")
            .raw(
                "approval",
                &ObjectWriter::new().str("state", self.state.as_str()).end(),
            )
            .some_str(
                "encryptedAPKAMSymmetricKey",
                self.enc_apkam_sym_key.as_deref(),
            )
            .int("apkamKeysExpiryInMillis", self.expiry_ms)
            .end()
    }

    fn from_json(id: &str, text: &str) -> Option<Enrollment> {
        let o = parse_object(text)?;
        let state = match o.get("approval")? {
            miniserde::json::Value::Object(a) => EnrollState::parse(get_str(a, "state")?)?,
            _ => return None,
        };
        Some(Enrollment {
            id: id.to_string(),
            session_id: get_str(&o, "sessionId").unwrap_or("").to_string(),
            app: get_str(&o, "appName")?.to_string(),
            device: get_str(&o, "deviceName")?.to_string(),
            namespaces: get_str_map(&o, "namespaces").unwrap_or_default(),
            apkam_public_key: get_str(&o, "apkamPublicKey")?.to_string(),
            state,
            enc_apkam_sym_key: get_str(&o, "encryptedAPKAMSymmetricKey").map(str::to_string),
            expiry_ms: get_int(&o, "apkamKeysExpiryInMillis").unwrap_or(0),
        })
    }

    /// Loads an active (unexpired) record.
    pub(crate) fn load(server: &AtServer, id: &str) -> Option<Enrollment> {
        let text = server.state().value(&record_key(id, &server.atsign))?;
        Enrollment::from_json(id, &text)
    }

    /// All active records.
    fn all(server: &AtServer) -> Vec<Enrollment> {
        let suffix = format!(".new.enrollments.__manage{}", server.atsign);
        let st = server.state();
        let now = now_ms();
        st.keys
            .iter()
            .filter(|(k, r)| k.ends_with(&suffix) && r.meta.is_active(now))
            .filter_map(|(k, r)| Enrollment::from_json(&k[..k.len() - suffix.len()], &r.value))
            .collect()
    }

    /// Writes the record with a ttl (`None` = never expires).
    pub(crate) fn save(&self, server: &AtServer, ttl_ms: Option<i64>) -> std::io::Result<()> {
        server
            .state()
            .put_simple(
                &record_key(&self.id, &server.atsign),
                &self.to_json(),
                &server.atsign,
                ttl_ms,
            )
            .map(|_| ())
    }

    /// Stores the two encrypted default keys for this enrollment (§11.2, §11.7).
    pub(crate) fn save_keys(
        &self,
        server: &AtServer,
        enc_private: &str,
        self_key: &str,
    ) -> std::io::Result<()> {
        let mut st = server.state();
        for (name, v) in [
            ("default_enc_private_key", enc_private),
            ("default_self_enc_key", self_key),
        ] {
            let k = format!("{}.{name}.__manage{}", self.id, server.atsign);
            st.put_simple(
                &k,
                &ObjectWriter::new().str("value", v).end(),
                &server.atsign,
                None,
            )?;
        }
        let pk = format!(
            "public:{}.{}.pkam.__pkams.__public_keys{}",
            self.app, self.device, server.atsign
        );
        st.put_simple(
            &pk.to_lowercase(),
            &ObjectWriter::new()
                .str("apkamPublicKey", &self.apkam_public_key)
                .end(),
            &server.atsign,
            None,
        )?;
        Ok(())
    }

    /// `namespace`-style summary used by list/fetch.
    fn summary(&self) -> String {
        ObjectWriter::new()
            .str("appName", &self.app)
            .str("deviceName", &self.device)
            .raw("namespace", &str_map(&self.namespaces))
            .some_str(
                "encryptedAPKAMSymmetricKey",
                self.enc_apkam_sym_key.as_deref(),
            )
            .str("status", self.state.as_str())
            .end()
    }
}

fn internal(msg: impl Into<String>) -> AtErr {
    AtErr::new(AtCode::Internal, msg)
}

fn store_err(e: std::io::Error) -> AtErr {
    log::error!("enrollment store write failed: {e}");
    AtErr::new(AtCode::DataStore, format!("store write failed: {e}")).closing()
}

/// The answer for an id with no record: it expired, or never was.
fn expired(id: &str) -> AtErr {
    AtErr::status(
        AtCode::ApkamExpired,
        format!("enrollment_id: {id} is expired or invalid"),
    )
}

/// A new pending record from an `enroll:request` body: app, device and an RSA public key are
/// mandatory.
fn requested(o: &miniserde::json::Object) -> VerbResult<Enrollment> {
    let app = get_str(o, "appName")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| internal("appName is mandatory"))?;
    let device = get_str(o, "deviceName")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| internal("deviceName is mandatory"))?;
    let pk = get_str(o, "apkamPublicKey")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| internal("apkamPublicKey is mandatory"))?;
    if crate::crypto::rsa::RsaPublicKey::from_spki_b64(pk).is_err() {
        return Err(internal("apkamPublicKey is not a valid RSA public key"));
    }
    Ok(Enrollment {
        id: random::uuid_v4(),
        session_id: String::new(),
        app: app.to_string(),
        device: device.to_string(),
        namespaces: get_str_map(o, "namespaces").unwrap_or_default(),
        apkam_public_key: pk.to_string(),
        state: EnrollState::Pending,
        enc_apkam_sym_key: get_str(o, "encryptedAPKAMSymmetricKey").map(str::to_string),
        expiry_ms: get_int(o, "apkamKeysExpiryInMillis").unwrap_or(0).max(0),
    })
}

fn fib(n: u32) -> u64 {
    let (mut a, mut b) = (1u64, 1u64);
    for _ in 1..n {
        let c = a.saturating_add(b);
        a = b;
        b = c;
    }
    a
}

impl Session {
    /// Fails unless this connection may manage enrollments: legacy PKAM/CRAM, or an approved
    /// enrollment holding `__manage`.
    fn need_manage(&self) -> VerbResult<()> {
        self.need_owner()?;
        let Some(id) = self.enrollment_id() else {
            return Ok(());
        };
        match Enrollment::load(&self.server, id) {
            Some(e)
                if e.state == EnrollState::Approved
                    && e.namespaces.iter().any(|(n, _)| n == "__manage") =>
            {
                Ok(())
            }
            _ => Err(internal(format!(
                "enrollment id: {id} does not have access to __manage namespace"
            ))),
        }
    }

    /// The approving connection must hold every requested namespace (§11.7).
    fn covers(&self, wanted: &[(String, String)]) -> VerbResult<()> {
        let Some(id) = self.enrollment_id() else {
            return Ok(());
        };
        let mine = Enrollment::load(&self.server, id)
            .map(|e| e.namespaces)
            .unwrap_or_default();
        for (ns, a) in wanted {
            let ok = mine
                .iter()
                .any(|(m, ma)| (m == ns || m == "*") && (ma == "rw" || (a == "r" && ma == "r")));
            if !ok {
                return Err(internal(format!(
                    "Cannot approve enrollment: no {a} access to namespace {ns}"
                )));
            }
        }
        Ok(())
    }

    /// `enroll:<op>` (§7.11).
    pub(crate) async fn enroll(
        &mut self,
        op: &str,
        force: bool,
        body: Option<&str>,
    ) -> VerbResult<String> {
        let o = match body {
            Some(b) => parse_object(b).ok_or_else(|| AtErr::syntax("enroll: invalid JSON"))?,
            None => miniserde::json::Object::new(),
        };
        if op == "request" {
            return self.enroll_request(&o).await;
        }
        if op == "list" {
            return self.enroll_list(&o);
        }
        let id = get_str(&o, "enrollmentId")
            .ok_or_else(|| internal("enrollmentId is mandatory"))?
            .to_string();
        if op == "fetch" {
            return self.enroll_fetch(&id);
        }
        self.enroll_change(op, &id, force, &o)
    }

    /// `enroll:list`: every record for a manager, else only this connection's own.
    fn enroll_list(&self, o: &miniserde::json::Object) -> VerbResult<String> {
        self.need_owner()?;
        let filter = get_str_list(o, "enrollmentStatusFilter");
        let own_only = self.need_manage().is_err();
        let mut out = ObjectWriter::new();
        for e in Enrollment::all(&self.server) {
            if own_only && Some(e.id.as_str()) != self.enrollment_id() {
                continue;
            }
            if filter
                .as_ref()
                .is_some_and(|f| !f.iter().any(|s| s == e.state.as_str()))
            {
                continue;
            }
            out = out.raw(&record_key(&e.id, self.me()), &e.summary());
        }
        Ok(format!("data:{}", out.end()))
    }

    fn enroll_fetch(&self, id: &str) -> VerbResult<String> {
        self.need_owner()?;
        if self.need_manage().is_err() && Some(id) != self.enrollment_id() {
            return Err(internal(format!(
                "enrollment id: {id} does not have access to __manage namespace"
            )));
        }
        let e = Enrollment::load(&self.server, id).ok_or_else(|| expired(id))?;
        Ok(format!("data:{}", e.summary()))
    }

    /// `approve`, `deny`, `revoke`, `unrevoke`, `delete`: a manager moves a record on.
    fn enroll_change(
        &mut self,
        op: &str,
        id: &str,
        force: bool,
        o: &miniserde::json::Object,
    ) -> VerbResult<String> {
        self.need_manage()?;
        let mut e = Enrollment::load(&self.server, id).ok_or_else(|| expired(id))?;
        let bad_state = |e: &Enrollment| {
            internal(format!(
                "Cannot {op} a {} enrollment. Only {} enrollments can be {op}d",
                e.state.as_str(),
                match op {
                    "approve" | "deny" => "pending",
                    "revoke" => "approved",
                    "unrevoke" => "revoked",
                    _ => "denied or revoked",
                }
            ))
        };
        let status = match op {
            "approve" => {
                if e.state != EnrollState::Pending {
                    return Err(bad_state(&e));
                }
                self.approve(&mut e, o)?;
                "approved"
            }
            "deny" => {
                if e.state != EnrollState::Pending {
                    return Err(bad_state(&e));
                }
                e.state = EnrollState::Denied;
                e.save(&self.server, None).map_err(store_err)?;
                "denied"
            }
            "revoke" => {
                if e.state != EnrollState::Approved {
                    return Err(bad_state(&e));
                }
                if Some(id) == self.enrollment_id() && !force {
                    return Err(AtErr::new(
                        AtCode::SelfRevoke,
                        "Current client cannot revoke its own enrollment",
                    ));
                }
                e.state = EnrollState::Revoked;
                e.save(&self.server, None).map_err(store_err)?;
                self.server.close_sessions(id);
                "revoked"
            }
            "unrevoke" => {
                if e.state != EnrollState::Revoked {
                    return Err(bad_state(&e));
                }
                e.state = EnrollState::Approved;
                e.save(&self.server, Some(e.expiry_ms).filter(|t| *t > 0))
                    .map_err(store_err)?;
                "approved"
            }
            "delete" => {
                if !matches!(e.state, EnrollState::Denied | EnrollState::Revoked) {
                    return Err(bad_state(&e));
                }
                self.server
                    .state()
                    .delete(&record_key(id, self.me()))
                    .map_err(store_err)?;
                return Ok(format!(
                    "data:{}",
                    ObjectWriter::new()
                        .str("enrollmentId", id)
                        .str("status", "deleted")
                        .end()
                ));
            }
            _ => return Err(AtErr::syntax("unknown enroll operation")),
        };
        log::info!("{}: enrollment {id} {status}", self.me());
        Ok(format!(
            "data:{}",
            ObjectWriter::new()
                .str("status", status)
                .str("enrollmentId", id)
                .end()
        ))
    }

    /// Approves a pending `e`, storing the keys the approver encrypted for it (§11.6).
    fn approve(&self, e: &mut Enrollment, o: &miniserde::json::Object) -> VerbResult<()> {
        self.covers(&e.namespaces)?;
        let k1 = get_str(o, "encryptedDefaultEncryptionPrivateKey")
            .ok_or_else(|| internal("encryptedDefaultEncryptionPrivateKey is mandatory"))?;
        let k2 = get_str(o, "encryptedDefaultSelfEncryptionKey")
            .ok_or_else(|| internal("encryptedDefaultSelfEncryptionKey is mandatory"))?;
        e.state = EnrollState::Approved;
        e.save_keys(&self.server, k1, k2).map_err(store_err)?;
        e.save(&self.server, Some(e.expiry_ms).filter(|t| *t > 0))
            .map_err(store_err)
    }

    /// `enroll:request` (§11.5): the first one on a CRAM connection is approved at once;
    /// others wait for a manager, with an OTP or the SPP unless the owner asks.
    async fn enroll_request(&mut self, o: &miniserde::json::Object) -> VerbResult<String> {
        let now = now_ms();
        self.count_request(now)?;
        let e = requested(o)?;
        if matches!(self.auth, Auth::Owner { cram: true, .. }) {
            return self.first_enrollment(e, o);
        }
        if e.namespaces.is_empty() {
            return Err(internal("namespaces is mandatory"));
        }
        if !self.is_owner() {
            if e.enc_apkam_sym_key.as_deref().unwrap_or("").is_empty() {
                return Err(internal("encryptedAPKAMSymmetricKey is mandatory"));
            }
            let otp = get_str(o, "otp").unwrap_or("");
            if !self.take_otp(otp) {
                self.bad_otps += 1;
                let delay = fib(self.bad_otps).min(MAX_OTP_DELAY_S);
                crate::runtime::sleep(Duration::from_secs(delay)).await;
                return Err(internal("invalid otp. Cannot process enroll request"));
            }
        }
        if let Some(other) = Enrollment::all(&self.server).into_iter().find(|x| {
            x.app == e.app
                && x.device == e.device
                && matches!(x.state, EnrollState::Pending | EnrollState::Approved)
        }) {
            return Err(internal(format!("Another enrollment with id {} exists with the app name {} and device name {} in {} state", other.id, e.app, e.device, other.state.as_str())));
        }
        e.save(&self.server, Some(PENDING_TTL_MS))
            .map_err(store_err)?;
        self.announce(&e, now)?;
        log::info!(
            "{}: enrollment {} pending ({} / {})",
            self.me(),
            e.id,
            e.app,
            e.device
        );
        Ok(format!(
            "data:{}",
            ObjectWriter::new()
                .str("enrollmentId", &e.id)
                .str("status", "pending")
                .end()
        ))
    }

    /// At most [`MAX_REQUESTS_PER_HOUR`] requests per connection.
    fn count_request(&mut self, now: i64) -> VerbResult<()> {
        self.enroll_requests.retain(|t| now - t < 3_600_000);
        if self.enroll_requests.len() >= MAX_REQUESTS_PER_HOUR {
            return Err(internal(
                "Enrollment requests have exceeded the limit within the specified time frame",
            ));
        }
        self.enroll_requests.push(now);
        Ok(())
    }

    /// First activation (§11.2): auto-approved with full namespaces; this connection becomes
    /// that enrollment's.
    fn first_enrollment(
        &mut self,
        mut e: Enrollment,
        o: &miniserde::json::Object,
    ) -> VerbResult<String> {
        e.namespaces = vec![("__manage".into(), "rw".into()), ("*".into(), "rw".into())];
        e.state = EnrollState::Approved;
        let k1 = get_str(o, "encryptedDefaultEncryptionPrivateKey").unwrap_or("");
        let k2 = get_str(o, "encryptedDefaultSelfEncryptionKey").unwrap_or("");
        e.save_keys(&self.server, k1, k2).map_err(store_err)?;
        e.save(&self.server, Some(e.expiry_ms).filter(|t| *t > 0))
            .map_err(store_err)?;
        self.server
            .state()
            .put_simple(
                "privatekey:at_pkam_publickey",
                &e.apkam_public_key,
                self.me(),
                None,
            )
            .map_err(store_err)?;
        self.server.add_session(&e.id, self.tx.clone());
        self.auth = Auth::Owner {
            enrollment: Some(e.id.clone()),
            cram: true,
        };
        log::info!("{}: first enrollment {} approved", self.me(), e.id);
        Ok(format!(
            "data:{}",
            ObjectWriter::new()
                .str("enrollmentId", &e.id)
                .str("status", "approved")
                .end()
        ))
    }

    /// Tells the managers' monitors (self notification) that `e` waits for approval.
    fn announce(&self, e: &Enrollment, now: i64) -> VerbResult<()> {
        let value = ObjectWriter::new()
            .some_str("encryptedApkamSymmetricKey", e.enc_apkam_sym_key.as_deref())
            .some_str("encryptedAPKAMSymmetricKey", e.enc_apkam_sym_key.as_deref())
            .str("appName", &e.app)
            .str("deviceName", &e.device)
            .raw("namespace", &str_map(&e.namespaces))
            .end();
        let n = Notification {
            id: random::uuid_v4(),
            from: self.me().to_string(),
            to: self.me().to_string(),
            key: record_key(&e.id, self.me()),
            value: Some(value),
            delete: false,
            epoch: now,
            text: false,
            is_encrypted: false,
            meta: Default::default(),
            kind: Kind::SelfNote,
            status: Status::Delivered,
            expires_at: now + REQUEST_NOTE_TTL_MS,
        };
        self.server.receive(n).map_err(store_err)
    }

    /// Checks an OTP or the SPP (§7.12); a used OTP is deleted.
    fn take_otp(&self, otp: &str) -> bool {
        if otp.is_empty() {
            return false;
        }
        let lower = otp.to_lowercase();
        let spp_key = format!("private:spp.__otp{}", self.me());
        let otp_key = format!("private:{lower}.__otp{}", self.me());
        let mut st = self.server.state();
        if let Some(spp) = st.value(&spp_key) {
            if crate::crypto::hash::ct_eq(spp.to_lowercase().as_bytes(), lower.as_bytes()) {
                return true;
            }
        }
        if st.value(&otp_key).is_some() {
            let _ = st.delete(&otp_key);
            return true;
        }
        false
    }

    /// `otp:get` (§7.12).
    pub(crate) fn otp_get(&self, ttl: Option<i64>) -> VerbResult<String> {
        self.need_manage()?;
        let otp = loop {
            let s = random::string_from(OTP_ALPHABET, 6);
            if s.bytes().any(|b| b.is_ascii_digit()) {
                break s;
            }
        };
        let key = format!("private:{}.__otp{}", otp.to_lowercase(), self.me());
        let ttl = ttl.filter(|t| *t > 0).unwrap_or(OTP_TTL_MS);
        self.server
            .state()
            .put_simple(&key, &otp, self.me(), Some(ttl))
            .map_err(store_err)?;
        Ok(format!("data:{otp}"))
    }

    /// `otp:put` (§7.12): the semi-permanent passcode.
    pub(crate) fn otp_put(&self, spp: &str, ttl: Option<i64>) -> VerbResult<String> {
        self.need_manage()?;
        let key = format!("private:spp.__otp{}", self.me());
        self.server
            .state()
            .put_simple(&key, spp, self.me(), ttl.filter(|t| *t > 0))
            .map_err(store_err)?;
        Ok("data:ok".into())
    }

    /// `keys:get:keyName:` (§7.13): APKAM connections only.
    pub(crate) fn keys_get(&self, name: &str) -> VerbResult<String> {
        self.need_owner()?;
        let id = self
            .enrollment_id()
            .ok_or_else(|| internal("keys verb requires an APKAM (enrollment) connection"))?
            .to_string();
        if !name.starts_with(&format!("{id}.")) {
            self.need_manage()?;
        }
        let st = self.server.state();
        match st.value(name) {
            Some(v) => Ok(format!("data:{v}")),
            None => Err(AtErr::not_found(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn record_roundtrip() {
        let e = Enrollment {
            id: "id1".into(),
            session_id: "_s".into(),
            app: "a".into(),
            device: "d".into(),
            namespaces: ns(&[("sshnp", "rw")]),
            apkam_public_key: "PK".into(),
            state: EnrollState::Pending,
            enc_apkam_sym_key: Some("E".into()),
            expiry_ms: 0,
        };
        let back = Enrollment::from_json("id1", &e.to_json()).unwrap();
        assert_eq!(back.namespaces, e.namespaces);
        assert_eq!(back.state, EnrollState::Pending);
    }
}
