//! What the policy applets and `npp_atserver`'s admin commands share to start: the option
//! dialect, the identity they log in as, and the usage-error exit.
use std::path::PathBuf;
use std::process::ExitCode;

use crate::at::{AtClient, AtKeys, AtSign, RootAddr};
use crate::runtime::cli;

/// The official option aliases (noports.md §9.8).
pub(super) const DIALECT: cli::Dialect<'static> = cli::Dialect {
    aliases: &[("--keyFile", "--key-file")],
    switches: &['v'],
    negatable: &[("verbose", 'v')],
};

/// What every policy applet needs to reach its atServer.
pub(super) struct Identity {
    pub(super) atsign: AtSign,
    pub(super) key_file: PathBuf,
    pub(super) root: RootAddr,
}

impl Identity {
    pub(super) fn new(
        atsign: Option<&str>,
        key_file: Option<String>,
        root: &str,
    ) -> Result<Self, String> {
        let atsign = AtSign::parse(atsign.ok_or("Option atsign is mandatory.")?)
            .map_err(|e| e.to_string())?;
        let key_file = match key_file {
            Some(k) => PathBuf::from(k),
            None => AtKeys::default_path(&atsign).map_err(|e| e.to_string())?,
        };
        // Fail fast on a missing or broken key file, before any network wait.
        AtKeys::load(&key_file).map_err(|e| e.to_string())?;
        let root = RootAddr::parse(root).map_err(|e| e.to_string())?;
        Ok(Identity {
            atsign,
            key_file,
            root,
        })
    }

    pub(super) async fn connect(&self) -> Result<AtClient, String> {
        AtClient::connect_retrying(&self.atsign, &self.key_file, &self.root)
            .await
            .map_err(|e| e.to_string())
    }
}

pub(super) fn usage_error(msg: &str) -> ExitCode {
    eprintln!("Invalid argument(s): {msg}");
    ExitCode::from(1)
}
