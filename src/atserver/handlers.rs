//! Data verbs of the atServer (atprotocol.md §7.1–§7.9): lookups, update/delete with
//! autoNotify (§8.5), scan, notify and monitor.
use super::error::{AtCode, AtErr, VerbResult};
use super::key::{is_hidden, AtKey, Vis};
use super::meta::{now_ms, Meta, MetaPatch, IS_ENCRYPTED, TTR};
use super::notify::{monitor_matches, Kind, Notification, Status, DEFAULT_TTLN_MS};
use super::scope::ns_allows;
use super::server::{Found, Monitor};
use super::session::Session;
use super::verbs::{Mode, NotifyReq};
use crate::at::regex::Pattern;
use crate::crypto::random;
use crate::json::{str_array, ObjectWriter};

pub(crate) fn store_err(e: std::io::Error) -> AtErr {
    log::error!("key store write failed: {e}");
    AtErr::new(AtCode::DataStore, format!("store write failed: {e}")).closing()
}

pub(crate) fn compile(re: Option<&str>) -> VerbResult<Pattern> {
    Pattern::new(re.unwrap_or(".*")).map_err(|e| AtErr::syntax(format!("invalid regex: {e}")))
}

/// `data:` body for a found value in the requested mode (§6.3).
pub(crate) fn render(mode: Mode, key: &str, value: &str, meta: &Meta) -> String {
    match mode {
        Mode::Value => format!("data:{value}"),
        Mode::Meta => format!("data:{}", meta.to_json()),
        Mode::All => format!(
            "data:{}",
            ObjectWriter::new()
                .str("key", key)
                .str("data", value)
                .raw("metaData", &meta.to_json())
                .end()
        ),
    }
}

impl Session {
    /// APKAM namespace check (§11.7); legacy PKAM and CRAM connections pass.
    pub(crate) fn check_ns(&self, key: &AtKey, write: bool) -> VerbResult<()> {
        let Some(id) = self.enrollment_id() else {
            return Ok(());
        };
        let ns = super::enroll::Enrollment::load(&self.server, id)
            .map(|e| e.namespaces)
            .unwrap_or_default();
        if ns_allows(&ns, key, write, false) {
            Ok(())
        } else {
            Err(AtErr::unauthorized(format!(
                "Connection with enrollment ID {id} is not authorized to {} key: {}",
                if write { "update" } else { "lookup" },
                key.stored()
            )))
        }
    }

    fn found(&self, key: &str, mode: Mode, label: &str, found: Found<'_>) -> VerbResult<String> {
        match found {
            Found::Absent => Err(AtErr::not_found(key)),
            Found::Inactive => Ok("data:null".into()),
            Found::Active(r) => Ok(render(mode, label, &r.value, &r.meta)),
        }
    }

    /// `llookup` (§7.2).
    pub(crate) fn llookup(&self, mode: Mode, key: &AtKey) -> VerbResult<String> {
        self.need_owner()?;
        let stored = key.stored();
        if stored == "privatekey:at_secret" || key.vis == Vis::Private {
            return Err(AtErr::unauthorized(format!("{stored} is not readable")));
        }
        self.check_ns(key, false)?;
        let st = self.server.state();
        self.found(&stored, mode, &stored, st.find(&stored, now_ms()))
    }

