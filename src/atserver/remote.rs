//! The federation verbs of a connection (atprotocol.md §4.4, §4.5, §7.3, §7.4, §8.2):
//! `pol` and what a pol-authenticated peer server may do (lookup of keys shared with it, scan,
//! notify receive side, notify:list of what we sent it), and the owner's `lookup`/`plookup` of
//! atSigns hosted elsewhere, fetched over the network and cached by the ttr rules.
use super::error::{AtCode, AtErr, VerbResult};
use super::handlers::{compile, render, store_err};
use super::key::{AtKey, Vis};
use super::meta::{now_ms, Meta, MetaPatch, FIELDS, TTL, TTR};
use super::notify::{monitor_matches, Kind, Notification, Status, DEFAULT_TTLN_MS};
use super::peer::{within, LocalAtSign, PeerError, REMOTE_DEADLINE};
use super::server::{Found, Hub};
use super::session::{Auth, Session};
use super::verbs::{Mode, NotifyReq};
use crate::crypto::rsa::HashAlgo;
use crate::crypto::{b64, random};
use crate::json::str_array;
use crate::json::untyped::{get_obj, get_scalar, parse_object};

/// Public data fetched without a ttr is cached for 24 h (§7.3).
const PUBLIC_CACHE_TTL_MS: i64 = 24 * 3600 * 1000;

/// A remote `lookup:all:` answer: value and the metadata to cache it with.
struct Remote {
    value: String,
    patch: MetaPatch,
}

/// Parses `{"key":…,"data":…,"metaData":{…}}`; metadata fields we do not know are dropped.
fn parse_all(json: &str) -> Result<Remote, PeerError> {
    let o = parse_object(json)
        .ok_or_else(|| PeerError::Protocol(format!("lookup:all answer {json:.60?} is not JSON")))?;
    let value = get_scalar(&o, "data")
        .ok_or_else(|| PeerError::Protocol("lookup:all answer has no data".into()))?;
    let mut patch = MetaPatch::default();
    if let Some(m) = get_obj(&o, "metaData") {
        for (i, (name, _)) in FIELDS.iter().enumerate() {
            if let Some(v) = get_scalar(m, name).filter(|v| !v.is_empty() && v != "null") {
                // Keep only values the wire grammar could carry (no ':', '@' or spaces).
                if !v.contains([':', '@', ' ', '\n']) {
                    patch.0[i] = Some(Some(v));
                }
            }
        }
    }
    Ok(Remote { value, patch })
}

impl Session {
    /// The atSign of a pol-authenticated connection.
    pub(crate) fn pol_from(&self) -> Option<&str> {
        match &self.auth {
            Auth::Pol(f) => Some(f),
            _ => None,
        }
    }

    /// `pol` (§4.4): verifies the proof of the preceding foreign `from` over our own connection
    /// to the claimed atSign's server; on success the connection acts for that atSign.
    pub(crate) async fn pol(&mut self) -> VerbResult<Option<String>> {
        let failed = || AtErr::new(AtCode::AuthFailed, "Pol Authentication Failed");
        let Some((from, session, proof, expiry)) = self.foreign.take() else {
            log::warn!("{}: pol without a preceding foreign from", self.me());
            return Err(failed());
        };
        if now_ms() > expiry {
            log::warn!("{}: pol for {from}: proof expired", self.me());
            return Err(failed());
        }
        let hub = self.hub.clone();
        let r = within(REMOTE_DEADLINE, "pol verification", async {
            Box::pin(verify_pol(&hub, &from, &session, &proof)).await
        })
        .await;
        if let Err(e) = r {
            log::warn!("{}: pol for {from} refused: {e}", self.me());
            return Err(failed());
        }
        log::info!("{}: pol authenticated as {from}", self.me());
        self.auth = Auth::Pol(from.clone());
        // Exactly `@from@`: no `data:`, no newline (§2.3).
        let _ = self.tx.send(format!("{from}@").into_bytes()).await;
        Ok(None)
    }

    /// `lookup` on a pol connection: what we shared with the peer (`@peer:<name>@<owner>`),
    /// else public data.
    pub(crate) fn pol_lookup(&self, mode: Mode, name: &str, owner: &str) -> VerbResult<String> {
        let from = self.pol_from().unwrap_or_default();
        let now = now_ms();
        let shared = format!("{from}:{name}{owner}");
        let st = self.server.state();
        match st.find(&shared, now) {
            Found::Active(r) => Ok(render(mode, &shared, &r.value, &r.meta)),
            Found::Inactive => Ok("data:null".into()),
            Found::Absent => {
                let public = format!("public:{name}{owner}");
                match st.find(&public, now) {
                    Found::Active(r) => Ok(render(mode, &public, &r.value, &r.meta)),
                    _ => Err(AtErr::not_found(&shared)),
                }
            }
        }
    }

