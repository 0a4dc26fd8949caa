//! The atProtocol client: an authenticated worker connection for requests, shared-key
//! management, encrypted notify, and reconnecting monitors (atprotocol.md §4, §7–§9, §13).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::conn::{lookup_server, Connection, RootAddr};
use super::keys::AtKeys;
use super::notification::{Notification, RawNotification, Sealed};
use super::{AtError, AtSign};
use crate::crypto::aes_ctr::{decrypt_b64, encrypt_b64, ZERO_IV};
use crate::crypto::rsa::RsaPublicKey;
use crate::crypto::{b64, hash, random};
use crate::runtime::{self, sleep, Backoff, Task};

mod checks;
mod login;
mod monitor_loop;
mod once;
mod workers;
use checks::{check_full_key, check_key_name};
use monitor_loop::monitor_loop;
use once::OncePerKey;
use workers::Workers;

/// Generous: a lookup of another atSign's data makes the server connect to that atSign's
/// server first (atprotocol.md §13 recommends at least 15 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Monitor: probe with `noop:0` after this much silence...
const MONITOR_IDLE: Duration = Duration::from_secs(15);
/// ...and give up on the connection if the probe is not answered within this.
const MONITOR_PROBE: Duration = Duration::from_secs(5);
/// Peers whose last `sharedKeyEnc` is remembered (an open relay hears from anyone).
const MAX_UNWRAPPED: usize = 1024;
/// Dart SDK value for the recipient's copy of a shared key: cache for 45 days (seconds).
const SHARED_KEY_TTR: i64 = 3_888_000;

pub struct ClientConfig {
    pub atsign: AtSign,
    pub keys: AtKeys,
    pub root: RootAddr,
}

/// Metadata for `notify`.
#[derive(Debug, Clone, Default)]
pub struct NotifyOptions {
    /// Key time-to-live in ms (NoPorts session traffic: 10000).
    pub ttl_ms: Option<u64>,
    /// Notification lifetime in ms.
    pub ttln_ms: Option<u64>,
    pub ttr: Option<i64>,
    pub ccd: Option<bool>,
}

/// Metadata for `update`.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub ttl_ms: Option<u64>,
    pub ttr: Option<i64>,
    pub ccd: Option<bool>,
}

/// The key metadata both `notify` and `update` carry.
struct KeyMeta {
    ttl_ms: Option<u64>,
    ttr: Option<i64>,
    ccd: Option<bool>,
}

/// Where a monitor starts.
#[derive(Debug, Clone, Copy, Default)]
pub enum MonitorStart {
    /// Only notifications that arrive from now on.
    #[default]
    Live,
    /// Replay stored notifications newer than this epoch (ms), then live ones.
    Since(i64),
}

struct SharedKey {
    key: [u8; 32],
    /// "Their copy": base64 of K's base64 text RSA-encrypted for the peer (`sharedKeyEnc`).
    their_copy: String,
    peer_key_md5: String,
}

struct Inner {
    atsign: AtSign,
    keys: AtKeys,
    root: RootAddr,
    server: Mutex<Option<(String, u16)>>,
    /// The request connections (`workers.rs`).
    workers: Arc<Workers>,
    /// Per peer, the key for values we send it. Made once per peer: two callers for one peer
    /// must not create two different keys, and a peer's look-ups do not hold up another's.
    outbound: OncePerKey<AtSign, Arc<SharedKey>>,
    inbound: Mutex<HashMap<AtSign, [u8; 32]>>,
    /// Per peer, the last `sharedKeyEnc` it sent and the key inside: the same text unwraps to
    /// the same key, so its RSA decryption is done once, not once per notification.
    unwrapped: Mutex<HashMap<AtSign, (String, [u8; 32])>>,
    public_keys: Mutex<HashMap<AtSign, RsaPublicKey>>,
}

