//! The `.atKeys` format against the real fixture of atprotocol.md §10.3 / §14.6.
use std::os::unix::fs::PermissionsExt;

use noports::at::{AtKeys, AtSign};
use noports::crypto::hash::md5_hex;
use noports::crypto::rsa::HashAlgo;

const FIXTURE: &str = include_str!("fixtures/valid/8incanteater.atkeys.json");

#[test]
fn official_fixture_loads_and_its_keys_pair_up() {
    let keys = AtKeys::parse(FIXTURE).expect("fixture parses");
    assert_eq!(
        keys.enrollment_id.as_deref(),
        Some("865839ed-856a-4c97-b475-7a8ead295f17")
    );
    assert!(keys.apkam_symmetric_key.is_some());
    let spki = keys.encrypt_public.to_spki_b64();
    assert_eq!(spki.len(), 392);
    assert!(spki.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"));
    // pubKeyCS another atSign would attach when sharing with @8incanteater (§14.6).
    assert_eq!(md5_hex(spki.as_bytes()), "3445ac24d0963855d391c507af922a2e");
    let sig = keys
        .pkam_private
        .sign(HashAlgo::Sha256, b"challenge")
        .unwrap();
    assert!(keys
        .pkam_public
        .verify(HashAlgo::Sha256, b"challenge", &sig));
    let sig = keys
        .encrypt_private
        .sign(HashAlgo::Sha256, b"payload")
        .unwrap();
    assert!(keys
        .encrypt_public
        .verify(HashAlgo::Sha256, b"payload", &sig));
}

#[test]
fn saving_reproduces_the_official_bytes_and_writes_0600_atomically() {
    let keys = AtKeys::parse(FIXTURE).unwrap();
    let atsign = AtSign::parse("@8incanteater").unwrap();
    // Zero IV + same key: our writer must reproduce the official ciphertexts exactly.
    let ours: std::collections::BTreeMap<String, String> = parse_flat(&keys.to_file_text(&atsign));
    let theirs = parse_flat(FIXTURE);
    assert_eq!(ours, theirs);
    let dir = std::env::temp_dir().join(format!("np-atkeys-{}", std::process::id()));
    let path = dir.join("keys").join("@8incanteater_key.atKeys");
    keys.save(&atsign, &path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = AtKeys::load(&path).unwrap();
    assert_eq!(again.encrypt_public, keys.encrypt_public);
    assert!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count() == 1,
        "no temp file left behind"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_files_are_errors_not_panics() {
    for bad in [
        "",
        "{",
        "[]",
        "{\"selfEncryptionKey\":\"x\"}",
        "{\"selfEncryptionKey\":\"AAAA\",\"aesPkamPublicKey\":\"AAAA\"}",
    ] {
        assert!(AtKeys::parse(bad).is_err(), "{bad:?} must be rejected");
    }
    let tampered = FIXTURE.replacen("+Jp1Vd", "+Jp1Ve", 1);
    assert!(AtKeys::parse(&tampered).is_err());
}

/// A flat JSON object of strings (test-side helper).
fn parse_flat(text: &str) -> std::collections::BTreeMap<String, String> {
    let v = noports::json::parse(text).unwrap();
    let obj = v.as_object().unwrap();
    obj.iter()
        .map(|(k, v)| (k.to_string(), v.as_str().unwrap().to_string()))
        .collect()
}
