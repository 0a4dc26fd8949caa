//! `sshnp --list-devices` (`--ls`): the devices that share their `device_info` record with us,
//! pinged, and printed as active (answered) or inactive (noports.md §7.2).
//!
//! Sequence: find the device atSigns (`-t`, or the owners of the `device_info` copies cached
//! on our atServer), ask each one's atServer for the `device_info.<name>.sshnp` records it
//! shares with us (`scan:@owner`), read each record, ping the device, and collect heartbeats.
//! The official client always waits 10 s; we stop early once every listed device answered.
use std::time::{Duration, Instant};

use crate::at::{AtClient, AtSign, MonitorStart, NotifyOptions};
use crate::noports::messages::PingResponse;
use crate::noports::names::validate_device_name;
use crate::runtime::timeout;

/// How long to wait for heartbeats, as the official client (§7.2 step 5).
const LISTEN_WINDOW: Duration = Duration::from_secs(10);
/// Device names as §6.5 allows them, for the scan and heartbeat regexes.
const NAME_RE: &str = "[a-z0-9_][a-z0-9_-]{1,35}";
/// Pings live one minute, as the official client sends them.
const PING_NOTIFY: NotifyOptions = NotifyOptions {
    ttl_ms: Some(10_000),
    ttln_ms: Some(60_000),
    ttr: None,
    ccd: None,
};

/// One listed device: its display name and advertised info.
struct Device {
    owner: AtSign,
    /// The device name as the daemon calls itself.
    dev: String,
    /// The name printed: `dev`, or `dev@owner` without `-t`.
    name: String,
    info: PingResponse,
    active: bool,
}

/// The keys of a `scan` answer (a JSON list of strings).
fn scan_list(answer: &str) -> Result<Vec<String>, String> {
    miniserde::json::from_str::<Vec<String>>(answer)
        .map_err(|_| format!("scan answer is not a list of keys: {answer}"))
}

/// The owner of a cached copy `cached:@me:device_info.<dev>.sshnp@owner`, if it is one.
fn cached_owner(key: &str) -> Option<AtSign> {
    let rest = key.strip_prefix("cached:")?;
    let (_, owner) = rest.rsplit_once('@')?;
    AtSign::parse(&format!("@{owner}")).ok()
}

/// The device name of a shared key `device_info.<dev>.sshnp@owner` (as `scan:@owner` lists it;
/// a `@me:` prefix, which some servers keep, is allowed).
fn info_key_device(key: &str, owner: &AtSign) -> Option<String> {
    let key = match key.strip_prefix('@') {
        Some(rest) => rest.split_once(':')?.1,
        None => key,
    };
    let name = key
        .strip_suffix(owner.as_str())?
        .strip_prefix("device_info.")?
        .strip_suffix(".sshnp")?;
    validate_device_name(name).ok().filter(|n| n == name)
}

