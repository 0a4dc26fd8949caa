//! `at_activate`: atSign activation (CRAM onboarding) and APKAM enrollment management
//! (noports.md §8, atprotocol.md §11).
mod enroll;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::at::conn::{lookup_server, Connection};
use crate::at::{AtClient, AtError, AtKeys, AtSign, ClientConfig, RootAddr};
use crate::runtime::{self, cli, parse_duration};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
/// Activate atSigns and manage APKAM enrollments. Every command also takes --proxy URL: an
/// HTTP CONNECT or SOCKS5 proxy for the atDirectory and atServer (http://[user:pass@]host:port,
/// socks5://... or socks5h://...; default $ALL_PROXY or $HTTPS_PROXY).
struct Args {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Status(StatusArgs),
    Onboard(OnboardArgs),
    Otp(OtpArgs),
    Spp(SppArgs),
    Enroll(enroll::EnrollArgs),
    List(enroll::ListArgs),
    Fetch(enroll::FetchArgs),
    Approve(enroll::ManageArgs<enroll::Approve>),
    Deny(enroll::ManageArgs<enroll::Deny>),
    Revoke(enroll::ManageArgs<enroll::Revoke>),
    Unrevoke(enroll::ManageArgs<enroll::Unrevoke>),
    Delete(enroll::ManageArgs<enroll::Delete>),
}

/// Options every command shares.
#[derive(FromArgs, Clone)]
#[argh(subcommand, name = "status")]
/// Report whether an atSign is activated: exit 0 activated, 1 no public key, 2 atServer
/// unreachable, 3 atSign unknown, 4 atDirectory unreachable.
pub struct StatusArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// atDirectory host or host:port (default root.atsign.org)
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "onboard")]
/// First activation of an atSign with its CRAM secret; writes the atKeys file.
pub struct OnboardArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// CRAM secret (or "<atsign>:<secret>")
    #[argh(option, short = 'c')]
    cramkey: Option<String>,
    /// atKeys file to create (default ~/.atsign/keys/<atSign>_key.atKeys)
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// app name of the first enrollment
    #[argh(option, short = 'p', default = "String::from(\"firstApp\")")]
    app: String,
    /// device name of the first enrollment
    #[argh(option, short = 'd', default = "String::from(\"firstDevice\")")]
    device: String,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "otp")]
/// Print a one-time passcode for enrolling a new app or device.
pub struct OtpArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// atKeys file (default ~/.atsign/keys/<atSign>_key.atKeys)
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// how long the OTP is valid, e.g. 10m, 1h
    #[argh(option, short = 'e')]
    expiry: Option<String>,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "spp")]
