//! The atDirectory (atprotocol.md §3): `<atSign without @>\n` → `<host>:<port>\r\n@` or
//! `null\r\n@`, with the anti-enumeration rule (2nd miss delayed 3 s, 3rd miss closes).
//! AtSigns not hosted here are looked up in the `--peer-root` directories (forwarding, with a
//! loop guard: a look-up that comes back while we forward it is a miss).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use futures_lite::AsyncRead;

use super::conn::LineBuf;
use super::server::Hub;

/// Delay before answering the second not-found lookup on a connection.
const SECOND_MISS_DELAY: Duration = Duration::from_secs(3);

/// The directory's answer for one request line (without the `\r\n@` framing); `None` = miss.
pub(crate) fn resolve(hub: &Hub, line: &str) -> Option<String> {
    let name = line.trim().to_lowercase();
    if name.is_empty() || name.starts_with('@') {
        return None;
    }
    let server = hub.get(&format!("@{name}"))?;
    let port = server.port.load(Ordering::SeqCst);
    Some(format!("{}:{port}", hub.host))
}

/// Asks the `--peer-root` directories about an atSign not hosted here, so that clients of this
/// directory reach atSigns hosted elsewhere with one `--root-domain`.
async fn forward(hub: &Hub, line: &str) -> Option<String> {
    let name = line.trim().to_lowercase();
    let at = crate::at::AtSign::parse(&name).ok()?;
    hub.peers.forward_lookup(at.as_str()).await
}

/// Serves one directory connection.
pub(crate) async fn serve<R: AsyncRead + Unpin>(
    hub: Arc<Hub>,
    mut reader: R,
    tx: async_channel::Sender<Vec<u8>>,
    spoke: Arc<std::sync::atomic::AtomicBool>,
) {
    let _ = tx.send(b"@".to_vec()).await;
    let mut lines = LineBuf::default();
    let mut buf = vec![0u8; 4096];
    let mut misses = 0u32;
    // Each request must be complete within `auth_timeout` of the previous answer (or of the
    // greeting), however slowly its bytes trickle in.
    let mut deadline = std::time::Instant::now() + hub.auth_timeout;
    loop {
        while let Some(line) = lines.next_line() {
            let Ok(line) = line else {
                let _ = tx
                    .send(b"error:AT0005-Exception: Buffer limit exceeded\r\n@".to_vec())
                    .await;
                return;
            };
            spoke.store(true, Ordering::SeqCst);
            let cmd = line.trim();
            if cmd == "@exit" {
                return;
            }
            let answer = match resolve(&hub, cmd) {
                Some(a) => Some(a),
                None => Box::pin(forward(&hub, cmd)).await,
            };
            match answer {
                Some(addr) => {
                    let _ = tx.send(format!("{addr}\r\n@").into_bytes()).await;
                }
                None => {
                    misses += 1;
                    if misses >= 3 {
                        log::warn!("directory: third unknown lookup on one connection, closing");
                        return;
                    }
                    if misses == 2 {
                        crate::runtime::sleep(SECOND_MISS_DELAY).await;
                    }
                    let _ = tx.send(b"null\r\n@".to_vec()).await;
                }
            }
            deadline = std::time::Instant::now() + hub.auth_timeout;
        }
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .min(hub.unauth_idle);
        match crate::runtime::timeout(left, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Err(_) => {
                log::debug!("directory: request not complete in time, closing");
                return;
            }
            Ok(Ok(n)) => lines.feed(buf.get(..n).unwrap_or_default()),
        }
    }
}
