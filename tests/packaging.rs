//! OpenWrt packaging: builds the .ipk with scripts/ipk.sh and checks its layout, the control
//! metadata, the maintainer scripts and the procd init script's command-line builder.
//!
//! The .ipk is built from the static musl binary when it exists
//! (target/x86_64-unknown-linux-musl/release/noports, `make static`), otherwise from the
//! binary cargo built for this test run. Needs only sh, tar and gzip.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const APPLETS: [&str; 6] = ["sshnpd", "at_activate", "npt", "sshnp", "srvd", "srv"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tempdir(tag: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "noports-pkg-{tag}-{}-{n}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    check(cmd.output().unwrap(), &what)
}

fn binary() -> PathBuf {
    let musl = root().join("target/x86_64-unknown-linux-musl/release/noports");
    if musl.is_file() {
        musl
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_noports"))
    }
}

/// The .ipk, built once, and a directory with its outer members unpacked.
struct Ipk {
    path: PathBuf,
    dir: PathBuf,
}

fn ipk() -> &'static Ipk {
    static IPK: OnceLock<Ipk> = OnceLock::new();
    IPK.get_or_init(|| {
        let out = tempdir("out");
        let stdout = run(Command::new("sh")
            .arg(root().join("scripts/ipk.sh"))
            .arg("--bin")
            .arg(binary())
            .arg("--out")
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        let path = PathBuf::from(stdout.lines().next().unwrap());
        assert!(path.is_file(), "{stdout}");
        let size = fs::metadata(&path).unwrap().len();
        assert!(
            stdout.contains(&format!("size: {size} bytes")),
            "script must print the size: {stdout}"
        );
        let dir = tempdir("unpacked");
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&path)
            .arg("-C")
            .arg(&dir));
        for inner in ["control", "data"] {
            let d = dir.join(inner);
            fs::create_dir_all(&d).unwrap();
            run(Command::new("tar")
                .arg("-xzf")
                .arg(dir.join(format!("{inner}.tar.gz")))
                .arg("-C")
                .arg(&d));
        }
        Ipk { path, dir }
    })
}

#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    name: String,
}

/// `tar -tvzf` listing: modes and owners as stored, independent of the umask.
fn listing(tarball: &Path) -> Vec<Entry> {
    run(Command::new("tar").arg("-tvzf").arg(tarball))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Entry {
                mode: f[0].to_string(),
                owner: f[1].to_string(),
                name: f[5].to_string(),
            }
        })
        .collect()
}

fn entry<'a>(list: &'a [Entry], name: &str) -> &'a Entry {
    list.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} missing from {list:?}"))
}

