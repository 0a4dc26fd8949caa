//! argh parsing shared by every applet: `--help` to stdout with exit 0, errors to stderr with exit 1.
use std::process::ExitCode;

use argh::FromArgs;

/// Parse `argv` (argv[0] = the applet name) into `T`. On `--help` or a parse error, returns the
/// exit code to use after printing the message. Empty-string arguments (what service wrappers
/// produce for unset variables) are dropped, as the official programs do.
pub fn parse<T: FromArgs>(argv: &[String]) -> Result<T, ExitCode> {
    let name = argv.first().map(String::as_str).unwrap_or("noports");
    let name = name.rsplit('/').next().unwrap_or(name);
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).filter(|a| !a.is_empty()).collect();
    match T::from_args(&[name], &rest) {
        Ok(t) => Ok(t),
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                Err(ExitCode::SUCCESS)
            }
            Err(()) => {
                eprintln!("{}", early.output.trim_end());
                eprintln!("Run {name} --help for more information.");
                Err(ExitCode::from(1))
            }
        },
    }
}