    /// `scan` on a pol connection: keys shared with the peer, prefix removed (§7.6).
    pub(crate) fn pol_scan(&self, regex: Option<String>) -> VerbResult<String> {
        let re = compile(regex.as_deref())?;
        let prefix = format!("{}:", self.pol_from().unwrap_or_default());
        let now = now_ms();
        let st = self.server.state();
        let keys: Vec<String> = st
            .keys
            .iter()
            .filter(|(k, r)| k.starts_with(&prefix) && r.meta.is_active(now))
            .map(|(k, _)| k[prefix.len()..].to_string())
            .filter(|k| re.is_match(k))
            .collect();
        Ok(format!(
            "data:{}",
            str_array(keys.iter().map(String::as_str))
        ))
    }

    /// `notify:list` on a pol connection: notifications we sent to the peer (§7.8).
    pub(crate) fn pol_notify_list(&self, regex: Option<String>) -> VerbResult<String> {
        let re = compile(regex.as_deref())?;
        let from = self.pol_from().unwrap_or_default();
        let now = now_ms();
        let st = self.server.state();
        let items: Vec<String> = st
            .notes
            .iter()
            .filter(|n| n.kind == Kind::Sent && n.to == from && n.expires_at >= now)
            .filter(|n| monitor_matches(&re, n))
            .map(|n| n.to_json(true))
            .collect();
        if items.is_empty() {
            return Ok("data:null".into());
        }
        Ok(format!("data:[{}]", items.join(",")))
    }

    /// `notify` receive side (§8.2): stored with the *authenticated* sender as `from`. The key
    /// must be addressed to us and owned by the sender.
    pub(crate) fn pol_notify(&self, req: NotifyReq) -> VerbResult<String> {
        let from = self.pol_from().unwrap_or_default().to_string();
        let me = self.me().to_string();
        let key = req.key.clone();
        match &key.vis {
            Vis::Shared(w) if *w == me => {}
            Vis::Public if !req.text => {}
            _ => {
                return Err(AtErr::unauthorized(format!(
                    "notification key {} is not addressed to {me}",
                    key.stored()
                )))
            }
        }
        if !req.text && key.owner.as_deref() != Some(from.as_str()) {
            return Err(AtErr::unauthorized(format!(
                "notification key {} is not owned by the authenticated {from}",
                key.stored()
            )));
        }
        let notif_key = req.notification_key(&key, &me.to_string());
        let meta = req.meta_fields();
        let is_encrypted = req.is_encrypted(&key);
        let now = now_ms();
        let ttln = req.ttln.filter(|t| *t > 0).unwrap_or(DEFAULT_TTLN_MS);
        let n = Notification {
            id: req.id.unwrap_or_else(random::uuid_v4),
            from,
            to: me,
            key: notif_key,
            value: req.value,
            delete: req.delete,
            epoch: now,
            text: req.text,
            is_encrypted,
            meta,
            kind: Kind::Received,
            status: Status::Delivered,
            expires_at: now.saturating_add(ttln),
        };
        self.server.receive(n).map_err(store_err)?;
        Ok("data:success".into())
    }

    /// Should an owner `lookup`/`plookup` of `owner` go over the network?
    pub(crate) fn is_foreign(&self, owner: &str) -> bool {
        self.is_owner()
            && owner != self.me()
            && self.hub.get(owner).is_none()
            && self.hub.peers.enabled()
    }

    /// A fresh cached copy (§7.3 cache rules).
    fn cached(&self, cached: &str, label: &str, mode: Mode, stale_ok: bool) -> Option<String> {
        let now = now_ms();
        let st = self.server.state();
        match st.find(cached, now) {
            Found::Active(r) => {
                let fresh =
                    r.meta.int(TTR) == Some(-1) || r.meta.refresh_at.is_none_or(|t| t > now);
                (fresh || stale_ok).then(|| render(mode, label, &r.value, &r.meta))
            }
            _ => None,
        }
    }

