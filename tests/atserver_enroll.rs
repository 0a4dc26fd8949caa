//! atserver APKAM enrollment and CRAM activation end to end (atprotocol.md §4.3, §7.11–§7.13,
//! §11.2, §11.5–§11.7).
#![cfg(feature = "atserver")]
#[path = "common/atserver.rs"]
mod atserver_harness;

use std::time::Duration;

use atserver_harness::{Client, TestAtServer};
use noports::crypto::aes_ctr::{decrypt_b64, encrypt_b64, ZERO_IV};
use noports::crypto::rsa::{HashAlgo, RsaPrivateKey, RsaPublicKey};
use noports::crypto::{b64, random};

fn field(json: &str, name: &str) -> String {
    let pat = format!("\"{name}\":\"");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        + pat.len();
    json[start..].split('"').next().unwrap().to_string()
}

/// An enrolling app's fresh keys.
struct Applicant {
    pkam: RsaPrivateKey,
    sym: [u8; 32],
}

impl Applicant {
    fn new() -> Applicant {
        Applicant {
            pkam: RsaPrivateKey::generate().unwrap(),
            sym: random::bytes::<32>(),
        }
    }

    fn request(&self, c: &mut Client, atsign: &str, device: &str, otp: &str) -> String {
        let pk = c.cmd(&format!("lookup:publickey{atsign}"));
        let enc_pub = RsaPublicKey::from_spki_b64(pk.strip_prefix("data:").unwrap()).unwrap();
        let wrapped = b64::encode(&enc_pub.encrypt(b64::encode(&self.sym).as_bytes()).unwrap());
        c.cmd(&format!(
            r#"enroll:request:{{"appName":"sshnpd","deviceName":"{device}","namespaces":{{"sshnp":"rw"}},"otp":"{otp}","encryptedAPKAMSymmetricKey":"{wrapped}","apkamPublicKey":"{}","apkamKeysExpiryInMillis":0}}"#,
            self.pkam.public_key().to_spki_b64()
        ))
    }

    fn pkam(&self, c: &mut Client, atsign: &str, id: &str) -> String {
        let ch = c.cmd(&format!("from:{atsign}"));
        let sig = b64::encode(
            &self
                .pkam
                .sign(
                    HashAlgo::Sha256,
                    ch.strip_prefix("data:").unwrap().as_bytes(),
                )
                .unwrap(),
        );
        c.cmd(&format!(
            "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:{id}:{sig}"
        ))
    }
}