/// Cheap to clone; all clones share the worker connection and key caches.
#[derive(Clone)]
pub struct AtClient {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned cache is still a valid cache: no invariant spans a panic here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AtClient {
    /// Look up the atServer, connect, and PKAM-authenticate (APKAM when the keys carry an
    /// enrollment id).
    pub async fn connect(cfg: ClientConfig) -> Result<AtClient, AtError> {
        let inner = Inner::new(cfg);
        // Boxed: connect + authenticate is a deep future; callers may poll it on a small stack.
        let conn = Box::pin(inner.open_authenticated()).await?;
        *inner.workers.first().await = Some(conn);
        Ok(AtClient { inner })
    }

    /// [`AtClient::connect`] and [`AtClient::monitor`] at once: after one directory lookup the
    /// worker and the monitor connections are opened and authenticated concurrently. A
    /// failure of the worker connection is reported first, as `connect` would.
    pub async fn connect_with_monitor(
        cfg: ClientConfig,
        regex: &str,
        start: MonitorStart,
    ) -> Result<(AtClient, Monitor), AtError> {
        let client = AtClient {
            inner: Inner::new(cfg),
        };
        client.inner.server_address().await?;
        let (worker, monitor) = futures_lite::future::zip(
            Box::pin(client.inner.open_authenticated()),
            Box::pin(client.monitor(regex, start)),
        )
        .await;
        *client.inner.workers.first().await = Some(worker?);
        Ok((client, monitor?))
    }

    /// Connect like [`AtClient::connect`], but keep retrying (exponential backoff with jitter,
    /// up to a minute apart) while the atServer cannot be reached: a router's daemon starts
    /// before its uplink. Gives up at once on what retrying cannot fix: a key file that does not
    /// load, or an atServer that refuses our keys.
    pub async fn connect_retrying(
        atsign: &AtSign,
        key_file: &std::path::Path,
        root: &RootAddr,
    ) -> Result<AtClient, AtError> {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            // AtKeys holds private keys and is not Clone: load it afresh for each attempt.
            let keys = AtKeys::load(key_file)?;
            let cfg = ClientConfig {
                atsign: atsign.clone(),
                keys,
                root: root.clone(),
            };
            match AtClient::connect(cfg).await {
                Ok(c) => return Ok(c),
                Err(
                    e @ (AtError::Unauthorized(_)
                    | AtError::Invalid(_)
                    | AtError::UnknownAtSign(_)
                    | AtError::UntrustedCertificate { .. }),
                ) => return Err(e),
                Err(e) => {
                    let d = backoff.next_delay();
                    log::warn!(
                        "cannot reach the atServer of {atsign} ({e}); retrying in {:.1}s",
                        d.as_secs_f32()
                    );
                    sleep(d).await;
                }
            }
        }
    }

    pub fn atsign(&self) -> &AtSign {
        &self.inner.atsign
    }

    pub fn keys(&self) -> &AtKeys {
        &self.inner.keys
    }

    /// Lets concurrent requests use up to `connections` (at most 4) request connections
    /// instead of waiting for one: for servers answering many peers at once (the daemon, the
    /// relay). Extra connections are opened only while all open ones are busy.
    pub fn spread_requests(&self, connections: usize) {
        self.inner.workers.allow(connections);
    }

    /// Send one verb on a worker connection; reconnects once if the connection died.
    pub async fn request(&self, command: &str) -> Result<String, AtError> {
        self.inner.request(command).await
    }

    /// An atSign's public encryption key (`plookup:publickey@x`), cached for the process.
    pub async fn public_key(&self, of: &AtSign) -> Result<RsaPublicKey, AtError> {
        self.inner.public_key(of).await
    }

    /// Fetch (or create) now the shared key that notifications to `peer` will use, so that a
    /// later `notify` costs one round trip; callers overlap this with other waits.
    pub async fn prepare_shared_key(&self, peer: &AtSign) -> Result<(), AtError> {
        self.inner.outbound_key(peer).await.map(drop)
    }

    /// Drop a cached public key (e.g. after a verification failure, to pick up a rotation).
    pub fn forget_public_key(&self, of: &AtSign) {
        lock(&self.inner.public_keys).remove(of);
    }

