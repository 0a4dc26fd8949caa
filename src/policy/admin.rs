//! `npp_atserver import | set-group | delete-group | list`: edit the group records that a
//! running `npp_atserver` follows (each change is notified to it, §9.8).
use std::process::ExitCode;

use argh::FromArgs;

use super::applet::{usage_error, Identity, DIALECT};
use super::rules::{check_id, Group};
use super::{file, store};
use crate::at::AtClient;
use crate::runtime::{self, cli};

/// The sub-commands, as the first argument.
pub const COMMANDS: &[&str] = &["import", "set-group", "delete-group", "list", "devices"];

#[derive(FromArgs)]
#[argh(help_triggers("--help"))]
/// Edit npp_atserver's groups. import --yaml FILE: make the records match a policy YAML file
/// (groups matched by name; others deleted). set-group --json JSON: create or replace one
/// group (official record JSON; matched by id, else by name). delete-group --id ID. list.
struct AdminArgs {
    /// the policy atSign (mandatory)
    #[argh(option, short = 'a')]
    atsign: Option<String>,
    /// atKeys file (default ~/.atsign/keys/<atSign>_key.atKeys)
    #[argh(option, short = 'k')]
    key_file: Option<String>,
    /// atDirectory host or host:port (default root.atsign.org:64)
    #[argh(option, default = "String::from(\"root.atsign.org\")")]
    root_domain: String,
    /// policy YAML file (import)
    #[argh(option)]
    yaml: Option<String>,
    /// one group as JSON, or @FILE to read it from a file (set-group)
    #[argh(option)]
    json: Option<String>,
    /// group id (delete-group)
    #[argh(option)]
    id: Option<String>,
    /// info logging
    #[argh(switch, short = 'v')]
    verbose: bool,
}

/// What a sub-command does, checked before connecting.
enum Job {
    Import(Vec<Group>),
    Set(Group),
    Delete(String),
    List,
    Devices,
}

fn job(cmd: &str, a: &AdminArgs) -> Result<Job, String> {
    match cmd {
        "import" => {
            let path = a.yaml.as_deref().ok_or("import needs --yaml FILE")?;
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let groups =
                file::parse_policy(&text).map_err(|e| format!("policy file {path}: {e}"))?;
            Ok(Job::Import(groups))
        }
        "set-group" => {
            let raw = a.json.as_deref().ok_or("set-group needs --json JSON")?;
            let text = match raw.strip_prefix('@') {
                Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?,
                None => raw.to_string(),
            };
            Ok(Job::Set(Group::from_json(&text)?))
        }
        "delete-group" => {
            let id = a.id.clone().ok_or("delete-group needs --id ID")?;
            check_id(&id)?;
            Ok(Job::Delete(id))
        }
        "devices" => Ok(Job::Devices),
        _ => Ok(Job::List),
    }
}

/// Runs sub-command `cmd` with `argv` (the sub-command word removed).
pub fn main(cmd: &str, argv: &[String]) -> ExitCode {
    let args: AdminArgs = match cli::parse_dialect(argv, DIALECT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(args.verbose);
    let work = match job(cmd, &args) {
        Ok(j) => j,
        Err(e) => return usage_error(&e),
    };
    let id = match Identity::new(args.atsign.as_deref(), args.key_file, &args.root_domain) {
        Ok(i) => i,
        Err(e) => return usage_error(&e),
    };
    runtime::block_on(async move {
        let result = async {
            let client = id.connect().await?;
            let r = run(&client, work).await;
            client.close().await;
            r
        };
        match result.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn run(client: &AtClient, work: Job) -> Result<(), String> {
    let e = |e: crate::at::AtError| e.to_string();
    let mut existing = store::load_groups(client).await.map_err(e)?;
    match work {
        Job::Devices => {
            for (device, info) in store::load_devices(client).await.map_err(e)? {
                println!("{device} {info}");
            }
        }
        Job::List => {
            for g in &existing {
                println!("{}", g.to_json());
            }
        }
        Job::Delete(id) => {
            if !existing.iter().any(|g| g.id == id) {
                return Err(format!("no group with id {id}"));
            }
            store::delete_group(client, &id).await.map_err(e)?;
            println!("deleted group {id}");
        }
        Job::Set(mut g) => {
            if g.id.is_empty() {
                g.id = existing
                    .iter()
                    .find(|x| x.name == g.name)
                    .map(|x| x.id.clone())
                    .unwrap_or_else(|| store::next_id(&existing));
            }
            store::write_group(client, &g).await.map_err(e)?;
            println!("group {} ({}) written", g.id, g.name);
        }
        Job::Import(groups) => {
            let mut keep = Vec::new();
            for mut g in groups {
                g.id = match existing.iter().find(|x| x.name == g.name) {
                    Some(x) => x.id.clone(),
                    None => store::next_id(&existing),
                };
                store::write_group(client, &g).await.map_err(e)?;
                println!("group {} ({}) written", g.id, g.name);
                keep.push(g.id.clone());
                existing.retain(|x| x.id != g.id);
                existing.push(g);
            }
            for old in existing.iter().filter(|x| !keep.contains(&x.id)) {
                store::delete_group(client, &old.id).await.map_err(e)?;
                println!("group {} ({}) deleted", old.id, old.name);
            }
        }
    }
    Ok(())
}