fn version() -> String {
    let toml = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = toml.lines().find(|l| l.starts_with("version")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn outer_archive_is_gzip_tar_in_opkg_order() {
    let ipk = ipk();
    let name = ipk.path.file_name().unwrap().to_str().unwrap();
    assert_eq!(name, format!("noports_{}-r1_x86_64.ipk", version()));
    let bytes = fs::read(&ipk.path).unwrap();
    assert_eq!(
        &bytes[..2],
        &[0x1f, 0x8b],
        "outer layer must be gzip, not ar"
    );
    let outer = listing(&ipk.path);
    let names: Vec<&str> = outer.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    );
    for e in &outer {
        assert_eq!(e.owner, "0/0", "{e:?}");
    }
    assert_eq!(
        fs::read_to_string(ipk.dir.join("debian-binary")).unwrap(),
        "2.0\n"
    );
    for inner in ["data.tar.gz", "control.tar.gz"] {
        assert_eq!(&fs::read(ipk.dir.join(inner)).unwrap()[..2], &[0x1f, 0x8b]);
    }
}

#[test]
fn control_fields_and_conffiles() {
    let ipk = ipk();
    let control = fs::read_to_string(ipk.dir.join("control/control")).unwrap();
    let fields: Vec<(&str, &str)> = control
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| {
            l.split_once(": ")
                .unwrap_or_else(|| panic!("bad line {l:?}"))
        })
        .collect();
    let keys: Vec<&str> = fields.iter().map(|f| f.0).collect();
    // The SDK's order (bracketed fields of the spec left out when unset).
    let sdk_order = [
        "Package",
        "Version",
        "Depends",
        "Conflicts",
        "Provides",
        "Alternatives",
        "Source",
        "SourceName",
        "License",
        "LicenseFiles",
        "Section",
        "Require-User",
        "SourceDateEpoch",
        "URL",
        "ABIVersion",
        "CPE-ID",
        "Status",
        "Essential",
        "Maintainer",
        "Architecture",
        "Installed-Size",
        "Description",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            sdk_order
                .iter()
                .position(|s| s == k)
                .unwrap_or_else(|| panic!("unexpected field {k}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "fields out of order: {keys:?}"
    );
    let get = |k: &str| fields.iter().find(|f| f.0 == k).map(|f| f.1).unwrap();
    assert_eq!(get("Package"), "noports");
    assert_eq!(get("Version"), format!("{}-r1", version()));
    let (upstream, rel) = get("Version").split_once("-r").unwrap();
    assert_eq!(upstream.split('.').count(), 3);
    assert!(upstream
        .split('.')
        .chain([rel])
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
    assert_eq!(get("Depends"), "libc");
    assert_eq!(get("Conflicts"), "csshnpd");
    assert_eq!(get("Provides"), "csshnpd");
    assert_eq!(get("Architecture"), "x86_64");
    assert_eq!(get("SourceDateEpoch"), "1700000000");
    assert_eq!(*keys.last().unwrap(), "Description");
    assert!(control.ends_with('\n'));

    // Installed-Size is the size of the uncompressed data tar.
    let data_tar = Command::new("gzip")
        .arg("-dc")
        .arg(ipk.dir.join("data.tar.gz"))
        .output()
        .unwrap();
    assert!(data_tar.status.success());
    assert_eq!(
        get("Installed-Size"),
        data_tar.stdout.len().to_string(),
        "Installed-Size"
    );

    // conffiles lists files only; the key directory goes to keep.d.
    assert_eq!(
        fs::read_to_string(ipk.dir.join("control/conffiles")).unwrap(),
        "/etc/config/sshnpd\n"
    );
    assert_eq!(
        fs::read_to_string(ipk.dir.join("data/lib/upgrade/keep.d/noports")).unwrap(),
        "/root/.atsign/\n"
    );

    let members = listing(&ipk.dir.join("control.tar.gz"));
    let names: Vec<&str> = members.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["./", "./conffiles", "./control", "./postinst", "./prerm"]
    );
    assert_eq!(entry(&members, "./control").mode, "-rw-r--r--");
    assert_eq!(entry(&members, "./conffiles").mode, "-rw-r--r--");
    assert_eq!(entry(&members, "./postinst").mode, "-rwxr-xr-x");
    assert_eq!(entry(&members, "./prerm").mode, "-rwxr-xr-x");
    for e in &members {
        assert_eq!(e.owner, "0/0", "{e:?}");
    }
}

#[test]
fn data_files_modes_and_owners() {
    let ipk = ipk();
    let data = listing(&ipk.dir.join("data.tar.gz"));
    for e in &data {
        assert!(e.name.starts_with("./"), "{e:?}");
        assert_eq!(e.owner, "0/0", "{e:?}");
        assert!(
            !e.mode.starts_with('l'),
            "applet links come from postinst: {e:?}"
        );
    }
    assert_eq!(entry(&data, "./usr/bin/noports").mode, "-rwxr-xr-x");
    assert_eq!(entry(&data, "./usr/bin/at_enroll.sh").mode, "-rwxr-xr-x");
    assert_eq!(entry(&data, "./etc/init.d/sshnpd").mode, "-rwxr-xr-x");
    assert_eq!(entry(&data, "./etc/config/sshnpd").mode, "-rw-------");
    entry(&data, "./lib/upgrade/keep.d/noports");

    let shipped = fs::read(ipk.dir.join("data/usr/bin/noports")).unwrap();
    assert_eq!(&shipped[..4], b"\x7fELF");
    assert!(shipped.len() as u64 <= fs::metadata(binary()).unwrap().len());

    let config = fs::read_to_string(ipk.dir.join("data/etc/config/sshnpd")).unwrap();
    assert!(config.contains("config sshnpd"));
    assert!(config.contains("option enabled '0'"));
    for opt in ["atsign", "manager", "device", "args", "otp"] {
        assert!(config.contains(&format!("\toption {opt} ")), "{opt}");
    }
}

#[test]
fn postinst_creates_applet_links_and_prerm_removes_them() {
    let ipk = ipk();
    let instroot = tempdir("instroot");
    fs::create_dir_all(instroot.join("usr/bin")).unwrap();
    let bin = instroot.join("usr/bin/noports");
    fs::copy(ipk.dir.join("data/usr/bin/noports"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let postinst = ipk.dir.join("control/postinst");
    let prerm = ipk.dir.join("control/prerm");

    // Image-build style: no /lib/functions.sh in the root; run twice (idempotent).
    for _ in 0..2 {
        run(Command::new("sh")
            .arg(&postinst)
            .env("IPKG_INSTROOT", &instroot));
    }
    for a in APPLETS {
        let link = instroot.join("usr/bin").join(a);
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("noports"), "{a}");
    }
    // The multicall binary picks the applet from argv[0].
    let help = Command::new(instroot.join("usr/bin/sshnpd"))
        .arg("--help")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&help.stdout).to_string() + &String::from_utf8_lossy(&help.stderr);
    assert!(text.contains("Usage: sshnpd"), "{text}");

    // On a device: the SDK's generic part is called.
    fs::create_dir_all(instroot.join("lib")).unwrap();
    fs::write(
        instroot.join("lib/functions.sh"),
        "default_postinst() { echo \"postinst $*\" >> \"$IPKG_INSTROOT/calls\"; }\n\
         default_prerm() { echo \"prerm $*\" >> \"$IPKG_INSTROOT/calls\"; }\n",
    )
    .unwrap();
    run(Command::new("sh")
        .arg(&postinst)
        .arg("configure")
        .env("IPKG_INSTROOT", &instroot));
    // IPKG_NO_SCRIPT=1 skips the generic part but keeps the links.
    run(Command::new("sh")
        .arg(&postinst)
        .env("IPKG_INSTROOT", &instroot)
        .env("IPKG_NO_SCRIPT", "1"));

    // A real file in the way is left alone.
    fs::remove_file(instroot.join("usr/bin/srv")).unwrap();
    fs::write(instroot.join("usr/bin/srv"), "not ours").unwrap();
    run(Command::new("sh")
        .arg(&prerm)
        .arg("remove")
        .env("IPKG_INSTROOT", &instroot));
    for a in APPLETS.iter().filter(|a| **a != "srv") {
        assert!(
            fs::symlink_metadata(instroot.join("usr/bin").join(a)).is_err(),
            "{a} left behind"
        );
    }
    assert!(instroot.join("usr/bin/srv").is_file());
    assert!(bin.is_file());
    let calls = fs::read_to_string(instroot.join("calls")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].starts_with("postinst ") && calls[0].ends_with("postinst configure"));
    assert!(calls[1].starts_with("prerm ") && calls[1].ends_with("prerm remove"));
}

#[test]
fn shell_scripts_parse() {
    let ipk = ipk();
    let files = root().join("openwrt/noports/files");
    for script in [
        ipk.dir.join("control/postinst"),
        ipk.dir.join("control/prerm"),
        files.join("sshnpd.init"),
        files.join("at_enroll.sh"),
        root().join("scripts/ipk.sh"),
    ] {
        run(Command::new("sh").arg("-n").arg(&script));
        let first = fs::read_to_string(&script).unwrap();
        assert!(first.starts_with("#!/bin/sh"), "{}", script.display());
    }
    let init = fs::read_to_string(files.join("sshnpd.init")).unwrap();
    assert!(init.starts_with("#!/bin/sh /etc/rc.common\n"));
    for needle in ["USE_PROCD=1", "START=80", "procd_add_reload_trigger"] {
        assert!(init.contains(needle), "{needle}");
    }
    let code_uses_eval = init
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.contains("eval"));
    assert!(!code_uses_eval, "args must not be eval'd");
}

