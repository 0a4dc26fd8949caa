//! Server-side command grammar (atprotocol.md §2.2 normalisation, §4, §7): one trimmed line in,
//! one typed [`Verb`] out. Pure: no I/O, no store access.
use super::error::{AtErr, VerbResult};
use super::key::{norm_atsign, AtKey, Vis};
use super::meta::{MetaPatch, IS_ENCRYPTED};
use crate::crypto::rsa::HashAlgo;

/// `meta` / `all` modifier of the lookup verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Value,
    Meta,
    All,
}

/// A `notify:` send request (§7.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NotifyReq {
    pub id: Option<String>,
    pub delete: bool,
    pub text: bool,
    pub ttln: Option<i64>,
    pub meta: MetaPatch,
    pub key: AtKey,
    pub value: Option<String>,
}

impl NotifyReq {
    /// The key the stored notification carries (`key` as resolved by the caller): `@<to>:<text>` for text messages, else the
    /// full key.
    pub(crate) fn notification_key(&self, key: &AtKey, to: &str) -> String {
        if self.text {
            format!("{to}:{}", key.name)
        } else {
            key.stored()
        }
    }

    /// The metadata fields as stored with the notification, in the fixed order of §6.2.
    pub(crate) fn meta_fields(&self) -> [Option<String>; 16] {
        let mut meta: [Option<String>; 16] = Default::default();
        for (m, p) in meta.iter_mut().zip(self.meta.0.iter()) {
            *m = p.clone().flatten();
        }
        meta
    }

    /// §7.7: a key notification counts as encrypted unless it is public or says
    /// `isEncrypted:false` ("true for legacy reasons"); a text one only if it says so.
    pub(crate) fn is_encrypted(&self, key: &AtKey) -> bool {
        if self.text {
            self.meta.get(IS_ENCRYPTED) == Some("true")
        } else {
            key.vis != Vis::Public && self.meta.get(IS_ENCRYPTED) != Some("false")
        }
    }
}

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Empty,
    Exit,
    From {
        atsign: String,
        client_version: Option<String>,
    },
    Pkam {
        hash: HashAlgo,
        ecc: bool,
        enrollment_id: Option<String>,
        sig: String,
    },
    Cram {
        digest: String,
    },
    Pol,
    Lookup {
        bypass: bool,
        mode: Mode,
        name: String,
        owner: String,
    },
    Plookup {
        bypass: bool,
        mode: Mode,
        name: String,
        owner: String,
    },
    Llookup {
        mode: Mode,
        key: AtKey,
    },
    Update {
        meta: MetaPatch,
        key: AtKey,
        value: String,
    },
    UpdateMeta {
        meta: MetaPatch,
        key: AtKey,
    },
    Delete {
        key: AtKey,
    },
    Scan {
        show_hidden: bool,
        for_atsign: Option<String>,
        regex: Option<String>,
    },
    Notify(NotifyReq),
    NotifyStatus(String),
    NotifyList {
        regex: Option<String>,
    },
    NotifyFetch(String),
    NotifyRemove(String),
    Monitor {
        self_notifications: bool,
        epoch: Option<i64>,
        regex: Option<String>,
    },
    Noop(u64),
    Info {
        brief: bool,
    },
    Stats,
    Enroll {
        op: String,
        force: bool,
        json: Option<String>,
    },
    OtpGet {
        ttl: Option<i64>,
    },
    OtpPut {
        passcode: String,
        ttl: Option<i64>,
    },
    KeysGet {
        key_name: String,
    },
}

fn syntax() -> AtErr {
    AtErr::syntax("invalid command")
}

/// Case-insensitive `strip_prefix`.
fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Takes `:<word>` when the next segment equals `word` (case-insensitive).
fn opt_flag<'a>(s: &'a str, word: &str) -> (bool, &'a str) {
    match strip_ci(s, &format!(":{word}")) {
        Some(r) if r.is_empty() || r.starts_with(':') || r.starts_with(' ') => (true, r),
        _ => (false, s),
    }
}

/// Takes `:<name>:<value>` returning the value (up to the next `:` or space).
fn opt_param<'a>(s: &'a str, name: &str) -> (Option<&'a str>, &'a str) {
    match strip_ci(s, &format!(":{name}:")) {
        Some(r) => {
            let end = r.find([':', ' ']).unwrap_or(r.len());
            (r.get(..end), r.get(end..).unwrap_or(""))
        }
        None => (None, s),
    }
}

