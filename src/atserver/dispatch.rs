//! The request loop of one connection: greeting, line reading, the authentication state
//! machine (atprotocol.md §4, verbs allowed per state §4.5: `from`, `pkam`, `cram`, `pol`) and
//! dispatch of every parsed verb to its handler (`handlers.rs`, `remote.rs`, `enroll.rs`).
#[cfg(test)]
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use futures_lite::AsyncRead;

use super::conn::{LineBuf, TooLong, INPUT_BUDGET, MAX_LINE, MAX_UNAUTH_LINE};
use super::enroll::{EnrollState, Enrollment};
use super::error::{AtCode, AtErr, VerbResult};
use super::meta::now_ms;
#[cfg(test)]
use super::server::{AtServer, Hub};
use super::session::{Auth, Flow, Session};
use super::verbs::{parse, Verb};
use crate::crypto::{b64, hash, random};

/// Authenticated connections may stay idle this long (reference: 30 days, §2.6).
const AUTH_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);
/// After an over-long line, input is read and discarded this long before the close.
const OVERFLOW_DRAIN: Duration = Duration::from_secs(2);
/// ... and at most this many bytes on an unauthenticated connection (authenticated: MAX_LINE).
const OVERFLOW_DRAIN_UNAUTH: usize = 64 * 1024;
/// A `from:` challenge must be answered within 60 s (§4.1).
const CHALLENGE_TTL_MS: i64 = 60_000;
/// Failed `cram`/`pkam` attempts per connection before replies slow down, and before close.
const AUTH_FAILS_BEFORE_DELAY: u32 = 3;
const AUTH_FAILS_BEFORE_CLOSE: u32 = 10;