    /// Fetches `lookup:all:<name><owner>` (as us via pol when `as_me`), caches it under
    /// `cached` when the rules say so, and renders it.
    #[allow(clippy::too_many_arguments)]
    async fn fetch(
        &self,
        as_me: bool,
        bypass: bool,
        mode: Mode,
        name: &str,
        owner: &str,
        cached: &str,
        label: &str,
    ) -> VerbResult<String> {
        if !bypass {
            if let Some(hit) = self.cached(cached, label, mode, false) {
                return Ok(hit);
            }
        }
        let me = as_me.then(|| self.server.as_ref() as &dyn LocalAtSign);
        let cmd = format!("lookup:all:{name}{owner}");
        let remote = match self.hub.peers.request(owner, me, &cmd).await {
            Ok(json) => parse_all(&json),
            Err(e) => Err(e),
        };
        let mut remote = match remote {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{}: {cmd} at {owner}: {e}", self.me());
                if !matches!(e, PeerError::Remote { .. }) {
                    if let Some(stale) = self.cached(cached, label, mode, true) {
                        return Ok(stale);
                    }
                }
                return Err(e.to_at_err());
            }
        };
        let now = now_ms();
        let ttr = remote.patch.get(TTR).and_then(|t| t.parse::<i64>().ok());
        let public = !as_me;
        let cache = ttr.is_some_and(|t| t != 0) || public;
        if public && ttr.is_none_or(|t| t == 0) {
            remote.patch.0[TTL] = Some(Some(PUBLIC_CACHE_TTL_MS.to_string()));
        }
        let meta = {
            let mut st = self.server.state();
            let m = Meta::updated(
                st.keys.get(cached).map(|r| &r.meta),
                &remote.patch,
                owner,
                now,
            );
            let unchanged = st
                .keys
                .get(cached)
                .is_some_and(|r| r.value == remote.value && r.meta.fields == m.fields);
            if cache && !unchanged {
                st.put(cached, remote.value.clone(), m.clone())
                    .map_err(store_err)?;
            }
            m
        };
        Ok(render(mode, label, &remote.value, &meta))
    }

    /// Owner `lookup` of another atSign's key (§7.3): `@me:<name>@owner` over pol.
    pub(crate) async fn remote_lookup(
        &self,
        bypass: bool,
        mode: Mode,
        name: &str,
        owner: &str,
    ) -> VerbResult<String> {
        let shared = format!("{}:{name}{owner}", self.me());
        let key = AtKey::parse(&shared).map_err(|e| AtErr::new(AtCode::InvalidKey, e))?;
        self.check_ns(&key, false)?;
        let cached = format!("cached:{shared}");
        self.fetch(true, bypass, mode, name, owner, &cached, &shared)
            .await
    }

    /// Owner `plookup` of another atSign's public key (§7.4): unauthenticated lookup.
    pub(crate) async fn remote_plookup(
        &self,
        bypass: bool,
        mode: Mode,
        name: &str,
        owner: &str,
    ) -> VerbResult<String> {
        self.need_owner()?;
        let public = format!("public:{name}{owner}");
        let cached = format!("cached:{public}");
        self.fetch(false, bypass, mode, name, owner, &cached, &public)
            .await
    }

    /// Unauthenticated `lookup:_<session>@me`: a proof we published for our own `pol` (§4.4).
    pub(crate) fn proof_lookup(&self, name: &str, owner: &str) -> Option<String> {
        if owner != self.me() || !name.starts_with('_') {
            return None;
        }
        self.server
            .proof(&format!("{name}{owner}"))
            .map(|sig| format!("data:{sig}"))
    }
}

/// Checks a `pol` (§4.4): `from`'s server must publish `public:<session>` = a signature over
/// `proof` made with `from`'s server signing key. Hosted atSigns are checked in-process.
async fn verify_pol(hub: &Hub, from: &str, session: &str, proof: &str) -> Result<(), PeerError> {
    let (sig_b64, spki) = match hub.get(from) {
        Some(local) => {
            let sig = local
                .proof(session)
                .ok_or_else(|| PeerError::Auth(format!("{from} published no proof {session}")))?;
            let spki = local
                .state()
                .value(&format!("public:signing_publickey{from}"))
                .ok_or_else(|| PeerError::Auth(format!("{from} has no signing key")))?;
            (sig, spki)
        }
        None => {
            // A fresh unauthenticated connection of our own, never the caller's (§4.4).
            let sig = hub
                .peers
                .request(from, None, &format!("lookup:{session}"))
                .await?;
            let spki = hub
                .peers
                .request(from, None, &format!("lookup:signing_publickey{from}"))
                .await?;
            (sig, spki)
        }
    };
    let key = crate::crypto::rsa::RsaPublicKey::from_spki_b64(spki.trim())
        .map_err(|e| PeerError::Auth(format!("{from} signing key: {e}")))?;
    let sig = b64::decode(sig_b64.trim())
        .map_err(|e| PeerError::Auth(format!("{from} proof signature: {e}")))?;
    if key.verify(HashAlgo::Sha256, proof.as_bytes(), &sig) {
        Ok(())
    } else {
        Err(PeerError::Auth(format!(
            "{from}: proof signature does not verify"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lookup_all() {
        let r = parse_all(r#"{"key":"@a:k@b","data":"v:1","metaData":{"ttr":86400,"ccd":true,"isEncrypted":true,"ivNonce":"AAEC","createdAt":"2024-01-01 00:00:00.000Z","sharedKeyEnc":null}}"#).unwrap();
        assert_eq!(r.value, "v:1");
        assert_eq!(r.patch.get(TTR), Some("86400"));
        assert_eq!(r.patch.get(super::super::meta::CCD), Some("true"));
        assert_eq!(r.patch.get(super::super::meta::SHARED_KEY_ENC), None);
        assert!(parse_all("data").is_err());
        assert!(parse_all(r#"{"key":"x"}"#).is_err());
    }
}