    /// Encrypted `notify:update` of `@to:<key_name>@me` with `value`; returns the notification id.
    pub async fn notify(
        &self,
        to: &AtSign,
        key_name: &str,
        value: &str,
        opts: NotifyOptions,
    ) -> Result<String, AtError> {
        let id = random::uuid_v4();
        let head = format!("notify:id:{id}:update:messageType:key");
        let ttln = opts
            .ttln_ms
            .map(|t| format!(":ttln:{t}"))
            .unwrap_or_default();
        let meta = KeyMeta {
            ttl_ms: opts.ttl_ms,
            ttr: opts.ttr,
            ccd: opts.ccd,
        };
        let cmd = self
            .encrypted_command(&format!("{head}{ttln}"), &meta, to, key_name, ':', value)
            .await?;
        let answer = self.inner.request(&cmd).await?;
        Ok(answer.trim().to_string())
    }

    /// `<verb><meta>:@to:<key_name>@me<sep><ciphertext>`: the value encrypted with the shared
    /// key for `to`, metadata in the server's fixed order (atprotocol.md §6.2).
    async fn encrypted_command(
        &self,
        verb: &str,
        meta: &KeyMeta,
        to: &AtSign,
        key_name: &str,
        sep: char,
        value: &str,
    ) -> Result<String, AtError> {
        check_key_name(key_name)?;
        let sk = self.inner.outbound_key(to).await?;
        let iv = random::bytes::<16>();
        let cipher = encrypt_b64(&sk.key, &iv, value);
        let mut cmd = String::from(verb);
        if let Some(ttl) = meta.ttl_ms {
            cmd.push_str(&format!(":ttl:{ttl}"));
        }
        if let Some(ttr) = meta.ttr {
            cmd.push_str(&format!(":ttr:{ttr}"));
        }
        if let Some(ccd) = meta.ccd {
            cmd.push_str(&format!(":ccd:{ccd}"));
        }
        let (me, their, md5, iv) = (
            &self.inner.atsign,
            &sk.their_copy,
            &sk.peer_key_md5,
            b64::encode(&iv),
        );
        cmd.push_str(&format!(
            ":isEncrypted:true:sharedKeyEnc:{their}:pubKeyCS:{md5}:ivNonce:{iv}:{to}:{key_name}{me}{sep}{cipher}"
        ));
        Ok(cmd)
    }

    /// `notify:status:<id>` -> `delivered`, `queued`, `errored`, `expired` or `null`.
    pub async fn notify_status(&self, id: &str) -> Result<String, AtError> {
        check_key_name(id)?;
        self.inner.request(&format!("notify:status:{id}")).await
    }

    /// Store `@to:<key_name>@me` encrypted for `to`.
    pub async fn put_shared(
        &self,
        to: &AtSign,
        key_name: &str,
        value: &str,
        opts: PutOptions,
    ) -> Result<(), AtError> {
        let meta = KeyMeta {
            ttl_ms: opts.ttl_ms,
            ttr: opts.ttr,
            ccd: opts.ccd,
        };
        let cmd = self
            .encrypted_command("update", &meta, to, key_name, ' ', value)
            .await?;
        self.inner.request(&cmd).await.map(|_| ())
    }

    /// Read `@me:<key_name>@from` shared with us by `from`, decrypted.
    #[allow(non_snake_case)]
    pub async fn get_shared(&self, from: &AtSign, key_name: &str) -> Result<String, AtError> {
        check_key_name(key_name)?;
        let json = self
            .inner
            .request(&format!("lookup:all:{key_name}{from}"))
            .await?;
        #[derive(miniserde::Deserialize)]
        #[allow(non_snake_case)]
        struct Meta {
            ivNonce: Option<String>,
            sharedKeyEnc: Option<String>,
            isEncrypted: Option<bool>,
        }
        #[derive(miniserde::Deserialize)]
        #[allow(non_snake_case)]
        struct All {
            data: Option<String>,
            metaData: Option<Meta>,
        }
        let all: All = miniserde::json::from_str(&json).map_err(|_| {
            AtError::Malformed(format!(
                "lookup:all answer is not the expected JSON: {json}"
            ))
        })?;
        let data = all.data.ok_or_else(|| AtError::Server {
            code: "AT0015".into(),
            message: format!("{key_name}{from} has no value"),
        })?;
        let meta = all.metaData;
        if meta.as_ref().and_then(|m| m.isEncrypted) == Some(false) {
            return Ok(data);
        }
        let iv = meta.as_ref().and_then(|m| m.ivNonce.clone());
        let ske = meta.and_then(|m| m.sharedKeyEnc);
        self.inner
            .decrypt_from(from, &data, iv.as_deref(), ske.as_deref())
            .await
    }