fn parse_int(s: Option<&str>) -> VerbResult<Option<i64>> {
    match s {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| AtErr::syntax(format!("not a number: {v}"))),
    }
}

/// Parses one command line (already stripped of its line terminator).
///
/// # Errors
/// `AT0003` for anything that matches no verb grammar; other codes for bad values.
pub(crate) fn parse(line: &str) -> VerbResult<Verb> {
    let cmd = line.trim();
    if cmd.is_empty() {
        return Ok(Verb::Empty);
    }
    if cmd == "@exit" {
        return Ok(Verb::Exit);
    }
    // §2.2: without a ':' the whole command is lower-cased (`scan <re>`, `monitor <re>`).
    let Some((head, rest)) = cmd.split_once(':') else {
        let lower = cmd.to_lowercase();
        let (v, arg) = match lower.split_once(' ') {
            Some((v, a)) => (
                v.to_string(),
                Some(a.trim().to_string()).filter(|a| !a.is_empty()),
            ),
            None => (lower.clone(), None),
        };
        return match (v.as_str(), arg) {
            ("scan", regex) => Ok(Verb::Scan {
                show_hidden: false,
                for_atsign: None,
                regex,
            }),
            ("monitor", regex) => Ok(Verb::Monitor {
                self_notifications: false,
                epoch: None,
                regex,
            }),
            ("pol", None) => Ok(Verb::Pol),
            ("info", None) => Ok(Verb::Info { brief: false }),
            ("stats", None) => Ok(Verb::Stats),
            _ => Err(syntax()),
        };
    };
    // The part before the first ':' is the verb, lower-cased with spaces removed.
    let verb = head.to_ascii_lowercase().replace(' ', "");
    let rest_c = cmd.get(head.len()..).unwrap_or(""); // starts with ':'
    match verb.as_str() {
        "from" => parse_from(rest),
        "pkam" => parse_pkam(rest),
        "cram" => {
            if rest.is_empty() {
                return Err(syntax());
            }
            Ok(Verb::Cram {
                digest: rest.to_string(),
            })
        }
        "lookup" | "plookup" => parse_lookup(&verb, rest_c),
        "llookup" => parse_llookup(rest_c),
        "update" => parse_update(rest_c),
        "delete" => parse_delete(rest_c),
        "scan" => parse_scan(rest_c),
        "notify" => parse_notify(rest_c),
        "monitor" => parse_monitor(rest_c),
        "noop" => {
            let ms = rest.parse::<u64>().map_err(|_| syntax())?;
            Ok(Verb::Noop(ms))
        }
        "info" => match rest.to_ascii_lowercase().as_str() {
            "brief" => Ok(Verb::Info { brief: true }),
            _ => Err(syntax()),
        },
        "stats" => Ok(Verb::Stats),
        "enroll" => parse_enroll(rest),
        "otp" => parse_otp(rest_c),
        "keys" => parse_keys(rest_c),
        _ => Err(syntax()),
    }
}

fn parse_from(rest: &str) -> VerbResult<Verb> {
    let (at, cfg) = match rest.split_once(':') {
        Some((a, c)) => (a, Some(c)),
        None => (rest, None),
    };
    let atsign = norm_atsign(at).ok_or_else(|| AtErr::syntax(format!("invalid atSign: {at}")))?;
    let mut client_version = None;
    if let Some(c) = cfg {
        let json = strip_ci(c, "clientConfig:").ok_or_else(syntax)?;
        if !(json.starts_with('{') && json.ends_with('}')) {
            return Err(syntax());
        }
        if let Some(o) = crate::json::untyped::parse_object(json) {
            client_version = crate::json::untyped::get_str(&o, "version").map(str::to_string);
        }
    }
    Ok(Verb::From {
        atsign,
        client_version,
    })
}

