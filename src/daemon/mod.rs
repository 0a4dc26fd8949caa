//! Applet `daemon` (not built yet).
use std::process::ExitCode;

pub fn main(argv: &[String]) -> ExitCode {
    let _ = argv;
    eprintln!("noports: applet 'daemon' is not implemented yet");
    ExitCode::from(1)
}
