//! `at_activate`: atSign activation (CRAM onboarding) and APKAM enrollment management
//! (noports.md §8, atprotocol.md §11).
mod auto;
mod connect;
mod enroll;
mod registrar;
mod words;

use std::process::ExitCode;

use argh::FromArgs;

use crate::at::auth;
use crate::at::conn::{lookup_server, Connection};
use crate::at::verbs::{self, EnrollOp};
use crate::at::{AtClient, AtError, AtKeys, AtSign, ClientConfig, RootAddr};
use crate::runtime::{self, cli, parse_duration};
use connect::{
    authenticated, connect_attempts, keys_path, parse_atsign, retrying, server_connection,
    MAX_CONNECT_ATTEMPTS, REQUEST_TIMEOUT,
};

/// The official CLI's long names (camelCase, Dart `args`) and the `--root-domain` every other
/// applet takes, mapped onto ours.
const DIALECT: cli::Dialect<'static> = cli::Dialect {
    aliases: &[
        ("--rootServer", "--root-server"),
        ("--root-domain", "--root-server"),
        ("--enrollmentId", "--enrollment-id"),
        ("--enrollmentStatus", "--enrollment-status"),
        ("--registrarUrl", "--registrar-url"),
        ("--cramkey", "--cramkey"),
        ("--passcode", "--passcode"),
    ],
    switches: &['v'],
    negatable: &[("verbose", 'v'), ("approve-existing", '\0')],
};