/// Set the semi-permanent passcode.
pub struct SppArgs {
    /// the atSign
    #[argh(option, short = 'a')]
    atsign: String,
    /// the passcode: 6 to 16 letters and digits
    #[argh(option, short = 's')]
    spp: String,
    /// atKeys file
    #[argh(option, short = 'k')]
    keys: Option<String>,
    /// atDirectory host or host:port
    #[argh(option, short = 'r', default = "String::from(\"root.atsign.org\")")]
    root_server: String,
    /// how long the passcode is valid
    #[argh(option, short = 'e')]
    expiry: Option<String>,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

pub fn main(argv: &[String]) -> ExitCode {
    let mut argv = argv.to_vec();
    // First, so that `at_activate --proxy URL status …` still finds its command.
    let proxy = match take_proxy_flag(&mut argv) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    // Legacy `at_activate -a @x …` means `onboard`.
    if argv
        .get(1)
        .is_some_and(|a| a.starts_with('-') && a != "-h" && a != "--help")
    {
        argv.insert(1, "onboard".into());
    }
    if argv.len() < 2 {
        eprintln!("You must supply a command.");
        eprintln!("Commands: status onboard otp spp enroll list fetch approve deny revoke unrevoke delete");
        return ExitCode::from(1);
    }
    let args: Args = match cli::parse(&argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(e) = crate::at::proxy::configure(proxy.as_deref()) {
        eprintln!("Invalid argument(s): {e}");
        return ExitCode::from(1);
    }
    runtime::block_on(async move {
        match run(args.command).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// Removes `--proxy URL` / `--proxy=URL` (any position before `--`) from `argv`: it applies to
/// every command, so it is taken out before the per-command parsers see the arguments.
fn take_proxy_flag(argv: &mut Vec<String>) -> Result<Option<String>, String> {
    let mut found = None;
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        if a == "--" {
            break;
        }
        if a == crate::at::proxy::FLAG {
            if argv.get(i + 1).is_none() {
                return Err(format!("{} needs a URL", crate::at::proxy::FLAG));
            }
            found = Some(argv.remove(i + 1));
            argv.remove(i);
        } else if let Some(v) = a.strip_prefix("--proxy=") {
            found = Some(v.to_string());
            argv.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found)
}

async fn run(cmd: Command) -> Result<ExitCode, String> {
    match cmd {
        Command::Status(a) => {
            runtime::init_logging(a.verbose);
            Ok(status(&a).await)
        }
        Command::Onboard(a) => {
            runtime::init_logging(a.verbose);
            onboard(a).await.map(|_| ExitCode::SUCCESS)
        }
        Command::Otp(a) => {
            runtime::init_logging(a.verbose);
            let client = authenticated(&a.atsign, a.keys.as_deref(), &a.root_server).await?;
            let mut cmd = String::from("otp:get");
            if let Some(e) = &a.expiry {
                cmd.push_str(&format!(":ttl:{}", parse_duration(e)?.as_millis()));
            }
            match client.request(&cmd).await {
                Ok(otp) => {
                    println!("{otp}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(format!("Failed to generate OTP: server response was {e}")),
            }
        }
        Command::Spp(a) => {
            runtime::init_logging(a.verbose);
            if !(6..=16).contains(&a.spp.len()) || !a.spp.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err("SPP must be alphanumeric and 6 to 16 characters long".into());
            }
            let client = authenticated(&a.atsign, a.keys.as_deref(), &a.root_server).await?;
            let mut cmd = format!("otp:put:{}", a.spp);
            if let Some(e) = &a.expiry {
                cmd.push_str(&format!(":ttl:{}", parse_duration(e)?.as_millis()));
            }
            let r = client.request(&cmd).await.map_err(|e| e.to_string())?;
            println!("Server response: {r}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll(a) => enroll::enroll(a).await.map(|_| ExitCode::SUCCESS),
        Command::List(a) => enroll::list(a).await.map(|_| ExitCode::SUCCESS),
        Command::Fetch(a) => enroll::fetch(a).await.map(|_| ExitCode::SUCCESS),
        Command::Approve(a) => enroll::manage(a).await,
        Command::Deny(a) => enroll::manage(a).await,
        Command::Revoke(a) => enroll::manage(a).await,
        Command::Unrevoke(a) => enroll::manage(a).await,
        Command::Delete(a) => enroll::manage(a).await,
    }
}

pub(crate) fn parse_atsign(s: &str) -> Result<AtSign, String> {
    AtSign::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn keys_path(atsign: &AtSign, given: Option<&str>) -> Result<PathBuf, String> {
    match given {
        Some(p) => Ok(PathBuf::from(p)),
        None => AtKeys::default_path(atsign).map_err(|e| e.to_string()),
    }
}

/// An authenticated client from an atKeys file.
pub(crate) async fn authenticated(
    atsign: &str,
    keys: Option<&str>,
    root: &str,
) -> Result<AtClient, String> {
    let atsign = parse_atsign(atsign)?;
    let path = keys_path(&atsign, keys)?;
    let keys = AtKeys::load(&path).map_err(|e| e.to_string())?;
    let root = RootAddr::parse(root).map_err(|e| e.to_string())?;
    AtClient::connect(ClientConfig { atsign, keys, root })
        .await
        .map_err(|e| e.to_string())
}

/// An unauthenticated connection to `atsign`'s atServer.
pub(crate) async fn server_connection(
    atsign: &AtSign,
    root: &RootAddr,
) -> Result<Connection, AtError> {
    let (host, port) = lookup_server(root, atsign).await?;
    Connection::connect(&host, port).await
}

async fn status(a: &StatusArgs) -> ExitCode {
    let say = |n: u8, why: String| {
        eprintln!("returning {n}: {why}");
        ExitCode::from(n)
    };
    let atsign = match AtSign::parse(&a.atsign) {
        Ok(s) => s,
        Err(e) => return say(3, e.to_string()),
    };
    let root = match RootAddr::parse(&a.root_server) {
        Ok(r) => r,
        Err(e) => return say(4, e.to_string()),
    };
    let (host, port) = match lookup_server(&root, &atsign).await {
        Ok(a) => a,
        Err(AtError::Invalid(m)) => return say(3, m),
        Err(e) => return say(4, format!("atDirectory {root} unreachable: {e}")),
    };
    let mut conn = match Connection::connect(&host, port).await {
        Ok(c) => c,
        Err(e) => return say(2, format!("atServer {host}:{port} unreachable: {e}")),
    };
    match conn
        .request(&format!("lookup:publickey{atsign}"), REQUEST_TIMEOUT)
        .await
    {
        Ok(v) if !v.trim().is_empty() && v.trim() != "null" => {
            say(0, format!("found public:publickey{atsign} OK"))
        }
        Ok(_) | Err(_) => say(
            1,
            format!("public:publickey{atsign} not found: atSign not activated"),
        ),
    }
}

/// First activation with the CRAM secret (atprotocol.md §11.2).
async fn onboard(a: OnboardArgs) -> Result<(), String> {
    use crate::crypto::aes_ctr::{encrypt_b64, ZERO_IV};
    use crate::crypto::{b64, hash};
    use crate::noports::json::Object;

    let atsign = parse_atsign(&a.atsign)?;
    let path = keys_path(&atsign, a.keys.as_deref())?;
    if path.exists() {
        return Err(format!("atKeys file {} already exists", path.display()));
    }
    let secret = a
        .cramkey
        .as_deref()
        .ok_or("--cramkey is required (the registrar is not reachable from here)")?;
    let secret = secret
        .split_once(':')
        .map(|(_, s)| s)
        .unwrap_or(secret)
        .trim()
        .to_string();
    let root = RootAddr::parse(&a.root_server).map_err(|e| e.to_string())?;
    println!("[Information] Onboarding your atSign. This may take up to 2 minutes.");
    let mut conn = server_connection(&atsign, &root)
        .await
        .map_err(|e| e.to_string())?;
    if let Ok(v) = conn
        .request(&format!("lookup:publickey{atsign}"), REQUEST_TIMEOUT)
        .await
    {
        if !v.trim().is_empty() && v.trim() != "null" {
            return Err(format!("{atsign} is already activated"));
        }
    }
    let challenge = conn
        .request(&format!("from:{atsign}"), REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let digest = hash::sha512_hex(format!("{secret}{challenge}").as_bytes());
    conn.request(&format!("cram:{digest}"), REQUEST_TIMEOUT)
        .await
        .map_err(|e| format!("[Error] Onboarding failed. CRAM authentication refused: {e}"))?;
    let mut keys = AtKeys::generate().map_err(|e| e.to_string())?;
    let apkam = keys.apkam_symmetric_key.ok_or("no APKAM key")?;
    let req = Object::new()
        .with("appName", a.app.as_str())
        .with("deviceName", a.device.as_str())
        .with(
            "encryptedDefaultEncryptionPrivateKey",
            encrypt_b64(&apkam, &ZERO_IV, &keys.encrypt_private.to_pkcs8_b64()),
        )
        .with(
            "encryptedDefaultSelfEncryptionKey",
            encrypt_b64(&apkam, &ZERO_IV, &b64::encode(&keys.self_encryption_key)),
        )
        .with("apkamPublicKey", keys.pkam_public.to_spki_b64());
    let answer = conn
        .request(
            &format!("enroll:request:{}", req.to_json()),
            REQUEST_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
    let resp = crate::noports::json::parse(&answer).map_err(|e| format!("enroll answer: {e}"))?;
    let id = resp
        .as_object()
        .and_then(|o| o.get_str("enrollmentId"))
        .ok_or("enroll answer has no enrollmentId")?
        .to_string();
    conn.close().await;
    keys.enrollment_id = Some(id);
    // Save before publishing: if anything below fails, the keys are not lost.
    keys.save(&atsign, &path).map_err(|e| e.to_string())?;
    let client = AtClient::connect(ClientConfig {
        atsign: atsign.clone(),
        keys: AtKeys::load(&path).map_err(|e| e.to_string())?,
        root,
    })
    .await
    .map_err(|e| e.to_string())?;
    client
        .request(&format!(
            "update:isEncrypted:false:public:publickey{atsign} {}",
            keys.encrypt_public.to_spki_b64()
        ))
        .await
        .map_err(|e| e.to_string())?;
    client
        .request("delete:privatekey:at_secret")
        .await
        .map_err(|e| e.to_string())?;
    println!("[Success] Your .atKeys file saved at {}", path.display());
    Ok(())
}
