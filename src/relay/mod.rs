//! The relay `srvd` and the data-plane bridge `srv`.
use std::process::ExitCode;

pub fn srvd_main(_argv: &[String]) -> ExitCode {
    eprintln!("noports: applet 'srvd' is not implemented yet");
    ExitCode::from(1)
}

pub fn srv_main(_argv: &[String]) -> ExitCode {
    eprintln!("noports: applet 'srv' is not implemented yet");
    ExitCode::from(1)
}
