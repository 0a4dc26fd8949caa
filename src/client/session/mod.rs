//! One client session: ping the daemon, ask the relay for ports, send the signed session
//! request, and verify the daemon's signed answer (noports.md §1.3, §7.1). Each step is a
//! state in `states.rs`; this file only runs them in order.
mod answers;
mod params;
mod states;

pub use answers::monitor_regex;
pub use params::{Established, Kind, Progress, SessionParams, SuitePref};

use super::ephemeral::EphemeralKey;
use super::error::SessionError;
use crate::at::{AtClient, Monitor};

/// Set up one session. Consumes nothing persistent: call again for `-K` re-connects.
pub async fn establish(
    client: &AtClient,
    p: &SessionParams,
    ephemeral: &EphemeralKey,
    progress: Progress,
    before_request: &[(&str, &str)],
    first: Option<(String, Monitor)>,
) -> Result<Established, SessionError> {
    let (mut s, ping_sent) = states::open(client, p, progress, first).await?;
    let checked = ping_sent.handle(&mut s).await?;
    s.send_before_request(before_request).await?;
    let relay_ready = checked.handle(&mut s).await?;
    let requested = relay_ready.handle(&s, ephemeral).await?;
    let answered = requested.handle(&mut s).await?;
    answered.handle(&s)
}