/// Runs the listing and prints it to stderr as the official client does; exit code 0.
///
/// # Errors
/// Only when our own atServer cannot be asked; unreadable device records are skipped.
pub async fn list_devices(client: &AtClient, to: Option<&AtSign>) -> Result<(), String> {
    eprintln!("Searching for devices...");
    let regex = format!("device_info\\.{NAME_RE}\\.sshnp");
    let owners: Vec<AtSign> = match to {
        Some(t) => vec![t.clone()],
        None => {
            let keys = client.scan(Some(&regex)).await.map_err(|e| e.to_string())?;
            let mut owners: Vec<AtSign> = keys.iter().filter_map(|k| cached_owner(k)).collect();
            owners.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            owners.dedup();
            owners.retain(|o| o != client.atsign());
            owners
        }
    };
    let mut monitor = client
        .monitor(&format!("heartbeat\\.{NAME_RE}"), MonitorStart::Live)
        .await
        .map_err(|e| e.to_string())?;
    // A device is (owner, name): the same name at two atSigns stays two devices.
    let mut devices: Vec<Device> = Vec::new();
    for owner in &owners {
        let listed = match client.request(&format!("scan:{owner} {regex}")).await {
            Ok(a) => scan_list(&a),
            Err(e) => Err(e.to_string()),
        };
        let keys = match listed {
            Ok(k) => k,
            Err(e) => {
                log::warn!("cannot list the devices of {owner}: {e}");
                continue;
            }
        };
        for key in keys {
            let Some(dev) = info_key_device(&key, owner) else {
                log::warn!("{owner}: ignoring unexpected key {key:?}");
                continue;
            };
            let info = match client
                .get_shared(owner, &format!("device_info.{dev}.sshnp"))
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    log::info!("{owner}: cannot read device_info for {dev}: {e}");
                    continue;
                }
            };
            let info = match PingResponse::parse(&info) {
                Ok(i) if i.device_name == dev => i,
                Ok(i) => {
                    log::warn!(
                        "{owner}: device_info.{dev} names device {:?}; skipped",
                        i.device_name
                    );
                    continue;
                }
                Err(e) => {
                    log::warn!("{owner}: device_info for {dev} is malformed: {e}");
                    continue;
                }
            };
            let name = if to.is_some() {
                dev.clone()
            } else {
                format!("{dev}{owner}")
            };
            if let Err(e) = client
                .notify(owner, &format!("ping.{dev}.sshnp"), "ping", PING_NOTIFY)
                .await
            {
                log::warn!("cannot ping {dev}{owner}: {e}");
            }
            devices.push(Device {
                owner: owner.clone(),
                dev,
                name,
                info,
                active: false,
            });
        }
    }
    let deadline = Instant::now() + LISTEN_WINDOW;
    while devices.iter().any(|d| !d.active) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(n)) = timeout(left, monitor.next()).await else {
            break;
        };
        let key = n.key_name().to_lowercase();
        let Some(dev) = key
            .strip_prefix("heartbeat.")
            .and_then(|k| k.strip_suffix(".sshnp"))
        else {
            continue;
        };
        for d in devices.iter_mut() {
            if d.owner == n.from && d.dev == dev {
                d.active = true;
            }
        }
    }
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    print_devices(&devices);
    Ok(())
}

fn print_devices(devices: &[Device]) {
    if devices.is_empty() {
        eprintln!("[X] No devices found");
        return;
    }
    for (title, active) in [("Active Devices:", true), ("Inactive Devices:", false)] {
        eprintln!("{title}");
        let mut any = false;
        for d in devices.iter().filter(|d| d.active == active) {
            any = true;
            eprintln!(
                "  {} - v{} (core v{})",
                d.name, d.info.version, d.info.core_package_version
            );
            if !d.info.allowed_services.is_empty() {
                eprintln!("  - allowedServices: {}", d.info.allowed_services.join(" "));
            }
        }
        if !any {
            eprintln!("  No devices found");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_scans() {
        let bob = AtSign::parse("@bob").unwrap();
        assert_eq!(
            cached_owner("cached:@alice:device_info.lab.sshnp@bob"),
            Some(bob.clone())
        );
        assert_eq!(cached_owner("@alice:device_info.lab.sshnp@bob"), None);
        assert_eq!(
            info_key_device("device_info.lab_1.sshnp@bob", &bob).as_deref(),
            Some("lab_1")
        );
        assert_eq!(
            info_key_device("@alice:device_info.lab_1.sshnp@bob", &bob).as_deref(),
            Some("lab_1")
        );
        // A hostile owner cannot smuggle key syntax or other owners' names through.
        for bad in [
            "device_info.lab.sshnp@eve",
            "device_info.a b.sshnp@bob",
            "device_info.x.y.sshnp@bob",
            "device_info.LAB.sshnp@bob",
            "public:device_info.lab.sshnp",
        ] {
            assert_eq!(info_key_device(bad, &bob), None, "{bad}");
        }
        assert!(scan_list("[\"a\",\"b\"]").is_ok());
        assert!(scan_list("{\"a\":1}").is_err());
    }
}
