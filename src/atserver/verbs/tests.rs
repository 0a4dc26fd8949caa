//! Unit tests of `verbs.rs`: spec vectors, refusals, and the random token soup the
//! handler fuzz test in `dispatch.rs` also uses.
use super::*;
use crate::atserver::meta::{IV_NONCE, TTL};

#[test]
fn spec_vectors_accepted() {
    // atprotocol.md §14.7
    match parse(r#"from:alice:clientConfig:{"version":"3.0.76","clientId":"x","platform":"linux"}"#)
        .unwrap()
    {
        Verb::From {
            atsign,
            client_version,
        } => {
            assert_eq!(atsign, "@alice");
            assert_eq!(client_version.as_deref(), Some("3.0.76"));
        }
        v => panic!("{v:?}"),
    }
    match parse("pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:abc-123:AAAA/+==")
        .unwrap()
    {
        Verb::Pkam {
            enrollment_id, sig, ..
        } => {
            assert_eq!(enrollment_id.as_deref(), Some("abc-123"));
            assert_eq!(sig, "AAAA/+==");
        }
        v => panic!("{v:?}"),
    }
    match parse("update:ttl:30000:isEncrypted:true:ivNonce:AAECAwQFBgcICQoLDA0ODw==:@bob:device_info.mydev.sshnp@alice QUJD").unwrap() {
            Verb::Update { meta, key, value } => {
                assert_eq!(meta.get(TTL), Some("30000"));
                assert_eq!(meta.get(IV_NONCE), Some("AAECAwQFBgcICQoLDA0ODw=="));
                assert_eq!(key.stored(), "@bob:device_info.mydev.sshnp@alice");
                assert_eq!(value, "QUJD");
            }
            v => panic!("{v:?}"),
        }
    match parse("update:privatekey:at_pkam_publickey MIIBIjAN").unwrap() {
        Verb::Update { key, .. } => assert_eq!(key.stored(), "privatekey:at_pkam_publickey"),
        v => panic!("{v:?}"),
    }
    assert!(matches!(
        parse("llookup:meta:cached:public:publickey@bob").unwrap(),
        Verb::Llookup {
            mode: Mode::Meta,
            ..
        }
    ));
    assert!(matches!(
        parse("lookup:bypassCache:true:all:ssh_request.mydev.sshnp@bob").unwrap(),
        Verb::Lookup {
            bypass: true,
            mode: Mode::All,
            ..
        }
    ));
    assert!(matches!(
        parse("plookup:bypassCache:true:all:publickey@bob").unwrap(),
        Verb::Plookup { .. }
    ));
    assert!(matches!(
        parse("delete:cached:@alice:shared_key@bob").unwrap(),
        Verb::Delete { .. }
    ));
    assert!(matches!(
        parse("delete:privatekey:at_secret").unwrap(),
        Verb::Delete { .. }
    ));
    match parse("scan:showHidden:true .*sshnp.*").unwrap() {
        Verb::Scan {
            show_hidden, regex, ..
        } => {
            assert!(show_hidden);
            assert_eq!(regex.as_deref(), Some(".*sshnp.*"));
        }
        v => panic!("{v:?}"),
    }
    let n = "notify:id:5c3e:update:messageType:key:priority:low:strategy:all:notifier:SYSTEM:ttln:86400000:ttl:10000:isEncrypted:true:sharedKeyEnc:RVNL:pubKeyCS:0123abcd:ivNonce:AAECAwQFBgcICQoLDA0ODw==:@bob:ping.mydev.sshnp@alice:Q0lQSEVS";
    match parse(n).unwrap() {
        Verb::Notify(r) => {
            assert_eq!(r.id.as_deref(), Some("5c3e"));
            assert_eq!(r.value.as_deref(), Some("Q0lQSEVS"));
            assert_eq!(r.key.stored(), "@bob:ping.mydev.sshnp@alice");
            assert_eq!(r.ttln, Some(86_400_000));
        }
        v => panic!("{v:?}"),
    }
    match parse(r"monitor:selfNotifications:1700000000000 .*\.sshnp@").unwrap() {
        Verb::Monitor {
            self_notifications,
            epoch,
            regex,
        } => {
            assert!(self_notifications);
            assert_eq!(epoch, Some(1_700_000_000_000));
            assert_eq!(regex.as_deref(), Some(r".*\.sshnp@"));
        }
        v => panic!("{v:?}"),
    }
    assert!(matches!(
        parse(r#"enroll:revoke:force:{"enrollmentId":"abc"}"#).unwrap(),
        Verb::Enroll { force: true, .. }
    ));
    assert!(matches!(
        parse(r#"enroll:list:{"enrollmentStatusFilter":["pending"]}"#).unwrap(),
        Verb::Enroll { .. }
    ));
    assert!(matches!(
        parse("otp:put:MySecret1:ttl:86400000").unwrap(),
        Verb::OtpPut {
            ttl: Some(86_400_000),
            ..
        }
    ));
    assert!(matches!(
        parse("keys:get:keyName:abc.default_enc_private_key.__manage@alice").unwrap(),
        Verb::KeysGet { .. }
    ));
    assert!(matches!(parse("monitor .*").unwrap(), Verb::Monitor { .. }));
    assert!(matches!(parse("noop:0").unwrap(), Verb::Noop(0)));
    assert!(matches!(parse("  ").unwrap(), Verb::Empty));
}

#[test]
fn spec_vectors_rejected() {
    for bad in [
        "update:isEncrypted:true:ttl:30000:@bob:x.ns@alice QUJD",
        "update:isBinary:false:isEncrypted:true:dataSignature:abc:@bob:x.ns@alice QUJD",
        "notify:update:message_type:key:@bob:x.ns@alice:val",
        "llookup:nokey",
        "garbage",
        "\u{0}\u{1}\u{2}",
        "lookup:",
        "noop:x",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

/// Pseudo-random token soup shared by the no-panic tests.
pub(crate) fn soup(seed: &mut u64) -> String {
    const TOKENS: &[&str] = &[
        "update",
        "lookup",
        "llookup",
        "plookup",
        "delete",
        ":",
        "@",
        "@alice",
        "@bob",
        " ",
        "public:",
        "ttl",
        "ttr",
        "ccd",
        "isEncrypted",
        "ivNonce",
        "notify",
        "status",
        "list",
        "id",
        "cached:",
        "{",
        "}",
        "\"",
        "é",
        "💥",
        "\u{0}",
        "monitor",
        "selfNotifications",
        "scan",
        "showHidden",
        "enroll",
        "request",
        "approve",
        "revoke",
        "otp",
        "get",
        "put",
        "keys",
        "keyName",
        "meta",
        "all",
        "123",
        "-1",
        "null",
        "true",
        ".",
        "\r",
        "from",
        "enrollmentId",
        "x.sshnp",
        "(",
        "privatekey:",
        "at_secret",
        "info",
        "stats",
        "pol",
        "[",
        "\\",
        "clientConfig",
    ];
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let n = next() % 14;
    (0..n)
        .map(|_| TOKENS[(next() % TOKENS.len() as u64) as usize])
        .collect()
}

#[test]
fn random_and_truncated_inputs_never_panic() {
    // Untrusted lines reach these parsers first: none may panic on any input.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..5000 {
        let s = soup(&mut seed);
        for cut in (0..=s.len()).filter(|c| s.is_char_boundary(*c)) {
            let t = &s[..cut];
            let _ = parse(t);
            let _ = AtKey::parse(t);
            let _ = MetaPatch::parse_prefix(t);
        }
    }
}
