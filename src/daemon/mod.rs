//! `sshnpd`: the device daemon. Keeps a monitor on its atServer, answers pings and session
//! requests from authorised client atSigns within its permit-open list (noports.md §6).
mod authorized_keys;
mod config;
mod dispatch;
mod doctor;
mod latency;
mod policy;
mod replay;
mod sshd;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use crate::at::{AtClient, AtKeys, MonitorStart, NotifyOptions, PutOptions};
use crate::runtime::{self, cli, sleep};
use config::DIALECT;
pub use config::{Args, Config};

pub fn main(argv: &[String]) -> ExitCode {
    // `sshnpd doctor <the daemon's flags> [--relay @relay]`: check the set-up step by step.
    if argv.get(1).map(String::as_str) == Some("doctor") {
        let mut rest: Vec<String> = argv.to_vec();
        rest.remove(1);
        let relay = match doctor::take_relay_flag(&mut rest) {
            Ok(r) => r,
            Err(msg) => {
                eprintln!("Invalid argument(s): {msg}");
                return ExitCode::from(1);
            }
        };
        let args: Args = match cli::parse_dialect(&rest, DIALECT) {
            Ok(a) => a,
            Err(code) => return code,
        };
        runtime::init_logging(false);
        return match Config::from_args(args) {
            Ok(config) => doctor::run(config, relay),
            Err(msg) => {
                eprintln!("Invalid argument(s): {msg}");
                ExitCode::from(1)
            }
        };
    }
    let args: Args = match cli::parse_dialect(argv, DIALECT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    runtime::init_logging(args.verbose);
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("Invalid argument(s): {msg}");
            return ExitCode::from(1);
        }
    };
    // Fail fast on a missing or broken key file, before any network wait.
    if let Err(e) = AtKeys::load(&config.key_file) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    status::init(
        config.status_file.clone(),
        config.atsign.as_str(),
        &config.device,
    );
    runtime::block_on(async move {
        let run = run(config);
        let stop = async {
            runtime::shutdown_signal().await;
            log::info!("sshnpd: shutting down on signal");
            status::set_state("stopped");
            Ok(())
        };
        match futures_lite::future::or(run, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                status::set_state("failed");
                ExitCode::from(1)
            }
        }
    })
}

async fn run(config: Config) -> Result<(), String> {
    let client = AtClient::connect_retrying(&config.atsign, &config.key_file, &config.root)
        .await
        .map_err(|e| e.to_string())?;
    // Many clients at once each wait for a reply: not all behind one request connection.
    client.spread_requests(4);
    log::info!(
        "sshnpd {} started as {} device {} managers [{}] permit-open [{}]",
        env!("CARGO_PKG_VERSION"),
        config.atsign,
        config.device,
        config
            .managers
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(","),
        config.permit_open.entries().join(",")
    );
    if config.accept_public_keys {
        let (server, path) = dispatch::authorized_keys_target(&config);
        log::info!(
            "sshd on port {}: {server}; keys from -s go to {}",
            config.local_sshd_port,
            path.map(|p| p.display().to_string()).unwrap_or_else(|e| e)
        );
    }
    // One monitor for session traffic and policy answers, filtered client-side by the dispatcher.
    // Sealed: values stay encrypted until the sender is authorised, so strangers cause no
    // shared-key look-ups and no decryption.
    let monitor = client
        .monitor_sealed("sshnp@", MonitorStart::Live)
        .await
        .map_err(|e| e.to_string())?;
    status::set_state("running");
    let daemon = std::sync::Arc::new(dispatch::Daemon::new(config, client.clone()));
    let adverts = runtime::spawn(advertise_loop(daemon.clone()));
    let d = daemon.clone();
    let policy_beat = runtime::spawn(async move { d.policy_heartbeats().await });
    daemon.serve(monitor).await;
    drop(adverts);
    drop(policy_beat);
    Err("monitor ended".into())
}

/// Username (N9) and device-info (R1) records for each manager, refreshed hourly (§6.1, §6.6).
async fn advertise_loop(d: std::sync::Arc<dispatch::Daemon>) {
    loop {
        d.advertise().await;
        sleep(Duration::from_secs(3600)).await;
    }
}

impl dispatch::Daemon {
    async fn advertise(&self) {
        let cfg = &self.config;
        let device = &cfg.device;
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        for m in &cfg.managers {
            if cfg.hide {
                for name in ["username", "device_info"] {
                    let key = format!("{m}:{name}.{device}.sshnp{}", cfg.atsign);
                    if let Err(e) = self.client.delete(&key).await {
                        log::warn!("cannot delete {key}: {e}");
                    }
                }
                continue;
            }
            let opts = PutOptions {
                ttl_ms: None,
                ttr: Some(-1),
                ccd: Some(true),
            };
            match self
                .client
                .put_shared(m, &format!("username.{device}.sshnp"), &user, opts)
                .await
            {
                Ok(()) => log::info!("Sharing username {user} with {m}"),
                Err(e) => log::warn!("cannot share username with {m}: {e}"),
            }
            let nopts = NotifyOptions {
                ttl_ms: None,
                ttln_ms: Some(60_000),
                ttr: Some(-1),
                ccd: Some(true),
            };
            if let Err(e) = self
                .client
                .notify(m, &format!("username.{device}.sshnp"), &user, nopts)
                .await
            {
                log::warn!("cannot notify username to {m}: {e}");
            }
            let info = self.ping_response().to_json();
            let opts = PutOptions {
                ttl_ms: Some(2_592_000_000),
                ttr: Some(-1),
                ccd: Some(true),
            };
            match self
                .client
                .put_shared(m, &format!("device_info.{device}.sshnp"), &info, opts)
                .await
            {
                Ok(()) => log::info!("Sharing device info for {device} with {m}"),
                Err(e) => log::warn!("cannot share device info with {m}: {e}"),
            }
        }
    }
}