/// Flags every command takes, taken out before the per-command parser sees the arguments.
#[derive(Default)]
struct Shared {
    proxy: Option<String>,
    /// `--debug`: debug logging.
    debug: bool,
    /// `--mca N`: attempts to reach the atServer, 3 s apart.
    max_connect_attempts: Option<u32>,
}

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
    Auto(auto::AutoArgs),
    Deny(enroll::ManageArgs<enroll::Deny>),
    Revoke(enroll::ManageArgs<enroll::Revoke>),
    Unrevoke(enroll::ManageArgs<enroll::Unrevoke>),
    Delete(enroll::ManageArgs<enroll::Delete>),
    Interactive(InteractiveArgs),
}

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
    /// CRAM secret (or "<atsign>:<secret>"); without it, the registrar sends a verification
    /// code to the atSign's owner and the secret comes from there
    #[argh(option, short = 'c')]
    cramkey: Option<String>,
    /// registrar host[:port] that gives the CRAM secret (default my.atsign.com)
    #[argh(
        option,
        short = 'g',
        default = "String::from(registrar::DEFAULT_REGISTRAR)"
    )]
    registrar_url: String,
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
    let shared = match take_shared_flags(&mut argv) {
        Ok(s) => s,
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
        eprintln!("Commands: {COMMANDS}");
        return ExitCode::from(1);
    }
    if let Some(c) = argv.get(1).filter(|c| !c.starts_with('-')) {
        if !COMMANDS.split(' ').any(|known| known == c) {
            eprintln!("Invalid argument: Unknown command: {c}");
            eprintln!("Commands: {COMMANDS}");
            return ExitCode::from(1);
        }
    }
    let args: Args = match cli::parse_dialect(&argv, DIALECT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(e) = crate::runtime::dial::configure(shared.proxy.as_deref()) {
        eprintln!("Invalid argument(s): {e}");
        return ExitCode::from(1);
    }
    if shared.debug {
        runtime::init_logging_level("debug");
    }
    if let Some(n) = shared.max_connect_attempts {
        let _ = MAX_CONNECT_ATTEMPTS.set(n);
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

const COMMANDS: &str =
    "status onboard otp spp enroll list fetch approve auto deny revoke unrevoke delete interactive";

/// Removes the flags every command shares (`--proxy URL`, `--mca N`, `--debug`, also as
/// `--flag=value`, any position before `--`) from `argv`.
fn take_shared_flags(argv: &mut Vec<String>) -> Result<Shared, String> {
    let mut shared = Shared::default();
    let mut i = 1;
    while let Some(a) = argv.get(i).cloned() {
        if a == "--" {
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let takes_value = name == crate::runtime::dial::FLAG || name == "--mca";
        if !takes_value && name != "--debug" {
            i += 1;
            continue;
        }
        argv.remove(i);
        let value = match (takes_value, inline) {
            (false, _) => None,
            (true, Some(v)) => Some(v),
            (true, None) if i < argv.len() => Some(argv.remove(i)),
            (true, None) => return Err(format!("{name} needs a value")),
        };
        match (name.as_str(), value) {
            ("--debug", _) => shared.debug = true,
            ("--mca", Some(v)) => {
                shared.max_connect_attempts = Some(v.parse().ok().filter(|n| *n > 0).ok_or(
                    format!("--mca needs a number of attempts (1 or more), not {v}"),
                )?)
            }
            (_, v) => shared.proxy = v,
        }
    }
    Ok(shared)
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
            let ttl = a.expiry.as_deref().map(parse_duration).transpose()?;
            match client.request(&verbs::otp_get(ttl)).await {
                Ok(otp) => {
                    println!("{otp}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(format!("Failed to generate OTP: server response was {e}")),
            }
        }
        Command::Spp(a) => {
            runtime::init_logging(a.verbose);
            let spp = verbs::Spp::parse(&a.spp).map_err(|e| e.to_string())?;
            let client = authenticated(&a.atsign, a.keys.as_deref(), &a.root_server).await?;
            let ttl = a.expiry.as_deref().map(parse_duration).transpose()?;
            let r = client
                .request(&verbs::otp_put(&spp, ttl))
                .await
                .map_err(|e| e.to_string())?;
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
        Command::Auto(a) => auto::auto(a).await,
        Command::Interactive(_) => Ok(interactive(DIALECT).await),
    }
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
        Err(
            e @ (AtError::Invalid(_)
            | AtError::UnknownAtSign(_)
            | AtError::UntrustedCertificate { .. }),
        ) => return say(3, e.to_string()),
        Err(e) => return say(4, format!("atDirectory {root} unreachable: {e}")),
    };
    let mut conn = match Connection::connect(&host, port).await {
        Ok(c) => c,
        Err(e) => return say(2, format!("atServer {host}:{port} unreachable: {e}")),
    };
    match conn
        .request(&verbs::lookup_public_key(&atsign), REQUEST_TIMEOUT)
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
    use crate::crypto::b64;
    use crate::json::Object;

    let atsign = parse_atsign(&a.atsign)?;
    let path = keys_path(&atsign, a.keys.as_deref())?;
    if path.exists() {
        return Err(format!("atKeys file {} already exists", path.display()));
    }
    let root = RootAddr::parse(&a.root_server).map_err(|e| e.to_string())?;
    let secret = match a.cramkey.as_deref() {
        Some(k) => k.split_once(':').map_or(k, |(_, s)| s).trim().to_string(),
        None => {
            // Before the registrar sends a code: an activated atSign needs none.
            let mut conn = server_connection(&atsign, &root)
                .await
                .map_err(|e| format!("[Error] Onboarding failed. {e}"))?;
            if is_activated(&mut conn, &atsign).await {
                return Err(already_activated(&atsign));
            }
            conn.close().await;
            let prompt = format!(
                "Enter the verification code sent to the email address or phone number registered for {atsign}: "
            );
            registrar::cram_secret(&a.registrar_url, &atsign, || {
                registrar::read_code_from_stdin(&prompt)
            })
            .await
            .map_err(|e| format!("[Error] Onboarding failed. {e}"))?
        }
    };
    println!("[Information] Onboarding your atSign. This may take up to 2 minutes.");
    // Freshly activated at the registrar, the atServer may take a little while to come up.
    let attempts = if a.cramkey.is_some() { 1 } else { 10 };
    let mut conn = retrying(connect_attempts(attempts), || {
        server_connection(&atsign, &root)
    })
    .await
    .map_err(|e| e.to_string())?;
    if is_activated(&mut conn, &atsign).await {
        return Err(already_activated(&atsign));
    }
    let cram = auth::cram(&mut conn, &atsign, &secret, REQUEST_TIMEOUT);
    cram.await
        .map_err(|e| e.to_string())?
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
        .request(&verbs::enroll(EnrollOp::Request, &req), REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let resp = crate::json::parse(&answer).map_err(|e| format!("enroll answer: {e}"))?;
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
    let publish = verbs::update_public_key(&atsign, &keys.encrypt_public.to_spki_b64())
        .map_err(|e| e.to_string())?;
    client.request(&publish).await.map_err(|e| e.to_string())?;
    client
        .request(verbs::DELETE_CRAM_SECRET)
        .await
        .map_err(|e| e.to_string())?;
    println!("[Success] Your .atKeys file saved at {}", path.display());
    Ok(())
}

/// True when `atsign` already has its public encryption key (activated before).
async fn is_activated(conn: &mut Connection, atsign: &AtSign) -> bool {
    conn.request(&verbs::lookup_public_key(atsign), REQUEST_TIMEOUT)
        .await
        .is_ok_and(|v| !v.trim().is_empty() && v.trim() != "null")
}

fn already_activated(atsign: &AtSign) -> String {
    format!(
        "[Error] {atsign} is already activated. To use it here, enroll this device: \
         at_activate enroll -a {atsign} --passcode-file <file holding the OTP> -p <app> -d <device> -n <namespaces> -k <file>, \
         with an OTP from `at_activate otp -a {atsign}` where its keys are"
    )
}

#[derive(FromArgs)]
#[argh(subcommand, name = "interactive")]
/// A `$ ` prompt that runs management commands (otp, spp, list, fetch, approve, auto, deny,
/// revoke, unrevoke, delete) one per line, until `exit` or end of input.
pub struct InteractiveArgs {}

/// Commands the prompt refuses: they create key files or are the prompt itself.
const NOT_INTERACTIVE: &[&str] = &["onboard", "enroll", "status", "interactive"];

/// `at_activate interactive`: a prompt for the management commands (noports.md §8). Here, not
/// in a file of its own, because it runs [`run`] on what it reads.
async fn interactive(dialect: cli::Dialect<'static>) -> ExitCode {
    use std::io::Write;
    loop {
        print!("$ ");
        let _ = std::io::stdout().flush();
        let line = runtime::unblock(|| {
            let mut l = String::new();
            std::io::stdin().read_line(&mut l).map(|n| (n, l))
        })
        .await;
        let line = match line {
            Some(Ok((0, _))) | None => break,
            Some(Ok((_, l))) => l,
            Some(Err(e)) => {
                eprintln!("cannot read the command: {e}");
                return ExitCode::from(1);
            }
        };
        let words = match words::split_words(line.trim()) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        let Some(first) = words.first() else { continue };
        if first == "exit" || first == "quit" {
            break;
        }
        if NOT_INTERACTIVE.contains(&first.as_str()) {
            eprintln!("The {first} command is not available in interactive mode");
            continue;
        }
        let mut argv = vec!["at_activate".to_string()];
        argv.extend(words);
        let Ok(args) = cli::parse_dialect::<Args>(&argv, dialect) else {
            continue;
        };
        match Box::pin(run(args.command)).await {
            Ok(_) => {}
            Err(e) => eprintln!("Error: {e}"),
        }
    }
    ExitCode::SUCCESS
}