fn parse_pkam(rest: &str) -> VerbResult<Verb> {
    let s = format!(":{rest}");
    let (algo, s2) = opt_param(&s, "signingAlgo");
    let (hash, s3) = opt_param(s2, "hashingAlgo");
    let (eid, s4) = opt_param(s3, "enrollmentId");
    let sig = s4.strip_prefix(':').ok_or_else(syntax)?;
    let ecc = match algo.map(str::to_ascii_lowercase).as_deref() {
        None | Some("rsa2048") => false,
        Some("ecc_secp256r1") => true,
        Some(_) => return Err(syntax()),
    };
    let hash = match hash.map(str::to_ascii_lowercase).as_deref() {
        None | Some("sha256") => HashAlgo::Sha256,
        Some("sha512") => HashAlgo::Sha512,
        Some(_) => return Err(syntax()),
    };
    if sig.is_empty() || sig.contains(':') {
        return Err(syntax());
    }
    Ok(Verb::Pkam {
        hash,
        ecc,
        enrollment_id: eid.map(str::to_string),
        sig: sig.to_string(),
    })
}

fn mode_of(s: &str) -> (Mode, &str) {
    let (meta, s) = opt_flag(s, "meta");
    if meta {
        return (Mode::Meta, s);
    }
    let (all, s) = opt_flag(s, "all");
    (if all { Mode::All } else { Mode::Value }, s)
}

/// `<name>@<owner>` with `[^:@\s]+` name.
fn name_owner(s: &str) -> VerbResult<(String, String)> {
    let (n, o) = s
        .split_once('@')
        .ok_or_else(|| AtErr::syntax("Invalid syntax. key must have an @owner"))?;
    let owner = norm_atsign(o)
        .filter(|_| !o.contains('@'))
        .ok_or_else(syntax)?;
    if n.is_empty() || n.contains(|c: char| c == ':' || c.is_whitespace()) {
        return Err(syntax());
    }
    Ok((n.to_lowercase(), owner))
}

fn parse_lookup(verb: &str, s: &str) -> VerbResult<Verb> {
    let (bypass, s) = opt_param(s, "bypassCache");
    let bypass = match bypass.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(syntax()),
    };
    let (mode, s) = mode_of(s);
    let s = s.strip_prefix(':').ok_or_else(syntax)?;
    let (name, owner) = name_owner(s)?;
    Ok(if verb == "lookup" {
        Verb::Lookup {
            bypass,
            mode,
            name,
            owner,
        }
    } else {
        Verb::Plookup {
            bypass,
            mode,
            name,
            owner,
        }
    })
}

fn parse_llookup(s: &str) -> VerbResult<Verb> {
    let (mode, s) = mode_of(s);
    let s = s.strip_prefix(':').ok_or_else(syntax)?;
    let key = AtKey::parse(s).map_err(|e| AtErr::syntax(format!("Invalid syntax. {e}")))?;
    if key.owner.is_none() && key.vis != Vis::PrivateKey {
        return Err(AtErr::syntax("Invalid syntax. key must have an @owner"));
    }
    Ok(Verb::Llookup { mode, key })
}

fn parse_update(s: &str) -> VerbResult<Verb> {
    if strip_ci(s, ":json:").is_some() {
        return Err(AtErr::syntax("update:json is not supported"));
    }
    if let Some(r) = strip_ci(s, ":meta:") {
        // update:meta:<key><meta>: metadata follows the owner's '@'.
        let split = r
            .rfind('@')
            .and_then(|at| r[at..].find(':').map(|c| at + c))
            .unwrap_or(r.len());
        let (k, m) = r.split_at(split);
        let (meta, left) =
            MetaPatch::parse_prefix(m).map_err(|f| AtErr::syntax(format!("bad value for {f}")))?;
        if !left.is_empty() {
            return Err(syntax());
        }
        let key = AtKey::parse(k).map_err(|e| AtErr::syntax(format!("Invalid syntax. {e}")))?;
        return Ok(Verb::UpdateMeta { meta, key });
    }
    let (meta, rest) =
        MetaPatch::parse_prefix(s).map_err(|f| AtErr::syntax(format!("bad value for {f}")))?;
    let rest = rest.strip_prefix(':').ok_or_else(syntax)?;
    let (k, value) = rest
        .split_once(' ')
        .ok_or_else(|| AtErr::syntax("Invalid syntax. update needs a value"))?;
    let key = AtKey::parse(k).map_err(|e| AtErr::syntax(format!("Invalid syntax. {e}")))?;
    Ok(Verb::Update {
        meta,
        key,
        value: value.trim().to_string(),
    })
}

