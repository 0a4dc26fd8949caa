//! `sshnp`: ssh to a device through NoPorts, driving the system's OpenSSH (noports.md §1.4, §7.2).
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use async_io::Async;

use super::ephemeral::EphemeralKey;
use super::list;
use super::profile::Profile;
use super::session::{establish, Established, Kind, Progress, SessionParams, SuitePref};
use crate::at::{AtClient, AtKeys, AtSign, ClientConfig, RootAddr};
use crate::noports::names::validate_device_name;
use crate::runtime::{self, cli};
use crate::tunnel;

const DIALECT: cli::Dialect<'static> = cli::Dialect {
    aliases: &[
        ("--keyFile", "--key-file"),
        ("--dpt", "--daemon-ping-timeout"),
        ("--ls", "--list-devices"),
        ("--et", "--encrypt-rvd-traffic"),
        ("--no-et", "--no-encrypt-rvd-traffic"),
        ("--ac", "--authenticate-client-to-rvd"),
        ("--no-ac", "--no-authenticate-client-to-rvd"),
        ("--ad", "--authenticate-device-to-rvd"),
        ("--no-ad", "--no-authenticate-device-to-rvd"),
    ],
    switches: &['s', 'v', 'x', 'q'],
    negatable: &[("verbose", 'v')],
};

/// The local srv waits this long for ssh to connect (noports.md §7.1).
const LOCAL_CONNECT_WINDOW: Duration = Duration::from_secs(30);

#[derive(FromArgs)]
#[argh(help_triggers("--help"))]
/// ssh to a device with no open ports, through NoPorts.
struct Args {
    /// client atSign (mandatory)
    #[argh(option, short = 'f')]
    from: Option<String>,
    /// device atSign (mandatory)
    #[argh(option, short = 't')]
    to: Option<String>,
    /// relay (srvd) atSign (mandatory)
    #[argh(option, short = 'r')]
    srvd: Option<String>,
    /// legacy name of --srvd
    #[argh(option, short = 'h')]
    host: Option<String>,
    /// device name (default "default")
    #[argh(option, short = 'd')]
    device: Option<String>,
    /// local port for ssh (0 = pick one)
    #[argh(option, short = 'l')]
    local_port: Option<u16>,
    /// ssh identity file
    #[argh(option, short = 'i')]
    identity_file: Option<String>,
    /// accepted for compatibility (ssh asks for the passphrase itself)
    #[argh(option)]
    identity_passphrase: Option<String>,
    /// send the identity's public key to the device's authorized_keys first
    #[argh(switch, short = 's')]
    send_ssh_public_key: bool,
    /// extra ssh options, e.g. "-o ServerAliveInterval=30" (repeatable, comma-separated)
    #[argh(option, short = 'o')]
    local_ssh_options: Vec<String>,
    /// remote username (default: the one the device advertises)
    #[argh(option, short = 'u')]
    remote_user_name: Option<String>,
    /// accepted for compatibility
    #[argh(option, short = 'U')]
    tunnel_user_name: Option<String>,
    /// atKeys file (default ~/.atsign/keys/<from>_key.atKeys)
    #[argh(option, short = 'k')]
    key_file: Option<String>,
    /// atDirectory host or host:port (default root.atsign.org:64)
    #[argh(option)]
    root_domain: Option<String>,
    /// HTTP CONNECT or SOCKS5 proxy for atServer and relay connections:
    /// http://[user:pass@]host:port, socks5://... or socks5h://... (default $ALL_PROXY or
    /// $HTTPS_PROXY)
    #[argh(option)]
    proxy: Option<String>,
    /// accepted for compatibility (the device's --local-sshd-port decides)
    #[argh(option)]
    remote_sshd_port: Option<u16>,
    /// seconds to wait for the daemon's feature check (default 20)
    #[argh(option, default = "20")]
    daemon_ping_timeout: u64,
    /// print the ssh command and leave the tunnel waiting for it, instead of running ssh
    #[argh(switch, short = 'x')]
    output_execution_command: bool,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// no progress output
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// encrypt relay traffic (always on; accepted for compatibility)
    #[argh(switch)]
    encrypt_rvd_traffic: bool,
    /// not supported: relay traffic is always encrypted
    #[argh(switch)]
    no_encrypt_rvd_traffic: bool,
    /// accepted for compatibility (always on)
    #[argh(switch)]
    authenticate_client_to_rvd: bool,
    /// not supported
    #[argh(switch)]
    no_authenticate_client_to_rvd: bool,
    /// accepted for compatibility (always on)
    #[argh(switch)]
    authenticate_device_to_rvd: bool,
    /// not supported
    #[argh(switch)]
    no_authenticate_device_to_rvd: bool,
    /// list devices (--ls)
    #[argh(switch)]
    list_devices: bool,
    /// env-style profile (KEY=VALUE lines)
    #[argh(option)]
    config_file: Option<String>,
    /// openssh (dart: not available)
    #[argh(option, default = "String::from(\"openssh\")")]
    ssh_client: String,
    /// ssh-ed25519 or ssh-rsa (unused)
    #[argh(option, default = "String::from(\"ssh-ed25519\")")]
    ssh_algorithm: String,
    /// unused (Dart ssh client only)
    #[argh(option)]
    idle_timeout: Option<u64>,
    /// keep the -o options out of the ssh command (for a tunnel ssh, which encrypted mode
    /// does not have)
    #[argh(switch)]
    add_forwards_to_tunnel: bool,
    /// not supported
    #[argh(switch)]
    legacy_daemon: bool,
    /// data plane: auto, official or nps1
    #[argh(option, default = "String::from(\"auto\")")]
    suite: String,
}

