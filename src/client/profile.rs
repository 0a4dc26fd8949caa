//! `sshnp --config-file`: the env-style profile of noports.md §10.1 (`KEY=VALUE` lines, `#`
//! comments), as the NoPorts desktop application writes them to `~/.sshnp/config/<name>.env`.
//!
//! Pure: text in, typed values out. The caller applies them under the command line's values.
//! Honoured keys: FROM, TO, DEVICE, SRVD, HOST, LOCAL_PORT, SEND_SSH_PUBLIC_KEY, LOCAL_SSH_OPTIONS,
//! REMOTE_USER_NAME, TUNNEL_USER_NAME, ROOT_DOMAIN, REMOTE_SSHD_PORT, AUTHENTICATE_CLIENT_TO_RVD,
//! AUTHENTICATE_DEVICE_TO_RVD, ENCRYPT_RVD_TRAFFIC; others are ignored.
//! One difference from the official reader, on purpose: a line is split at its *first* `=`, so
//! `LOCAL_SSH_OPTIONS=-o StrictHostKeyChecking=no` is used instead of silently dropped.

/// A profile is read whole; larger files are refused rather than read into memory.
pub const MAX_PROFILE_BYTES: u64 = 64 * 1024;

/// The values a profile sets; `None` where the file says nothing usable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Profile {
    pub from: Option<String>,
    pub to: Option<String>,
    pub device: Option<String>,
    pub srvd: Option<String>,
    pub host: Option<String>,
    pub local_port: Option<u16>,
    pub send_ssh_public_key: Option<bool>,
    pub local_ssh_options: Vec<String>,
    pub remote_user_name: Option<String>,
    pub tunnel_user_name: Option<String>,
    pub root_domain: Option<String>,
    pub remote_sshd_port: Option<u16>,
    pub authenticate_client_to_rvd: Option<bool>,
    pub authenticate_device_to_rvd: Option<bool>,
    pub encrypt_rvd_traffic: Option<bool>,
}

/// `true` in any case means true; anything else false (§10.1).
fn flag(v: &str) -> bool {
    v.eq_ignore_ascii_case("true")
}

/// Lenient integers: an invalid value means "unset" (§10.1).
fn port(v: &str) -> Option<u16> {
    v.parse().ok()
}

impl Profile {
    /// Parses a profile. Never fails: unknown keys, comments, blank and malformed lines are
    /// skipped, as the official reader does.
    pub fn parse(text: &str) -> Profile {
        let mut p = Profile::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                continue;
            }
            let text = || Some(value.to_string());
            match key {
                "FROM" => p.from = text(),
                "TO" => p.to = text(),
                "DEVICE" => p.device = text(),
                "SRVD" => p.srvd = text(),
                "HOST" => p.host = text(),
                "LOCAL_PORT" => p.local_port = port(value),
                "SEND_SSH_PUBLIC_KEY" => p.send_ssh_public_key = Some(flag(value)),
                "LOCAL_SSH_OPTIONS" => {
                    p.local_ssh_options = value
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(String::from)
                        .collect()
                }
                "REMOTE_USER_NAME" => p.remote_user_name = text(),
                "TUNNEL_USER_NAME" => p.tunnel_user_name = text(),
                "ROOT_DOMAIN" => p.root_domain = text(),
                "REMOTE_SSHD_PORT" => p.remote_sshd_port = port(value),
                "AUTHENTICATE_CLIENT_TO_RVD" => p.authenticate_client_to_rvd = Some(flag(value)),
                "AUTHENTICATE_DEVICE_TO_RVD" => p.authenticate_device_to_rvd = Some(flag(value)),
                "ENCRYPT_RVD_TRAFFIC" => p.encrypt_rvd_traffic = Some(flag(value)),
                _ => {}
            }
        }
        p
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is larger than [`MAX_PROFILE_BYTES`] or is not UTF-8.
    pub fn load(path: &str) -> Result<Profile, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read config file {path}: {e}"))?;
        if meta.len() > MAX_PROFILE_BYTES {
            return Err(format!(
                "config file {path} is larger than {MAX_PROFILE_BYTES} bytes"
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {path}: {e}"))?;
        Ok(Profile::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_keys_and_skips_the_rest() {
        let p = Profile::parse(
            "# a profile\nFROM=@alice\n TO = @bob \nDEVICE=lab\nSRVD=@rv_eu\nLOCAL_PORT=2222\n\
             SEND_SSH_PUBLIC_KEY=TRUE\nLOCAL_SSH_OPTIONS=-o ServerAliveInterval=30, -C\n\
             REMOTE_USER_NAME=pi\nREMOTE_SSHD_PORT=abc\nENCRYPT_RVD_TRAFFIC=yes\n\
             AUTHENTICATE_CLIENT_TO_RVD=true\nPROFILE_NAME=x\nUNKNOWN=1\nnot a pair\nTUNNEL_USER_NAME=\n",
        );
        assert_eq!(p.from.as_deref(), Some("@alice"));
        assert_eq!(p.to.as_deref(), Some("@bob"), "key and value are trimmed");
        assert_eq!(p.device.as_deref(), Some("lab"));
        assert_eq!(p.srvd.as_deref(), Some("@rv_eu"));
        assert_eq!(p.local_port, Some(2222));
        assert_eq!(p.send_ssh_public_key, Some(true), "true in any case");
        assert_eq!(
            p.local_ssh_options,
            vec!["-o ServerAliveInterval=30".to_string(), "-C".to_string()],
            "split at the first '=' only, then on commas"
        );
        assert_eq!(p.remote_user_name.as_deref(), Some("pi"));
        assert_eq!(p.remote_sshd_port, None, "an invalid integer is unset");
        assert_eq!(
            p.encrypt_rvd_traffic,
            Some(false),
            "anything but true is false"
        );
        assert_eq!(p.authenticate_client_to_rvd, Some(true));
        assert_eq!(p.tunnel_user_name, None, "empty values are ignored");
    }
}