    /// `llookup:<key>`: one of our own keys as stored (no decryption), e.g.
    /// `shared_key.bob@alice`. Absent keys are `AtError::Server` with code AT0015.
    pub async fn llookup(&self, full_key: &str) -> Result<String, AtError> {
        check_full_key(full_key)?;
        self.inner.request(&format!("llookup:{full_key}")).await
    }

    /// `lookup:<name>@<owner>`: a key as seen by us (for another owner, fetched by our
    /// atServer from theirs).
    pub async fn lookup(&self, name: &str, owner: &AtSign) -> Result<String, AtError> {
        check_key_name(name)?;
        self.inner.request(&format!("lookup:{name}{owner}")).await
    }

    /// `plookup:<name>@<owner>`: a public key of another atSign.
    pub async fn plookup(&self, name: &str, owner: &AtSign) -> Result<String, AtError> {
        check_key_name(name)?;
        self.inner.request(&format!("plookup:{name}{owner}")).await
    }

    /// `update:<key> <value>` without encryption (public or self keys the caller encodes).
    pub async fn update_raw(&self, full_key: &str, value: &str) -> Result<(), AtError> {
        check_full_key(full_key)?;
        if value.contains('\n') || value.contains('\r') {
            return Err(AtError::Invalid("value contains a line break".into()));
        }
        self.inner
            .request(&format!("update:{full_key} {value}"))
            .await
            .map(|_| ())
    }

    /// `scan [regex]`: the keys we can see, as a list.
    pub async fn scan(&self, regex: Option<&str>) -> Result<Vec<String>, AtError> {
        let cmd = match regex {
            Some(r) if r.contains('\n') || r.contains('\r') => {
                return Err(AtError::Invalid("scan regex contains a line break".into()))
            }
            Some(r) => format!("scan {r}"),
            None => "scan".to_string(),
        };
        let json = self.inner.request(&cmd).await?;
        miniserde::json::from_str::<Vec<String>>(&json)
            .map_err(|_| AtError::Malformed(format!("scan answer is not a list of keys: {json}")))
    }

    /// `noop:0`: proves the connection is alive.
    pub async fn noop(&self) -> Result<(), AtError> {
        match self.inner.request("noop:0").await?.as_str() {
            "ok" => Ok(()),
            other => Err(AtError::Malformed(format!("noop answered {other:?}"))),
        }
    }