fn parse_delete(s: &str) -> VerbResult<Verb> {
    let (prio, s) = opt_param(s, "priority");
    if prio.is_some_and(|p| !["low", "medium", "high"].contains(&p.to_ascii_lowercase().as_str())) {
        return Err(syntax());
    }
    let s = s.strip_prefix(':').ok_or_else(syntax)?;
    let key = AtKey::parse(s).map_err(|e| AtErr::syntax(format!("Invalid syntax. {e}")))?;
    Ok(Verb::Delete { key })
}

fn parse_scan(s: &str) -> VerbResult<Verb> {
    let (sh, s) = opt_param(s, "showHidden");
    let show_hidden = match sh.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(syntax()),
    };
    let mut s = s;
    let mut for_atsign = None;
    if let Some(r) = s.strip_prefix(":@") {
        let end = r.find([':', ' ']).unwrap_or(r.len());
        for_atsign = Some(norm_atsign(&r[..end]).ok_or_else(syntax)?);
        s = &r[end..];
    }
    let (page, s) = opt_param(s, "page");
    parse_int(page)?;
    let regex = match s {
        "" => None,
        r if r.starts_with(' ') => Some(r.trim().to_string()).filter(|r| !r.is_empty()),
        _ => return Err(syntax()),
    };
    Ok(Verb::Scan {
        show_hidden,
        for_atsign,
        regex,
    })
}

fn parse_monitor(s: &str) -> VerbResult<Verb> {
    let (_, s) = opt_flag(s, "strict");
    let (self_notifications, s) = opt_flag(s, "selfNotifications");
    let (_, s) = opt_flag(s, "multiplexed");
    let mut s = s;
    let mut epoch = None;
    if let Some(r) = s.strip_prefix(':') {
        let end = r.find(' ').unwrap_or(r.len());
        epoch = Some(r[..end].parse::<i64>().map_err(|_| syntax())?);
        s = &r[end..];
    }
    let regex = match s {
        "" => None,
        r if r.starts_with(' ') => Some(r.trim().to_string()).filter(|r| !r.is_empty()),
        _ => return Err(syntax()),
    };
    Ok(Verb::Monitor {
        self_notifications,
        epoch,
        regex,
    })
}

