//! Reconnecting monitors (atprotocol.md §9): a `monitor` verb on its own connection, probed
//! when idle, resumed after a reconnect from the last notification seen, duplicates dropped;
//! values decrypted on arrival or left sealed until [`AtClient::unseal`].
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::{lock, now_millis, AtClient, Inner};
use crate::at::conn::Connection;
use crate::at::framing::Response;
use crate::at::notification::{Notification, RawNotification, Sealed};
use crate::at::{AtError, AtSign};
use crate::runtime::{self, sleep, timeout, Backoff, Task};

/// Monitor: probe with `noop:0` after this much silence...
const MONITOR_IDLE: Duration = Duration::from_secs(15);
/// ...and give up on the connection if the probe is not answered within this.
const MONITOR_PROBE: Duration = Duration::from_secs(5);
/// Where a monitor starts.
#[derive(Debug, Clone, Copy, Default)]
pub enum MonitorStart {
    /// Only notifications that arrive from now on.
    #[default]
    Live,
    /// Replay stored notifications newer than this epoch (ms), then live ones.
    Since(i64),
}

impl AtClient {
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
        }))
    }
}

async fn monitor_loop(
    inner: Arc<Inner>,
    first: Connection,
    regex: String,
    since: Option<i64>,
    tx: async_channel::Sender<Notification>,
    decrypt: bool,
    self_notes: bool,
) {
    let mut conn = Some(first);
    let mut last_epoch = since;
    let mut seen: VecDeque<String> = VecDeque::with_capacity(512);
    // At most 4 s between attempts: a daemon serves again within 5 s of its atServer's
    // restart, however long the outage was (issue 11); an attempt costs one TCP connect.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
    loop {
        let mut c = match conn.take() {
            Some(c) => c,
            None => match inner.start_monitor(&regex, last_epoch, self_notes).await {
                Ok(c) => {
                    backoff.reset();
                    c
                }
                Err(e) => {
                    let d = backoff.next_delay();
                    log::warn!(
                        "monitor for {}: reconnect failed ({e}); retrying in {:.1}s",
                        inner.atsign,
                        d.as_secs_f32()
                    );
                    sleep(d).await;
                    if tx.is_closed() {
                        return;
                    }
                    continue;
                }
            },
        };
        let why = loop {
            if tx.is_closed() {
                c.close().await;
                return;
            }
            let line = match timeout(MONITOR_IDLE, c.read_line()).await {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => break e.to_string(),
                Err(_) => {
                    // Silence: prove the connection is alive.
                    if let Err(e) = c.send("noop:0").await {
                        break e.to_string();
                    }
                    match timeout(MONITOR_PROBE, c.read_line()).await {
                        Ok(Ok(l)) => l,
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break "no answer to noop".to_string(),
                    }
                }
            };
            let json = match Response::parse(&line) {
                Ok(Response::Notification(j)) => j,
                Ok(_) => continue,
                Err(e) => {
                    log::warn!("monitor for {}: {e}", inner.atsign);
                    continue;
                }
            };
            match inner.to_notification(&json, decrypt).await {
                Ok(Some(n)) => {
                    if seen.contains(&n.id) {
                        continue;
                    }
                    if seen.len() >= 512 {
                        seen.pop_front();
                    }
                    seen.push_back(n.id.clone());
                    last_epoch = Some(last_epoch.unwrap_or(0).max(n.epoch_millis));
                    if tx.send(n).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("monitor for {}: dropped a notification: {e}", inner.atsign),
            }
        };
        log::warn!(
            "monitor for {}: connection lost ({why}); reconnecting",
            inner.atsign
        );
        if last_epoch.is_none() {
            // Resume from "now" so nothing that arrives during the reconnect is lost.
            last_epoch = Some(now_millis().saturating_sub(1000));
        }
    }
}
