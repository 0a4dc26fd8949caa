//! Clients: `npt` and `sshnp`.
use std::process::ExitCode;

pub fn npt_main(_argv: &[String]) -> ExitCode {
    eprintln!("noports: applet 'npt' is not implemented yet");
    ExitCode::from(1)
}

pub fn sshnp_main(_argv: &[String]) -> ExitCode {
    eprintln!("noports: applet 'sshnp' is not implemented yet");
    ExitCode::from(1)
}
