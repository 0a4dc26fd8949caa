//! The rust-version in Cargo.toml is true: the crate (default features, the lock file as
//! committed) builds with exactly that toolchain. scripts/test-deps.sh installs it through
//! rustup, so the test is `#[ignore]`d for a plain `cargo test`; `make test` installs the
//! toolchain and runs it with `--ignored`, and then a missing toolchain fails it.
use std::process::Command;

fn rust_version() -> String {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml declares rust-version")
        .to_string()
}

#[test]
#[ignore = "needs the rust-version toolchain: scripts/test-deps.sh installs it with rustup; make test runs it"]
fn builds_with_the_declared_minimum_rust_version() {
    let msrv = rust_version();
    let have = Command::new("rustup")
        .args(["run", &msrv, "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have,
        "toolchain {msrv} is not installed: run scripts/test-deps.sh (rustup toolchain install {msrv})"
    );
    let out = Command::new("cargo")
        .args([
            &format!("+{msrv}"),
            "check",
            "--locked",
            "--lib",
            "--bins",
            "--quiet",
        ])
        .env(
            "CARGO_TARGET_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/msrv"),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo +{msrv} check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
