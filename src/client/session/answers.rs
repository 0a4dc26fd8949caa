//! This session's answers from the monitor (the device's feature check reply, the relay's
//! ports, the daemon's session answer) and the one wait for them that every step uses.
use std::time::Instant;

use async_channel::Receiver;

use super::params::SessionParams;
use crate::at::{Monitor, Notification};
use crate::client::error::SessionError;
use crate::runtime::{self, timeout};

/// What a client session's monitor subscribes to: the device's heartbeat and the daemon's and
/// relay's answers for this session only. (It was every `sshnp@`/`sshrvd@` notification, so
/// each of N sessions of one client atSign started at once received all N sessions' answers:
/// N² notifications for the atServer to send and the clients to decrypt and discard.)
pub fn monitor_regex(device_name: &str, sid: &str) -> String {
    let escape = |s: &str| s.replace('.', "\\.");
    let (d, sid) = (escape(device_name), escape(sid));
    format!("heartbeat\\.{d}\\.sshnp@|{sid}\\.({d}\\.sshnp|sshrvd)@")
}

/// Which answer a step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Ping,
    Relay,
    Session,
}

/// The session's answers as they come, each kind kept until its step takes it: the relay or
/// the daemon may answer while an earlier step still waits.
pub(super) struct Answers {
    rx: Receiver<(Answer, String)>,
    /// The latest answer of each kind not yet taken, indexed by `Answer as usize`.
    kept: [Option<String>; 3],
    _router: runtime::Task<()>,
}

impl Answers {
    /// Sorts the monitor's notifications for session `sid` into answers.
    pub(super) fn route(mut monitor: Monitor, p: &SessionParams, sid: &str) -> Answers {
        let (tx, rx) = async_channel::bounded(16);
        let (device, relay) = (p.device.clone(), p.relay.clone());
        let relay_key = format!("{sid}.sshrvd");
        let ping_key = format!("heartbeat.{}.sshnp", p.device_name);
        let session_key = format!("{sid}.{}.sshnp", p.device_name);
        let router = runtime::spawn(async move {
            while let Some(n) = monitor.next().await {
                let Notification {
                    ref from,
                    ref value,
                    ..
                } = n;
                let key = n.key_name().to_lowercase();
                let kind = if *from == relay && key == relay_key {
                    Answer::Relay
                } else if *from == device && key == ping_key {
                    Answer::Ping
                } else if *from == device && key == session_key {
                    Answer::Session
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
                let value = value.clone().unwrap_or_default();
                if tx.send((kind, value)).await.is_err() {
                    return;
                }
            }
        });
        Answers::new(rx, router)
    }

    fn new(rx: Receiver<(Answer, String)>, router: runtime::Task<()>) -> Answers {
        Answers {
            rx,
            kept: Default::default(),
            _router: router,
        }
    }

    /// The `which` answer, waiting for it until `deadline`; `Ok(None)` when none came by then.
    /// Answers of other kinds that come meanwhile are kept for their own wait. Cancel safe:
    /// an answer is either still in the channel or kept.
    pub(super) async fn until(
        &mut self,
        which: Answer,
        deadline: Instant,
    ) -> Result<Option<String>, SessionError> {
        loop {
            if let Some(v) = self.kept[which as usize].take() {
                return Ok(Some(v));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.rx.recv()).await {
                Ok(Ok((kind, v))) => self.kept[kind as usize] = Some(v),
                Ok(Err(_)) => return Err(SessionError::new("monitor ended")),
                Err(_) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_that_come_early_wait_for_their_step() {
        runtime::block_on(async {
            let (tx, rx) = async_channel::bounded(4);
            let mut answers = Answers::new(rx, runtime::spawn(async {}));
            tx.send((Answer::Session, "s1".into())).await.unwrap();
            tx.send((Answer::Relay, "r1".into())).await.unwrap();
            tx.send((Answer::Relay, "r2".into())).await.unwrap();
            tx.send((Answer::Ping, "p".into())).await.unwrap();
            let soon = Instant::now() + Duration::from_millis(50);
            assert_eq!(
                answers.until(Answer::Ping, soon).await.unwrap(),
                Some("p".into())
            );
            // The latest of a kind wins; a past deadline still takes what is already here.
            let past = Instant::now();
            assert_eq!(
                answers.until(Answer::Relay, past).await.unwrap(),
                Some("r2".into())
            );
            assert_eq!(
                answers.until(Answer::Session, past).await.unwrap(),
                Some("s1".into())
            );
            let soon = Instant::now() + Duration::from_millis(20);
            assert_eq!(answers.until(Answer::Ping, soon).await.unwrap(), None);
            drop(tx);
            let e = answers.until(Answer::Ping, soon).await.unwrap_err();
            assert_eq!(e.0, "monitor ended");
        });
    }
}
