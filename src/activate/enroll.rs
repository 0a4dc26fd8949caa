//! APKAM enrollment: request one (`enroll`), and manage others (`list`, `fetch`, `approve`,
//! `deny`, `revoke`, `unrevoke`, `delete`) — atprotocol.md §11.5–§11.7.
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use super::connect::{authenticated, keys_path, parse_atsign, server_connection, REQUEST_TIMEOUT};
use crate::at::auth::{self, PkamAnswer};
use crate::at::regex::Pattern;
use crate::at::verbs::{self, EnrollOp};
use crate::at::{AtClient, AtError, AtKeys, RootAddr};
use crate::crypto::aes_ctr::{decrypt_b64, encrypt_b64, ZERO_IV};
use crate::crypto::rsa::{RsaPrivateKey, RsaPublicKey};
use crate::crypto::{b64, random};
use crate::json::{self, Object, Value};
use crate::runtime::{parse_duration, sleep};

const POLL_EVERY: Duration = Duration::from_secs(10);

#[derive(FromArgs)]
#[argh(subcommand, name = "enroll")]
/// Ask for a new APKAM enrollment with an OTP or SPP and wait for approval.
pub struct EnrollArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// OTP or semi-permanent passcode (visible to other users in `ps`: prefer --passcode-file)
    #[argh(option, short = 's')]
    passcode: Option<String>,
    /// file whose first line is the OTP or passcode
    #[argh(option)]
    passcode_file: Option<String>,
    /// app name
    #[argh(option, short = 'p')]
    app: String,
    /// device name
    #[argh(option, short = 'd')]
    device: String,
    /// namespaces, e.g. "sshnp:rw,sshrvd:rw"
    #[argh(option, short = 'n')]
    namespaces: String,
    /// atKeys file to create (mandatory)
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// APKAM key lifetime, e.g. 30d
    #[argh(option, short = 'e')]
    expiry: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
/// List enrollment records.
pub struct ListArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// atKeys file
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// only this status: pending, approved, denied, revoked, expired
    #[argh(option, short = 's')]
    enrollment_status: Option<String>,
    /// app name regex
    #[argh(option, short = 'A')]
    arx: Option<String>,
    /// device name regex
    #[argh(option, short = 'D')]
    drx: Option<String>,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "fetch")]
/// Show one enrollment record.
pub struct FetchArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// atKeys file
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// enrollment id
    #[argh(option, short = 'i')]
    enrollment_id: String,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

/// What a management command does to the records it selects.
pub trait ManageOp {
    const OP: EnrollOp;
    /// Only records in this state are acted on.
    const FROM_STATE: &'static [&'static str];
    const LABEL: &'static str;
}

macro_rules! manage_op {
    ($t:ident, $name:literal, $op:ident, [$($s:literal),*], $label:literal, $doc:literal) => {
        pub struct $t;
        impl ManageOp for $t {
            const OP: EnrollOp = EnrollOp::$op;
            const FROM_STATE: &'static [&'static str] = &[$($s),*];
            const LABEL: &'static str = $label;
        }
        impl argh::SubCommand for ManageArgs<$t> {
            const COMMAND: &'static argh::CommandInfo = &argh::CommandInfo { name: $name, short: &'\0', description: $doc };
        }
    };
}

manage_op!(
    Approve,
    "approve",
    Approve,
    ["pending"],
    "Approving",
    "Approve pending enrollment requests."
);
manage_op!(
    Deny,
    "deny",
    Deny,
    ["pending"],
    "Denying",
    "Deny pending enrollment requests."
);
manage_op!(
    Revoke,
    "revoke",
    Revoke,
    ["approved"],
    "Revoking",
    "Revoke approved enrollments."
);
manage_op!(
    Unrevoke,
    "unrevoke",
    Unrevoke,
    ["revoked"],
    "Un-Revoking",
    "Restore revoked enrollments."
);
manage_op!(
    Delete,
    "delete",
    Delete,
    ["denied", "revoked"],
    "Deleting",
    "Delete denied or revoked enrollments."
);

