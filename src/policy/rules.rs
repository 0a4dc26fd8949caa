//! Policy groups and the two decision rules (noports.md §9.8): the file service's (device name
//! first, then device group) and the atServer service's (union of every matching group). Pure:
//! no I/O; the messages are the official services' texts, word for word.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::at::AtSign;
use crate::json::{self, Object, Value};

/// One user group ("role"): who may reach which devices of which daemons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// Record id (`<id>.groups.policy.sshnp`); the group name for file policies.
    pub id: String,
    pub name: String,
    pub description: String,
    pub users: Vec<AtSign>,
    pub daemons: Vec<AtSign>,
    /// Device name -> permit-open entries.
    pub devices: Vec<(String, Vec<String>)>,
    /// Device group name -> permit-open entries.
    pub device_groups: Vec<(String, Vec<String>)>,
}

/// What a daemon asks (the RPC request payload, §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub daemon: AtSign,
    pub device: String,
    pub device_group: String,
    pub client: AtSign,
}

/// The answer (`success` payload: authorized, message, permitOpen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub authorized: bool,
    pub message: String,
    pub permit_open: Vec<String>,
}

impl Answer {
    /// A refusal with `message`.
    pub fn deny(message: String) -> Answer {
        Answer {
            authorized: false,
            message,
            permit_open: Vec::new(),
        }
    }

    /// `{"authorized":…,"message":…,"permitOpen":[…]}`.
    pub fn to_object(&self) -> Object {
        Object::new()
            .with("authorized", self.authorized)
            .with("message", self.message.as_str())
            .with(
                "permitOpen",
                Value::Array(
                    self.permit_open
                        .iter()
                        .map(|p| Value::from(p.as_str()))
                        .collect(),
                ),
            )
    }
}

/// Which service's rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `npp_file`: a device-name match wins over a device-group match.
    File,
    /// `npp_atserver`: permit-opens of every matching device and device group, merged.
    AtServer,
}

fn push_unique(out: &mut Vec<String>, items: &[String]) {
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
}

fn entries_for(list: &[(String, Vec<String>)], name: &str, out: &mut Vec<String>) {
    for (n, po) in list {
        if n == name {
            push_unique(out, po);
        }
    }
}

/// Decides `req` against `groups` under `mode`.
pub fn decide(groups: &[Group], mode: Mode, req: &Request) -> Answer {
    let (c, d, dev, dg) = (&req.client, &req.daemon, &req.device, &req.device_group);
    let mine: Vec<&Group> = groups.iter().filter(|g| g.users.contains(c)).collect();
    if mine.is_empty() {
        return Answer::deny(format!("No permissions for {c}"));
    }
    let at_daemon: Vec<&Group> = mine.into_iter().filter(|g| g.daemons.contains(d)).collect();
    let none = || {
        Answer::deny(format!(
            "No permissions for {c} at {d} for either the device {dev} or the deviceGroup {dg}"
        ))
    };
    let grant = |message: String, permit_open: Vec<String>| Answer {
        authorized: true,
        message,
        permit_open,
    };
    match mode {
        Mode::File => {
            if at_daemon.is_empty() {
                return Answer::deny(format!("No permissions for {c} at {d}"));
            }
            let mut by_device = Vec::new();
            let mut by_group = Vec::new();
            for g in &at_daemon {
                entries_for(&g.devices, dev, &mut by_device);
                entries_for(&g.device_groups, dg, &mut by_group);
            }
            if !by_device.is_empty() {
                grant(
                    format!("{c} has permission for device {dev} at daemon {d}"),
                    by_device,
                )
            } else if !by_group.is_empty() {
                grant(
                    format!("{c} has permission for device group {dg} at daemon {d}"),
                    by_group,
                )
            } else {
                none()
            }
        }
        Mode::AtServer => {
            let mut all = Vec::new();
            for g in &at_daemon {
                entries_for(&g.devices, dev, &mut all);
                entries_for(&g.device_groups, dg, &mut all);
            }
            if all.is_empty() {
                none()
            } else {
                grant(
                    format!(
                        "{c} has permission for device {dev} and/or device group {dg} at daemon {d}"
                    ),
                    all,
                )
            }
        }
    }
}

