//! `relay_latency_request.<device>`: an official client (5.15) that picks a relay itself asks
//! how long this device takes to reach each candidate, and waits up to 20 s for the answer
//! (docs/protocol-notes.md, control protocol 1.5 §4). The answer maps each relay atSign to the
//! TCP connect time in ms, or -1.
//!
//! Unlike the official daemon, only public addresses are measured: an allowed client must not
//! learn, through connect times, which hosts and ports answer on the device's own networks
//! (loopback, private, link-local, CGNAT, unique-local). Those, like an unreachable relay,
//! report -1 (an address literal of that kind is not even connected to). At most [`MAX_RELAYS`] relays, one after another, [`PER_RELAY`] each.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::json::{self, Object, Value};
use crate::runtime::dial::Route;
use crate::tunnel::connect_tcp;

/// How long one relay may take (the official daemon's figure).
const PER_RELAY: Duration = Duration::from_secs(5);
/// Most relays measured for one request; the rest report -1.
pub(super) const MAX_RELAYS: usize = 16;

/// One relay to measure: its atSign and where its `discover_response` said it listens.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Probe {
    relay: String,
    target: Option<(String, u16)>,
}

/// Reads a request: a JSON object from relay atSign to `{"ipaddr":..,"port":..}`. A relay
/// without an address or port (JSON null) is kept, to be answered -1.
pub(super) fn parse(value: &str) -> Result<Vec<Probe>, String> {
    let Ok(Value::Object(o)) = json::parse(value.trim()) else {
        return Err("not a JSON object".into());
    };
    Ok(o.iter()
        .map(|(relay, v)| {
            let entry = v.as_object();
            let host = entry.and_then(|e| e.get_str("ipaddr"));
            let port = entry
                .and_then(|e| e.get_i64("port"))
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            Probe {
                relay: relay.to_string(),
                target: host.zip(port).map(|(h, p)| (h.to_string(), p)),
            }
        })
        .collect())
}

/// Whether `ip` is a public unicast address, the only kind measured.
fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [b0, b1, ..] = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || b0 == 0
                || (b0 == 100 && (64..128).contains(&b1)))
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            let s0 = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80)
        }
    }
}

/// The connect time to one relay in ms, or -1. An address that is not public is not
/// connected to; a name that resolves to one is (the dialer resolves and connects in one
/// step), and reports -1 all the same, so its time is never told.
async fn measure_one(target: &Option<(String, u16)>) -> i64 {
    let Some((host, port)) = target else {
        return -1;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok_and(|ip| !public(ip)) {
        return -1;
    }
    let started = Instant::now();
    match connect_tcp(host, *port, "relay", Route::Direct, PER_RELAY).await {
        Ok(s) if s.get_ref().peer_addr().is_ok_and(|a| public(a.ip())) => {
            i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
        }
        _ => -1,
    }
}

/// Measures `probes` one after another; the answer's JSON text.
pub(super) async fn measure(probes: &[Probe]) -> String {
    let mut answer = Object::new();
    for (i, p) in probes.iter().enumerate() {
        let ms = if i < MAX_RELAYS {
            measure_one(&p.target).await
        } else {
            -1
        };
        answer.push(&p.relay, ms);
    }
    answer.to_json()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_with_missing_parts_kept_for_minus_one() {
        let probes =
            parse(r#"{"@rv_am":{"ipaddr":"1.2.3.4","port":443},"@rv_eu":{"ipaddr":"x","port":null},"@rv_ap":7}"#)
                .unwrap();
        assert_eq!(
            probes,
            vec![
                Probe {
                    relay: "@rv_am".into(),
                    target: Some(("1.2.3.4".into(), 443))
                },
                Probe {
                    relay: "@rv_eu".into(),
                    target: None
                },
                Probe {
                    relay: "@rv_ap".into(),
                    target: None
                },
            ]
        );
        assert!(parse("null").is_err() && parse("[1]").is_err() && parse("{").is_err());
        assert_eq!(parse("{}").unwrap(), vec![]);
    }

    #[test]
    fn only_public_addresses_are_measured() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(!public(private.parse().unwrap()), "{private}");
        }
        for open in ["1.1.1.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(public(open.parse().unwrap()), "{open}");
        }
    }

    /// A listening loopback port still reports -1: the device's own hosts are not probed.
    #[test]
    fn a_loopback_relay_reports_minus_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let probes = parse(&format!(
            r#"{{"@local":{{"ipaddr":"127.0.0.1","port":{port}}},"@none":{{"ipaddr":"x","port":null}}}}"#
        ))
        .unwrap();
        let answer = crate::runtime::block_on(measure(&probes));
        assert_eq!(answer, r#"{"@local":-1,"@none":-1}"#);
    }
}
