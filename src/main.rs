//! The applet table and argv[0] dispatch, plus the one call into the C library that the
//! library crate (which forbids `unsafe`) cannot make: glibc's `malloc_trim`.
use std::process::ExitCode;

use noports::{activate, client, daemon, relay};

type Entry = fn(&[String]) -> ExitCode;

/// Every applet: its name (the symlink name users type) and its entry point.
const APPLETS: &[(&str, Entry)] = &[
    ("sshnpd", daemon::main),
    ("sshnp", client::sshnp_main),
    ("npt", client::npt_main),
    ("srvd", relay::srvd_main),
    ("srv", relay::srv_main),
    ("at_activate", activate::main),
    #[cfg(feature = "policy")]
    ("npp_file", noports::policy::npp_file_main),
    #[cfg(feature = "policy")]
    ("npp_atserver", noports::policy::npp_atserver_main),
    #[cfg(feature = "atserver")]
    ("atserver", noports::atserver::main),
];

const MULTICALL: &str = "noports";

/// Gives the free pages inside glibc's heap back to the kernel (see `runtime::mem`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and only returns free memory to the kernel; it is
    // safe to call from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

fn find(name: &str) -> Option<Entry> {
    APPLETS.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}

fn applet_names() -> String {
    APPLETS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

fn usage() {
    eprintln!("usage: noports <applet> [args...] | --version | --list | --install DIR [--force]");
    eprintln!("applets: {}", applet_names());
}

/// True when `path` is a symlink to `exe` or to another file named like the multicall binary
/// (an earlier install of ours): those are ours to replace.
fn is_our_link(path: &std::path::Path, exe: &std::path::Path) -> bool {
    let Ok(target) = std::fs::read_link(path) else {
        return false;
    };
    target.file_name().and_then(|n| n.to_str()) == Some(MULTICALL)
        || std::fs::canonicalize(path).ok().as_deref() == Some(exe)
}

/// `--install DIR [--force]`: a symlink per applet. Files there that are not our links (the
/// official binaries, say) are kept unless `--force`; then nothing is changed at all.
fn install(dir: &str, force: bool) -> ExitCode {
    let exe = match std::env::current_exe().and_then(std::fs::canonicalize) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("noports: cannot find own executable: {e}");
            return ExitCode::from(1);
        }
    };
    let links: Vec<std::path::PathBuf> = APPLETS
        .iter()
        .map(|(name, _)| std::path::Path::new(dir).join(name))
        .collect();
    let foreign: Vec<String> = links
        .iter()
        .filter(|l| l.symlink_metadata().is_ok() && !is_our_link(l, &exe))
        .map(|l| l.display().to_string())
        .collect();
    if !foreign.is_empty() && !force {
        eprintln!(
            "noports: not replacing {} (not links to noports: another NoPorts install?); \
             nothing was changed. Remove them, or run noports --install {dir} --force",
            foreign.join(", ")
        );
        return ExitCode::from(1);
    }
    for link in &links {
        if link.symlink_metadata().is_ok() {
            if let Err(e) = std::fs::remove_file(link) {
                eprintln!("noports: cannot replace {}: {e}", link.display());
                return ExitCode::from(1);
            }
        }
        if let Err(e) = std::os::unix::fs::symlink(&exe, link) {
            eprintln!("noports: cannot create {}: {e}", link.display());
            return ExitCode::from(1);
        }
        println!("{}", link.display());
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    noports::runtime::one_thread();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    noports::runtime::mem::set_release(release_free_heap);
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or(MULTICALL);
    // Basename of argv[0], matched exactly: symlink names are an interface (procd tags logs with it).
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    if let Some(entry) = find(base) {
        return entry(&args);
    }
    if base != MULTICALL {
        eprintln!("noports: unknown applet '{base}'");
        eprintln!("applets: {}", applet_names());
        return ExitCode::from(2);
    }
    match args.get(1).map(String::as_str) {
        None | Some("-h") | Some("--help") => {
            usage();
            if args.len() > 1 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Some("--version") | Some("-V") => {
            println!("noports {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--list") => {
            for (name, _) in APPLETS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Some("--install") => {
            let rest: Vec<&str> = args[2..].iter().map(String::as_str).collect();
            let force = rest.contains(&"--force");
            match rest.iter().find(|a| **a != "--force") {
                Some(dir) if rest.len() <= 2 => install(dir, force),
                _ => {
                    eprintln!("noports: usage: noports --install DIR [--force]");
                    ExitCode::from(2)
                }
            }
        }
        Some(name) => match find(name) {
            Some(entry) => entry(&args[1..]),
            None => {
                eprintln!("noports: unknown applet '{name}'");
                eprintln!("applets: {}", applet_names());
                ExitCode::from(2)
            }
        },
    }
}