fn parse_notify(s: &str) -> VerbResult<Verb> {
    for (sub, ctor) in [
        ("status", Verb::NotifyStatus as fn(String) -> Verb),
        ("fetch", Verb::NotifyFetch),
        ("remove", Verb::NotifyRemove),
    ] {
        if let Some(r) = strip_ci(s, &format!(":{sub}:")) {
            if r.is_empty() || r.contains(|c: char| c == ':' || c.is_whitespace()) {
                return Err(syntax());
            }
            return Ok(ctor(r.to_string()));
        }
    }
    if let Some(r) = strip_ci(s, ":list") {
        if r.is_empty() {
            return Ok(Verb::NotifyList { regex: None });
        }
        let r = r.strip_prefix(':').ok_or_else(syntax)?;
        // Optional dates are ignored; the last segment is the regex.
        let regex = r
            .rsplit(':')
            .next()
            .filter(|x| !x.is_empty() && !looks_like_date(x))
            .map(str::to_string);
        return Ok(Verb::NotifyList { regex });
    }
    if strip_ci(s, ":all:").is_some() {
        return Err(AtErr::syntax("notify:all is not supported"));
    }
    let (id, s) = opt_param(s, "id");
    if id.is_some_and(|i| {
        i.is_empty()
            || !i
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(syntax());
    }
    let (upd, s) = opt_flag(s, "update");
    let (del, s) = if upd {
        (false, s)
    } else {
        opt_flag(s, "delete")
    };
    let (mt, s) = opt_param(s, "messageType");
    let text = match mt.map(str::to_ascii_lowercase).as_deref() {
        None | Some("key") => false,
        Some("text") => true,
        Some(_) => return Err(syntax()),
    };
    let (prio, s) = opt_param(s, "priority");
    if prio.is_some_and(|p| !["low", "medium", "high"].contains(&p.to_ascii_lowercase().as_str())) {
        return Err(syntax());
    }
    let (strategy, s) = opt_param(s, "strategy");
    let (latest_n, s) = opt_param(s, "latestN");
    parse_int(latest_n)?;
    let (notifier, s) = opt_param(s, "notifier");
    if strategy.is_some_and(|x| x.eq_ignore_ascii_case("latest")) && notifier.is_none() {
        return Err(AtErr::syntax("strategy latest requires notifier"));
    }
    let (ttln, s) = opt_param(s, "ttln");
    let ttln = parse_int(ttln)?;
    let (meta, s) =
        MetaPatch::parse_prefix(s).map_err(|f| AtErr::syntax(format!("bad value for {f}")))?;
    let s = s.strip_prefix(':').ok_or_else(syntax)?;
    // (public:|@<w>:)<name>[@<owner>][:<value>]
    let (prefix_len, _) = if let Some(r) = strip_ci(s, "public:") {
        (s.len() - r.len(), ())
    } else if s.starts_with('@') {
        (s.find(':').map(|i| i + 1).ok_or_else(syntax)?, ())
    } else {
        return Err(syntax());
    };
    let body = &s[prefix_len..];
    let (keytext_len, value) = match body.find(':') {
        Some(i) => (prefix_len + i, Some(body[i + 1..].to_string())),
        None => (s.len(), None),
    };
    let key = if text {
        let w = s[..prefix_len].trim_end_matches(':');
        let sw = norm_atsign(w).ok_or_else(syntax)?;
        AtKey {
            cached: false,
            vis: Vis::Shared(sw),
            name: body[..keytext_len - prefix_len].to_string(),
            owner: None,
        }
    } else {
        AtKey::parse(&s[..keytext_len])
            .map_err(|e| AtErr::syntax(format!("Invalid syntax. {e}")))?
    };
    Ok(Verb::Notify(NotifyReq {
        id: id.map(str::to_string),
        delete: del,
        text,
        ttln,
        meta,
        key,
        value,
    }))
}

fn looks_like_date(s: &str) -> bool {
    s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

fn parse_enroll(rest: &str) -> VerbResult<Verb> {
    let (op, tail) = match rest.split_once(':') {
        Some((o, t)) => (o, Some(t)),
        None => (rest, None),
    };
    let op = op.to_ascii_lowercase();
    if ![
        "request", "approve", "deny", "revoke", "unrevoke", "list", "fetch", "delete",
    ]
    .contains(&op.as_str())
    {
        return Err(syntax());
    }
    let mut force = false;
    let mut json = tail;
    if let Some(t) = tail {
        if let Some(r) = strip_ci(t, "force") {
            if r.is_empty() || r.starts_with(':') {
                force = true;
                json = r.strip_prefix(':').filter(|r| !r.is_empty());
            }
        }
    }
    if let Some(j) = json {
        if !(j.starts_with('{') && j.ends_with('}')) {
            return Err(syntax());
        }
    }
    Ok(Verb::Enroll {
        op,
        force,
        json: json.map(str::to_string),
    })
}

fn parse_otp(s: &str) -> VerbResult<Verb> {
    if let Some(r) = strip_ci(s, ":get") {
        let (ttl, r) = opt_param(r, "ttl");
        if !r.is_empty() {
            return Err(syntax());
        }
        return Ok(Verb::OtpGet {
            ttl: parse_int(ttl)?,
        });
    }
    if let Some(r) = strip_ci(s, ":put:") {
        let end = r.find(':').unwrap_or(r.len());
        let passcode = &r[..end];
        if passcode.len() < 6 || !passcode.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(syntax());
        }
        let (ttl, left) = opt_param(&r[end..], "ttl");
        if !left.is_empty() {
            return Err(syntax());
        }
        return Ok(Verb::OtpPut {
            passcode: passcode.to_string(),
            ttl: parse_int(ttl)?,
        });
    }
    Err(syntax())
}

fn parse_keys(s: &str) -> VerbResult<Verb> {
    let r = strip_ci(s, ":get").ok_or_else(|| AtErr::syntax("only keys:get is supported"))?;
    let idx = r
        .to_ascii_lowercase()
        .find(":keyname:")
        .ok_or_else(|| AtErr::syntax("keys:get needs keyName"))?;
    let name = &r[idx + ":keyname:".len()..];
    let name = name.split_whitespace().next().unwrap_or("");
    if name.is_empty() {
        return Err(syntax());
    }
    Ok(Verb::KeysGet {
        key_name: name.to_lowercase(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