    /// `lookup` (§7.3): public data when unauthenticated, own shared-with-self keys, or another
    /// hosted atSign's key shared with us (cache first).
    pub(crate) fn lookup(
        &self,
        bypass: bool,
        mode: Mode,
        name: &str,
        owner: &str,
    ) -> VerbResult<String> {
        let now = now_ms();
        let me = self.me().to_string();
        if !self.is_owner() {
            let k = format!("public:{name}{owner}");
            return self.found(&k, mode, &k, self.server.state().find(&k, now));
        }
        let shared = format!("{me}:{name}{owner}");
        let key = AtKey::parse(&shared).map_err(|e| AtErr::new(AtCode::InvalidKey, e))?;
        self.check_ns(&key, false)?;
        if owner == me {
            let st = self.server.state();
            if let Found::Absent = st.find(&shared, now) {
                let public = format!("public:{name}{owner}");
                return self.found(&shared, mode, &public, st.find(&public, now));
            }
            return self.found(&shared, mode, &shared, st.find(&shared, now));
        }
        let cached = format!("cached:{shared}");
        if !bypass {
            let st = self.server.state();
            if let Found::Active(r) = st.find(&cached, now) {
                let fresh =
                    r.meta.int(TTR) == Some(-1) || r.meta.refresh_at.is_none_or(|t| t > now);
                if fresh {
                    return Ok(render(mode, &shared, &r.value, &r.meta));
                }
            }
        }
        let Some(remote) = self.hub.get(owner) else {
            let st = self.server.state();
            if let Found::Active(r) = st.find(&cached, now) {
                return Ok(render(mode, &shared, &r.value, &r.meta));
            }
            return Err(AtErr::new(
                AtCode::SecondaryNotFound,
                format!("No secondary url found for atsign: {owner}"),
            ));
        };
        // Read the remote record under its lock only, then cache under ours (never both at once).
        let (value, meta) = {
            let st = remote.state();
            match st.find(&shared, now) {
                Found::Active(r) => (r.value.clone(), r.meta.clone()),
                Found::Inactive => return Ok("data:null".into()),
                Found::Absent => {
                    let public = format!("public:{name}{owner}");
                    match st.find(&public, now) {
                        Found::Active(r) => return Ok(render(mode, &shared, &r.value, &r.meta)),
                        _ => return Err(AtErr::not_found(&shared)),
                    }
                }
            }
        };
        if meta.int(TTR).is_some_and(|t| t != 0) {
            let mut patch = MetaPatch::default();
            for (p, f) in patch.0.iter_mut().zip(meta.fields.iter()) {
                *p = f.clone().map(Some);
            }
            let mut st = self.server.state();
            let m = Meta::updated(st.keys.get(&cached).map(|r| &r.meta), &patch, owner, now);
            let unchanged = st
                .keys
                .get(&cached)
                .is_some_and(|r| r.value == value && r.meta.fields == m.fields);
            if !unchanged {
                st.put(&cached, value.clone(), m).map_err(store_err)?;
            }
        }
        Ok(render(mode, &shared, &value, &meta))
    }

    /// `plookup` (§7.4): public data of any hosted atSign, fetched fresh.
    pub(crate) fn plookup(
        &self,
        _bypass: bool,
        mode: Mode,
        name: &str,
        owner: &str,
    ) -> VerbResult<String> {
        self.need_owner()?;
        let now = now_ms();
        let public = format!("public:{name}{owner}");
        if owner == self.me() {
            return self.found(
                &public,
                mode,
                &public,
                self.server.state().find(&public, now),
            );
        }
        if let Some(remote) = self.hub.get(owner) {
            let st = remote.state();
            return self.found(&public, mode, &public, st.find(&public, now));
        }
        let cached = format!("cached:{public}");
        match self.server.state().find(&cached, now) {
            Found::Active(r) => Ok(render(mode, &public, &r.value, &r.meta)),
            _ => Err(AtErr::new(
                AtCode::SecondaryNotFound,
                format!("No secondary url found for atsign: {owner}"),
            )),
        }
    }

