//! The NoPorts policy service (noports.md §6.3, §9.8): a policy atSign that daemons started
//! with `-p @policy` ask whether a client may connect, and to which `host:port`s.
//!
//! Two applets share the RPC responder (`service.rs`) and the decision rules (`rules.rs`):
//! - `npp_file -a @policy --yaml policy.yaml`: the groups come from a YAML file (`file.rs`,
//!   parsed by our own YAML subset in `yaml.rs`), re-read when it changes or on SIGHUP; a
//!   malformed file is refused with its line and the last good policy stays in force.
//! - `npp_atserver -a @policy`: the groups are records on the policy atSign's own atServer
//!   (`store.rs`), followed live; `npp_atserver import|set-group|delete-group|list|devices`
//!   edit and show them (`admin.rs`).
//!
//! Depends on `at/`, `noports/` (JSON), `crypto/` and `runtime/` only; feature `policy`.
mod admin;
mod applet;
mod file;
mod rules;
mod service;
mod store;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;

use crate::at::{AtClient, AtSign};
use crate::runtime::{self, cli, sleep};
use applet::{usage_error, Identity, DIALECT};
use rules::Mode;
use service::Service;

pub use file::parse_policy;

/// How often `npp_file` looks at its file for changes.
const FILE_POLL: Duration = Duration::from_secs(1);

#[derive(FromArgs)]
#[argh(help_triggers("--help"))]
/// NoPorts policy service with the policy in a YAML file (re-read on change or SIGHUP).
struct FileArgs {
    /// the policy atSign (mandatory)
    #[argh(option, short = 'a')]
    atsign: Option<String>,
    /// policy YAML file (mandatory)
    #[argh(option)]
    yaml: Option<String>,
    /// comma-separated daemon atSigns expected to ask (others are answered too, with a warning)
    #[argh(option, default = "String::new()")]
    daemon_atsigns: String,
    /// atKeys file (default ~/.atsign/keys/<atSign>_key.atKeys)
    #[argh(option, short = 'k')]
    key_file: Option<String>,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// atDirectory host or host:port (default root.atsign.org:64)
    #[argh(option, default = "String::from(\"root.atsign.org\")")]
    root_domain: String,
}

#[derive(FromArgs)]
#[argh(help_triggers("--help"))]
/// NoPorts policy service with the groups kept on the policy atSign's atServer. Edit them with
/// `npp_atserver import --yaml FILE`, `set-group --json JSON`, `delete-group --id ID`, `list`,
/// `devices` (each with -a and the key options).
struct AtServerArgs {
    /// the policy atSign (mandatory)
    #[argh(option, short = 'a')]
    atsign: Option<String>,
    /// comma-separated daemon atSigns expected to ask (others are answered too, with a warning)
    #[argh(option, default = "String::new()")]
    daemon_atsigns: String,
    /// atKeys file (default ~/.atsign/keys/<atSign>_key.atKeys)
    #[argh(option, short = 'k')]
    key_file: Option<String>,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// atDirectory host or host:port (default root.atsign.org:64)
    #[argh(option, default = "String::from(\"root.atsign.org\")")]
    root_domain: String,
}

