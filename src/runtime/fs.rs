//! Files that must never be half-written, world-readable or redirected: atomic 0600 writes.
//!
//! # Security
//! The daemon runs as root and may write where a less privileged user can also write (that
//! user's `~/.ssh`, a status file under `/tmp`). A planted symlink must never make root write
//! somewhere else, so:
//! - the temporary file gets an unpredictable name and is opened with exclusive create and
//!   `O_NOFOLLOW` (a name planted in advance is an error, never followed);
//! - a target that is a symlink is refused, except the documented OpenWrt layout: a link that
//!   root (or this process's user) owns, pointing at dropbear's `/etc/dropbear/authorized_keys`;
//!   the file it points at is then replaced;
//! - a parent directory that is a symlink must be owned by root or by this process's user
//!   (OpenWrt's `/var -> /tmp` is root's; a link planted in a user's home is not).
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The one symlink target the writer follows: OpenWrt's dropbear reads root's keys here, and
/// `~/.ssh/authorized_keys` is commonly a link to it (docs/openwrt.md).
const DROPBEAR_AUTHORIZED_KEYS: &str = "/etc/dropbear/authorized_keys";

/// Attempts at a fresh temporary name before giving up (each collision is an `EEXIST`).
const TMP_ATTEMPTS: u32 = 8;

fn refused(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, what)
}

/// True when a symlink with these metadata may be followed: root or we own it.
fn trusted_link(meta: &std::fs::Metadata) -> bool {
    let uid = meta.uid();
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Where a write to `path` really goes, after the symlink rules of this module.
fn resolve_target(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let to = std::fs::read_link(path)?;
            if trusted_link(&m) && to == Path::new(DROPBEAR_AUTHORIZED_KEYS) {
                Ok(to)
            } else {
                Err(refused(format!(
                    "{} is a symlink (to {}): refusing to write through it; only a link owned \
                     by root to {DROPBEAR_AUTHORIZED_KEYS} is followed",
                    path.display(),
                    to.display()
                )))
            }
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// An unpredictable suffix for the temporary name. std seeds `RandomState` from the OS's
/// random source; this module may not import `crypto/` (it sits below it).
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Write `data` to `path` atomically: a temporary file in the same directory (mode 0600,
/// exclusive create, no-follow, random name), fsync, rename over the target, fsync the
/// directory.
///
/// # Errors
/// I/O errors, and `PermissionDenied` for a target or directory that is a symlink this
/// module does not follow (see the module docs).
pub fn write_atomic_0600(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let path = resolve_target(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    if let Ok(m) = std::fs::symlink_metadata(dir) {
        if m.file_type().is_symlink() && !trusted_link(&m) {
            return Err(refused(format!(
                "directory {} is a symlink owned by uid {}: refusing to write {}",
                dir.display(),
                m.uid(),
                path.display()
            )));
        }
    }
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let mut attempt = 0;
    let (tmp, mut f) = loop {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp{}", random_suffix()));
        let tmp = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < TMP_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    drop(f);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `$HOME`, or an error naming what is missing.
pub fn home_dir() -> std::io::Result<std::path::PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("np-fs-{tag}-{}", random_suffix()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_0600_and_replaces() {
        let d = scratch("plain");
        let p = d.join("f");
        write_atomic_0600(&p, b"one").unwrap();
        write_atomic_0600(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing left behind but the file.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// The attack: a user who can write in the directory plants a symlink at the target,
    /// hoping root overwrites the file it points at. Refused; the victim is untouched.
    #[test]
    fn refuses_a_planted_symlink_target() {
        let d = scratch("link");
        let victim = d.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let p = d.join("authorized_keys");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let e = write_atomic_0600(&p, b"attacker's key").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        std::fs::remove_dir_all(d).unwrap();
    }

    /// The temporary name is unpredictable; even a name planted in advance (here: every name
    /// the old writer would have used) is never opened through a link.
    #[test]
    fn a_planted_old_style_temporary_name_is_not_followed() {
        let d = scratch("tmp");
        let victim = d.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let p = d.join("status");
        let old_tmp = d.join(format!(".status.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        write_atomic_0600(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A user replaces their own `~/.ssh` with a link to root's: the daemon (root) must not
    /// follow it.
    #[test]
    fn refuses_a_directory_link_owned_by_another_user() {
        let d = scratch("dirlink");
        let real = d.join("root-ssh");
        std::fs::create_dir_all(&real).unwrap();
        let link = d.join("user-ssh");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        // Giving the link to another user needs root, as make test runs (CI is root).
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534))
            .expect("this test needs root to give a symlink to another user");
        let e = write_atomic_0600(&link.join("authorized_keys"), b"k").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(!real.join("authorized_keys").exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn random_names_differ() {
        assert_ne!(random_suffix(), random_suffix());
    }
}
