//! The client's ephemeral RSA key (noports.md §3), generated on a thread of its own from the
//! start of the run: the generation overlaps with connecting to the atServer and the feature
//! check, and is only waited for when the session request is built.
use async_lock::OnceCell;

use super::error::SessionError;
use crate::crypto::rsa::RsaPrivateKey;

/// Nice +10 for the calling thread (best effort: Linux nice values are per thread).
fn lower_priority() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = rustix::process::setpriority_process(None, 10) {
        log::debug!("cannot lower the key generation thread's priority: {e}");
    }
}

pub struct EphemeralKey {
    rx: async_channel::Receiver<Result<RsaPrivateKey, String>>,
    key: OnceCell<Result<RsaPrivateKey, String>>,
}

impl EphemeralKey {
    /// Starts generating the key on a helper thread (on the caller's thread if none starts).
    pub fn start() -> EphemeralKey {
        let (tx, rx) = async_channel::bounded(1);
        let generate = || RsaPrivateKey::generate().map_err(|e| e.to_string());
        let job = {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("noports-keygen".into())
                .spawn(move || {
                    lower_priority();
                    let _ = tx.send_blocking(generate());
                })
        };
        if job.is_err() {
            let _ = tx.try_send(generate());
        }
        EphemeralKey {
            rx,
            key: OnceCell::new(),
        }
    }

    /// The key, once generated (the same key for every session of the run).
    pub async fn get(&self) -> Result<&RsaPrivateKey, SessionError> {
        let key = self
            .key
            .get_or_init(|| async {
                self.rx
                    .recv()
                    .await
                    .unwrap_or_else(|_| Err("the key generation thread ended".into()))
            })
            .await;
        key.as_ref()
            .map_err(|e| SessionError::fatal(format!("cannot make the ephemeral session key: {e}")))
    }
}