impl Session {
    /// Runs the request loop until the peer leaves, idles out or misbehaves.
    pub(crate) async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut reader: R,
        stopped: async_channel::Receiver<()>,
    ) {
        let _ = self.tx.send(b"@".to_vec()).await;
        let mut lines = LineBuf::new(MAX_UNAUTH_LINE, Some(self.hub.input.clone()));
        // Small reads until authenticated: strangers cost little memory each.
        let mut buf = vec![0u8; 4 * 1024];
        loop {
            while let Some(line) = lines.next_line() {
                let line = match line {
                    Ok(l) => l,
                    Err(TooLong) => {
                        if lines.budget_spent() {
                            log::warn!(
                                "{}: buffered input of all connections over {} bytes, closing",
                                self.me(),
                                INPUT_BUDGET
                            );
                        } else {
                            log::warn!(
                                "{}: request over {} bytes ({}), closing",
                                self.me(),
                                self.line_limit(),
                                if self.is_authed() {
                                    "authenticated"
                                } else {
                                    "unauthenticated"
                                }
                            );
                        }
                        self.reply_err(&AtErr::new(AtCode::BufferLimit, "Buffer limit exceeded"))
                            .await;
                        // Let the writer send the error and close, and discard (never buffer)
                        // what the peer still sends for a moment: closing with unread input
                        // would reset the connection and lose the error on the way.
                        self.tx.close();
                        let deadline = std::time::Instant::now() + OVERFLOW_DRAIN;
                        // Strangers get little: their drain is short in bytes as well.
                        let mut allowance = if self.is_authed() {
                            MAX_LINE
                        } else {
                            OVERFLOW_DRAIN_UNAUTH
                        };
                        while allowance > 0 {
                            let left =
                                deadline.saturating_duration_since(std::time::Instant::now());
                            match crate::runtime::timeout(left, reader.read(&mut buf)).await {
                                Ok(Ok(n)) if n > 0 => allowance = allowance.saturating_sub(n),
                                _ => break,
                            }
                        }
                        return;
                    }
                };
                if let Flow::Close = self.handle_line(&line).await {
                    return;
                }
                lines.set_limit(self.line_limit());
                if self.is_authed() && buf.len() < 16 * 1024 {
                    buf.resize(16 * 1024, 0);
                }
                if self.tx.is_closed() {
                    return;
                }
            }
            let idle = if self.is_owner() {
                AUTH_IDLE
            } else {
                self.hub.unauth_idle
            };
            let read = crate::runtime::timeout(idle, reader.read(&mut buf));
            // Revocation or a dead writer closes the queue and then `stopped`: stop reading.
            let closed = async {
                let _ = stopped.recv().await;
                Ok(Ok(0))
            };
            match futures_lite::future::or(read, closed).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => lines.feed(buf.get(..n).unwrap_or_default()),
                Err(_) => {
                    log::info!("{}: idle timeout", self.me());
                    return;
                }
            }
        }
    }

    /// Parses and executes one command, replying on the queue.
    pub(crate) async fn handle_line(&mut self, line: &str) -> Flow {
        self.spoke.store(true, std::sync::atomic::Ordering::SeqCst);
        let verb = match parse(line) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("{}: rejected command: {}", self.me(), e.msg);
                self.reply_err(&e).await;
                return Flow::Continue;
            }
        };
        if matches!(verb, Verb::Exit) {
            return Flow::Close;
        }
        if let Err(e) = self.check_enrollment_alive() {
            self.reply_err(&e).await;
            return Flow::Close;
        }
        let is_auth_verb = matches!(verb, Verb::Pkam { .. } | Verb::Cram { .. });
        let wrote_before = super::store::written();
        let mut result = self.dispatch(verb).await;
        // What this request wrote is on disk before it is acknowledged (group commit; other
        // requests' writes in the meantime ride along).
        if super::store::written() != wrote_before {
            if let Err(e) = super::store::durable().await {
                result = Err(super::handlers::store_err(e));
            }
        }
        self.authed
            .store(self.is_authed(), std::sync::atomic::Ordering::SeqCst);
        match result {
            Ok(Some(body)) => self.reply(&body).await,
            Ok(None) => {}
            Err(e) => {
                let close = e.close;
                if is_auth_verb && e.code == AtCode::AuthFailed {
                    self.failed_auth += 1;
                    if self.failed_auth >= AUTH_FAILS_BEFORE_DELAY {
                        let secs =
                            u64::from((self.failed_auth - AUTH_FAILS_BEFORE_DELAY + 1).min(5));
                        crate::runtime::sleep(Duration::from_secs(secs)).await;
                    }
                }
                self.reply_err(&e).await;
                if close || self.failed_auth >= AUTH_FAILS_BEFORE_CLOSE {
                    return Flow::Close;
                }
            }
        }
        Flow::Continue
    }

    /// On APKAM connections the enrollment must still be approved (§11.7).
    fn check_enrollment_alive(&self) -> VerbResult<()> {
        let Some(id) = self.enrollment_id() else {
            return Ok(());
        };
        match Enrollment::load(&self.server, id) {
            Some(e) if e.state == EnrollState::Approved => Ok(()),
            _ => Err(AtErr::status(
                AtCode::ApkamExpired,
                format!("enrollment_id: {id} is expired or invalid"),
            )
            .closing()),
        }
    }

    async fn dispatch(&mut self, verb: Verb) -> VerbResult<Option<String>> {
        match verb {
            Verb::Empty => Err(AtErr::syntax("invalid command")),
            Verb::Exit => Ok(None),
            Verb::From {
                atsign,
                client_version,
            } => Ok(Some(self.from(&atsign, client_version))),
            Verb::Pkam {
                hash,
                ecc,
                enrollment_id,
                sig,
            } => self.pkam(hash, ecc, enrollment_id, &sig).map(Some),
            Verb::Cram { digest } => self.cram(&digest).map(Some),
            Verb::Pol => Box::pin(self.pol()).await,
            Verb::Noop(ms) => {
                if ms > 5000 {
                    return Err(AtErr::new(
                        AtCode::IllegalArguments,
                        "noop:<durationInMillis> where the duration maximum is 5000 milliseconds",
                    ));
                }
                crate::runtime::sleep(Duration::from_millis(ms)).await;
                Ok(Some("data:ok".into()))
            }
            Verb::Info { brief } => Ok(Some(self.info(brief))),
            Verb::Lookup {
                bypass,
                mode,
                name,
                owner,
            } => {
                if self.pol_from().is_some() {
                    return self.pol_lookup(mode, &name, &owner).map(Some);
                }
                if !self.is_owner() {
                    if let Some(proof) = self.proof_lookup(&name, &owner) {
                        return Ok(Some(proof));
                    }
                }
                if self.is_foreign(&owner) {
                    // Boxed: the network path would bloat every connection's future.
                    return Box::pin(self.remote_lookup(bypass, mode, &name, &owner))
                        .await
                        .map(Some);
                }
                self.lookup(bypass, mode, &name, &owner).map(Some)
            }
            Verb::Plookup {
                bypass,
                mode,
                name,
                owner,
            } => {
                if self.is_foreign(&owner) {
                    return Box::pin(self.remote_plookup(bypass, mode, &name, &owner))
                        .await
                        .map(Some);
                }
                self.plookup(bypass, mode, &name, &owner).map(Some)
            }
            Verb::Llookup { mode, key } => self.llookup(mode, &key).map(Some),
            Verb::Update { meta, key, value } => self.update(&meta, &key, value, false).map(Some),
            Verb::UpdateMeta { meta, key } => {
                self.update(&meta, &key, String::new(), true).map(Some)
            }
            Verb::Delete { key } => self.delete(&key).map(Some),
            Verb::Scan {
                show_hidden,
                for_atsign,
                regex,
            } => {
                if self.pol_from().is_some() {
                    return self.pol_scan(regex).map(Some);
                }
                self.scan(show_hidden, for_atsign, regex).map(Some)
            }
            Verb::Notify(req) if self.pol_from().is_some() => self.pol_notify(req).map(Some),
            Verb::Notify(req) => self.notify(req).map(Some),
            Verb::NotifyStatus(id) => Ok(Some(self.notify_status(&id))),
            Verb::NotifyList { regex } if self.pol_from().is_some() => {
                self.pol_notify_list(regex).map(Some)
            }
            Verb::NotifyList { regex } => self.notify_list(regex).map(Some),
            Verb::NotifyFetch(id) => self.notify_fetch(&id).map(Some),
            Verb::NotifyRemove(id) => self.notify_remove(&id).map(Some),
            Verb::Monitor {
                self_notifications,
                epoch,
                regex,
            } => self
                .monitor(self_notifications, epoch, regex)
                .await
                .map(|()| None),
            Verb::Stats => {
                self.need_owner()?;
                let c = self.server.state().keys.last_commit();
                Ok(Some(format!(
                    "data: [{{\"id\":\"3\",\"name\":\"lastCommitID\",\"value\":\"{c}\"}}]"
                )))
            }
            Verb::Enroll { .. } if self.pol_from().is_some() => Err(AtErr::new(
                AtCode::AuthFailed,
                "enroll is not allowed on a pol connection",
            )),
            Verb::Enroll { op, force, json } => {
                self.enroll(&op, force, json.as_deref()).await.map(Some)
            }
            Verb::OtpGet { ttl } => self.otp_get(ttl).map(Some),
            Verb::OtpPut { passcode, ttl } => self.otp_put(&passcode, ttl).map(Some),
            Verb::KeysGet { key_name } => self.keys_get(&key_name).map(Some),
        }
    }

    fn info(&self, brief: bool) -> String {
        let up = now_ms() - self.hub.started_ms;
        if brief {
            return format!("data:{{\"version\":\"3.0.52\",\"uptimeAsMillis\":{up}}}");
        }
        let s = up / 1000;
        format!(
            "data:{{\"version\":\"3.0.52\",\"uptimeAsWords\":\"{} days, {} hours, {} minutes, {} seconds\"}}",
            s / 86400,
            s / 3600 % 24,
            s / 60 % 60,
            s % 60
        )
    }

    /// `from:` (§4.1): a challenge for the own atSign, a `proof:` for any other.
    fn from(&mut self, atsign: &str, client_version: Option<String>) -> String {
        if let Some(v) = client_version {
            self.json_errors = version_gt(&v, (3, 0, 37));
        }
        let proof = random::uuid_v4();
        let challenge = format!("{}{}:{}", self.session_id, atsign, proof);
        // A new `from` ends what an earlier `pol` proved.
        if matches!(self.auth, Auth::Pol(_)) {
            self.auth = Auth::Unauthenticated;
        }
        if atsign == self.server.atsign {
            self.challenge = Some((challenge.clone(), now_ms() + CHALLENGE_TTL_MS));
            self.foreign = None;
            format!("data:{challenge}")
        } else {
            self.challenge = None;
            self.foreign = Some((
                atsign.to_string(),
                format!("{}{atsign}", self.session_id),
                proof,
                now_ms() + CHALLENGE_TTL_MS,
            ));
            format!("data:proof:{challenge}")
        }
    }

    fn take_challenge(&mut self) -> VerbResult<String> {
        match self.challenge.take() {
            Some((c, exp)) if now_ms() <= exp => Ok(c),
            _ => Err(AtErr::new(AtCode::AuthFailed, "pkam authentication failed")),
        }
    }

    /// `pkam:` (§4.2), legacy and APKAM.
    fn pkam(
        &mut self,
        hash: crate::crypto::rsa::HashAlgo,
        ecc: bool,
        eid: Option<String>,
        sig: &str,
    ) -> VerbResult<String> {
        let failed = || AtErr::new(AtCode::AuthFailed, "pkam authentication failed");
        let challenge = self.take_challenge()?;
        let public_b64 = match &eid {
            Some(id) => {
                let e = Enrollment::load(&self.server, id).ok_or_else(|| {
                    AtErr::status(
                        AtCode::ApkamExpired,
                        format!("enrollment_id: {id} is expired or invalid"),
                    )
                })?;
                match e.state {
                    EnrollState::Approved => e.apkam_public_key,
                    EnrollState::Pending => {
                        return Err(AtErr::status(
                            AtCode::ApkamPending,
                            format!("enrollment_id: {id} is pending"),
                        ))
                    }
                    EnrollState::Denied => {
                        return Err(AtErr::status(
                            AtCode::ApkamDenied,
                            format!("enrollment_id: {id} is denied"),
                        ))
                    }
                    EnrollState::Revoked => {
                        return Err(AtErr::status(
                            AtCode::ApkamRevoked,
                            format!("enrollment_id: {id} is revoked"),
                        ))
                    }
                }
            }
            None => self
                .server
                .state()
                .value("privatekey:at_pkam_publickey")
                .ok_or_else(failed)?,
        };
        if ecc {
            log::warn!("{}: ECC PKAM is not supported", self.me());
            return Err(failed());
        }
        let key =
            crate::crypto::rsa::RsaPublicKey::from_spki_b64(&public_b64).map_err(|_| failed())?;
        let sig = b64::decode(sig).map_err(|_| failed())?;
        if !key.verify(hash, challenge.as_bytes(), &sig) {
            log::warn!("{}: pkam signature check failed", self.me());
            return Err(failed());
        }
        if let Some(id) = &eid {
            self.server.add_session(id, self.tx.clone());
        }
        self.auth = Auth::Owner {
            enrollment: eid,
            cram: false,
        };
        self.failed_auth = 0;
        log::info!("{}: pkam authenticated", self.me());
        Ok("data:success".into())
    }

    /// `cram:` (§4.3): hex SHA-512 of secret + challenge.
    fn cram(&mut self, digest: &str) -> VerbResult<String> {
        let failed = || AtErr::new(AtCode::AuthFailed, "Authentication Failed");
        let challenge = self.take_challenge().map_err(|_| failed())?;
        let secret = self
            .server
            .state()
            .value("privatekey:at_secret")
            .ok_or_else(failed)?;
        let expected = hash::sha512_hex(format!("{secret}{challenge}").as_bytes());
        if !hash::ct_eq(expected.as_bytes(), digest.to_ascii_lowercase().as_bytes()) {
            log::warn!("{}: cram digest mismatch", self.me());
            return Err(failed());
        }
        self.auth = Auth::Owner {
            enrollment: None,
            cram: true,
        };
        self.failed_auth = 0;
        log::info!("{}: cram authenticated", self.me());
        Ok("data:success".into())
    }
}

