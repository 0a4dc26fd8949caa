//! The router builds run: each foreign-architecture binary built by `scripts/router-build.sh`
//! (`make packages`, or `make test` for aarch64 and mipsel) runs under qemu-user: `--version`,
//! `--list`, and a full session in which the foreign `sshnpd` under qemu serves an x86_64 `npt`
//! through the x86_64 atserver and srvd on loopback, moving 1 MiB verified each way.
//!
//! A missing binary or qemu skips that architecture with a message, except for the arches
//! named in NOPORTS_REQUIRE_ROUTER_ARCHES (comma separated; `make test` names aarch64_cortex-a53
//! and mipsel_24kc), which must be present.
#[path = "common/stack.rs"]
mod stack;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stack::*;

struct Arch {
    openwrt: &'static str,
    triple: &'static str,
    qemu: &'static str,
    /// ELF e_machine and EI_DATA (1 little, 2 big endian).
    machine: u16,
    data: u8,
}

const ARCHES: &[Arch] = &[
    Arch {
        openwrt: "aarch64_cortex-a53",
        triple: "aarch64-unknown-linux-musl",
        qemu: "qemu-aarch64-static",
        machine: 183,
        data: 1,
    },
    Arch {
        openwrt: "arm_cortex-a7_neon-vfpv4",
        triple: "armv7-unknown-linux-musleabihf",
        qemu: "qemu-arm-static",
        machine: 40,
        data: 1,
    },
    Arch {
        openwrt: "mipsel_24kc",
        triple: "mipsel-unknown-linux-musl",
        qemu: "qemu-mipsel-static",
        machine: 8,
        data: 1,
    },
    Arch {
        openwrt: "mips_24kc",
        triple: "mips-unknown-linux-musl",
        qemu: "qemu-mips-static",
        machine: 8,
        data: 2,
    },
];

fn arch(openwrt: &str) -> &'static Arch {
    ARCHES.iter().find(|a| a.openwrt == openwrt).unwrap()
}

fn required(a: &Arch) -> bool {
    std::env::var("NOPORTS_REQUIRE_ROUTER_ARCHES")
        .map(|v| v.split(',').any(|x| x.trim() == a.openwrt))
        .unwrap_or(false)
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// The foreign binary and the qemu that runs it, or `None` (with a message) when this
/// architecture is not built here and not required.
fn foreign(a: &Arch) -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("NOPORTS_ROUTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/router"));
    let bin = dir.join(a.triple).join("release/noports");
    let qemu = which(a.qemu);
    match (bin.is_file(), qemu) {
        (true, Some(q)) => Some((bin, q)),
        (has_bin, q) => {
            let why = if !has_bin {
                format!(
                    "{} not built (scripts/router-build.sh {})",
                    bin.display(),
                    a.openwrt
                )
            } else {
                format!("{} not installed (scripts/test-deps.sh)", a.qemu)
            };
            assert!(!required(a), "{} is required: {why}", a.openwrt);
            let _ = q;
            eprintln!("skipping {}: {why}", a.openwrt);
            None
        }
    }
}

/// An unsigned ELF field of `len` bytes at `off` in the file's byte order.
fn elf_u(elf: &[u8], data: u8, off: usize, len: usize) -> u64 {
    let b = &elf[off..off + len];
    let it: Box<dyn Iterator<Item = &u8>> = if data == 1 {
        Box::new(b.iter().rev())
    } else {
        Box::new(b.iter())
    };
    it.fold(0, |v, &x| v << 8 | x as u64)
}

