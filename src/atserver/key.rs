//! The textual key grammar (atprotocol.md §5.1) and its reassembly from verb parameters (§5.2).
use crate::at::AtSign;

/// Who may see a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Vis {
    /// `public:`
    Public,
    /// `@<sharedWith>:` (atSign with `@`, lower-case)
    Shared(String),
    /// no prefix: readable by the owner only
    SelfKey,
    /// `private:` (server-internal)
    Private,
    /// `privatekey:` (server-internal, no owner)
    PrivateKey,
    /// `local:` (client-side only)
    Local,
}

/// A parsed key: `[cached:]<vis><name>[@<owner>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AtKey {
    pub cached: bool,
    pub vis: Vis,
    pub name: String,
    /// With `@`, lower-case.
    pub owner: Option<String>,
}

/// Longest stored key (§5.1): 248, or 255 for `cached:` keys.
const MAX_KEY_LEN: usize = 255;

/// Normalises `@alice` / `alice` / `@Alice` to `@alice`; `None` when not an atSign. The
/// grammar is the client's ([`AtSign::parse`]): the server accepts exactly what clients send.
pub(crate) fn norm_atsign(s: &str) -> Option<String> {
    AtSign::parse(s).ok().map(String::from)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(|c: char| c == ':' || c == '@' || c.is_whitespace() || c.is_control())
}

impl AtKey {
    /// Parses a full key text (lower-cased first).
    ///
    /// # Errors
    /// A short reason when the text is not a key.
    pub(crate) fn parse(text: &str) -> Result<AtKey, &'static str> {
        let lower = text.to_lowercase();
        if lower.len() > MAX_KEY_LEN {
            return Err("key too long");
        }
        let (cached, s) = match lower.strip_prefix("cached:") {
            Some(r) => (true, r),
            None => (false, lower.as_str()),
        };
        let (vis, rest) = if let Some(r) = s.strip_prefix("public:") {
            (Vis::Public, r)
        } else if let Some(r) = s.strip_prefix("privatekey:") {
            if !valid_name(r) {
                return Err("bad privatekey name");
            }
            return Ok(AtKey {
                cached,
                vis: Vis::PrivateKey,
                name: r.to_string(),
                owner: None,
            });
        } else if let Some(r) = s.strip_prefix("private:") {
            (Vis::Private, r)
        } else if let Some(r) = s.strip_prefix("local:") {
            (Vis::Local, r)
        } else if s.starts_with('@') {
            let (w, r) = s.split_once(':').ok_or("missing name")?;
            let w = norm_atsign(w).ok_or("bad sharedWith atSign")?;
            (Vis::Shared(w), r)
        } else {
            (Vis::SelfKey, s)
        };
        let (name, owner) = match rest.split_once('@') {
            Some((n, o)) => (
                n,
                Some(
                    norm_atsign(o)
                        .filter(|_| !o.contains('@'))
                        .ok_or("bad owner atSign")?,
                ),
            ),
            None => (rest, None),
        };
        if !valid_name(name) {
            return Err("bad key name");
        }
        Ok(AtKey {
            cached,
            vis,
            name: name.to_string(),
            owner,
        })
    }

    /// The stored form, e.g. `cached:@bob:x.ns@alice`.
    pub(crate) fn stored(&self) -> String {
        let mut s = String::new();
        if self.cached {
            s.push_str("cached:");
        }
        match &self.vis {
            Vis::Public => s.push_str("public:"),
            Vis::Shared(w) => {
                s.push_str(w);
                s.push(':');
            }
            Vis::SelfKey => {}
            Vis::Private => s.push_str("private:"),
            Vis::PrivateKey => s.push_str("privatekey:"),
            Vis::Local => s.push_str("local:"),
        }
        s.push_str(&self.name);
        if let Some(o) = &self.owner {
            s.push_str(o);
        }
        s
    }

    /// The namespace: the part of the name after its last `.` (§5.1).
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.name.rsplit_once('.').map(|(_, ns)| ns)
    }

    /// Which kind of reserved (namespace-less, atProtocol-defined) key this is, for the APKAM
    /// scope rules in `scope::ns_allows` (docs/security.md, "Enrollment scope").
    pub(crate) fn reserved(&self) -> Reserved {
        if self.vis == Vis::PrivateKey {
            // privatekey:at_pkam_publickey, at_secret, signing_keypair_generated, ...
            return Reserved::Secret;
        }
        let n = self.name.as_str();
        if n == "shared_key" || n.starts_with("shared_key.") {
            return Reserved::SharedKey;
        }
        match n {
            "publickey" | "signing_publickey" | "encryption_publickey" => Reserved::Identity,
            "signing_privatekey"
            | "encryption_privatekey"
            | "privatekey"
            | "self_encryption_key"
            | "at_pkam_publickey"
            | "at_pkam_privatekey"
            | "at_secret"
            | "at_secret_deleted"
            | "signing_keypair_generated"
            | "commitlogcompactionstats"
            | "accesslogcompactionstats"
            | "notificationcompactionstats" => Reserved::Secret,
            _ => Reserved::No,
        }
    }
}