/// Stand-ins for /lib/functions.sh and procd.sh: the config comes from CONFIG_* variables
/// (the same layout functions.sh uses), and every procd call is printed one value a line.
const STUBS: &str = r#"
config_load() { :; }
config_get() {
	eval "_cg=\${CONFIG_${2}_${3}-}"
	[ -n "$_cg" ] || _cg="$4"
	eval "$1=\$_cg"
}
config_get_bool() {
	config_get "$@"
	eval "_cb=\$$1"
	case "$_cb" in
		1|on|true|yes|enabled) _cb=1 ;;
		0|off|false|no|disabled) _cb=0 ;;
	esac
	eval "$1=\$_cb"
}
config_foreach() {
	_cf_fn="$1"
	for _cf_s in $CONFIG_SECTIONS; do "$_cf_fn" "$_cf_s"; done
}
config_list_foreach() {
	eval "_cl_n=\${CONFIG_${1}_${2}_LENGTH:-0}"
	_cl_i=1
	while [ "$_cl_i" -le "$_cl_n" ]; do
		eval "_cl_v=\${CONFIG_${1}_${2}_ITEM${_cl_i}}"
		"$3" "$_cl_v"
		_cl_i=$((_cl_i + 1))
	done
}
procd_open_instance() { echo "open $1"; }
procd_close_instance() { echo "close"; }
procd_set_param() { _p="$1"; shift; echo "set $_p"; for _a in "$@"; do echo "  [$_a]"; done; }
procd_append_param() { _p="$1"; shift; for _a in "$@"; do echo "  [$_a]"; done; }
procd_add_reload_trigger() { echo "trigger $*"; }
"#;

