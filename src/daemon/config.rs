//! `sshnpd`'s options: the official dialect, the argh `Args`, and the validated `Config` the
//! rest of the daemon reads.
use std::path::PathBuf;

use argh::FromArgs;

use super::authorized_keys;
use crate::at::{AtKeys, AtSign, RootAddr};
use crate::noports::names::validate_device_name;
use crate::noports::permit::PermitOpen;
use crate::runtime::cli;

/// Official long-name aliases and combinable switches (noports.md §9.1).
pub(super) const DIALECT: cli::Dialect<'static> = cli::Dialect {
    aliases: &[
        ("--manager", "--managers"),
        ("--keyFile", "--key-file"),
        ("--po", "--permit-open"),
        ("--dg", "--device-group"),
        ("--username", "--un-hide"),
        ("--ephemeral-permission", "--ephemeral-permissions"),
    ],
    switches: &['s', 'h', 'u', 'v'],
    negatable: &[("sshpublickey", 's'), ("verbose", 'v')],
};

#[derive(FromArgs)]
#[argh(help_triggers("--help"))]
/// NoPorts device daemon: serves TCP sessions to authorised client atSigns through a relay.
pub struct Args {
    /// the device's atSign (mandatory)
    #[argh(option, short = 'a')]
    atsign: Option<String>,
    /// comma-separated manager atSigns allowed to connect
    #[argh(option, short = 'm')]
    managers: Option<String>,
    /// policy-manager atSign asked about senders not in --managers
    #[argh(option, short = 'p')]
    policy_manager: Option<String>,
    /// device name (default "default")
    #[argh(option, short = 'd', default = "String::from(\"default\")")]
    device: String,
    /// atKeys file (default ~/.atsign/keys/<atSign>_key.atKeys)
    #[argh(option, short = 'k')]
    key_file: Option<String>,
    /// accept ssh public keys from managers into ~/.ssh/authorized_keys
    #[argh(switch, short = 's')]
    sshpublickey: bool,
    /// authorized_keys options put in front of keys added with -s
    #[argh(option, short = 'S', default = "String::new()")]
    sshpublickey_permissions: String,
    /// keep the daemon's state (running, last session) in this JSON file for a front end
    #[argh(option)]
    status_file: Option<String>,
    /// file that keys from -s go to (default: where the sshd on --local-sshd-port reads them:
    /// /etc/dropbear/authorized_keys for root on OpenWrt's dropbear, else
    /// ~/.ssh/authorized_keys)
    #[argh(option)]
    authorized_keys: Option<String>,
    /// do not advertise username or device info
    #[argh(switch, short = 'h')]
    hide: bool,
    /// deprecated, on by default (accepted for compatibility)
    #[argh(switch, short = 'u')]
    un_hide: bool,
    /// info logging
    #[argh(switch, short = 'v')]
    pub(super) verbose: bool,
    /// comma-separated host:port the daemon may open (default localhost:22,localhost:3389;
    /// *:* when -p is given without this option)
    #[argh(option)]
    permit_open: Option<String>,
    /// device sshd port (default 22)
    #[argh(option, default = "22")]
    local_sshd_port: u16,
    /// extra authorized_keys options for ephemeral keys
    #[argh(option, default = "String::new()")]
    ephemeral_permissions: String,
    /// ephemeral ssh key type: ssh-ed25519 or ssh-rsa
    #[argh(option, default = "String::from(\"ssh-ed25519\")")]
    ssh_algorithm: String,
    /// openssh or dart (legacy reverse ssh only; accepted for compatibility)
    #[argh(option, default = "String::from(\"openssh\")")]
    ssh_client: String,
    /// device group name for the policy service and ping replies
    #[argh(option, default = "String::from(\"__none__\")")]
    device_group: String,
    /// atClient storage path (accepted for compatibility; nothing is stored)
    #[argh(option)]
    storage_path: Option<String>,
    /// atDirectory host or host:port (default root.atsign.org:64)
    #[argh(option, default = "String::from(\"root.atsign.org\")")]
    root_domain: String,
    /// HTTP CONNECT or SOCKS5 proxy for atServer and relay connections:
    /// http://[user:pass@]host:port, socks5://... or socks5h://... (default $ALL_PROXY or
    /// $HTTPS_PROXY)
    #[argh(option)]
    proxy: Option<String>,
}

/// Validated configuration: nothing here needs checking again at run time.
pub struct Config {
    pub atsign: AtSign,
    pub managers: Vec<AtSign>,
    pub policy: Option<AtSign>,
    pub device: String,
    pub key_file: PathBuf,
    pub accept_public_keys: bool,
    pub public_key_options: String,
    /// `--authorized-keys`: overrides the file found from the sshd (see `sshd`).
    pub authorized_keys: Option<PathBuf>,
    /// `--status-file` (see `status`).
    pub status_file: Option<PathBuf>,
    pub hide: bool,
    pub permit_open: PermitOpen,
    pub local_sshd_port: u16,
    pub ephemeral_permissions: String,
    pub device_group: String,
    pub root: RootAddr,
}

impl Config {
    pub(super) fn from_args(a: Args) -> Result<Config, String> {
        let atsign = AtSign::parse(a.atsign.as_deref().ok_or("Option atsign is mandatory.")?)
            .map_err(|e| e.to_string())?;
        let managers = match a.managers.as_deref() {
            Some(m) => AtSign::parse_list(m)
                .map_err(|e| format!("Expected a list of atSigns: \"{m}\" ({e})"))?,
            None => Vec::new(),
        };
        let policy = match a
            .policy_manager
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            Some(p) => Some(AtSign::parse(p).map_err(|e| e.to_string())?),
            None => None,
        };
        if managers.is_empty() && policy.is_none() {
            return Err(
                "At least one of --managers and --policy-manager options must be supplied.".into(),
            );
        }
        let device = validate_device_name(&a.device)?;
        let key_file = match a.key_file {
            Some(k) => PathBuf::from(k),
            None => AtKeys::default_path(&atsign).map_err(|e| e.to_string())?,
        };
        authorized_keys::check_options(&a.sshpublickey_permissions)?;
        authorized_keys::check_options(&a.ephemeral_permissions)?;
        if a.ssh_algorithm != "ssh-ed25519" && a.ssh_algorithm != "ssh-rsa" {
            return Err(format!(
                "\"{}\" is not an allowed value for option \"ssh-algorithm\".",
                a.ssh_algorithm
            ));
        }
        if a.ssh_client != "openssh" && a.ssh_client != "dart" {
            return Err(format!(
                "\"{}\" is not an allowed value for option \"ssh-client\".",
                a.ssh_client
            ));
        }
        let permit_open = match (a.permit_open.as_deref(), &policy) {
            (Some(p), _) => PermitOpen::parse(p)?,
            (None, Some(_)) => PermitOpen::any(),
            (None, None) => PermitOpen::parse("localhost:22,localhost:3389")?,
        };
        let root = RootAddr::parse(&a.root_domain).map_err(|e| e.to_string())?;
        crate::runtime::dial::configure(a.proxy.as_deref())?;
        let _ = (a.un_hide, a.storage_path);
        Ok(Config {
            atsign,
            managers,
            policy,
            device,
            key_file,
            accept_public_keys: a.sshpublickey,
            public_key_options: a.sshpublickey_permissions,
            authorized_keys: a.authorized_keys.map(PathBuf::from),
            status_file: a.status_file.map(PathBuf::from),
            hide: a.hide,
            permit_open,
            local_sshd_port: a.local_sshd_port,
            ephemeral_permissions: a.ephemeral_permissions,
            device_group: a.device_group,
            root,
        })
    }
}
