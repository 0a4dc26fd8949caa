//! The monitor task behind [`super::Monitor`]: reads notifications from its connection, probes
//! a silent one, reconnects with back-off, resumes from the last notification it saw and drops
//! duplicates.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::{now_millis, Inner, MONITOR_IDLE, MONITOR_PROBE};
use crate::at::conn::Connection;
use crate::at::framing::Response;
use crate::at::notification::Notification;
use crate::runtime::{sleep, timeout, Backoff};

pub(super) async fn monitor_loop(
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