    /// `update` / `update:meta` (§7.1) with autoNotify of shared keys (§8.5).
    pub(crate) fn update(
        &self,
        patch: &MetaPatch,
        key: &AtKey,
        value: String,
        meta_only: bool,
    ) -> VerbResult<String> {
        self.need_owner()?;
        let me = self.me().to_string();
        let mut key = key.clone();
        match key.vis {
            Vis::Private | Vis::Local => {
                return Err(AtErr::new(
                    AtCode::InvalidKey,
                    "Invalid update command - private and local keys cannot be updated",
                ))
            }
            Vis::PrivateKey if key.name != "at_pkam_publickey" => {
                return Err(AtErr::new(
                    AtCode::InvalidKey,
                    format!(
                        "Invalid update command - privatekey:{} is reserved",
                        key.name
                    ),
                ))
            }
            _ => {}
        }
        if key.cached {
            return Err(AtErr::new(
                AtCode::InvalidKey,
                "Invalid update command - cached keys cannot be updated",
            ));
        }
        if key.vis != Vis::PrivateKey {
            match &key.owner {
                None => key.owner = Some(me.clone()),
                Some(o) if *o != me => {
                    return Err(AtErr::new(
                        AtCode::InvalidKey,
                        format!("Invalid update command - sharedBy atsign {o} should be same as current atsign {me}"),
                    ))
                }
                _ => {}
            }
        }
        self.check_ns(&key, true)?;
        let stored = key.stored();
        let now = now_ms();
        let (commit, rec_value, rec_meta) = {
            let mut st = self.server.state();
            let old = st.keys.get(&stored).cloned();
            let value = if meta_only {
                match &old {
                    Some(o) => o.value.clone(),
                    None => return Err(AtErr::not_found(&stored)),
                }
            } else {
                value
            };
            let meta = Meta::updated(old.as_ref().map(|r| &r.meta), patch, &me, now);
            let c = st
                .put(&stored, value.clone(), meta.clone())
                .map_err(store_err)?;
            (c, value, meta)
        };
        if let Vis::Shared(w) = &key.vis {
            if *w != me && !meta_only {
                self.auto_notify(&stored, w, Some(rec_value), &rec_meta, false);
            }
        }
        Ok(format!("data:{commit}"))
    }

    fn auto_notify(
        &self,
        stored: &str,
        to: &str,
        value: Option<String>,
        meta: &Meta,
        delete: bool,
    ) {
        let now = now_ms();
        let n = Notification {
            id: random::uuid_v4(),
            from: self.me().to_string(),
            to: to.to_string(),
            key: stored.to_string(),
            value,
            delete,
            epoch: now,
            text: false,
            is_encrypted: meta.flag(IS_ENCRYPTED),
            meta: meta.fields.clone(),
            kind: Kind::Sent,
            status: Status::Queued,
            expires_at: now + DEFAULT_TTLN_MS,
        };
        if let Err(e) = self.hub.send(&self.server, n) {
            log::error!("{}: autoNotify of {stored}: {e}", self.me());
        }
    }

    /// `delete` (§7.5) with autoNotify of shared keys.
    pub(crate) fn delete(&self, key: &AtKey) -> VerbResult<String> {
        self.need_owner()?;
        let me = self.me().to_string();
        let mut key = key.clone();
        if key.owner.is_none() && key.vis != Vis::PrivateKey {
            key.owner = Some(me.clone());
        }
        if !key.cached && key.vis != Vis::PrivateKey && key.owner.as_deref() != Some(me.as_str()) {
            return Err(AtErr::new(
                AtCode::InvalidKey,
                format!("Invalid delete command - key owner should be {me}"),
            ));
        }
        self.check_ns(&key, true)?;
        let stored = key.stored();
        let (commit, old) = {
            let mut st = self.server.state();
            let old = st.keys.get(&stored).cloned();
            let c = st.delete(&stored).map_err(store_err)?;
            if stored == "privatekey:at_secret" {
                st.put_simple("privatekey:at_secret_deleted", "true", &me, None)
                    .map_err(store_err)?;
            }
            (c, old)
        };
        if let (Vis::Shared(w), false, Some(old)) = (&key.vis, key.cached, old) {
            if *w != me {
                self.auto_notify(&stored, w, None, &old.meta, true);
            }
        }
        Ok(format!("data:{commit}"))
    }

