//! `at_activate auto`: approve matching enrollment requests as they arrive (noports.md §8).
use std::process::ExitCode;

use argh::FromArgs;

use super::connect::authenticated;
use super::enroll::{add_approval_keys, select};
use crate::at::verbs::{self, EnrollOp};
use crate::at::MonitorStart;
use crate::json::Object;
use crate::runtime;

/// New enrollment requests arrive as the atServer's self notifications under this key.
const NEW_ENROLLMENTS: &str = r".*\.new\.enrollments\.__manage";

#[derive(FromArgs)]
#[argh(subcommand, name = "auto")]
/// Wait for new enrollment requests and approve those whose app and device names match, until
/// --limit were approved.
pub struct AutoArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// atKeys file
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// app name regex
    #[argh(option, short = 'A')]
    arx: Option<String>,
    /// device name regex
    #[argh(option, short = 'D')]
    drx: Option<String>,
    /// how many requests to approve before exiting (default 1)
    #[argh(option, short = 'L', default = "1")]
    limit: u32,
    /// first approve matching requests that are already pending
    #[argh(switch)]
    approve_existing: bool,
    /// also approve requests for __manage or a wildcard namespace (owner rights)
    #[argh(switch)]
    allow_privileged: bool,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

pub async fn auto(a: AutoArgs) -> Result<ExitCode, String> {
    runtime::init_logging(a.verbose);
    if a.arx.is_none() && a.drx.is_none() {
        return Err("At least one of --arx or --drx must be provided".into());
    }
    if a.limit == 0 {
        return Err("--limit must be 1 or more".into());
    }
    let client = authenticated(&a.atsign, a.keys.as_deref(), &a.root_server).await?;
    // Listening starts before the pending ones are read, so a request arriving in between is
    // not missed.
    let mut monitor = client
        .monitor_with_self_notifications(NEW_ENROLLMENTS, MonitorStart::Live)
        .await
        .map_err(|e| format!("cannot listen for enrollment requests: {e}"))?;
    let mut approved = 0;
    if a.approve_existing {
        for r in select(&client, Some("pending"), &a.arx, &a.drx).await? {
            if approved == a.limit {
                break;
            }
            if approve(&client, &a, &r).await? {
                approved += 1;
            }
        }
    }
    if approved < a.limit {
        println!("Listening for new enrollment requests");
    }
    while approved < a.limit {
        let n = monitor
            .next()
            .await
            .ok_or("the monitor connection to the atServer ended")?;
        let key = n.key.rsplit(':').next().unwrap_or(&n.key);
        let Some(id) = key.split('.').next().filter(|id| !id.is_empty()) else {
            log::warn!(
                "ignoring an enrollment notification without an id: {}",
                n.key
            );
            continue;
        };
        println!("Got enrollment request ID {id}");
        // The notification only says that a request exists: its app and device names are read
        // from the atServer's record, which is what an approval applies to.
        let pending = select(&client, Some("pending"), &a.arx, &a.drx).await?;
        match pending.iter().find(|r| r.id == id) {
            Some(r) => {
                if approve(&client, &a, r).await? {
                    approved += 1;
                }
            }
            None => println!(
                "Not approving {id}: it is not pending, or its app or device name does not match"
            ),
        }
    }
    println!(
        "Approved {approved} requests - limit was {} - done.",
        a.limit
    );
    client.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Approves `r` unless it asks for owner rights without --allow-privileged: Ok(false) then, and
/// the request stays pending for a person to look at.
async fn approve(
    client: &crate::at::AtClient,
    a: &AutoArgs,
    r: &super::enroll::Record,
) -> Result<bool, String> {
    if let Err(e) = r.check_grant(a.allow_privileged) {
        eprintln!("{e}");
        return Ok(false);
    }
    println!("Approving {} which matched the filters", r.describe());
    let mut req = Object::new().with("enrollmentId", r.id.as_str());
    add_approval_keys(client, r, &mut req)?;
    let answer = client
        .request(&verbs::enroll(EnrollOp::Approve, &req))
        .await
        .map_err(|e| format!("approval of {} failed: {e}", r.id))?;
    log::info!("Server response: {answer}");
    println!("Approval successful.");
    Ok(true)
}