/// Every daemon atSign named by `groups` (the service's allow-list, with heartbeat senders).
pub fn daemons_of(groups: &[Group]) -> Vec<AtSign> {
    let mut out: Vec<AtSign> = Vec::new();
    for d in groups.iter().flat_map(|g| g.daemons.iter()) {
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// Checks one permit-open entry: `host:port` with a port number or `*` (as sshnpd parses it).
pub fn check_permit_open(entry: &str) -> Result<(), String> {
    let bad = || format!("permit-open entry \"{entry}\" is not host:port (port a number or *)");
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(bad());
    }
    if port != "*" && !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return Err(bad());
    }
    Ok(())
}

/// Checks a device or device-group name: printable, no spaces, at most 64 characters.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.chars().count() > 64
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{what} \"{name}\" is not a valid name"));
    }
    Ok(())
}

// --- The atServer record form (`<id>.groups.policy.sshnp`, §9.8) ---------------------------

fn str_list(o: &Object, key: &str) -> Result<Vec<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("\"{key}\" must hold strings"))
            })
            .collect(),
        Some(_) => Err(format!("\"{key}\" must be a list")),
    }
}

fn named_lists(o: &Object, key: &str, what: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let items = match o.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("\"{key}\" must be a list")),
    };
    let mut out = Vec::new();
    for item in items {
        let obj = item
            .as_object()
            .ok_or_else(|| format!("\"{key}\" must hold objects"))?;
        let name = obj
            .get_str("name")
            .ok_or_else(|| format!("an entry of \"{key}\" has no \"name\""))?;
        check_name(what, name)?;
        let po = str_list(obj, "permitOpens")?;
        for p in &po {
            check_permit_open(p)?;
        }
        out.push((name.to_string(), po));
    }
    Ok(out)
}

fn atsigns(o: &Object, key: &str) -> Result<Vec<AtSign>, String> {
    str_list(o, key)?
        .iter()
        .map(|s| AtSign::parse(s).map_err(|e| format!("\"{key}\": {e}")))
        .collect()
}

/// Checks a record id: what may stand before `.groups.policy.sshnp` in a key.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "group id \"{id}\" must be 1-64 letters, digits, '_' or '-'"
        ));
    }
    Ok(())
}