fn run(qemu: &Path, bin: &Path, args: &[&str]) -> String {
    let out = Command::new(qemu)
        .arg(bin)
        .args(args)
        .output()
        .expect("run qemu");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_router_binary_is_static_for_its_cpu_and_runs_under_qemu() {
    let mut ran = 0;
    for a in ARCHES {
        let Some((bin, qemu)) = foreign(a) else {
            continue;
        };
        let elf = std::fs::read(&bin).unwrap();
        assert_eq!(&elf[..4], b"\x7fELF", "{}", a.openwrt);
        assert_eq!(elf[5], a.data, "{}: endianness", a.openwrt);
        assert_eq!(
            elf_u(&elf, a.data, 18, 2),
            a.machine as u64,
            "{}",
            a.openwrt
        );
        // Static: no PT_INTERP (3) or PT_DYNAMIC (2) program header, so no loader is needed.
        let wide = elf[4] == 2;
        let (phoff, phentsize, phnum) = if wide {
            (
                elf_u(&elf, a.data, 0x20, 8),
                elf_u(&elf, a.data, 0x36, 2),
                elf_u(&elf, a.data, 0x38, 2),
            )
        } else {
            (
                elf_u(&elf, a.data, 0x1c, 4),
                elf_u(&elf, a.data, 0x2a, 2),
                elf_u(&elf, a.data, 0x2c, 2),
            )
        };
        for i in 0..phnum {
            let p_type = elf_u(&elf, a.data, (phoff + i * phentsize) as usize, 4);
            assert!(
                p_type != 2 && p_type != 3,
                "{}: dynamically linked",
                a.openwrt
            );
        }
        let version = run(&qemu, &bin, &["--version"]);
        assert!(version.starts_with("noports "), "{}: {version}", a.openwrt);
        let list = run(&qemu, &bin, &["--list"]);
        for applet in ["sshnpd", "sshnp", "npt", "srvd", "srv", "at_activate"] {
            assert!(
                list.lines().any(|l| l == applet),
                "{}: --list lacks {applet}: {list}",
                a.openwrt
            );
        }
        // The router build leaves the atserver out.
        assert!(!list.lines().any(|l| l == "atserver"), "{}", a.openwrt);
        let help = run(&qemu, &bin, &["sshnpd", "--help"]);
        assert!(help.contains("--permit-open"), "{}: {help}", a.openwrt);
        eprintln!("{}: {}", a.openwrt, version.trim());
        ran += 1;
    }
    eprintln!("{ran} foreign binaries ran under qemu");
}

/// The foreign sshnpd under qemu serves a session for the native npt: 1 MiB each way,
/// verified byte for byte, on the default (nps1) data plane, then a shorter transfer on the
/// official AES-256-CTR one.
fn session_through_foreign_daemon(a: &Arch) {
    let Some((bin, qemu)) = foreign(a) else {
        return;
    };
    let native = Path::new(env!("CARGO_BIN_EXE_noports"));
    let stack = Stack::start(native, &format!("qemu-{}", a.openwrt), &[]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");
    let mut sshnpd = Command::new(qemu);
    sshnpd.arg(&bin);
    let daemon =
        stack.start_daemon_with(stack.command_of(sshnpd, "sshnpd"), "qdev", CLIENT, &permit);

    let npt = stack.npt(CLIENT, "qdev", "127.0.0.1", service, &["-T", "5s", "-v"]);
    let port = npt_port(&npt).unwrap_or_else(|e| panic!("{e}\n{}", daemon.output()));
    let (n, secs) = transfer_and_verify(port, 1024 * 1024).unwrap();
    npt.wait_for("uses the nps1 data plane", Duration::from_secs(5))
        .unwrap();
    eprintln!(
        "{}: {n} bytes each way verified through the foreign sshnpd in {secs:.2} s (nps1)",
        a.openwrt
    );
    drop(npt);

    let npt = stack.npt(
        CLIENT,
        "qdev",
        "127.0.0.1",
        service,
        &["-T", "5s", "-v", "--suite", "official"],
    );
    let port = npt_port(&npt).unwrap_or_else(|e| panic!("{e}\n{}", daemon.output()));
    let (n, secs) = transfer_and_verify(port, 256 * 1024).unwrap();
    npt.wait_for("uses the official data plane", Duration::from_secs(5))
        .unwrap();
    eprintln!(
        "{}: {n} bytes each way verified in {secs:.2} s (official)",
        a.openwrt
    );
}

#[test]
fn aarch64_sshnpd_under_qemu_serves_a_session() {
    session_through_foreign_daemon(arch("aarch64_cortex-a53"));
}

#[test]
fn mipsel_sshnpd_under_qemu_serves_a_session() {
    session_through_foreign_daemon(arch("mipsel_24kc"));
}

#[test]
fn mips_big_endian_sshnpd_under_qemu_serves_a_session() {
    session_through_foreign_daemon(arch("mips_24kc"));
}

#[test]
fn armv7_sshnpd_under_qemu_serves_a_session() {
    session_through_foreign_daemon(arch("arm_cortex-a7_neon-vfpv4"));
}