    /// `scan` (§7.6).
    pub(crate) fn scan(
        &self,
        show_hidden: bool,
        for_atsign: Option<String>,
        regex: Option<String>,
    ) -> VerbResult<String> {
        let re = compile(regex.as_deref())?;
        let now = now_ms();
        let me = self.me().to_string();
        if let Some(other) = for_atsign {
            self.need_owner()?;
            let remote = self.hub.get(&other).ok_or_else(|| {
                AtErr::new(
                    AtCode::SecondaryNotFound,
                    format!("No secondary url found for atsign: {other}"),
                )
            })?;
            let prefix = format!("{me}:");
            let st = remote.state();
            let keys: Vec<String> = st
                .keys
                .iter()
                .filter(|(k, r)| k.starts_with(&prefix) && r.meta.is_active(now))
                .map(|(k, _)| k[prefix.len()..].to_string())
                .filter(|k| re.is_match(k))
                .collect();
            return Ok(format!(
                "data:{}",
                str_array(keys.iter().map(String::as_str))
            ));
        }
        let ns = self.enrollment_id().map(|id| {
            super::enroll::Enrollment::load(&self.server, id)
                .map(|e| e.namespaces)
                .unwrap_or_default()
        });
        let st = self.server.state();
        let mut out = Vec::new();
        for (k, r) in st.keys.iter() {
            if !r.meta.is_active(now) || !re.is_match(k) {
                continue;
            }
            if !self.is_owner() {
                if k.starts_with("public:") && !k.starts_with("public:_") {
                    out.push(k["public:".len()..].to_string());
                }
                continue;
            }
            if k.starts_with("private:") || k.starts_with("privatekey:") || k.contains(".__manage@")
            {
                continue;
            }
            if is_hidden(k) && !(show_hidden && (k.starts_with('_') || k.starts_with("public:__")))
            {
                continue;
            }
            if let Some(ns) = &ns {
                let ok = AtKey::parse(k)
                    .map(|key| super::scope::ns_lists(ns, &key))
                    .unwrap_or(false);
                if !ok {
                    continue;
                }
            }
            out.push(k.clone());
        }
        Ok(format!(
            "data:{}",
            str_array(out.iter().map(String::as_str))
        ))
    }

    /// `notify` send side (§7.7): stored as sent and delivered in-process.
    pub(crate) fn notify(&self, req: NotifyReq) -> VerbResult<String> {
        self.need_owner()?;
        let me = self.me().to_string();
        let mut key = req.key.clone();
        let now = now_ms();
        let to = match &key.vis {
            Vis::Shared(w) => w.clone(),
            _ => me.clone(),
        };
        if !req.text {
            match &key.owner {
                None => key.owner = Some(me.clone()),
                Some(o) if *o != me => {
                    return Err(AtErr::unauthorized(format!("Invalid notify command - sharedBy atsign {o} should be same as current atsign {me}")))
                }
                _ => {}
            }
            self.check_ns(&key, true)?;
        }
        let notif_key = req.notification_key(&key, &to.to_string());
        let meta = req.meta_fields();
        let is_encrypted = req.is_encrypted(&key);
        let id = req.id.unwrap_or_else(random::uuid_v4);
        let ttln = req.ttln.filter(|t| *t > 0).unwrap_or(DEFAULT_TTLN_MS);
        let n = Notification {
            id: id.clone(),
            from: me.clone(),
            to: to.clone(),
            key: notif_key,
            value: req.value,
            delete: req.delete,
            epoch: now,
            text: req.text,
            is_encrypted,
            meta,
            kind: Kind::Sent,
            status: Status::Queued,
            expires_at: now.saturating_add(ttln),
        };
        if to == me || key.vis == Vis::Public {
            // To self: stored directly as received and delivered (§8.2).
            let n = Notification {
                kind: Kind::Received,
                status: Status::Delivered,
                ..n
            };
            self.server.receive(n).map_err(store_err)?;
        } else {
            self.hub.send(&self.server, n).map_err(store_err)?;
        }
        Ok(format!("data:{id}"))
    }

