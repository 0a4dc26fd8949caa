//! The policy YAML schema (noports.md §9.8): `userGroups: <name>: {userAtSigns: [...],
//! permissions: {daemonAtSigns: [...], deviceNames: {<dev>: [permitOpen...]},
//! deviceGroupNames: {<grp>: [...]}}}`. Every key outside the schema, every wrong type and every
//! malformed atSign or permit-open is an error naming its line.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::rules::{check_id, check_name, check_permit_open, Group};
use super::yaml::{self, Kind, Node, YamlError};
use crate::at::AtSign;

fn bad<T>(line: usize, message: impl Into<String>) -> Result<T, YamlError> {
    Err(YamlError {
        line,
        message: message.into(),
    })
}

type Entries<'a> = &'a [(String, usize, Node)];

/// A mapping's entries; null counts as empty.
fn map_of<'a>(n: &'a Node, what: &str) -> Result<Entries<'a>, YamlError> {
    match &n.kind {
        Kind::Map(m) => Ok(m),
        Kind::Null => Ok(&[]),
        _ => bad(n.line, format!("{what} must be a mapping")),
    }
}

/// A sequence of scalars; null counts as empty.
fn scalars(n: &Node, what: &str) -> Result<Vec<(String, usize)>, YamlError> {
    let items = match &n.kind {
        Kind::Seq(items) => items,
        Kind::Null => return Ok(Vec::new()),
        _ => return bad(n.line, format!("{what} must be a list")),
    };
    items
        .iter()
        .map(|i| match &i.kind {
            Kind::Scalar(s) => Ok((s.clone(), i.line)),
            _ => bad(
                i.line,
                format!("each entry of {what} must be a single value"),
            ),
        })
        .collect()
}

fn atsign_list(n: &Node, what: &str) -> Result<Vec<AtSign>, YamlError> {
    let mut out: Vec<AtSign> = Vec::new();
    for (s, line) in scalars(n, what)? {
        match AtSign::parse(&s) {
            Ok(a) if !out.contains(&a) => out.push(a),
            Ok(_) => {}
            Err(e) => return bad(line, format!("{what}: {e}")),
        }
    }
    Ok(out)
}

fn permit_lists(n: &Node, what: &str) -> Result<Vec<(String, Vec<String>)>, YamlError> {
    let mut out = Vec::new();
    for (name, line, value) in map_of(n, what)? {
        if let Err(e) = check_name(what, name) {
            return bad(*line, e);
        }
        let mut entries = Vec::new();
        for (p, pline) in scalars(value, &format!("{what} \"{name}\""))? {
            if let Err(e) = check_permit_open(&p) {
                return bad(pline, e);
            }
            if !entries.contains(&p) {
                entries.push(p);
            }
        }
        out.push((name.clone(), entries));
    }
    Ok(out)
}

fn group(name: &str, line: usize, node: &Node) -> Result<Group, YamlError> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return bad(
            line,
            format!("user group name {name:?} must be 1-64 printable characters"),
        );
    }
    let mut g = Group {
        // The name doubles as the record id when it is a valid one; otherwise `import` gives
        // the group a fresh id (a record id must be usable inside a key).
        id: if check_id(name).is_ok() {
            name.to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
        ..Default::default()
    };
    let mut seen_users = false;
    for (key, kline, value) in map_of(node, &format!("user group \"{name}\""))? {
        match key.as_str() {
            "userAtSigns" => {
                g.users = atsign_list(value, "userAtSigns")?;
                seen_users = true;
            }
            "description" => match &value.kind {
                Kind::Scalar(s) => g.description = s.clone(),
                Kind::Null => {}
                _ => return bad(*kline, "description must be a single value"),
            },
            "permissions" => {
                for (pkey, pline, pvalue) in map_of(value, "permissions")? {
                    match pkey.as_str() {
                        "daemonAtSigns" => g.daemons = atsign_list(pvalue, "daemonAtSigns")?,
                        "deviceNames" => g.devices = permit_lists(pvalue, "device")?,
                        "deviceGroupNames" => {
                            g.device_groups = permit_lists(pvalue, "device group")?
                        }
                        other => {
                            return bad(
                                *pline,
                                format!(
                                    "unknown key \"{other}\" in permissions (expected \
                                     daemonAtSigns, deviceNames or deviceGroupNames)"
                                ),
                            )
                        }
                    }
                }
            }
            other => {
                return bad(
                    *kline,
                    format!(
                        "unknown key \"{other}\" in user group \"{name}\" (expected \
                         userAtSigns, permissions or description)"
                    ),
                )
            }
        }
    }
    if !seen_users {
        return bad(line, format!("user group \"{name}\" has no userAtSigns"));
    }
    Ok(g)
}