impl Group {
    /// Parses the official record JSON (`id`, `name`, `description`, `userAtSigns`,
    /// `daemonAtSigns`, `devices`, `deviceGroups`).
    ///
    /// # Errors
    /// Not a JSON object, or a field of the wrong type or value (named in the message).
    pub fn from_json(text: &str) -> Result<Group, String> {
        let o = match json::parse(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err("a group must be a JSON object".into()),
            Err(e) => return Err(format!("group JSON: {e}")),
        };
        let id = match o.get("id") {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Int(i)) => i.to_string(),
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err("\"id\" must be a string".into()),
        };
        if !id.is_empty() {
            check_id(&id)?;
        }
        let name = o
            .get_str("name")
            .ok_or("a group needs a \"name\"")?
            .to_string();
        Ok(Group {
            id,
            name,
            description: o.get_str("description").unwrap_or("").to_string(),
            users: atsigns(&o, "userAtSigns")?,
            daemons: atsigns(&o, "daemonAtSigns")?,
            devices: named_lists(&o, "devices", "device")?,
            device_groups: named_lists(&o, "deviceGroups", "device group")?,
        })
    }

    /// The record JSON, in the official field names.
    pub fn to_json(&self) -> String {
        let strs = |v: &mut dyn Iterator<Item = &str>| Value::Array(v.map(Value::from).collect());
        let named = |list: &[(String, Vec<String>)]| {
            Value::Array(
                list.iter()
                    .map(|(n, po)| {
                        Value::Object(
                            Object::new()
                                .with("name", n.as_str())
                                .with("permitOpens", strs(&mut po.iter().map(String::as_str))),
                        )
                    })
                    .collect(),
            )
        };
        Object::new()
            .with("id", self.id.as_str())
            .with("name", self.name.as_str())
            .with("description", self.description.as_str())
            .with(
                "userAtSigns",
                strs(&mut self.users.iter().map(AtSign::as_str)),
            )
            .with(
                "daemonAtSigns",
                strs(&mut self.daemons.iter().map(AtSign::as_str)),
            )
            .with("devices", named(&self.devices))
            .with("deviceGroups", named(&self.device_groups))
            .to_json()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn a(s: &str) -> AtSign {
        AtSign::parse(s).unwrap()
    }

    fn groups() -> Vec<Group> {
        vec![
            Group {
                id: "1".into(),
                name: "web".into(),
                users: vec![a("@alice"), a("@bob")],
                daemons: vec![a("@dev")],
                devices: vec![("box".into(), vec!["localhost:80".into()])],
                device_groups: vec![("lab".into(), vec!["*:443".into()])],
                ..Default::default()
            },
            Group {
                id: "2".into(),
                name: "ssh".into(),
                users: vec![a("@bob")],
                daemons: vec![a("@dev")],
                device_groups: vec![("lab".into(), vec!["localhost:22".into()])],
                ..Default::default()
            },
        ]
    }

    fn req(client: &str, device: &str, group: &str) -> Request {
        Request {
            daemon: a("@dev"),
            device: device.into(),
            device_group: group.into(),
            client: a(client),
        }
    }

    #[test]
    fn file_rule_device_first_then_group() {
        let g = groups();
        let r = decide(&g, Mode::File, &req("@bob", "box", "lab"));
        assert!(r.authorized);
        assert_eq!(r.permit_open, vec!["localhost:80"]);
        assert_eq!(
            r.message,
            "@bob has permission for device box at daemon @dev"
        );
        let r = decide(&g, Mode::File, &req("@bob", "other", "lab"));
        assert_eq!(r.permit_open, vec!["*:443", "localhost:22"]);
        assert_eq!(
            r.message,
            "@bob has permission for device group lab at daemon @dev"
        );
        let r = decide(&g, Mode::File, &req("@carol", "box", "lab"));
        assert_eq!(
            (r.authorized, r.message.as_str()),
            (false, "No permissions for @carol")
        );
        let mut other = req("@alice", "box", "lab");
        other.daemon = a("@elsewhere");
        assert_eq!(
            decide(&g, Mode::File, &other).message,
            "No permissions for @alice at @elsewhere"
        );
        let r = decide(&g, Mode::File, &req("@alice", "x", "y"));
        assert!(!r.authorized);
        assert_eq!(
            r.message,
            "No permissions for @alice at @dev for either the device x or the deviceGroup y"
        );
    }

    #[test]
    fn atserver_rule_merges() {
        let r = decide(&groups(), Mode::AtServer, &req("@bob", "box", "lab"));
        assert!(r.authorized);
        assert_eq!(r.permit_open, vec!["localhost:80", "*:443", "localhost:22"]);
        assert_eq!(
            r.message,
            "@bob has permission for device box and/or device group lab at daemon @dev"
        );
    }

    #[test]
    fn record_json_round_trip_and_rejects() {
        let g = groups().remove(0);
        let back = Group::from_json(&g.to_json()).unwrap();
        assert_eq!(back, g);
        for (text, needle) in [
            ("[]", "JSON object"),
            ("{\"id\":\"1\"}", "name"),
            ("{\"name\":\"x\",\"userAtSigns\":\"@a\"}", "must be a list"),
            (
                "{\"name\":\"x\",\"devices\":[{\"name\":\"d\",\"permitOpens\":[\"nope\"]}]}",
                "host:port",
            ),
            ("{\"name\":\"x\",\"id\":\"a b\"}", "group id"),
            (
                "{\"name\":\"x\",\"userAtSigns\":[\"@a b\"]}",
                "not a valid atSign",
            ),
            ("{\"name\":\"x\",\"name\":\"y\"}", "group JSON"),
        ] {
            let e = Group::from_json(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn permit_open_syntax() {
        for ok in ["localhost:22", "*:*", "10.0.0.1:3389", "[::1]:22", "*:80"] {
            assert!(check_permit_open(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*.*",
            "localhost",
            ":22",
            "h:0",
            "h:70000",
            "h :22",
            "a,b:1",
        ] {
            assert!(check_permit_open(bad).is_err(), "{bad}");
        }
    }
}