    /// Delete one of our keys, e.g. `@bob:device_info.dev.sshnp@alice`.
    pub async fn delete(&self, full_key: &str) -> Result<(), AtError> {
        if full_key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(AtError::Invalid(format!("invalid key {full_key:?}")));
        }
        self.inner
            .request(&format!("delete:{full_key}"))
            .await
            .map(|_| ())
    }

    /// Whether `atsign` exists in the atDirectory: `None` when that cannot be told (the
    /// directory is unreachable, or a reverse proxy stands in for it).
    pub async fn is_registered(&self, atsign: &AtSign) -> Option<bool> {
        if self.inner.root.reverse_proxy {
            return None;
        }
        match lookup_server(&self.inner.root, atsign).await {
            Ok(_) => Some(true),
            Err(
                AtError::UnknownAtSign(_)
                | AtError::Invalid(_)
                | AtError::UntrustedCertificate { .. },
            ) => Some(false),
            Err(_) => None,
        }
    }

    /// Start a monitor on its own connection. Returns once the first monitor is established;
    /// afterwards it reconnects by itself (with backoff) and resumes from the last
    /// notification it saw.
    pub async fn monitor(&self, regex: &str, start: MonitorStart) -> Result<Monitor, AtError> {
        self.start_monitor_task(regex, start, true, false).await
    }

    /// As [`AtClient::monitor`], plus the atServer's own *self* notifications (new enrollment
    /// requests, atprotocol.md §11.5), which only reach monitors that ask for them.
    pub async fn monitor_with_self_notifications(
        &self,
        regex: &str,
        start: MonitorStart,
    ) -> Result<Monitor, AtError> {
        self.start_monitor_task(regex, start, true, true).await
    }

    /// As [`AtClient::monitor`], but encrypted values are left sealed: no shared-key look-up
    /// and no decryption happen until the caller, having checked the sender, calls
    /// [`AtClient::unseal`]. Strangers then cost no remote look-ups.
    pub async fn monitor_sealed(
        &self,
        regex: &str,
        start: MonitorStart,
    ) -> Result<Monitor, AtError> {
        self.start_monitor_task(regex, start, false, false).await
    }

    /// Decrypts a sealed notification's value in place (no-op when not sealed).
    ///
    /// # Errors
    /// The sender's shared key cannot be fetched, or the value does not decrypt.
    pub async fn unseal(&self, n: &mut Notification) -> Result<(), AtError> {
        let Some(s) = n.sealed.take() else {
            return Ok(());
        };
        if let Some(v) = n.value.take() {
            let plain = self
                .inner
                .decrypt_from(&n.from, &v, s.iv.as_deref(), s.shared_key_enc.as_deref())
                .await?;
            n.value = Some(plain);
        }
        Ok(())
    }

    async fn start_monitor_task(
        &self,
        regex: &str,
        start: MonitorStart,
        decrypt: bool,
        self_notes: bool,
    ) -> Result<Monitor, AtError> {
        if regex.contains('\n') || regex.contains('\r') || regex.contains(':') {
            return Err(AtError::Invalid(format!(
                "monitor regex {regex:?} must not contain ':' or line breaks"
            )));
        }
        let since = match start {
            MonitorStart::Live => None,
            MonitorStart::Since(t) => Some(t),
        };
        let conn = self.inner.start_monitor(regex, since, self_notes).await?;
        let (tx, rx) = async_channel::bounded(256);
        let task = runtime::spawn(monitor_loop(
            self.inner.clone(),
            conn,
            regex.to_string(),
            since,
            tx,
            decrypt,
            self_notes,
        ));
        Ok(Monitor { rx, _task: task })
    }

    /// Close the worker connections politely.
    pub async fn close(&self) {
        self.inner.workers.close_all().await;
    }
}

/// A stream of decrypted notifications. Dropping it stops the monitor.
pub struct Monitor {
    rx: async_channel::Receiver<Notification>,
    _task: Task<()>,
}

impl Monitor {
    /// The next notification; `None` only if the monitor task ended.
    pub async fn next(&mut self) -> Option<Notification> {
        self.rx.recv().await.ok()
    }
}

impl Inner {
    fn new(cfg: ClientConfig) -> Arc<Inner> {
        Arc::new(Inner {
            atsign: cfg.atsign,
            keys: cfg.keys,
            root: cfg.root,
            server: Mutex::new(None),
            workers: Workers::new(),
            outbound: OncePerKey::new(),
            inbound: Mutex::new(HashMap::new()),
            unwrapped: Mutex::new(HashMap::new()),
            public_keys: Mutex::new(HashMap::new()),
        })
    }

    async fn request(&self, command: &str) -> Result<String, AtError> {
        let (slot, mut guard) = self.workers.take().await;
        // The connection leaves its slot while the request runs: a request cut off half-way
        // (its task ended at a deadline) drops it, instead of leaving its late answer to be
        // read as the next request's.
        let mut conn = guard.take();
        let result = self.request_on(&mut conn, command).await;
        *guard = conn;
        self.workers.done(slot, guard.is_some());
        result
    }