    /// `notify:status` (§7.8): no authentication needed.
    pub(crate) fn notify_status(&self, id: &str) -> String {
        let st = self.server.state();
        match st.notes.get(id) {
            None => "data:null".into(),
            Some(n) if n.expires_at < now_ms() => "data:expired".into(),
            Some(n) => format!("data:{}", n.status.as_str()),
        }
    }

    /// `notify:list` (§7.8): received, unexpired notifications.
    pub(crate) fn notify_list(&self, regex: Option<String>) -> VerbResult<String> {
        if !self.is_owner() {
            return Ok("data:null".into());
        }
        let re = compile(regex.as_deref())?;
        let now = now_ms();
        let namespaces = self.enrollment_id().map(|id| {
            super::enroll::Enrollment::load(&self.server, id)
                .map(|e| e.namespaces)
                .unwrap_or_default()
        });
        let st = self.server.state();
        let items: Vec<String> = st
            .notes
            .iter()
            .filter(|n| n.kind == Kind::Received && n.expires_at >= now && monitor_matches(&re, n))
            // An enrollment lists only what its namespaces may read, as `monitor` delivers.
            .filter(|n| match &namespaces {
                Some(ns) => AtKey::parse(&n.key)
                    .map(|k| ns_allows(ns, &k, false, true))
                    .unwrap_or(false),
                None => true,
            })
            .map(|n| n.to_json(true))
            .collect();
        if items.is_empty() {
            return Ok("data:null".into());
        }
        Ok(format!("data:[{}]", items.join(",")))
    }

    pub(crate) fn notify_fetch(&self, id: &str) -> VerbResult<String> {
        self.need_owner()?;
        let st = self.server.state();
        Ok(match st.notes.get(id) {
            Some(n) if n.expires_at >= now_ms() => format!("data:{}", n.to_fetch_json()),
            _ => format!(
                "data:{}",
                ObjectWriter::new()
                    .str("id", id)
                    .str("notificationStatus", "NotificationStatus.expired")
                    .end()
            ),
        })
    }

    pub(crate) fn notify_remove(&self, id: &str) -> VerbResult<String> {
        self.need_owner()?;
        self.server.state().remove_note(id).map_err(store_err)?;
        Ok("data:success".into())
    }

    /// `monitor` (§7.9): registers the live subscription first, then replays stored ones
    /// newer than `epoch` (duplicates are possible, clients de-duplicate by id).
    pub(crate) async fn monitor(
        &self,
        self_notes: bool,
        epoch: Option<i64>,
        regex: Option<String>,
    ) -> VerbResult<()> {
        self.need_owner()?;
        let re = compile(regex.as_deref())?;
        let namespaces = self.enrollment_id().map(|id| {
            super::enroll::Enrollment::load(&self.server, id)
                .map(|e| e.namespaces)
                .unwrap_or_default()
        });
        self.server.add_monitor(Monitor {
            tx: self.tx.clone(),
            re: re.clone(),
            self_notes,
            namespaces: namespaces.clone(),
        });
        let Some(epoch) = epoch else { return Ok(()) };
        let now = now_ms();
        let lines: Vec<Vec<u8>> = {
            let st = self.server.state();
            st.notes
                .iter()
                .filter(|n| n.epoch > epoch && n.expires_at >= now)
                .filter(|n| n.kind == Kind::Received || (self_notes && n.kind == Kind::SelfNote))
                .filter(|n| monitor_matches(&re, n))
                .filter(|n| match &namespaces {
                    Some(ns) => AtKey::parse(&n.key)
                        .map(|k| ns_allows(ns, &k, false, true))
                        .unwrap_or(false),
                    None => true,
                })
                .map(|n| format!("notification: {}\n", n.to_json(true)).into_bytes())
                .collect()
        };
        for l in lines {
            let _ = self.tx.send(l).await;
        }
        Ok(())
    }
}
