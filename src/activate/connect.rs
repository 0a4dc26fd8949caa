//! Reaching the atServer for `at_activate`'s commands: a few tries (`--mca`) while it is not
//! there yet, and an authenticated client from an atKeys file.
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::at::conn::{lookup_server, Connection};
use crate::at::{AtClient, AtError, AtKeys, AtSign, ClientConfig, RootAddr};
use crate::runtime;

pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `--mca N`, set once by `main`.
pub(super) static MAX_CONNECT_ATTEMPTS: OnceLock<u32> = OnceLock::new();

pub(super) fn parse_atsign(s: &str) -> Result<AtSign, String> {
    AtSign::parse(s).map_err(|e| e.to_string())
}

pub(super) fn keys_path(atsign: &AtSign, given: Option<&str>) -> Result<PathBuf, String> {
    match given {
        Some(p) => Ok(PathBuf::from(p)),
        None => AtKeys::default_path(atsign).map_err(|e| e.to_string()),
    }
}

/// An authenticated client from an atKeys file.
pub(super) async fn authenticated(
    atsign: &str,
    keys: Option<&str>,
    root: &str,
) -> Result<AtClient, String> {
    let atsign = parse_atsign(atsign)?;
    let path = keys_path(&atsign, keys)?;
    AtKeys::load(&path).map_err(|e| e.to_string())?;
    let root = RootAddr::parse(root).map_err(|e| e.to_string())?;
    retrying(connect_attempts(1), || async {
        let config = ClientConfig {
            atsign: atsign.clone(),
            keys: AtKeys::load(&path)?,
            root: root.clone(),
        };
        AtClient::connect(config).await
    })
    .await
    .map_err(|e| e.to_string())
}

/// How many times to try reaching an atServer: `--mca`, else `default`.
pub(super) fn connect_attempts(default: u32) -> u32 {
    MAX_CONNECT_ATTEMPTS.get().copied().unwrap_or(default)
}

/// Runs `attempt` up to `attempts` times, 3 s apart, while it fails for a reason that another
/// try could change (the atServer not there yet); a refusal is returned at once.
pub(super) async fn retrying<T, F, Fut>(attempts: u32, mut attempt: F) -> Result<T, AtError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AtError>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if n < attempts && e.is_connection_problem() => {
                log::info!("atServer not reachable yet (attempt {n} of {attempts}): {e}");
                runtime::sleep(Duration::from_secs(3)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

/// An unauthenticated connection to `atsign`'s atServer.
pub(super) async fn server_connection(
    atsign: &AtSign,
    root: &RootAddr,
) -> Result<Connection, AtError> {
    retrying(connect_attempts(1), || async {
        let (host, port) = lookup_server(root, atsign).await?;
        Connection::connect(&host, port).await
    })
    .await
}