fn mandatory<'a>(v: &'a Option<String>, msg: &str) -> Result<&'a str, String> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| msg.to_string())
}

/// Our atServer connection: `-k` (or the default atKeys path), `--root-domain`, `--proxy`.
async fn connect(a: &Args, from: &AtSign, root_domain: &str) -> Result<AtClient, String> {
    let root = RootAddr::parse(root_domain).map_err(|e| e.to_string())?;
    crate::runtime::dial::configure(a.proxy.as_deref())?;
    let key_file = match &a.key_file {
        Some(k) => PathBuf::from(k),
        None => AtKeys::default_path(from).map_err(|e| e.to_string())?,
    };
    let keys = AtKeys::load(&key_file).map_err(|e| e.to_string())?;
    AtClient::connect(ClientConfig {
        atsign: from.clone(),
        keys,
        root,
    })
    .await
    .map_err(|e| e.to_string())
}

pub fn main(argv: &[String]) -> ExitCode {
    let a: Args = match cli::parse_dialect(argv, DIALECT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(a.verbose);
    match runtime::block_on(run(a)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("\nError : {e}");
            ExitCode::from(1)
        }
    }
}

/// Fills what the command line left unset from `--config-file` (noports.md §10.1).
fn apply_profile(a: &mut Args, p: Profile) {
    fn fill<T>(cli: &mut Option<T>, file: Option<T>) {
        if cli.is_none() {
            *cli = file;
        }
    }
    fill(&mut a.from, p.from);
    fill(&mut a.to, p.to);
    fill(&mut a.device, p.device);
    fill(&mut a.srvd, p.srvd);
    fill(&mut a.host, p.host);
    fill(&mut a.local_port, p.local_port);
    fill(&mut a.remote_user_name, p.remote_user_name);
    fill(&mut a.tunnel_user_name, p.tunnel_user_name);
    fill(&mut a.root_domain, p.root_domain);
    fill(&mut a.remote_sshd_port, p.remote_sshd_port);
    a.send_ssh_public_key |= p.send_ssh_public_key == Some(true);
    if a.local_ssh_options.is_empty() {
        a.local_ssh_options = p.local_ssh_options;
    }
    // A profile's `false` means the same as the `--no-…` flag, unless the command line says
    // otherwise.
    if !a.authenticate_client_to_rvd && p.authenticate_client_to_rvd == Some(false) {
        a.no_authenticate_client_to_rvd = true;
    }
    if !a.authenticate_device_to_rvd && p.authenticate_device_to_rvd == Some(false) {
        a.no_authenticate_device_to_rvd = true;
    }
    if !a.encrypt_rvd_traffic && p.encrypt_rvd_traffic == Some(false) {
        a.no_encrypt_rvd_traffic = true;
    }
}