    /// One request on the connection in `guard`, opening it first if needed; reconnects once
    /// if the connection died.
    async fn request_on(
        &self,
        guard: &mut Option<Connection>,
        command: &str,
    ) -> Result<String, AtError> {
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(Box::pin(self.open_authenticated()).await?);
            }
            let Some(conn) = guard.as_mut() else { continue };
            match conn.request(command, REQUEST_TIMEOUT).await {
                Err(e) if e.is_connection_problem() => {
                    // A late answer would desynchronise the stream: start over on a new connection.
                    *guard = None;
                    if attempt == 0 {
                        log::info!("atServer connection lost ({e}); reconnecting");
                        continue;
                    }
                    return Err(e);
                }
                r => return r,
            }
        }
        Err(AtError::Closed)
    }

    async fn public_key(&self, of: &AtSign) -> Result<RsaPublicKey, AtError> {
        if of == &self.atsign {
            return Ok(self.keys.encrypt_public.clone());
        }
        if let Some(k) = lock(&self.public_keys).get(of) {
            return Ok(k.clone());
        }
        let text = self.request(&format!("plookup:publickey{of}")).await?;
        if text.trim() == "null" || text.trim().is_empty() {
            return Err(AtError::Server {
                code: "AT0015".into(),
                message: format!("no public key for {of}"),
            });
        }
        let key = RsaPublicKey::from_spki_b64(text.trim())
            .map_err(|e| AtError::Malformed(format!("public key of {of}: {e}")))?;
        lock(&self.public_keys).insert(of.clone(), key.clone());
        Ok(key)
    }

    /// Unwrap an RSA-wrapped shared key: base64(RSA(base64(K))) -> K.
    fn unwrap_key(&self, wrapped_b64: &str) -> Result<[u8; 32], AtError> {
        let ct = b64::decode(wrapped_b64.trim())?;
        let plain = self.keys.encrypt_private.decrypt(&ct)?;
        let text = String::from_utf8(plain)
            .map_err(|_| AtError::Malformed("shared key is not base64 text".into()))?;
        let raw = b64::decode(text.trim())?;
        <[u8; 32]>::try_from(raw.as_slice())
            .map_err(|_| AtError::Malformed("shared key is not 32 bytes".into()))
    }

    /// The key for values we send to `peer` (atprotocol.md §9.6), created on first use.
    async fn outbound_key(&self, peer: &AtSign) -> Result<Arc<SharedKey>, AtError> {
        let make = || self.fetch_or_create_key(peer);
        self.outbound.get_or_try_make(peer, make).await
    }

    /// Our copy of the shared key for `peer` from our atServer, or a new one stored there (up
    /// to four requests, each holding only its own connection).
    async fn fetch_or_create_key(&self, peer: &AtSign) -> Result<Arc<SharedKey>, AtError> {
        let peer_pub = self.public_key(peer).await?;
        let peer_key_md5 = hash::md5_hex(peer_pub.to_spki_b64().as_bytes());
        let me = &self.atsign;
        let key = match self
            .request(&format!("llookup:shared_key.{}{}", peer.name(), me))
            .await
        {
            Ok(mine) => self.unwrap_key(&mine)?,
            Err(e) if e.is_not_found() => {
                let key = random::bytes::<32>();
                let key_text = b64::encode(&key);
                let my_copy = b64::encode(&self.keys.encrypt_public.encrypt(key_text.as_bytes())?);
                let their_copy = b64::encode(&peer_pub.encrypt(key_text.as_bytes())?);
                self.request(&format!(
                    "update:shared_key.{}{} {my_copy}",
                    peer.name(),
                    me
                ))
                .await?;
                self.request(&format!("update:ttr:{SHARED_KEY_TTR}:isEncrypted:false:{peer}:shared_key{me} {their_copy}"))
                    .await?;
                log::info!("created shared key {me} -> {peer}");
                key
            }
            Err(e) => return Err(e),
        };
        let their_copy = b64::encode(&peer_pub.encrypt(b64::encode(&key).as_bytes())?);
        Ok(Arc::new(SharedKey {
            key,
            their_copy,
            peer_key_md5,
        }))
    }

    /// The key `peer` uses for values it sends us.
    async fn inbound_key(&self, peer: &AtSign, refresh: bool) -> Result<[u8; 32], AtError> {
        if !refresh {
            if let Some(k) = lock(&self.inbound).get(peer) {
                return Ok(*k);
            }
        }
        let wrapped = self.request(&format!("lookup:shared_key{peer}")).await?;
        let key = self.unwrap_key(&wrapped)?;
        lock(&self.inbound).insert(peer.clone(), key);
        Ok(key)
    }

    async fn decrypt_from(
        &self,
        from: &AtSign,
        cipher_b64: &str,
        iv_b64: Option<&str>,
        ske: Option<&str>,
    ) -> Result<String, AtError> {
        let iv: [u8; 16] = match iv_b64.filter(|s| !s.is_empty() && *s != "null") {
            Some(s) => <[u8; 16]>::try_from(b64::decode(s)?.as_slice())
                .map_err(|_| AtError::Malformed("ivNonce is not 16 bytes".into()))?,
            None => ZERO_IV,
        };
        if let Some(wrapped) = ske.filter(|s| !s.is_empty() && *s != "null") {
            let seen = lock(&self.unwrapped)
                .get(from)
                .filter(|(w, _)| w == wrapped)
                .map(|(_, k)| *k);
            if let Some(key) = seen.or_else(|| self.unwrap_key(wrapped).ok()) {
                if let Ok(plain) = decrypt_b64(&key, &iv, cipher_b64) {
                    lock(&self.inbound).insert(from.clone(), key);
                    let mut cache = lock(&self.unwrapped);
                    if cache.len() >= MAX_UNWRAPPED && !cache.contains_key(from) {
                        cache.clear();
                    }
                    cache.insert(from.clone(), (wrapped.to_string(), key));
                    return Ok(plain);
                }
            }
        }
        let key = self.inbound_key(from, false).await?;
        match decrypt_b64(&key, &iv, cipher_b64) {
            Ok(p) => Ok(p),
            Err(_) => {
                // The peer may have rotated its key: fetch it again once.
                let key = self.inbound_key(from, true).await?;
                Ok(decrypt_b64(&key, &iv, cipher_b64)?)
            }
        }
    }

    async fn start_monitor(
        &self,
        regex: &str,
        since: Option<i64>,
        self_notes: bool,
    ) -> Result<Connection, AtError> {
        let mut conn = Box::pin(self.open_authenticated()).await?;
        let flags = if self_notes { ":selfNotifications" } else { "" };
        let cmd = match since {
            Some(t) => format!("monitor{flags}:{t} {regex}"),
            None => format!("monitor{flags} {regex}"),
        };
        conn.send(&cmd).await?;
        log::info!("Monitor: monitor started for {} ({regex})", self.atsign);
        Ok(conn)
    }

    async fn to_notification(
        &self,
        json: &str,
        decrypt: bool,
    ) -> Result<Option<Notification>, AtError> {
        let raw = RawNotification::parse(json)?;
        if raw.id == "-1" {
            return Ok(None);
        }
        let from = AtSign::parse(&raw.from)?;
        let to = AtSign::parse(&raw.to)?;
        if raw.key.contains("shared_key") {
            // A peer's shared key changed: forget the cached copy; nothing to deliver.
            lock(&self.inbound).remove(&from);
            return Ok(None);
        }
        let operation = raw.operation.unwrap_or_else(|| "update".into());
        let mut sealed = None;
        let encrypted =
            raw.isEncrypted == Some(true) && operation == "update" && raw.value.is_some();
        let value = match raw.value {
            Some(v) if raw.isEncrypted == Some(true) && operation == "update" => {
                let (iv, ske) = match raw.metadata {
                    Some(m) => (m.ivNonce, m.sharedKeyEnc),
                    None => (None, None),
                };
                if decrypt {
                    Some(
                        self.decrypt_from(&from, &v, iv.as_deref(), ske.as_deref())
                            .await?,
                    )
                } else {
                    sealed = Some(Sealed {
                        iv,
                        shared_key_enc: ske,
                    });
                    Some(v)
                }
            }
            other => other,
        };
        Ok(Some(Notification {
            id: raw.id,
            from,
            to,
            key: raw.key,
            value,
            operation,
            epoch_millis: raw.epochMillis.unwrap_or(0),
            sealed,
            encrypted,
        }))
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