/// Parses a policy file into its user groups.
///
/// # Errors
/// YAML outside the subset, or content outside the schema, with the line.
pub fn parse_policy(text: &str) -> Result<Vec<Group>, YamlError> {
    let root = yaml::parse(text)?;
    let top = match &root.kind {
        Kind::Map(m) => m,
        Kind::Null => return bad(0, "no userGroups in the policy file (it is empty)"),
        _ => {
            return bad(
                root.line,
                "the policy file must be a mapping with userGroups",
            )
        }
    };
    let mut groups = None;
    for (key, line, value) in top {
        match key.as_str() {
            "userGroups" => {
                let mut out = Vec::new();
                for (name, gline, node) in map_of(value, "userGroups")? {
                    out.push(group(name, *gline, node)?);
                }
                groups = Some(out);
            }
            other => {
                return bad(
                    *line,
                    format!("unknown top-level key \"{other}\" (expected userGroups)"),
                )
            }
        }
    }
    groups.ok_or(YamlError {
        line: 0,
        message: "no userGroups in the policy file".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// The documented example's shape (both empty forms of deviceNames, quoted names).
    const EXAMPLE: &str = r#"# documented example
userGroups:
  "api_users":
    userAtSigns:
      - "@alice"
      - "@bob"
    permissions:
      daemonAtSigns:
        - "@zaphod"
      deviceNames:
        "h2g2":
          - "localhost:3000"
  "rdp_users":
    userAtSigns:
      - "@charlie"
    permissions:
      daemonAtSigns:
        - "@zaphod"
      deviceNames:
      deviceGroupNames:
        "network_name_123":
          - "*:3389"
"#;

    #[test]
    fn parses_the_documented_format() {
        let g = parse_policy(EXAMPLE).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "api_users");
        assert_eq!(g[0].users.len(), 2);
        assert_eq!(
            g[0].devices,
            vec![("h2g2".to_string(), vec!["localhost:3000".to_string()])]
        );
        assert!(g[1].devices.is_empty());
        assert_eq!(g[1].device_groups[0].1, vec!["*:3389".to_string()]);
    }

    /// Found by the `policy` fuzz target: a group name with control characters was accepted and
    /// became a record id that the record reader refuses. Names must be printable; a name that
    /// is no valid id leaves the id to `import`.
    #[test]
    fn group_names_are_printable_and_ids_valid() {
        let doc = |name: &str| format!("userGroups:\n  \"{name}\":\n    userAtSigns: [\"@a\"]\n");
        assert!(parse_policy(&doc("-\u{0}x")).is_err());
        let g = parse_policy(&doc("api users")).unwrap();
        assert_eq!((g[0].name.as_str(), g[0].id.as_str()), ("api users", ""));
        assert_eq!(Group::from_json(&g[0].to_json()).unwrap(), g[0]);
        let g = parse_policy(&doc("ops_1")).unwrap();
        assert_eq!(g[0].id, "ops_1");
    }

    /// A half-saved or mangled file is an error, never a panic (the service must survive it).
    #[test]
    fn mangled_files_never_panic() {
        for end in 0..=EXAMPLE.len() {
            if let Some(prefix) = EXAMPLE.get(..end) {
                let _ = parse_policy(prefix);
            }
        }
        let bytes = EXAMPLE.as_bytes();
        for i in 0..bytes.len() {
            for b in [b' ', b'-', b':', b'"', b'@', b'\n', b'*'] {
                let mut v = bytes.to_vec();
                v[i] = b;
                let _ = parse_policy(&String::from_utf8_lossy(&v));
            }
        }
    }

    #[test]
    fn schema_errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("userGroup:\n  g: {}\n", 1, "unknown top-level key"),
            ("userGroups:\n  g:\n    users: []\n", 3, "unknown key \"users\""),
            ("userGroups:\n  g:\n    userAtSigns: [\"@a\"]\n    permissions:\n      deviceName: {}\n", 5, "deviceName"),
            ("userGroups:\n  g:\n    userAtSigns:\n      - \"@a b\"\n", 4, "not a valid atSign"),
            ("userGroups:\n  g:\n    userAtSigns: []\n    permissions:\n      deviceNames:\n        d:\n          - \"*.*\"\n", 7, "host:port"),
            ("userGroups:\n  g:\n    permissions: {}\n", 2, "no userAtSigns"),
            ("userGroups:\n  g:\n    userAtSigns: x\n", 3, "must be a list"),
            ("userGroups: []\n", 1, "must be a mapping"),
            ("- a\n", 1, "must be a mapping"),
        ];
        for (text, line, needle) in cases {
            let e = parse_policy(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
        assert!(parse_policy("")
            .unwrap_err()
            .message
            .contains("no userGroups"));
    }
}