/// The choices the official parser validates, and the ones this client cannot honour.
fn check_choices(a: &Args) -> Result<(), String> {
    match a.ssh_client.as_str() {
        "openssh" => {}
        "dart" => {
            return Err("--ssh-client dart is not available: this sshnp runs the system's OpenSSH \
                 ssh (the Dart built-in ssh client is not part of noports); use --ssh-client openssh"
                .into())
        }
        other => {
            return Err(format!(
                "\"{other}\" is not an allowed value for option \"ssh-client\"."
            ))
        }
    }
    if !matches!(a.ssh_algorithm.as_str(), "ssh-ed25519" | "ssh-rsa") {
        return Err(format!(
            "\"{}\" is not an allowed value for option \"ssh-algorithm\".",
            a.ssh_algorithm
        ));
    }
    if a.legacy_daemon {
        return Err(
            "--legacy-daemon is not supported: daemons older than 4.0.0 are not served".into(),
        );
    }
    if a.no_encrypt_rvd_traffic {
        return Err("--no-et is not supported: relay traffic is always encrypted".into());
    }
    if a.no_authenticate_client_to_rvd || a.no_authenticate_device_to_rvd {
        return Err(
            "--no-ac / --no-ad are not supported: both sides always authenticate to the relay"
                .into(),
        );
    }
    Ok(())
}

async fn run(mut a: Args) -> Result<ExitCode, String> {
    if let Some(path) = a.config_file.clone() {
        apply_profile(&mut a, Profile::load(&path)?);
    }
    check_choices(&a)?;
    if a.from.as_deref().is_none_or(|f| f.trim().is_empty()) {
        // Run without arguments, the official sshnp starts with its version line; the
        // documentation's upgrade check relies on it.
        eprintln!(
            "Version : {v} (core: rs{v})\nRun sshnp --help for the options.",
            v = env!("CARGO_PKG_VERSION")
        );
    }
    let from = AtSign::parse(mandatory(&a.from, "Option from is mandatory.")?)
        .map_err(|e| e.to_string())?;
    let root_domain = a
        .root_domain
        .clone()
        .unwrap_or_else(|| "root.atsign.org".to_string());
    if a.list_devices {
        let to = match a.to.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => Some(AtSign::parse(t).map_err(|e| e.to_string())?),
            None => None,
        };
        let client = connect(&a, &from, &root_domain).await?;
        list::list_devices(&client, to.as_ref()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let params = session_params(&a)?;
    let identity = a.identity_file.as_deref().map(PathBuf::from);
    let public_key = match &identity {
        Some(id) if a.send_ssh_public_key => Some(read_public_key(id)?),
        _ => None,
    };
    let progress = Progress { quiet: a.quiet };
    // Generated while we connect and check the daemon's features (noports.md §3).
    let ephemeral = EphemeralKey::start();
    let client = connect(&a, &from, &root_domain).await?;
    progress.say("Resolving remote username for user session");
    // -u, else the one the device advertises (none: ssh's default).
    let user = match &a.remote_user_name {
        Some(u) => Some(u.clone()),
        None => client
            .get_shared(
                &params.device,
                &format!("username.{}.sshnp", params.device_name),
            )
            .await
            .ok(),
    };
    check_user(user.as_deref())?;
    let before: Vec<(&str, &str)> = match &public_key {
        Some(k) => vec![("sshpublickey", k.as_str())],
        None => Vec::new(),
    };
    let local_port = a.local_port.unwrap_or(0);
    let est = establish(&client, &params, &ephemeral, progress, &before, None)
        .await
        .map_err(|e| e.0)?;
    progress.say("Creating connection to socket rendezvous");
    // --add-forwards-to-tunnel hands the -o options to the tunnel; encrypted mode (the only
    // one here) has no tunnel ssh, so the official client drops them as we do.
    let options = if a.add_forwards_to_tunnel {
        &[][..]
    } else {
        &a.local_ssh_options[..]
    };
    let ssh = SshCommand {
        identity,
        user,
        options,
    };
    if a.output_execution_command {
        let port =
            super::detached::spawn_srv(&est, local_port, LOCAL_CONNECT_WINDOW, false).await?;
        println!("ssh {}", ssh.args(port).join(" "));
        return Ok(ExitCode::SUCCESS);
    }
    run_ssh(est, local_port, &ssh, progress).await
}

/// The device, relay, device name and suite from the command line, checked.
fn session_params(a: &Args) -> Result<SessionParams, String> {
    let device = AtSign::parse(mandatory(
        &a.to,
        "Option to is mandatory, unless list-devices is passed.",
    )?)
    .map_err(|e| e.to_string())?;
    let relay_text = a.srvd.clone().or(a.host.clone());
    let relay = AtSign::parse(mandatory(
        &relay_text,
        "srvdAtSign is mandatory, unless list-devices is passed.",
    )?)
    .map_err(|e| e.to_string())?;
    let device_name = match &a.device {
        Some(d) => validate_device_name(d)?,
        None => {
            eprintln!("Warning: Using default value of \"default\" for optional arg \"--device\". Note that the --device arg will be mandatory in future releases.");
            "default".to_string()
        }
    };
    let suite =
        match a.suite.as_str() {
            "auto" if !a.output_execution_command => SuitePref::Auto,
            "auto" | "official" => SuitePref::Official,
            "nps1" if !a.output_execution_command => SuitePref::Ours,
            "nps1" => return Err(
                "--suite nps1 cannot be used with -x (a detached srv speaks the official suite)"
                    .into(),
            ),
            other => {
                return Err(format!(
                    "\"{other}\" is not an allowed value for option \"suite\"."
                ))
            }
        };
    // Accepted for compatibility with the official command line; nothing to do with them.
    let _ = (
        &a.tunnel_user_name,
        &a.identity_passphrase,
        a.remote_sshd_port,
        a.encrypt_rvd_traffic,
        a.idle_timeout,
    );
    let _ = (a.authenticate_client_to_rvd, a.authenticate_device_to_rvd);
    Ok(SessionParams {
        device,
        relay,
        device_name,
        kind: Kind::Ssh {
            public_keys: a.send_ssh_public_key,
        },
        timeout: LOCAL_CONNECT_WINDOW,
        timeout_given: false,
        encrypt: true,
        suite,
        ping_timeout: Duration::from_secs(a.daemon_ping_timeout.max(1)),
    })
}

/// `<type> <key>` of the identity's `.pub` file, for `-s`.
fn read_public_key(identity: &Path) -> Result<String, String> {
    let mut p = identity.as_os_str().to_os_string();
    p.push(".pub");
    let text = std::fs::read_to_string(&p)
        .map_err(|e| format!("cannot read {}: {e}", p.to_string_lossy()))?;
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(t), Some(k)) => Ok(format!("{t} {k}")),
        _ => Err(format!("{} is not an ssh public key", p.to_string_lossy())),
    }
}

