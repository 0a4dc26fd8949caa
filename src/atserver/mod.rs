//! Applet `atserver` (not built yet).
use std::process::ExitCode;

pub fn main(argv: &[String]) -> ExitCode {
    let _ = argv;
    eprintln!("noports: applet 'atserver' is not implemented yet");
    ExitCode::from(1)
}