/// Shared options of approve/deny/revoke/unrevoke/delete; `Op` names the subcommand.
pub struct ManageArgs<Op> {
    flags: ManageFlags,
    _op: std::marker::PhantomData<Op>,
}

#[derive(FromArgs)]
/// Select enrollments by id or by app/device regex.
struct ManageFlags {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// atKeys file
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// enrollment id
    #[argh(option, short = 'i')]
    enrollment_id: Option<String>,
    /// app name regex
    #[argh(option, short = 'A')]
    arx: Option<String>,
    /// device name regex
    #[argh(option, short = 'D')]
    drx: Option<String>,
    /// approve or restore requests for __manage or a wildcard namespace (owner rights)
    #[argh(switch)]
    allow_privileged: bool,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

impl<Op> argh::FromArgs for ManageArgs<Op> {
    fn from_args(command_name: &[&str], args: &[&str]) -> Result<Self, argh::EarlyExit> {
        Ok(ManageArgs {
            flags: ManageFlags::from_args(command_name, args)?,
            _op: std::marker::PhantomData,
        })
    }
}

fn parse_namespaces(text: &str) -> Result<Object, String> {
    let mut o = Object::new();
    for item in text
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|s| !s.is_empty())
    {
        let (ns, perm) = item
            .split_once(':')
            .ok_or_else(|| format!("namespace \"{item}\" must be name:r or name:rw"))?;
        let (ns, perm) = (ns.trim(), perm.trim());
        if ns.is_empty() || !(perm == "r" || perm == "rw") {
            return Err(format!("namespace \"{item}\" must be name:r or name:rw"));
        }
        o.push(ns, perm);
    }
    if o.is_empty() {
        return Err("at least one namespace is required".into());
    }
    Ok(o)
}

/// The passcode from `-s` or from the first line of `--passcode-file` (exactly one of them).
fn passcode(
    given: Option<&str>,
    file: Option<&str>,
) -> Result<crate::crypto::secret::Secret<String>, String> {
    use crate::crypto::secret::Secret;
    let code = match (given, file) {
        (Some(_), Some(_)) => {
            return Err("give the passcode with -s or --passcode-file, not both".into())
        }
        (None, None) => {
            return Err("the passcode is missing: --passcode-file FILE (or -s PASSCODE)".into())
        }
        (Some(p), None) => {
            eprintln!(
                "[Warning] a passcode given with -s is visible to other users of this machine; --passcode-file keeps it out of sight"
            );
            Secret::new(p.trim().to_string())
        }
        (None, Some(f)) => {
            let text = Secret::new(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("reading the passcode file {f}: {e}"))?,
            );
            Secret::new(
                text.expose()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            )
        }
    };
    if code.expose().is_empty() || !code.expose().chars().all(|c| c.is_ascii_graphic()) {
        return Err(
            "the passcode must be one word of printable characters (an OTP from `at_activate otp`)"
                .into(),
        );
    }
    Ok(code)
}

fn parse_object(text: &str, what: &str) -> Result<Object, String> {
    match json::parse(text) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(format!("{what}: server answered {text:?}")),
    }
}