/// `v` (e.g. `3.3.0`) is strictly greater than `min`.
fn version_gt(v: &str, min: (u64, u64, u64)) -> bool {
    let mut it = v
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let t = (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    );
    t > min
}

#[cfg(test)]
mod tests {
    use super::version_gt;

    #[test]
    fn versions() {
        assert!(version_gt("3.3.0", (3, 0, 37)));
        assert!(version_gt("3.0.38", (3, 0, 37)));
        assert!(!version_gt("3.0.37", (3, 0, 37)));
        assert!(!version_gt("garbage", (3, 0, 37)));
    }

    #[test]
    fn random_commands_never_panic_the_handlers() {
        // Every verb handler, authenticated as owner and not, against random token soup.
        use super::*;
        let dir = std::env::temp_dir().join(format!("atserver-soup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let alice = Arc::new(AtServer::open("@alice", &dir.join("alice")).unwrap());
        let bob = Arc::new(AtServer::open("@bob", &dir.join("bob")).unwrap());
        let hub = Arc::new(Hub::new(
            vec![alice.clone(), bob],
            "127.0.0.1".into(),
            10,
            Duration::from_secs(5),
        ));
        let (tx, rx) = async_channel::bounded(1 << 16);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        crate::runtime::block_on(async {
            let mut s = Session::new(hub, alice, tx);
            for i in 0..3000 {
                let line = crate::atserver::verbs::tests::soup(&mut seed);
                if line.to_ascii_lowercase().starts_with("noop") {
                    continue;
                }
                s.auth = if i % 2 == 0 {
                    Auth::Unauthenticated
                } else {
                    Auth::Owner {
                        enrollment: None,
                        cram: false,
                    }
                };
                s.failed_auth = 0;
                s.bad_otps = 0;
                s.enroll_requests.clear();
                let _ = s.handle_line(&line).await;
                while rx.try_recv().is_ok() {}
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