/// Runs `fut` until it ends or SIGINT/SIGTERM arrives.
fn run_service(name: &str, fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    runtime::block_on(async move {
        let stop = async {
            runtime::shutdown_signal().await;
            log::warn!("{name}: shutting down on signal");
            Ok(())
        };
        match futures_lite::future::or(fut, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// `npp_file`: see the module documentation.
pub fn npp_file_main(argv: &[String]) -> ExitCode {
    let args: FileArgs = match cli::parse_dialect(argv, DIALECT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(args.verbose);
    let id = match Identity::new(args.atsign.as_deref(), args.key_file, &args.root_domain) {
        Ok(i) => i,
        Err(e) => return usage_error(&e),
    };
    let configured = match AtSign::parse_list(&args.daemon_atsigns) {
        Ok(l) => l,
        Err(e) => return usage_error(&format!("--daemon-atsigns: {e}")),
    };
    let Some(path) = args.yaml.map(PathBuf::from) else {
        return usage_error("Option yaml is mandatory.");
    };
    let (groups, stamp) = match load_file(&path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    log::warn!(
        "policy file {} loaded: {} user groups",
        path.display(),
        groups.len()
    );
    run_service("npp_file", async move {
        let client = id.connect().await?;
        let svc = Arc::new(Service::new(client, Mode::File, groups, configured));
        let _watch = runtime::spawn(watch_file(svc.clone(), path, stamp));
        svc.serve().await
    })
}

/// What tells a changed file apart: modification time, size and inode.
type Stamp = Option<(std::time::SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Reads and parses the policy file. The error names the file and the line.
fn load_file(path: &Path) -> Result<(Vec<rules::Group>, Stamp), String> {
    let before = stamp(path);
    let meta =
        std::fs::metadata(path).map_err(|e| format!("policy file {}: {e}", path.display()))?;
    if meta.len() > yaml::MAX_FILE_BYTES as u64 {
        return Err(format!(
            "policy file {}: larger than {} bytes",
            path.display(),
            yaml::MAX_FILE_BYTES
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("policy file {}: {e}", path.display()))?;
    let groups = parse_policy(&text).map_err(|e| format!("policy file {}: {e}", path.display()))?;
    Ok((groups, before))
}

/// Re-reads the file when it changes or on SIGHUP. A bad file is logged and ignored: the
/// policy in force stays, and requests are answered throughout.
async fn watch_file(svc: Arc<Service>, path: PathBuf, mut last: Stamp) {
    let mut hup = runtime::Hangups::new();
    loop {
        let hangup = futures_lite::future::or(
            async {
                hup.next().await;
                true
            },
            async {
                sleep(FILE_POLL).await;
                false
            },
        )
        .await;
        let now = stamp(&path);
        if !hangup && now == last {
            continue;
        }
        last = now;
        if hangup {
            log::warn!("SIGHUP: re-reading policy file {}", path.display());
        }
        match load_file(&path) {
            Ok((groups, _)) => {
                log::warn!(
                    "policy file {} reloaded: {} user groups",
                    path.display(),
                    groups.len()
                );
                svc.set_groups(groups);
            }
            Err(e) => log::error!("{e}; keeping the last good policy"),
        }
    }
}

/// `npp_atserver`: see the module documentation.
pub fn npp_atserver_main(argv: &[String]) -> ExitCode {
    if let Some(cmd) = argv
        .get(1)
        .filter(|a| admin::COMMANDS.contains(&a.as_str()))
    {
        let mut rest: Vec<String> = argv.to_vec();
        rest.remove(1);
        return admin::main(cmd, &rest);
    }
    let args: AtServerArgs = match cli::parse_dialect(argv, DIALECT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(args.verbose);
    let id = match Identity::new(args.atsign.as_deref(), args.key_file, &args.root_domain) {
        Ok(i) => i,
        Err(e) => return usage_error(&e),
    };
    let configured = match AtSign::parse_list(&args.daemon_atsigns) {
        Ok(l) => l,
        Err(e) => return usage_error(&format!("--daemon-atsigns: {e}")),
    };
    run_service("npp_atserver", async move {
        let client = id.connect().await?;
        log::warn!("Loading groups via atServer");
        let groups = store::load_groups(&client)
            .await
            .map_err(|e| e.to_string())?;
        log::warn!("Load complete: {} groups", groups.len());
        let svc = Arc::new(Service::new(
            client.clone(),
            Mode::AtServer,
            groups,
            configured,
        ));
        let _hup = runtime::spawn(reload_on_hangup(svc.clone(), client));
        svc.serve().await
    })
}

/// SIGHUP makes `npp_atserver` read all group records again.
async fn reload_on_hangup(svc: Arc<Service>, client: AtClient) {
    let mut hup = runtime::Hangups::new();
    loop {
        hup.next().await;
        match store::load_groups(&client).await {
            Ok(g) => {
                log::warn!("SIGHUP: reloaded {} groups", g.len());
                svc.set_groups(g);
            }
            Err(e) => log::error!("SIGHUP: cannot reload the groups: {e}; keeping them"),
        }
    }
}

/// Fuzz entry (fuzz/fuzz_targets/policy.rs): the policy file text through the YAML subset and
/// the group rules, and the same bytes as a group record from an atServer. Whatever parses
/// must survive the record round trip unchanged (groups are stored as their JSON).
#[doc(hidden)]
pub fn fuzz_policy_text(text: &str) {
    let _ = yaml::parse(text);
    if let Ok(groups) = parse_policy(text) {
        for g in &groups {
            let back = rules::Group::from_json(&g.to_json());
            assert_eq!(back.as_ref(), Ok(g), "group record round trip");
        }
        let _ = rules::daemons_of(&groups);
    }
    if let Ok(g) = rules::Group::from_json(text) {
        let again = rules::Group::from_json(&g.to_json());
        assert_eq!(again.as_ref(), Ok(&g), "record round trip");
    }
}
