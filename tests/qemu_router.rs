//! The router builds run: each binary built by `scripts/router-build.sh` is a static ELF for
//! its CPU and runs (under qemu-user when foreign): `--version`, `--list`, and a full session
//! in which the router `sshnpd` serves the host's `npt` through the host's atserver and srvd on
//! loopback, moving 1 MiB verified each way.
//!
//! One test per OpenWrt arch, named after it, each `#[ignore]`d because it needs that build
//! (and its qemu): `make test` builds aarch64_cortex-a53 and mipsel_24kc and runs those two;
//! `make test-router-all` builds all five and runs them all. A missing build or qemu fails the
//! test, naming the command that provides it.
#[path = "common/stack.rs"]
mod stack;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stack::*;

struct Arch {
    openwrt: &'static str,
    triple: &'static str,
    /// The qemu-user that runs it; None for the host's own CPU.
    qemu: Option<&'static str>,
    /// ELF e_machine and EI_DATA (1 little, 2 big endian).
    machine: u16,
    data: u8,
}

const ARCHES: &[Arch] = &[
    Arch {
        openwrt: "x86_64",
        triple: "x86_64-unknown-linux-musl",
        qemu: None,
        machine: 62,
        data: 1,
    },
    Arch {
        openwrt: "aarch64_cortex-a53",
        triple: "aarch64-unknown-linux-musl",
        qemu: Some("qemu-aarch64-static"),
        machine: 183,
        data: 1,
    },
    Arch {
        openwrt: "arm_cortex-a7_neon-vfpv4",
        triple: "armv7-unknown-linux-musleabihf",
        qemu: Some("qemu-arm-static"),
        machine: 40,
        data: 1,
    },
    Arch {
        openwrt: "mipsel_24kc",
        triple: "mipsel-unknown-linux-musl",
        qemu: Some("qemu-mipsel-static"),
        machine: 8,
        data: 1,
    },
    Arch {
        openwrt: "mips_24kc",
        triple: "mips-unknown-linux-musl",
        qemu: Some("qemu-mips-static"),
        machine: 8,
        data: 2,
    },
];

fn arch(openwrt: &str) -> &'static Arch {
    ARCHES.iter().find(|a| a.openwrt == openwrt).unwrap()
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// The router binary and how to start it (through qemu when foreign); panics naming the
/// command that builds or installs what is missing, since a test that did not run must not pass.
fn foreign(a: &Arch) -> Runner {
    let dir = std::env::var_os("NOPORTS_ROUTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/router"));
    let bin = dir.join(a.triple).join("release/noports");
    assert!(
        bin.is_file(),
        "{}: {} is not built: run scripts/router-build.sh {} (or make packages)",
        a.openwrt,
        bin.display(),
        a.openwrt
    );
    let qemu = a.qemu.map(|q| {
        which(q).unwrap_or_else(|| {
            panic!(
                "{}: {q} is not installed: run scripts/test-deps.sh (qemu-user-static)",
                a.openwrt
            )
        })
    });
    Runner { bin, qemu }
}

/// A router binary and the qemu-user that runs it (None: it runs on this CPU).
struct Runner {
    bin: PathBuf,
    qemu: Option<PathBuf>,
}

impl Runner {
    /// A command that runs the router binary.
    fn command(&self) -> Command {
        match &self.qemu {
            Some(q) => {
                let mut c = Command::new(q);
                c.arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
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

fn run(r: &Runner, args: &[&str]) -> String {
    let out = r.command().args(args).output().expect("run qemu");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        r.bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The router binary is a static ELF for its CPU and byte order and runs: `--version`,
/// `--list` (the router applets, no atserver), `sshnpd --help`.
fn static_for_its_cpu_and_runs(a: &Arch, r: &Runner) {
    let elf = std::fs::read(&r.bin).unwrap();
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
    let version = run(r, &["--version"]);
    assert!(version.starts_with("noports "), "{}: {version}", a.openwrt);
    let list = run(r, &["--list"]);
    for applet in ["sshnpd", "sshnp", "npt", "srvd", "srv", "at_activate"] {
        assert!(
            list.lines().any(|l| l == applet),
            "{}: --list lacks {applet}: {list}",
            a.openwrt
        );
    }
    // The router build leaves the atserver out.
    assert!(!list.lines().any(|l| l == "atserver"), "{}", a.openwrt);
    let help = run(r, &["sshnpd", "--help"]);
    assert!(help.contains("--permit-open"), "{}: {help}", a.openwrt);
    eprintln!("{}: {}", a.openwrt, version.trim());
}

/// The router sshnpd (under qemu when foreign) serves a session for the native npt: 1 MiB
/// each way, verified byte for byte, on the default (nps1) data plane, then a shorter transfer
/// on the official AES-256-CTR one.
fn session_through_foreign_daemon(a: &Arch, r: &Runner) {
    let native = Path::new(env!("CARGO_BIN_EXE_noports"));
    let stack = Stack::start(native, &format!("qemu-{}", a.openwrt), &[]);
    let service = start_plus_one_service();
    let permit = format!("127.0.0.1:{service}");
    let sshnpd = r.command();
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

/// Every check on one arch's router build.
fn router_arch(openwrt: &str) {
    let a = arch(openwrt);
    let r = foreign(a);
    static_for_its_cpu_and_runs(a, &r);
    session_through_foreign_daemon(a, &r);
}

// Each test is the OpenWrt arch's name with '-' as '_': the Makefile picks them by that name.

#[test]
#[ignore = "needs target/router/aarch64-unknown-linux-musl and qemu-aarch64-static: make test builds both and runs it"]
fn aarch64_cortex_a53() {
    router_arch("aarch64_cortex-a53");
}

#[test]
#[ignore = "needs target/router/mipsel-unknown-linux-musl and qemu-mipsel-static: make test builds both and runs it"]
fn mipsel_24kc() {
    router_arch("mipsel_24kc");
}

#[test]
#[ignore = "needs target/router/mips-unknown-linux-musl (make packages) and qemu-mips-static: make test-router-all builds and runs it"]
fn mips_24kc() {
    router_arch("mips_24kc");
}

#[test]
#[ignore = "needs target/router/armv7-unknown-linux-musleabihf (make packages) and qemu-arm-static: make test-router-all builds and runs it"]
fn arm_cortex_a7_neon_vfpv4() {
    router_arch("arm_cortex-a7_neon-vfpv4");
}

#[test]
#[ignore = "needs target/router/x86_64-unknown-linux-musl (make static): make test builds and runs it"]
fn x86_64() {
    router_arch("x86_64");
}
