//! argh parsing shared by every applet: `--help` to stdout with exit 0, errors to stderr with exit 1.
//!
//! Before argh sees the arguments they are normalised to what the official (Dart `args`)
//! parsers accept: empty arguments dropped (service wrappers pass unset variables as ""),
//! `--opt=value` split, long-name aliases mapped, combined short switches (`-su`) expanded.
use std::process::ExitCode;

use argh::FromArgs;

/// How an applet's official command line differs from what argh accepts directly.
#[derive(Default, Clone, Copy)]
pub struct Dialect<'a> {
    /// `(alias, canonical)`, e.g. `("--po", "--permit-open")`.
    pub aliases: &'a [(&'a str, &'a str)],
    /// Single-letter switches that may be combined, e.g. `['s', 'u', 'v']` for `-suv`.
    pub switches: &'a [char],
    /// Switches the official parser also accepts as `--no-<name>` (Dart `negatable`), with
    /// their short letter: `--no-verbose` cancels an earlier `-v`/`--verbose`, as there.
    pub negatable: &'a [(&'a str, char)],
}

/// Normalise `args` (without argv[0]) per `dialect`.
pub fn normalise(args: &[String], dialect: Dialect<'_>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest_is_positional = false;
    for a in args {
        if a.is_empty() {
            continue;
        }
        if rest_is_positional {
            out.push(a.clone());
            continue;
        }
        if a == "--" {
            rest_is_positional = true;
            out.push(a.clone());
            continue;
        }
        let (name, value) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if let Some((long, short)) = a
            .strip_prefix("--no-")
            .and_then(|n| dialect.negatable.iter().find(|(long, _)| *long == n))
        {
            let (long, short) = (format!("--{long}"), format!("-{short}"));
            out.retain(|o| *o != long && *o != short);
            continue;
        }
        let name = dialect
            .aliases
            .iter()
            .find(|(alias, _)| *alias == name)
            .map(|(_, canon)| canon.to_string())
            .unwrap_or(name);
        let short_group = name.len() > 2
            && name.starts_with('-')
            && !name.starts_with("--")
            && name.chars().skip(1).all(|c| dialect.switches.contains(&c));
        if short_group && value.is_none() {
            out.extend(name.chars().skip(1).map(|c| format!("-{c}")));
            continue;
        }
        out.push(name);
        if let Some(v) = value {
            out.push(v);
        }
    }
    out
}

/// Parse `argv` (argv[0] = the applet name) into `T`. On `--help` or a parse error, returns the
/// exit code to use after printing the message.
pub fn parse<T: FromArgs>(argv: &[String]) -> Result<T, ExitCode> {
    parse_dialect(argv, Dialect::default())
}

pub fn parse_dialect<T: FromArgs>(argv: &[String], dialect: Dialect<'_>) -> Result<T, ExitCode> {
    let name = argv.first().map(String::as_str).unwrap_or("noports");
    let name = name.rsplit('/').next().unwrap_or(name);
    let rest = normalise(argv.get(1..).unwrap_or(&[]), dialect);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn normalises_like_the_dart_parser() {
        let d = Dialect {
            aliases: &[("--po", "--permit-open")],
            switches: &['s', 'u', 'v'],
            negatable: &[("verbose", 'v'), ("sshpublickey", 's')],
        };
        assert_eq!(
            normalise(&s(&["", "-su", "--po=localhost:22", "-a", "@x", "-v"]), d),
            s(&[
                "-s",
                "-u",
                "--permit-open",
                "localhost:22",
                "-a",
                "@x",
                "-v"
            ])
        );
        assert_eq!(
            normalise(&s(&["-sx"]), d),
            s(&["-sx"]),
            "unknown letters are left for argh to reject"
        );
        assert_eq!(
            normalise(&s(&["-sv", "--no-verbose", "--no-sshpublickey", "-v"]), d),
            s(&["-v"]),
            "--no-X cancels what came before it, not what comes after"
        );
        assert_eq!(normalise(&s(&["--no-hide"]), d), s(&["--no-hide"]));
    }
}