/// `at_activate enroll`: request, poll, fetch keys, write the atKeys file. One async body
/// with its steps as plain functions: each async step of its own costs the router build
/// another state machine.
pub async fn enroll(a: EnrollArgs) -> Result<(), String> {
    crate::runtime::init_logging(a.verbose);
    let atsign = parse_atsign(&a.atsign)?;
    let path = a
        .keys
        .as_deref()
        .map(std::path::PathBuf::from)
        .ok_or("The --keys option is mandatory for the \"enroll\" command")?;
    if path.exists() {
        return Err(format!("atKeys file {} already exists", path.display()));
    }
    let namespaces = parse_namespaces(&a.namespaces)?;
    let passcode = passcode(a.passcode.as_deref(), a.passcode_file.as_deref())?;
    let root = RootAddr::parse(&a.root_server).map_err(|e| e.to_string())?;
    let mut conn = server_connection(&atsign, &root)
        .await
        .map_err(|e| e.to_string())?;
    let enc_pub_b64 = conn
        .request(&verbs::lookup_public_key(&atsign), REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let enc_pub = RsaPublicKey::from_spki_b64(enc_pub_b64.trim())
        .map_err(|e| format!("public key of {atsign}: {e}"))?;
    let (p, req) = new_request(&a, namespaces, passcode.expose(), enc_pub)?;
    println!("Submitting enrollment request");
    let answer = conn
        .request(&verbs::enroll(EnrollOp::Request, &req), REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    conn.close().await;
    let resp = parse_object(&answer, "enroll:request")?;
    let id = resp
        .get_str("enrollmentId")
        .ok_or("enroll answer has no enrollmentId")?
        .to_string();
    println!("Enrollment ID: {id}");
    // The exact command for this one request: a name pattern could also approve a stranger's
    // request that came with the same passcode.
    println!(
        "Approve it on a machine that holds the keys of {atsign} with: at_activate approve -a {atsign} -i {id}"
    );
    println!(
        "Waiting for approval; will check every {} seconds",
        POLL_EVERY.as_secs()
    );
    let mut first = true;
    let mut conn = loop {
        sleep(if first {
            Duration::from_secs(1)
        } else {
            POLL_EVERY
        })
        .await;
        first = false;
        eprint!("Checking ... ");
        let mut conn = server_connection(&atsign, &root)
            .await
            .map_err(|e| e.to_string())?;
        let login = auth::pkam(
            &mut conn,
            &atsign,
            &p.apkam_private,
            Some(&id),
            REQUEST_TIMEOUT,
        );
        if approved(login.await.map_err(|e| e.to_string())?, &id)? {
            break conn;
        }
    };
    let fetch = |name| verbs::keys_get(&id, name, &atsign).map_err(|e| e.to_string());
    let enc_priv_json = conn
        .request(&fetch("default_enc_private_key")?, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let self_key_json = conn
        .request(&fetch("default_self_enc_key")?, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    conn.close().await;
    let keys = open_keys(p, id, &enc_priv_json, &self_key_json)?;
    keys.save(&atsign, &path).map_err(|e| e.to_string())?;
    println!("[Success] Your .atKeys file saved at {}", path.display());
    Ok(())
}

/// The keys an enrollment request is made with.
struct Pending {
    apkam_private: RsaPrivateKey,
    apkam_key: [u8; 32],
    /// The atSign's public encryption key, which wraps `apkam_key` for the approver.
    enc_pub: RsaPublicKey,
}

/// A new APKAM key pair and symmetric key, and the `enroll:request` body (§11.5).
fn new_request(
    a: &EnrollArgs,
    namespaces: Object,
    passcode: &str,
    enc_pub: RsaPublicKey,
) -> Result<(Pending, Object), String> {
    let apkam_private = RsaPrivateKey::generate().map_err(|e| e.to_string())?;
    let apkam_key = random::bytes::<32>();
    let wrapped = enc_pub
        .encrypt(b64::encode(&apkam_key).as_bytes())
        .map_err(|e| e.to_string())?;
    let expiry_ms = match &a.expiry {
        Some(e) => parse_duration(e)?.as_millis() as i64,
        None => 0,
    };
    let req = Object::new()
        .with("appName", a.app.as_str())
        .with("deviceName", a.device.as_str())
        .with("namespaces", Value::Object(namespaces))
        .with("otp", passcode)
        .with("encryptedAPKAMSymmetricKey", b64::encode(&wrapped))
        .with("apkamPublicKey", apkam_private.public_key().to_spki_b64())
        .with("apkamKeysExpiryInMillis", Value::Int(expiry_ms));
    let p = Pending {
        apkam_private,
        apkam_key,
        enc_pub,
    };
    Ok((p, req))
}

/// What one approval check's APKAM login says: let in (true), not yet (false), or refused
/// for good (denied, revoked, expired: an error).
fn approved(answer: PkamAnswer, id: &str) -> Result<bool, String> {
    match answer {
        Ok(_) => {
            eprintln!(" approved.");
            Ok(true)
        }
        Err(AtError::Server { code, .. }) if code == "AT0026" => {
            eprintln!(
                " not approved. Will retry in {} seconds",
                POLL_EVERY.as_secs()
            );
            Ok(false)
        }
        Err(AtError::Server { code, message })
            if code == "AT0025" || code == "AT0027" || code == "AT0028" =>
        {
            Err(format!(
                "[Fatal] The enrollment: {id} is denied ({code}: {message})"
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The atKeys of the new enrollment, from the keys the approver left for it (encrypted with
/// the APKAM key).
fn open_keys(
    p: Pending,
    id: String,
    enc_priv_json: &str,
    self_key_json: &str,
) -> Result<AtKeys, String> {
    let value = |text: &str| -> Result<String, String> {
        let o = parse_object(text, "keys:get")?;
        let ct = o.get_str("value").ok_or("keys:get answer has no value")?;
        decrypt_b64(&p.apkam_key, &ZERO_IV, ct)
            .map_err(|e| format!("cannot decrypt enrollment keys: {e}"))
    };
    let encrypt_private =
        RsaPrivateKey::from_pkcs8_b64(&value(enc_priv_json)?).map_err(|e| e.to_string())?;
    let self_key = b64::decode(value(self_key_json)?.trim()).map_err(|e| e.to_string())?;
    let self_encryption_key = <[u8; 32]>::try_from(self_key.as_slice())
        .map_err(|_| "self encryption key is not 32 bytes")?;
    println!("Creating atKeys file");
    Ok(AtKeys {
        pkam_public: p.apkam_private.public_key(),
        pkam_private: p.apkam_private,
        encrypt_public: p.enc_pub,
        encrypt_private,
        self_encryption_key,
        apkam_symmetric_key: Some(p.apkam_key),
        enrollment_id: Some(id),
    })
}

pub(super) struct Record {
    pub(super) id: String,
    app: String,
    device: String,
    status: String,
    /// (namespace, access) in the order the request listed them.
    namespaces: Vec<(String, String)>,
    wrapped_apkam: Option<String>,
}

impl Record {
    /// `name:access,…` as `enroll` takes them.
    fn namespace_list(&self) -> String {
        let list: Vec<String> = self
            .namespaces
            .iter()
            .map(|(n, a)| format!("{n}:{a}"))
            .collect();
        list.join(",")
    }

    /// The namespaces that would give the new key the owner's powers: `__manage` runs `otp`,
    /// `enroll:approve` and `enroll:list`; a wildcard reaches every app's data.
    pub(super) fn privileged_namespaces(&self) -> Vec<&str> {
        self.namespaces
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n == "__manage" || n.contains('*'))
            .collect()
    }

    /// What approving grants, shown before it is granted.
    pub(super) fn describe(&self) -> String {
        format!(
            "enrollmentId {} (app \"{}\", device \"{}\", namespaces {})",
            self.id,
            self.app,
            self.device,
            self.namespace_list()
        )
    }

    /// Refuses to approve (or restore) owner-level rights unless asked for explicitly.
    pub(super) fn check_grant(&self, allow_privileged: bool) -> Result<(), String> {
        let privileged = self.privileged_namespaces();
        if privileged.is_empty() || allow_privileged {
            return Ok(());
        }
        Err(format!(
            "not approving {}: {} would give the new key the owner's rights; if you asked for this yourself, run again with --allow-privileged -i {}",
            self.describe(),
            privileged.join(", "),
            self.id
        ))
    }
}

fn records(list: &Object) -> Vec<Record> {
    list.iter()
        .filter_map(|(key, v)| {
            let o = v.as_object()?;
            let id = key.split('.').next().unwrap_or(key).to_string();
            let namespaces = o
                .get_object("namespace")
                .map(|n| {
                    n.iter()
                        .map(|(k, v)| (k.to_string(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            Some(Record {
                id,
                app: o.get_str("appName").unwrap_or("").to_string(),
                device: o.get_str("deviceName").unwrap_or("").to_string(),
                status: o.get_str("status").unwrap_or("").to_string(),
                namespaces,
                wrapped_apkam: o.get_str("encryptedAPKAMSymmetricKey").map(str::to_string),
            })
        })
        .collect()
}

/// Whether `re` (if given) matches the whole name: the official tools match anywhere, so
/// `--drx router` also took `router-backup` (docs/compatibility.md).
fn matches(re: &Option<String>, text: &str) -> Result<bool, String> {
    match re {
        None => Ok(true),
        Some(r) => Pattern::new(r)
            .map(|p| p.is_full_match(text))
            .map_err(|e| format!("bad regex {r:?}: {e}")),
    }
}

pub(super) async fn select(
    client: &AtClient,
    status: Option<&str>,
    arx: &Option<String>,
    drx: &Option<String>,
) -> Result<Vec<Record>, String> {
    let answer = client
        .request(&verbs::enroll_list(status))
        .await
        .map_err(|e| e.to_string())?;
    let list = if answer.trim() == "null" || answer.trim().is_empty() {
        Object::new()
    } else {
        parse_object(&answer, "enroll:list")?
    };
    let mut out = Vec::new();
    for r in records(&list) {
        if matches(arx, &r.app)? && matches(drx, &r.device)? {
            out.push(r);
        }
    }
    Ok(out)
}

pub async fn list(a: ListArgs) -> Result<(), String> {
    crate::runtime::init_logging(a.verbose);
    if let Some(s) = &a.enrollment_status {
        if !["pending", "approved", "denied", "revoked", "expired"].contains(&s.as_str()) {
            return Err(format!(
                "\"{s}\" is not an allowed value for option \"enrollmentStatus\"."
            ));
        }
    }
    let client = authenticated(&a.atsign, a.keys.as_deref(), &a.root_server).await?;
    let recs = select(&client, a.enrollment_status.as_deref(), &a.arx, &a.drx).await?;
    println!("Found {} matching enrollment records", recs.len());
    println!(
        "{:<38}{:<10}{:<20}{:<38}Namespaces",
        "Enrollment ID", "Status", "AppName", "DeviceName"
    );
    for r in recs {
        println!(
            "{:<38}{:<10}{:<20}{:<38}{}",
            r.id,
            r.status,
            r.app,
            r.device,
            r.namespace_list()
        );
    }
    Ok(())
}

pub async fn fetch(a: FetchArgs) -> Result<(), String> {
    crate::runtime::init_logging(a.verbose);
    let client = authenticated(&a.atsign, a.keys.as_deref(), &a.root_server).await?;
    let req = Object::new().with("enrollmentId", a.enrollment_id.as_str());
    let answer = client
        .request(&verbs::enroll(EnrollOp::Fetch, &req))
        .await
        .map_err(|e| e.to_string())?;
    println!("Fetched enrollment OK: {answer}");
    Ok(())
}

/// Adds to an `enroll:approve` request our encryption private key and self-encryption key,
/// each encrypted with the APKAM key that the requester wrapped for us (§11.6).
pub(super) fn add_approval_keys(
    client: &AtClient,
    r: &Record,
    req: &mut Object,
) -> Result<(), String> {
    let keys = client.keys();
    let wrapped = r
        .wrapped_apkam
        .as_deref()
        .ok_or("record has no encryptedAPKAMSymmetricKey")?;
    let ct = b64::decode(wrapped).map_err(|e| e.to_string())?;
    let key_text = keys
        .encrypt_private
        .decrypt(&ct)
        .map_err(|e| format!("cannot unwrap the APKAM key: {e}"))?;
    let key_text = String::from_utf8(key_text).map_err(|_| "APKAM key is not base64 text")?;
    let apkam: [u8; 32] = b64::decode(key_text.trim())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        .ok_or("APKAM key is not 32 bytes")?;
    req.push(
        "encryptedDefaultEncryptionPrivateKey",
        encrypt_b64(&apkam, &ZERO_IV, &keys.encrypt_private.to_pkcs8_b64()),
    );
    req.push(
        "encryptedDefaultSelfEncryptionKey",
        encrypt_b64(&apkam, &ZERO_IV, &b64::encode(&keys.self_encryption_key)),
    );
    Ok(())
}

pub async fn manage<Op: ManageOp>(a: ManageArgs<Op>) -> Result<ExitCode, String> {
    // One body for the five commands: generic, it was compiled five times (~30 KB).
    manage_records(a.flags, Op::OP, Op::FROM_STATE, Op::LABEL).await
}

async fn manage_records(
    a: ManageFlags,
    verb: EnrollOp,
    from_state: &[&str],
    label: &str,
) -> Result<ExitCode, String> {
    crate::runtime::init_logging(a.verbose);
    if a.enrollment_id.is_none() && a.arx.is_none() && a.drx.is_none() {
        return Err("At least one of --enrollmentId, --arx or --drx must be provided".into());
    }
    let atsign = parse_atsign(&a.atsign)?;
    let keys_file = keys_path(&atsign, a.keys.as_deref())?;
    let client = authenticated(
        &a.atsign,
        Some(&keys_file.to_string_lossy()),
        &a.root_server,
    )
    .await?;
    let mut targets = Vec::new();
    for state in from_state {
        for r in select(&client, Some(state), &a.arx, &a.drx).await? {
            if a.enrollment_id.as_deref().is_none_or(|id| id == r.id) {
                targets.push(r);
            }
        }
    }
    if targets.is_empty() {
        eprintln!("No matching enrollment(s) found");
        return Ok(ExitCode::from(1));
    }
    let grants = verb == EnrollOp::Approve || verb == EnrollOp::Unrevoke;
    let mut refused = 0;
    for r in targets {
        if grants {
            if let Err(e) = r.check_grant(a.allow_privileged) {
                eprintln!("{e}");
                refused += 1;
                continue;
            }
        }
        println!("{label} {}", r.describe());
        let mut req = Object::new().with("enrollmentId", r.id.as_str());
        if verb == EnrollOp::Approve {
            add_approval_keys(&client, &r, &mut req)?;
        }
        let answer = client
            .request(&verbs::enroll(verb, &req))
            .await
            .map_err(|e| e.to_string())?;
        println!("Server response: {answer}");
    }
    if refused > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::passcode;

    #[test]
    fn the_passcode_comes_from_one_place_and_is_one_word() {
        let dir = std::env::temp_dir().join(format!("np-passcode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("otp");
        std::fs::write(&file, "AB12CD\n").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(passcode(None, Some(f)).unwrap().expose(), "AB12CD");
        assert_eq!(passcode(Some(" XY9 "), None).unwrap().expose(), "XY9");
        assert!(passcode(Some("A"), Some(f))
            .unwrap_err()
            .contains("not both"));
        assert!(passcode(None, None)
            .unwrap_err()
            .contains("--passcode-file"));
        std::fs::write(&file, "two words\n").unwrap();
        assert!(passcode(None, Some(f)).is_err());
        std::fs::write(&file, "\n").unwrap();
        assert!(passcode(None, Some(f)).is_err());
        let missing = dir.join("missing");
        let e = passcode(None, Some(missing.to_str().unwrap())).unwrap_err();
        assert!(e.contains("reading the passcode file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
