//! The CRAM secret of a new atSign from its registrar (atprotocol.md §11.1): the registrar
//! sends a verification code to the owner's email or phone, the owner types it here, and the
//! registrar answers with the secret that `onboard` then uses.
use crate::at::https::{post_json, Answer};
use crate::at::AtSign;
use crate::json::{self, Object};

/// The registrar the official CLI uses (`-g/--registrarUrl`).
pub const DEFAULT_REGISTRAR: &str = "my.atsign.com";
const API: &str = "/api/app/v3";
/// The public application key the official CLIs send as `Authorization`: it names the client
/// program, it is not a secret of anyone's (it ships in every open-source at_activate).
const APP_KEY: &str = "477b-876u-bcez-c42z-6a3d";

/// Asks `registrar` (`host` or `host:port`) to send `atsign`'s owner a verification code, reads
/// the code with `read_code`, and returns the CRAM secret.
///
/// # Errors
/// A sentence for the user: registrar unreachable, code not sent, code refused.
pub async fn cram_secret(
    registrar: &str,
    atsign: &AtSign,
    read_code: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    let (host, port) = split_host_port(registrar)?;
    let body = Object::new().with("atsign", atsign.as_str()).to_json();
    let sent = call(&host, port, "/authenticate/atsign", &body).await?;
    if sent.status != 200 || !sent.body.contains("Sent Successfully") {
        return Err(format!(
            "the registrar {registrar} did not send a verification code for {atsign}: {}",
            why(&sent)
        ));
    }
    let code = read_code()?;
    if code.is_empty() {
        return Err("no verification code was entered".into());
    }
    let body = Object::new()
        .with("atsign", atsign.as_str())
        .with("otp", code.as_str())
        .to_json();
    let verified = call(&host, port, "/authenticate/atsign/activate", &body).await?;
    let cramkey = json::parse(&verified.body)
        .ok()
        .and_then(|v| v.as_object()?.get_str("cramkey").map(str::to_string));
    match cramkey {
        Some(k) if verified.status == 200 => {
            // "<atsign>:<secret>": the secret is what follows the first ':'.
            let secret = k.split_once(':').map_or(k.as_str(), |(_, s)| s).trim();
            if secret.is_empty() {
                return Err(format!("the registrar {registrar} sent an empty secret"));
            }
            Ok(secret.to_string())
        }
        _ => Err(format!(
            "the registrar {registrar} did not accept the verification code: {}",
            why(&verified)
        )),
    }
}

async fn call(host: &str, port: u16, path: &str, body: &str) -> Result<Answer, String> {
    post_json(
        host,
        port,
        &format!("{API}{path}"),
        &[("Authorization", APP_KEY)],
        body,
    )
    .await
    .map_err(|e| format!("cannot reach the registrar {host}:{port} (-g/--registrarUrl): {e}"))
}

/// The registrar's own words (`message`), else the HTTP status.
fn why(a: &Answer) -> String {
    json::parse(&a.body)
        .ok()
        .and_then(|v| v.as_object()?.get_str("message").map(str::to_string))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP status {}", a.status))
}

fn split_host_port(registrar: &str) -> Result<(String, u16), String> {
    let r = registrar
        .trim()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse()
                .map_err(|_| format!("bad registrar address {registrar:?}"))?,
        ),
        None => (r, 443),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("bad registrar address {registrar:?}"));
    }
    Ok((host.to_string(), port))
}

/// Reads one line from the terminal (or stdin) after printing `prompt`.
pub fn read_code_from_stdin(prompt: &str) -> Result<String, String> {
    use std::io::Write;
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the verification code: {e}"))?;
    Ok(line.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn registrar_addresses() {
        assert_eq!(
            split_host_port("my.atsign.com").unwrap(),
            ("my.atsign.com".into(), 443)
        );
        assert_eq!(
            split_host_port("https://localhost:8443/").unwrap(),
            ("localhost".into(), 8443)
        );
        assert!(split_host_port("host:x").is_err());
        assert!(split_host_port(":1").is_err());
    }
}