#[test]
fn init_script_builds_the_command_line() {
    let work = tempdir("init");
    let home = work.join("home");
    fs::create_dir_all(&home).unwrap();
    // Files a glob in args would match if expansion were not disabled.
    fs::write(work.join("globme"), "").unwrap();
    let pwned = work.join("pwned");
    let config = format!(
        r#"
CONFIG_SECTIONS="cfg1 cfg2 cfg3"
CONFIG_cfg1_enabled=1
CONFIG_cfg1_atsign='dev_atsign'
CONFIG_cfg1_manager='@mgr1,@mgr2'
CONFIG_cfg1_device='router'
CONFIG_cfg1_home='{home}'
CONFIG_cfg1_args='-v  --permit-open localhost:22 * $(touch {pwned}) "a b"'
CONFIG_cfg1_arg_LENGTH=1
CONFIG_cfg1_arg_ITEM1='--device-group my group'
CONFIG_cfg2_enabled=0
CONFIG_cfg2_atsign='@other'
CONFIG_cfg2_manager='@m'
CONFIG_cfg2_device='x'
CONFIG_cfg3_atsign='@third'
CONFIG_cfg3_device='y'
"#,
        home = home.display(),
        pwned = pwned.display()
    );
    let harness = work.join("harness.sh");
    fs::write(
        &harness,
        format!(
            "{STUBS}\n{config}\n. '{}'\nstart_service; echo \"rc $?\"\nservice_triggers\n",
            root().join("openwrt/noports/files/sshnpd.init").display()
        ),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg(&harness)
        .current_dir(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let keyfile = format!("{}/.atsign/keys/@dev_atsign_key.atKeys", home.display());
    let expected = format!(
        "open cfg1
set command
  [/usr/bin/sshnpd]
  [-a]
  [@dev_atsign]
  [-m]
  [@mgr1,@mgr2]
  [-d]
  [router]
  [-k]
  [{keyfile}]
  [-v]
  [--permit-open]
  [localhost:22]
  [*]
  [$(touch]
  [{pwned})]
  [\"a]
  [b\"]
  [--device-group my group]
set env
  [USER=root]
  [HOME={home}]
set stdout
  [1]
set stderr
  [1]
set respawn
  [3600]
  [10]
  [0]
set file
  [/etc/config/sshnpd]
close
rc 1
trigger sshnpd
",
        pwned = pwned.display(),
        home = home.display()
    );
    assert_eq!(stdout, expected, "stderr: {stderr}");
    assert!(!pwned.exists(), "args were evaluated by the shell");
    // cfg2 disabled: skipped silently; cfg3 lacks a manager: reported.
    assert!(
        stderr.contains("cfg3") && stderr.contains("manager"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARNING"),
        "missing key file is reported: {stderr}"
    );

    let ssh = home.join(".ssh");
    assert_eq!(
        fs::metadata(&ssh).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let ak = ssh.join("authorized_keys");
    assert_eq!(
        fs::metadata(&ak).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn sdk_makefile_and_luci_app() {
    let mk = fs::read_to_string(root().join("openwrt/noports/Makefile")).unwrap();
    for needle in [
        "PKG_BUILD_DEPENDS:=rust/host",
        "rust-package.mk",
        "--no-default-features",
        "CONFLICTS:=csshnpd",
        "PROVIDES:=csshnpd",
        "/etc/config/sshnpd\n/root/.atsign/\n",
        "$(LN) noports",
        "sshnpd at_activate npt sshnp srvd srv",
        "$(INSTALL_CONF) ./files/sshnpd.config",
        "$(eval $(call BuildPackage,noports))",
    ] {
        assert!(
            mk.contains(needle),
            "openwrt/noports/Makefile lacks {needle}"
        );
    }
    let luci = root().join("luci-app");
    let mk = fs::read_to_string(luci.join("Makefile")).unwrap();
    assert!(mk.contains("LUCI_PKGARCH:=all"));
    for json in [
        "root/usr/share/luci/menu.d/luci-app-noports.json",
        "root/usr/share/rpcd/acl.d/luci-app-noports.json",
    ] {
        let text = fs::read_to_string(luci.join(json)).unwrap();
        let v: Result<miniserde::json::Value, _> = miniserde::json::from_str(&text);
        assert!(v.is_ok(), "{json} is not valid JSON");
    }
    let acl =
        fs::read_to_string(luci.join("root/usr/share/rpcd/acl.d/luci-app-noports.json")).unwrap();
    assert!(!acl.contains("/bin/sh"), "no shell in the ACL");
    assert!(!acl.contains('*'), "no wildcards in the ACL");
    let menu =
        fs::read_to_string(luci.join("root/usr/share/luci/menu.d/luci-app-noports.json")).unwrap();
    assert!(menu.contains("\"admin/network/sshnpd\""));
    // JavaScript syntax, when node is available.
    let views = luci.join("htdocs/luci-static/resources/view/noports");
    for js in ["config.js", "enroll.js"] {
        let path = views.join(js);
        assert!(path.is_file(), "{js}");
        if let Ok(out) = Command::new("node").arg("--check").arg(&path).output() {
            check(out, &format!("node --check {js}"));
        }
    }
}