#[test]
fn otp_enroll_approve_keys_get_namespaces_deny_revoke() {
    let s = TestAtServer::start(&["@alice"]);
    let keys = s.keys("@alice");
    let mut m = s.login("@alice", true);
    let mut mon = s.login("@alice", true);
    mon.send("monitor:selfNotifications");
    assert_eq!(mon.cmd("noop:50"), "data:ok");
    let otp = m.cmd("otp:get").strip_prefix("data:").unwrap().to_string();
    assert!(
        otp.len() >= 6
            && otp.chars().any(|c| c.is_ascii_digit())
            && !otp.contains('0')
            && !otp.contains('O'),
        "{otp}"
    );

    let app = Applicant::new();
    let mut e = s.client("@alice");
    let r = app.request(&mut e, "@alice", "router1", &otp);
    assert!(r.contains(r#""status":"pending""#), "{r}");
    let id = field(&r, "enrollmentId");
    let line = mon
        .wait_for(
            &format!("{id}.new.enrollments.__manage@alice"),
            Duration::from_secs(10),
        )
        .expect("self notification");
    assert!(
        line.contains("encryptedAPKAMSymmetricKey") && line.contains("router1"),
        "{line}"
    );
    // The OTP is single-use.
    let again = Applicant::new().request(&mut s.client("@alice"), "@alice", "router9", &otp);
    assert!(again.starts_with("error:AT0011"), "{again}");
    // Pending → AT0026.
    let mut p = s.client("@alice");
    assert_eq!(
        app.pkam(&mut p, "@alice", &id),
        format!("error:AT0026:enrollment_id: {id} is pending")
    );
    // Manager lists, fetches and approves.
    let list = m.cmd(r#"enroll:list:{"enrollmentStatusFilter":["pending"]}"#);
    assert!(
        list.contains(&format!("{id}.new.enrollments.__manage@alice"))
            && list.contains(r#""namespace":{"sshnp":"rw"}"#),
        "{list}"
    );
    let fetched = m.cmd(&format!(r#"enroll:fetch:{{"enrollmentId":"{id}"}}"#));
    let wrapped = field(&fetched, "encryptedAPKAMSymmetricKey");
    let sym_b64 = String::from_utf8(
        keys.encrypt_private
            .decrypt(&b64::decode(&wrapped).unwrap())
            .unwrap(),
    )
    .unwrap();
    let sym: [u8; 32] = b64::decode(&sym_b64).unwrap().try_into().unwrap();
    assert_eq!(sym, app.sym);
    let enc_priv = encrypt_b64(&sym, &ZERO_IV, &keys.encrypt_private.to_pkcs8_b64());
    let self_key = encrypt_b64(&sym, &ZERO_IV, &b64::encode(&keys.self_encryption_key));
    let r = m.cmd(&format!(
        r#"enroll:approve:{{"enrollmentId":"{id}","encryptedDefaultEncryptionPrivateKey":"{enc_priv}","encryptedDefaultSelfEncryptionKey":"{self_key}"}}"#
    ));
    assert_eq!(
        r,
        format!(r#"data:{{"status":"approved","enrollmentId":"{id}"}}"#)
    );
    // Approved: pkam works, keys:get returns the material.
    let mut n = s.client("@alice");
    assert_eq!(app.pkam(&mut n, "@alice", &id), "data:success");
    let v = n.cmd(&format!(
        "keys:get:keyName:{id}.default_enc_private_key.__manage@alice"
    ));
    let value = field(&v, "value");
    assert_eq!(
        decrypt_b64(&app.sym, &ZERO_IV, &value).unwrap(),
        keys.encrypt_private.to_pkcs8_b64()
    );
    let v = n.cmd(&format!(
        "keys:get:keyName:{id}.default_self_enc_key.__manage@alice"
    ));
    assert_eq!(
        decrypt_b64(&app.sym, &ZERO_IV, &field(&v, "value")).unwrap(),
        b64::encode(&keys.self_encryption_key)
    );
    // Namespace checks on the sshnp-only enrollment.
    assert!(n.cmd("update:x.mydev.sshnp@alice v").starts_with("data:"));
    assert!(n
        .cmd("update:@bob:x.mydev.sshnp@alice v")
        .starts_with("data:"));
    assert!(n.cmd("update:foo@alice v").starts_with("error:AT0009"));
    assert!(n.cmd("update:x.other@alice v").starts_with("error:AT0009"));
    assert!(
        n.cmd("llookup:shared_key.bob@alice")
            .starts_with("error:AT0015"),
        "reserved keys pass the check"
    );
    assert!(n.cmd("otp:get").starts_with("error:AT0011"), "no __manage");
    assert!(n
        .cmd(r#"enroll:approve:{"enrollmentId":"x"}"#)
        .starts_with("error:AT0011"));
    // Duplicate app/device while approved.
    let otp2 = m.cmd("otp:get").strip_prefix("data:").unwrap().to_string();
    let dup = Applicant::new().request(&mut s.client("@alice"), "@alice", "router1", &otp2);
    assert!(
        dup.starts_with("error:AT0011") && dup.contains("Another enrollment"),
        "{dup}"
    );
    // Deny with an SPP.
    assert_eq!(m.cmd("otp:put:MySpp2024"), "data:ok");
    let other = Applicant::new();
    let r = other.request(&mut s.client("@alice"), "@alice", "router2", "myspp2024");
    let id2 = field(&r, "enrollmentId");
    assert_eq!(
        m.cmd(&format!(r#"enroll:deny:{{"enrollmentId":"{id2}"}}"#)),
        format!(r#"data:{{"status":"denied","enrollmentId":"{id2}"}}"#)
    );
    assert_eq!(
        other.pkam(&mut s.client("@alice"), "@alice", &id2),
        format!("error:AT0025:enrollment_id: {id2} is denied")
    );
    // Revoke closes the live connection; new logins get AT0027.
    let r = m.cmd(&format!(r#"enroll:revoke:{{"enrollmentId":"{id}"}}"#));
    assert!(r.contains(r#""status":"revoked""#), "{r}");
    assert!(n.closed(), "revoked connection closed");
    assert_eq!(
        app.pkam(&mut s.client("@alice"), "@alice", &id),
        format!("error:AT0027:enrollment_id: {id} is revoked")
    );
    // Cannot revoke self without force.
    let own = keys.enrollment_id.clone().unwrap();
    assert!(m
        .cmd(&format!(r#"enroll:revoke:{{"enrollmentId":"{own}"}}"#))
        .starts_with("error:AT0031"));
    // Wrong OTP is refused (after a delay).
    let bad = Applicant::new().request(&mut s.client("@alice"), "@alice", "router3", "WRONG1");
    assert!(
        bad.starts_with("error:AT0011") && bad.contains("invalid otp"),
        "{bad}"
    );
}

#[test]
fn cram_first_activation() {
    let s = TestAtServer::start_with(&[], &["--create-cram", "@carol:s3cretSecret"]);
    let mut anon = s.client("@carol");
    assert!(
        anon.cmd("lookup:publickey@carol")
            .starts_with("error:AT0015"),
        "not activated yet"
    );
    assert!(anon.cram("@carol", "wrong").starts_with("error:AT0401"));
    // Connection 1: cram + first enroll (auto-approved).
    let mut c1 = s.client("@carol");
    assert_eq!(c1.cram("@carol", "s3cretSecret"), "data:success");
    let enc = RsaPrivateKey::generate().unwrap();
    let pkam = RsaPrivateKey::generate().unwrap();
    let self_key = random::bytes::<32>();
    let sym = random::bytes::<32>();
    let r = c1.cmd(&format!(
        r#"enroll:request:{{"appName":"firstApp","deviceName":"firstDevice","encryptedDefaultEncryptionPrivateKey":"{}","encryptedDefaultSelfEncryptionKey":"{}","apkamPublicKey":"{}"}}"#,
        encrypt_b64(&sym, &ZERO_IV, &enc.to_pkcs8_b64()),
        encrypt_b64(&sym, &ZERO_IV, &b64::encode(&self_key)),
        pkam.public_key().to_spki_b64()
    ));
    assert!(r.contains(r#""status":"approved""#), "{r}");
    let id = field(&r, "enrollmentId");
    drop(c1);
    // Connection 2: APKAM login, publish the public key, delete the CRAM secret.
    let mut c2 = s.client("@carol");
    let ch = c2.cmd("from:@carol");
    let sig = b64::encode(
        &pkam
            .sign(
                HashAlgo::Sha256,
                ch.strip_prefix("data:").unwrap().as_bytes(),
            )
            .unwrap(),
    );
    assert_eq!(
        c2.cmd(&format!(
            "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:{id}:{sig}"
        )),
        "data:success"
    );
    let pubkey = enc.public_key().to_spki_b64();
    assert!(c2
        .cmd(&format!(
            "update:isEncrypted:false:public:publickey@carol {pubkey}"
        ))
        .starts_with("data:"));
    assert_eq!(c2.cmd("delete:privatekey:at_secret"), "data:-1");
    let v = c2.cmd(&format!(
        "keys:get:keyName:{id}.default_enc_private_key.__manage@carol"
    ));
    assert_eq!(
        decrypt_b64(&sym, &ZERO_IV, &field(&v, "value")).unwrap(),
        enc.to_pkcs8_b64()
    );
    // Legacy PKAM with the first app's key works too (privatekey:at_pkam_publickey).
    let mut c3 = s.client("@carol");
    let ch = c3.cmd("from:@carol");
    let sig = b64::encode(
        &pkam
            .sign(
                HashAlgo::Sha256,
                ch.strip_prefix("data:").unwrap().as_bytes(),
            )
            .unwrap(),
    );
    assert_eq!(c3.cmd(&format!("pkam:{sig}")), "data:success");
    // CRAM no longer works; the public key is visible.
    assert!(s
        .client("@carol")
        .cram("@carol", "s3cretSecret")
        .starts_with("error:AT0401"));
    assert_eq!(anon.cmd("lookup:publickey@carol"), format!("data:{pubkey}"));
}

/// Issue 16: a device enrolled for `sshnp:rw` only (the documented sshnpd enrollment) stays
/// inside its namespace. It may use its own namespace, shared keys and the public keys, but
/// never writes identity keys, never reads private key material, and cannot delete, notify or
/// scan its way out. Every refusal is `AT0009` (UnAuthorized), as documented in docs/security.md.
#[test]
fn sshnp_enrollment_cannot_touch_identity_keys() {
    let s = TestAtServer::start(&["@alice"]);
    let keys = s.keys("@alice");
    let mut m = s.login("@alice", true);
    let otp = m.cmd("otp:get").strip_prefix("data:").unwrap().to_string();
    let app = Applicant::new();
    let r = app.request(&mut s.client("@alice"), "@alice", "router1", &otp);
    let id = field(&r, "enrollmentId");
    let sym_b64 = String::from_utf8(
        keys.encrypt_private
            .decrypt(
                &b64::decode(&field(
                    &m.cmd(&format!(r#"enroll:fetch:{{"enrollmentId":"{id}"}}"#)),
                    "encryptedAPKAMSymmetricKey",
                ))
                .unwrap(),
            )
            .unwrap(),
    )
    .unwrap();
    let sym: [u8; 32] = b64::decode(&sym_b64).unwrap().try_into().unwrap();
    let enc_priv = encrypt_b64(&sym, &ZERO_IV, &keys.encrypt_private.to_pkcs8_b64());
    let self_key = encrypt_b64(&sym, &ZERO_IV, &b64::encode(&keys.self_encryption_key));
    let r = m.cmd(&format!(
        r#"enroll:approve:{{"enrollmentId":"{id}","encryptedDefaultEncryptionPrivateKey":"{enc_priv}","encryptedDefaultSelfEncryptionKey":"{self_key}"}}"#
    ));
    assert!(r.contains("approved"), "{r}");
    // Stored identity before the attack.
    let pubkey_before = m.cmd("llookup:public:publickey@alice");
    let signing_pub_before = m.cmd("llookup:public:signing_publickey@alice");
    let pkam_before = m.cmd("llookup:privatekey:at_pkam_publickey");
    assert!(pubkey_before.starts_with("data:MII"), "{pubkey_before}");
    assert!(pkam_before.starts_with("data:MII"), "{pkam_before}");
    m.cmd("update:@bob:x.other@alice secret-of-another-app");
    m.cmd("update:_hidden.other@alice hidden");

    let mut d = s.client("@alice");
    assert_eq!(app.pkam(&mut d, "@alice", &id), "data:success");
    // What the device legitimately needs still works.
    assert!(d
        .cmd("update:@bob:x.mydev.sshnp@alice v")
        .starts_with("data:"));
    assert!(d
        .cmd("update:isEncrypted:false:@bob:shared_key@alice c2hhcmVk")
        .starts_with("data:"));
    assert!(d
        .cmd("update:shared_key.bob@alice c2VsZg==")
        .starts_with("data:"));
    assert_eq!(d.cmd("llookup:shared_key.bob@alice"), "data:c2VsZg==");
    assert_eq!(d.cmd("llookup:public:publickey@alice"), pubkey_before);
    assert_eq!(d.cmd("plookup:publickey@alice"), pubkey_before);
    assert!(d
        .cmd("notify:update:@bob:ping.mydev.sshnp@alice:hello")
        .starts_with("data:"));

    // The attacker's replacement keys.
    let evil = RsaPrivateKey::generate().unwrap();
    let evil_pub = evil.public_key().to_spki_b64();
    let refused = [
        // Reads of private key material.
        "llookup:@alice:signing_privatekey@alice".to_string(),
        "llookup:signing_privatekey@alice".to_string(),
        "llookup:privatekey:at_pkam_publickey".to_string(),
        "llookup:privatekey:at_secret".to_string(),
        "llookup:privatekey:signing_keypair_generated".to_string(),
        "llookup:self_encryption_key@alice".to_string(),
        "llookup:encryption_privatekey@alice".to_string(),
        "lookup:signing_privatekey@alice".to_string(),
        // Writes of identity keys.
        format!("update:privatekey:at_pkam_publickey {evil_pub}"),
        format!("update:isEncrypted:false:public:publickey@alice {evil_pub}"),
        format!("update:isEncrypted:false:public:signing_publickey@alice {evil_pub}"),
        format!("update:@alice:signing_privatekey@alice {evil_pub}"),
        format!("update:self_encryption_key@alice {evil_pub}"),
        "update:meta:public:publickey@alice:ttl:1000".to_string(),
        // Deletes of identity keys.
        "delete:public:publickey@alice".to_string(),
        "delete:public:signing_publickey@alice".to_string(),
        "delete:@alice:signing_privatekey@alice".to_string(),
        "delete:privatekey:at_pkam_publickey".to_string(),
        "delete:privatekey:at_secret".to_string(),
        // Other namespaces and namespace-less keys.
        "update:@bob:x.other@alice v".to_string(),
        "llookup:@bob:x.other@alice".to_string(),
        "delete:@bob:x.other@alice".to_string(),
        "update:foo@alice v".to_string(),
        "notify:update:@bob:x.other@alice:v".to_string(),
        "notify:update:@bob:foo@alice:v".to_string(),
        format!("notify:update:public:publickey@alice:{evil_pub}"),
        // Enrollment management.
        "otp:get".to_string(),
        r#"enroll:approve:{"enrollmentId":"x"}"#.to_string(),
    ];
    for cmd in &refused {
        let r = d.cmd(cmd);
        let expected = if cmd.starts_with("otp:") || cmd.starts_with("enroll:") {
            "error:AT0011"
        } else {
            "error:AT0009"
        };
        assert!(r.starts_with(expected), "{cmd} -> {r}");
    }
    // Scans, hidden or not, show public keys and the own namespace only.
    for scan in ["scan", "scan:showHidden:true .*"] {
        let r = d.cmd(scan);
        assert!(r.contains("x.mydev.sshnp@alice"), "{scan}: {r}");
        assert!(r.contains("publickey@alice"), "{scan}: {r}");
        for hidden in [
            "signing_privatekey",
            "x.other",
            "_hidden",
            "shared_key",
            "privatekey:",
            "__manage",
        ] {
            assert!(!r.contains(hidden), "{scan} lists {hidden}: {r}");
        }
    }
    // notify:list shows only notifications the enrollment's namespaces may read.
    let mut bob_side = s.login("@alice", true);
    assert!(bob_side
        .cmd("notify:update:@alice:y.other@alice:private-to-other-app")
        .starts_with("data:"));
    assert!(bob_side
        .cmd("notify:update:@alice:z.mydev.sshnp@alice:for-sshnp")
        .starts_with("data:"));
    let owner_list = m.cmd("notify:list");
    assert!(owner_list.contains("y.other"), "{owner_list}");
    let list = d.cmd("notify:list");
    assert!(list.contains("z.mydev.sshnp"), "{list}");
    assert!(!list.contains("y.other"), "{list}");
    // Nothing changed, and a legacy PKAM login with the attacker's key fails.
    assert_eq!(m.cmd("llookup:public:publickey@alice"), pubkey_before);
    assert_eq!(
        m.cmd("llookup:public:signing_publickey@alice"),
        signing_pub_before
    );
    assert_eq!(m.cmd("llookup:privatekey:at_pkam_publickey"), pkam_before);
    assert!(m
        .cmd("llookup:@bob:x.other@alice")
        .starts_with("data:secret"));
    let mut legacy = s.client("@alice");
    let ch = legacy.cmd("from:@alice");
    let sig = b64::encode(
        &evil
            .sign(
                HashAlgo::Sha256,
                ch.strip_prefix("data:").unwrap().as_bytes(),
            )
            .unwrap(),
    );
    assert!(legacy
        .cmd(&format!("pkam:{sig}"))
        .starts_with("error:AT0401"));
    // The owner's full enrollment still may do all of it.
    assert!(m
        .cmd("llookup:@alice:signing_privatekey@alice")
        .starts_with("data:"));
}