/// Reserved-key classes (§5.3), by what an APKAM enrollment may do with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// An ordinary key: the enrollment's namespaces decide.
    No,
    /// `shared_key` copies (`@bob:shared_key@alice`, `shared_key.bob@alice`, cached copies):
    /// every authenticated connection may read and write them, as on the official server.
    SharedKey,
    /// The atSign's public encryption and signing keys: readable by every authenticated
    /// connection, written only by a `__manage` or `*:rw` enrollment.
    Identity,
    /// Private key material and server bookkeeping (`signing_privatekey`, `privatekey:*`,
    /// `self_encryption_key`, ...): read and written only by a `__manage` or `*:rw` enrollment.
    Secret,
}

/// Stored keys that never enter the commit log (§6.4): `data:-1`.
pub(crate) fn is_uncommitted(stored: &str) -> bool {
    stored.starts_with("private:")
        || stored.starts_with("privatekey:")
        || stored.starts_with("local:")
        || (stored.starts_with("public:_") && !stored.starts_with("public:__"))
}

/// Hidden from `scan` (§5.1): the name starts with `_`.
pub(crate) fn is_hidden(stored: &str) -> bool {
    stored.starts_with('_') || stored.starts_with("public:_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let cases = [
            ("public:publickey@Alice", "public:publickey@alice"),
            ("@bob:x.ns@alice", "@bob:x.ns@alice"),
            ("x.ns@alice", "x.ns@alice"),
            (
                "cached:@alice:shared_key@bob",
                "cached:@alice:shared_key@bob",
            ),
            ("privatekey:at_secret", "privatekey:at_secret"),
            ("cached:public:publickey@bob", "cached:public:publickey@bob"),
        ];
        for (i, o) in cases {
            assert_eq!(AtKey::parse(i).unwrap().stored(), o, "{i}");
        }
        let k = AtKey::parse("@bob:ping.mydev.sshnp@alice").unwrap();
        assert_eq!(k.vis, Vis::Shared("@bob".into()));
        assert_eq!(k.namespace(), Some("sshnp"));
    }

    #[test]
    fn atsigns_normalise_or_are_refused() {
        assert_eq!(norm_atsign(" @Alice ").as_deref(), Some("@alice"));
        assert_eq!(norm_atsign("bob_1-x").as_deref(), Some("@bob_1-x"));
        for bad in ["", "@", "a.b", "a:b", "a b", "a@b", "a\nb", "a*"] {
            assert_eq!(norm_atsign(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "@bob:",
            "x y@a",
            "x@a@b",
            "ttl:300:@bob:x@a",
            "@:x@a",
            "x@",
        ] {
            assert!(AtKey::parse(bad).is_err(), "{bad}");
        }
    }
}
