//! Enrollment scope (atprotocol.md §11.7, docs/security.md "Enrollment scope"): which keys
//! an APKAM enrollment with a given namespace list may read, write or list. Pure functions.
use super::key::{AtKey, Reserved, Vis};

/// Does an enrollment hold the atSign's identity (`__manage`, or `*` with `rw`)? Only such an
/// enrollment may write identity keys or touch private key material (docs/security.md).
pub(crate) fn ns_full(namespaces: &[(String, String)]) -> bool {
    namespaces
        .iter()
        .any(|(n, a)| n == "__manage" || (n == "*" && a == "rw"))
}

/// May an enrollment with `namespaces` read (or write) `key` (§11.7)? `monitor` may use the
/// `__manage` namespace; other verbs may not. Reserved keys follow [`Reserved`]: shared keys
/// are open to every enrollment, identity keys are read-only and secrets closed unless the
/// enrollment is full ([`ns_full`]).
pub(crate) fn ns_allows(
    namespaces: &[(String, String)],
    key: &AtKey,
    write: bool,
    monitor: bool,
) -> bool {
    match key.reserved() {
        Reserved::SharedKey => return true,
        Reserved::Identity => return !write || ns_full(namespaces),
        Reserved::Secret => return ns_full(namespaces),
        Reserved::No => {}
    }
    let access_ok = |a: &str| {
        if write {
            a == "rw"
        } else {
            a == "r" || a == "rw"
        }
    };
    if key.namespace() == Some("__manage") && !monitor {
        return false;
    }
    if let Some(_ns) = key.namespace() {
        for (n, a) in namespaces {
            if n != "*" && key.name.ends_with(&format!(".{n}")) {
                return access_ok(a);
            }
        }
    }
    namespaces.iter().any(|(n, a)| n == "*" && access_ok(a))
}

/// May a `scan` by an enrollment with `namespaces` list `key`? Like the official server, a
/// namespace-limited enrollment sees public keys and keys of its namespaces only (no reserved
/// keys, nothing without a namespace).
pub(crate) fn ns_lists(namespaces: &[(String, String)], key: &AtKey) -> bool {
    if key.vis == Vis::Public {
        return true;
    }
    if key.reserved() != Reserved::No {
        return ns_full(namespaces);
    }
    ns_allows(namespaces, key, false, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn namespace_rules() {
        let sshnp = ns(&[("sshnp", "rw"), ("sshrvd", "r")]);
        let k = |s: &str| AtKey::parse(s).unwrap();
        assert!(ns_allows(
            &sshnp,
            &k("@bob:x.mydev.sshnp@alice"),
            true,
            false
        ));
        assert!(ns_allows(&sshnp, &k("shared_key.bob@alice"), true, false));
        assert!(!ns_allows(&sshnp, &k("foo@alice"), false, false));
        assert!(ns_allows(&sshnp, &k("x.sshrvd@alice"), false, false));
        assert!(!ns_allows(&sshnp, &k("x.sshrvd@alice"), true, false));
        // Reserved keys: shared keys open, identity read-only, secrets closed.
        assert!(ns_allows(&sshnp, &k("@bob:shared_key@alice"), true, false));
        assert!(ns_allows(
            &sshnp,
            &k("public:publickey@alice"),
            false,
            false
        ));
        assert!(!ns_allows(
            &sshnp,
            &k("public:publickey@alice"),
            true,
            false
        ));
        assert!(!ns_allows(
            &sshnp,
            &k("public:signing_publickey@alice"),
            true,
            false
        ));
        for secret in [
            "@alice:signing_privatekey@alice",
            "privatekey:at_pkam_publickey",
            "privatekey:at_secret",
            "self_encryption_key@alice",
        ] {
            assert!(!ns_allows(&sshnp, &k(secret), false, false), "{secret}");
            assert!(!ns_allows(&sshnp, &k(secret), true, false), "{secret}");
        }
        let star_r = ns(&[("*", "r")]);
        assert!(!ns_allows(
            &star_r,
            &k("privatekey:at_pkam_publickey"),
            false,
            false
        ));
        assert!(!ns_lists(&sshnp, &k("shared_key.bob@alice")));
        assert!(ns_lists(&sshnp, &k("public:publickey@alice")));
        let all = ns(&[("__manage", "rw"), ("*", "rw")]);
        assert!(ns_allows(
            &all,
            &k("privatekey:at_pkam_publickey"),
            true,
            false
        ));
        assert!(ns_allows(&all, &k("public:publickey@alice"), true, false));
        assert!(ns_allows(&all, &k("foo@alice"), true, false));
        assert!(!ns_allows(
            &all,
            &k("a.new.enrollments.__manage@alice"),
            false,
            false
        ));
        assert!(ns_allows(
            &all,
            &k("a.new.enrollments.__manage@alice"),
            false,
            true
        ));
    }
}