/// A remote username ssh would read as an option or another host is refused.
fn check_user(user: Option<&str>) -> Result<(), String> {
    match user {
        Some(u)
            if u.is_empty()
                || u.starts_with('-')
                || u.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@') =>
        {
            Err(format!("remote username {u:?} is not usable"))
        }
        _ => Ok(()),
    }
}

/// The ssh command line to the tunnel's local port.
struct SshCommand<'a> {
    identity: Option<PathBuf>,
    user: Option<String>,
    /// `-o` options as given (repeatable, comma-separated).
    options: &'a [String],
}

impl SshCommand<'_> {
    fn args(&self, port: u16) -> Vec<String> {
        let mut v = vec!["-p".to_string(), port.to_string()];
        if self.identity.is_some() {
            v.extend(
                [
                    "-o",
                    "StrictHostKeyChecking=accept-new",
                    "-o",
                    "IdentitiesOnly=yes",
                ]
                .map(String::from),
            );
        }
        for o in self.options.iter().flat_map(|o| o.split(',')) {
            v.extend(o.split_whitespace().map(String::from));
        }
        v.push(match &self.user {
            Some(u) => format!("{u}@localhost"),
            None => "localhost".to_string(),
        });
        if let Some(id) = &self.identity {
            v.push("-i".into());
            v.push(id.to_string_lossy().into_owned());
        }
        v
    }
}

/// Listens on `local_port`, runs the tunnel for one ssh connection, and runs ssh to it:
/// ssh's exit status is ours.
async fn run_ssh(
    est: Established,
    local_port: u16,
    ssh: &SshCommand<'_>,
    progress: Progress,
) -> Result<ExitCode, String> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], local_port))
        .map_err(|e| format!("cannot listen on localhost:{local_port}: {e}"))?;
    let port = listener
        .get_ref()
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let tunnel_task = runtime::spawn(tunnel::client_single(
        est.relay,
        listener,
        est.crypto,
        LOCAL_CONNECT_WINDOW,
    ));
    progress.say("Starting user session");
    let args = ssh.args(port);
    let (tx, rx) = async_channel::bounded(1);
    std::thread::spawn(move || {
        let status = std::process::Command::new("ssh").args(&args).status();
        let _ = tx.send_blocking(status);
    });
    let status = rx
        .recv()
        .await
        .map_err(|_| "ssh runner vanished".to_string())?;
    drop(tunnel_task);
    match status {
        Ok(s) => Ok(ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8)),
        Err(e) => Err(format!("cannot run ssh: {e}")),
    }
}
