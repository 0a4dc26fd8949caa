//! NoPorts v5 wire formats (noports.md §2, §4.1, §4.3, §5.4, §6.3, §6.7): byte-exact
//! canonical JSON, strict parsing, envelopes, relay messages and auth lines, control
//! messages, typed payloads. Every malformed input must give an `Err`, never a panic.

use std::sync::OnceLock;

use noports::crypto::b64;
use noports::crypto::rsa::{HashAlgo, RsaPrivateKey, RsaPublicKey};
use noports::json::{self, JsonErrorKind, Object, Value, MAX_DEPTH, MAX_INPUT_LEN};
use noports::noports::control::MAX_CONTROL_BUFFER;
use noports::noports::envelope::{self, EnvelopeError, SigningAlgo};
use noports::noports::messages::{
    feature_description, is_error_reply, Feature, MessageError, NptRequest, PingResponse,
    PolicyDecision, PolicyRequest, PolicyResponse, RpcRespType, SessionResponse, SshRequest,
};
use noports::noports::relay_msg::{
    self, auth_line, auth_payload, verify_auth_line, AuthLineError, RelayMsgError, RelayRequest,
    RelayResponse, MAX_AUTH_LINE_LEN,
};
use noports::noports::{ControlDecoder, ControlError, ControlMsg};

/// Two RSA-2048 keys, generated once for the whole test binary: the client's and the device's.
fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            RsaPrivateKey::generate().expect("keygen"),
            RsaPrivateKey::generate().expect("keygen"),
        )
    })
}

fn client_key() -> &'static RsaPrivateKey {
    &keys().0
}

fn device_key() -> &'static RsaPrivateKey {
    &keys().1
}

fn client_pub() -> RsaPublicKey {
    client_key().public_key()
}

// ---------------------------------------------------------------------------------------
// Canonical JSON (noports.md §2.2)
// ---------------------------------------------------------------------------------------

#[test]
fn canonical_object_keeps_insertion_order_and_no_whitespace() {
    let o = Object::new()
        .with("z", 1i64)
        .with("a", "x")
        .with("m", true)
        .with("n", Value::Null)
        .with("neg", -42i64)
        .with("big", 31_536_000_000i64)
        .with(
            "arr",
            vec![Value::from(1i64), Value::from("two"), Value::from(false)],
        )
        .with("obj", Object::new().with("b", 2i64).with("a", 1i64))
        .with("empty", Object::new())
        .with("none", Vec::<Value>::new());
    assert_eq!(
        o.to_json(),
        r#"{"z":1,"a":"x","m":true,"n":null,"neg":-42,"big":31536000000,"arr":[1,"two",false],"obj":{"b":2,"a":1},"empty":{},"none":[]}"#
    );
}

#[test]
fn canonical_string_escapes() {
    let cases: &[(&str, &str)] = &[
        ("plain", r#""plain""#),
        ("q\"b\\", r#""q\"b\\""#),
        ("a/b", r#""a/b""#),
        ("\u{8}\u{c}\n\r\t", r#""\b\f\n\r\t""#),
        ("\u{0}\u{1}\u{b}\u{1f}", r#""\u0000\u0001\u000b\u001f""#),
        ("\u{7f}", "\"\u{7f}\""),
        ("é中😀", "\"é中😀\""),
    ];
    for (input, want) in cases {
        assert_eq!(Value::from(*input).to_json(), *want, "{input:?}");
    }
}

#[test]
fn unicode_round_trip() {
    let text = "{\"name\":\"Zoë 中文 😀 \\u0007\",\"k\\\"ey\":\"v\"}";
    let v = json::parse(text).unwrap();
    assert_eq!(v.to_json(), text);
    let o = v.as_object().unwrap();
    assert_eq!(o.get_str("name"), Some("Zoë 中文 😀 \u{7}"));
    assert_eq!(o.get_str("k\"ey"), Some("v"));
}

#[test]
fn escapes_that_do_not_round_trip_are_decoded() {
    // `\/`, `\u00e9`, uppercase hex and surrogate pairs decode to the characters; the
    // canonical writer then emits them raw (noports.md §2.2 consequence 4).
    let v = json::parse(r#""a\/b \u00e9 \u00E9 \uD83D\uDE00 \u001F""#).unwrap();
    assert_eq!(v.as_str(), Some("a/b é é 😀 \u{1f}"));
    assert_eq!(v.to_json(), "\"a/b é é 😀 \\u001f\"");
}

#[test]
fn parser_accepts_whitespace_between_tokens() {
    let v = json::parse(" { \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } } \r\n").unwrap();
    assert_eq!(v.to_json(), r#"{"a":[1,2],"b":{}}"#);
}

#[test]
fn object_accessors() {
    let o = Object::parse(r#"{"s":"x","i":7,"b":true,"o":{"k":1},"a":[1],"n":null}"#).unwrap();
    assert_eq!(o.get_str("s"), Some("x"));
    assert_eq!(o.get_i64("i"), Some(7));
    assert_eq!(o.get_bool("b"), Some(true));
    assert_eq!(o.get_object("o").and_then(|o| o.get_i64("k")), Some(1));
    assert_eq!(o.get_array("a").map(<[Value]>::len), Some(1));
    assert!(o.get("n").unwrap().is_null());
    assert_eq!(o.get_str("i"), None);
    assert_eq!(o.get_i64("missing"), None);
    let keys: Vec<&str> = o.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["s", "i", "b", "o", "a", "n"]);
    assert_eq!(
        Object::parse("[]").unwrap_err().kind,
        JsonErrorKind::NotAnObject
    );
}

#[test]
fn parser_rejections() {
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    let deep_obj = "{\"a\":".repeat(MAX_DEPTH + 1) + "1" + &"}".repeat(MAX_DEPTH + 1);
    let huge = format!("\"{}\"", "a".repeat(MAX_INPUT_LEN));
    let cases: Vec<(&str, JsonErrorKind, usize)> = vec![
        (r#"{"a":1,"a":2}"#, JsonErrorKind::DuplicateKey, 7),
        (
            r#"{"p":{"x":1,"y":2,"x":3}}"#,
            JsonErrorKind::DuplicateKey,
            18,
        ),
        (r#"{"t":1.0}"#, JsonErrorKind::Float, 6),
        (r#"{"t":1e5}"#, JsonErrorKind::Float, 6),
        (r#"{"t":-2E1}"#, JsonErrorKind::Float, 7),
        ("9223372036854775808", JsonErrorKind::IntegerOverflow, 0),
        ("-9223372036854775809", JsonErrorKind::IntegerOverflow, 0),
        ("007", JsonErrorKind::BadNumber, 0),
        ("-", JsonErrorKind::BadNumber, 1),
        ("+1", JsonErrorKind::UnexpectedChar, 0),
        (&deep, JsonErrorKind::TooDeep, MAX_DEPTH),
        (&deep_obj, JsonErrorKind::TooDeep, 5 * MAX_DEPTH),
        (&huge, JsonErrorKind::TooLarge, MAX_INPUT_LEN),
        (r#"{"a":1"#, JsonErrorKind::UnexpectedEnd, 6),
        (r#"{"a":"#, JsonErrorKind::UnexpectedEnd, 5),
        (r#"{"a"#, JsonErrorKind::UnexpectedEnd, 3),
        (r#""\u12"#, JsonErrorKind::UnexpectedEnd, 5),
        ("", JsonErrorKind::UnexpectedEnd, 0),
        ("   ", JsonErrorKind::UnexpectedEnd, 3),
        (r#"{"a":1}}"#, JsonErrorKind::TrailingData, 7),
        (r#"{"a":1} {"#, JsonErrorKind::TrailingData, 8),
        (r#"{"a":1}garbage"#, JsonErrorKind::TrailingData, 7),
        ("nul", JsonErrorKind::UnexpectedEnd, 3),
        ("nulx", JsonErrorKind::UnexpectedChar, 3),
        ("{'a':1}", JsonErrorKind::UnexpectedChar, 1),
        ("{a:1}", JsonErrorKind::UnexpectedChar, 1),
        (r#"{"a":1,}"#, JsonErrorKind::UnexpectedChar, 7),
        ("[1 2]", JsonErrorKind::UnexpectedChar, 3),
        (r#""\q""#, JsonErrorKind::BadEscape, 1),
        (r#""\u12G4""#, JsonErrorKind::BadEscape, 5),
        (r#""\uD800x""#, JsonErrorKind::BadSurrogate, 1),
        (r#""\uD800\u0041""#, JsonErrorKind::BadSurrogate, 1),
        (r#""\uDC00""#, JsonErrorKind::BadSurrogate, 1),
        ("\"tab\there\"", JsonErrorKind::ControlChar, 4),
        ("NaN", JsonErrorKind::UnexpectedChar, 0),
    ];
    for (text, kind, offset) in cases {
        let e = json::parse(text).unwrap_err();
        assert_eq!((e.kind, e.offset), (kind, offset), "{:.60}", text);
        assert!(!e.to_string().is_empty());
    }
    let ok_depth = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(json::parse(&ok_depth).is_ok());
}

#[test]
fn error_message_names_problem_and_offset() {
    let e = json::parse(r#"{"a":1,"a":2}"#).unwrap_err();
    assert_eq!(e.to_string(), "json: duplicate object key at byte 7");
}

/// Deterministic pseudo-random generator for the no-panic sweeps (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const SAMPLE: &str = r#"{"payload":{"sessionId":"5c1b","n":[1,-2,{"x":null}],"s":"é\u00e9\ud83d\ude00\"\\"},"signature":"QUJD","hashingAlgo":"sha256","signingAlgo":"rsa2048"}"#;

#[test]
fn parsers_never_panic_on_truncated_or_mutated_input() {
    let mut rng = Lcg(0x5eed);
    let bytes = SAMPLE.as_bytes();
    let mut inputs: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
    for _ in 0..3000 {
        let mut b = bytes.to_vec();
        for _ in 0..(1 + rng.next() % 4) {
            let i = (rng.next() as usize) % b.len();
            match rng.next() % 3 {
                0 => b[i] = (rng.next() & 0x7f) as u8,
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, b"{}[]\",:\\u0"[(rng.next() % 10) as usize]),
            }
        }
        inputs.push(b);
    }
    for input in &inputs {
        let Ok(text) = std::str::from_utf8(input) else {
            continue;
        };
        let _ = json::parse(text);
        let _ = envelope::parse(text);
        let _ = RelayRequest::parse(text);
        let _ = RelayResponse::parse(text);
        let _ = PingResponse::parse(text);
        let _ = PolicyResponse::parse(text);
        let _ = verify_auth_line(text, "s", "c", "r", &client_pub());
        let mut d = ControlDecoder::new();
        d.feed(input);
        while d.next().is_some() {}
    }
    // Every strict prefix of a valid document is an error.
    for n in 0..SAMPLE.len() {
        if let Some(prefix) = SAMPLE.get(..n) {
            assert!(json::parse(prefix).is_err(), "prefix {n}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Envelope (noports.md §2)
// ---------------------------------------------------------------------------------------

fn sample_payload() -> Object {
    Object::new()
        .with("sessionId", "0b0f8c3e-6d1c-4f3e-9b1a-2c3d4e5f6a7b")
        .with("path", "/tmp/x \"q\" é")
        .with("port", 22i64)
        .with("ok", true)
}

#[test]
fn envelope_sign_layout_and_round_trip() {
    let payload = sample_payload();
    let text = envelope::sign(&payload, client_key()).unwrap();
    let prefix = format!("{{\"payload\":{},\"signature\":\"", payload.to_json());
    assert!(text.starts_with(&prefix), "{text}");
    let suffix = "\",\"hashingAlgo\":\"sha256\",\"signingAlgo\":\"rsa2048\"}";
    assert!(text.ends_with(suffix));
    let sig_b64 = &text[prefix.len()..text.len() - suffix.len()];
    assert_eq!(sig_b64.len(), 344);

    // The embedded payload bytes are exactly the signed bytes.
    let sig = b64::decode(sig_b64).unwrap();
    assert!(client_pub().verify(HashAlgo::Sha256, payload.to_json().as_bytes(), &sig));

    let env = envelope::parse(&text).unwrap();
    assert_eq!(env.payload, payload);
    assert_eq!(env.signature(), sig.as_slice());
    assert_eq!(env.hashing_algo(), HashAlgo::Sha256);
    assert_eq!(env.signing_algo(), SigningAlgo::Rsa2048);
    assert_eq!(env.raw_payload(), payload.to_json());
    env.verify(&client_pub()).unwrap();
    assert_eq!(envelope::open(&text, &client_pub()).unwrap(), payload);
}

#[test]
fn envelope_member_order_and_whitespace_are_irrelevant_when_reading() {
    let payload = sample_payload();
    let text = envelope::sign(&payload, client_key()).unwrap();
    let env = envelope::parse(&text).unwrap();
    let sig = b64::encode(env.signature());
    // Reordered envelope members and pretty-printed payload: the canonical re-serialization
    // of the payload (received member order) still matches what was signed.
    let pretty = format!(
        "{{ \"signingAlgo\": \"rsa2048\", \"hashingAlgo\": \"sha256\",\n \"signature\": \"{sig}\",\n \"payload\": {{ \"sessionId\" : \"0b0f8c3e-6d1c-4f3e-9b1a-2c3d4e5f6a7b\", \"path\":\"\\/tmp\\/x \\\"q\\\" \\u00e9\", \"port\": 22, \"ok\": true }} }}"
    );
    envelope::parse(&pretty)
        .unwrap()
        .verify(&client_pub())
        .unwrap();
}

#[test]
fn envelope_tampering_fails() {
    let text = envelope::sign(&sample_payload(), client_key()).unwrap();
    let tampered = text.replace("\"port\":22", "\"port\":23");
    assert_ne!(tampered, text);
    assert_eq!(
        envelope::parse(&tampered).unwrap().verify(&client_pub()),
        Err(EnvelopeError::BadSignature)
    );
    // Reordering signed members changes the signed bytes.
    let reordered = text.replace("\"port\":22,\"ok\":true", "\"ok\":true,\"port\":22");
    assert_eq!(
        envelope::parse(&reordered).unwrap().verify(&client_pub()),
        Err(EnvelopeError::BadSignature)
    );
    // Wrong key.
    assert_eq!(
        envelope::open(&text, &device_key().public_key()),
        Err(EnvelopeError::BadSignature)
    );
    // Signature bit flip.
    let env = envelope::parse(&text).unwrap();
    let mut sig = env.signature().to_vec();
    sig[100] ^= 1;
    let flipped = text.replace(&b64::encode(env.signature()), &b64::encode(&sig));
    assert_eq!(
        envelope::open(&flipped, &client_pub()),
        Err(EnvelopeError::BadSignature)
    );
    // A different hashingAlgo than the one used to sign.
    let sha512 = text.replace("\"sha256\"", "\"sha512\"");
    assert_eq!(
        envelope::open(&sha512, &client_pub()),
        Err(EnvelopeError::BadSignature)
    );
}

#[test]
fn envelope_accepts_signature_over_raw_payload_text() {
    // A signer whose serializer escapes `/` signs bytes that do not survive re-serialization;
    // we still accept it by also checking the raw payload text (noports.md §2.2).
    let raw = r#"{"sessionId":"s","path":"a\/b"}"#;
    let sig = client_key().sign(HashAlgo::Sha512, raw.as_bytes()).unwrap();
    let text = format!(
        r#"{{"payload":{raw},"signature":"{}","hashingAlgo":"sha512","signingAlgo":"rsa4096"}}"#,
        b64::encode(&sig)
    );
    let env = envelope::parse(&text).unwrap();
    assert_eq!(env.payload.get_str("path"), Some("a/b"));
    assert_eq!(env.signing_algo(), SigningAlgo::Rsa4096);
    env.verify(&client_pub()).unwrap();
}

#[test]
fn envelope_type_checks() {
    let ok_sig = "QUJD";
    let cases: Vec<(String, EnvelopeError)> = vec![
        ("not json".into(), EnvelopeError::Json(json::parse("not json").unwrap_err())),
        ("[1]".into(), EnvelopeError::NotAnObject),
        (
            format!(r#"{{"signature":"{ok_sig}","hashingAlgo":"sha256","signingAlgo":"rsa2048"}}"#),
            EnvelopeError::Missing("payload"),
        ),
        (
            format!(r#"{{"payload":"x","signature":"{ok_sig}","hashingAlgo":"sha256","signingAlgo":"rsa2048"}}"#),
            EnvelopeError::WrongType("payload"),
        ),
        (
            r#"{"payload":{},"hashingAlgo":"sha256","signingAlgo":"rsa2048"}"#.into(),
            EnvelopeError::Missing("signature"),
        ),
        (
            r#"{"payload":{},"signature":null,"hashingAlgo":"sha256","signingAlgo":"rsa2048"}"#.into(),
            EnvelopeError::WrongType("signature"),
        ),
        (
            format!(r#"{{"payload":{{}},"signature":"{ok_sig}","hashingAlgo":256,"signingAlgo":"rsa2048"}}"#),
            EnvelopeError::WrongType("hashingAlgo"),
        ),
        (
            format!(r#"{{"payload":{{}},"signature":"{ok_sig}","hashingAlgo":"md5","signingAlgo":"rsa2048"}}"#),
            EnvelopeError::UnknownHashingAlgo,
        ),
        (
            format!(r#"{{"payload":{{}},"signature":"{ok_sig}","hashingAlgo":"sha256"}}"#),
            EnvelopeError::Missing("signingAlgo"),
        ),
        (
            format!(r#"{{"payload":{{}},"signature":"{ok_sig}","hashingAlgo":"sha256","signingAlgo":"RSA2048"}}"#),
            EnvelopeError::UnknownSigningAlgo,
        ),
        (
            r#"{"payload":{},"signature":"not base64!","hashingAlgo":"sha256","signingAlgo":"rsa2048"}"#.into(),
            EnvelopeError::BadSignatureEncoding,
        ),
        (
            format!(r#"{{"payload":{{}},"payload":{{}},"signature":"{ok_sig}","hashingAlgo":"sha256","signingAlgo":"rsa2048"}}"#),
            EnvelopeError::Json(json::JsonError {
                kind: JsonErrorKind::DuplicateKey,
                offset: 14,
            }),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(envelope::parse(&text).err(), Some(want), "{text}");
        assert!(!want.to_string().is_empty());
    }
    // ecc_secp256r1 parses but cannot verify against an RSA key.
    let ecc = format!(
        r#"{{"payload":{{}},"signature":"{ok_sig}","hashingAlgo":"sha256","signingAlgo":"ecc_secp256r1"}}"#
    );
    let env = envelope::parse(&ecc).unwrap();
    assert_eq!(
        env.verify(&client_pub()),
        Err(EnvelopeError::UnsupportedSigningAlgo)
    );
}

// ---------------------------------------------------------------------------------------
// Relay request / response (noports.md §4.1)
// ---------------------------------------------------------------------------------------

fn relay_request() -> RelayRequest {
    RelayRequest {
        session_id: "sid-1".into(),
        atsign_a: "@client".into(),
        atsign_b: "@device".into(),
        authenticate_socket_a: true,
        authenticate_socket_b: true,
        client_nonce: "2024-10-24T10:20:30.123456".into(),
        extra: Object::new(),
    }
}

#[test]
fn relay_request_exact_and_round_trip() {
    let r = relay_request();
    assert_eq!(
        r.to_json(),
        r#"{"sessionId":"sid-1","atSignA":"@client","atSignB":"@device","authenticateSocketA":true,"authenticateSocketB":true,"clientNonce":"2024-10-24T10:20:30.123456"}"#
    );
    assert_eq!(RelayRequest::parse(&r.to_json()).unwrap(), r);

    // Extra members (our negotiation field) are allowed, kept, and re-emitted last.
    let text = r#"{"clientNonce":"n","negotiate":{"v":1},"sessionId":"s","atSignA":"@a","atSignB":"@b","authenticateSocketA":false,"authenticateSocketB":true}"#;
    let p = RelayRequest::parse(text).unwrap();
    assert_eq!(
        p.extra.get_object("negotiate").and_then(|o| o.get_i64("v")),
        Some(1)
    );
    assert_eq!(
        p.to_json(),
        r#"{"sessionId":"s","atSignA":"@a","atSignB":"@b","authenticateSocketA":false,"authenticateSocketB":true,"clientNonce":"n","negotiate":{"v":1}}"#
    );
}

#[test]
fn relay_request_rejections() {
    let full = relay_request().to_object();
    for member in [
        "sessionId",
        "atSignA",
        "atSignB",
        "authenticateSocketA",
        "authenticateSocketB",
        "clientNonce",
    ] {
        let mut missing = Object::new();
        let mut wrong = Object::new();
        for (k, v) in full.iter() {
            if k != member {
                missing.push(k, v.clone());
                wrong.push(k, v.clone());
            } else {
                wrong.push(k, Value::Int(1));
            }
        }
        assert_eq!(
            RelayRequest::parse(&missing.to_json()),
            Err(RelayMsgError::Missing(member))
        );
        assert_eq!(
            RelayRequest::parse(&wrong.to_json()),
            Err(RelayMsgError::WrongType(member))
        );
    }
    assert_eq!(
        RelayRequest::parse("\"sid\""),
        Err(RelayMsgError::NotAnObject)
    );
    assert!(matches!(
        RelayRequest::parse("{"),
        Err(RelayMsgError::Json(_))
    ));
}

/// Expected N4 fields: host, portA, portB, rvdNonce.
type N4 = (&'static str, u16, u16, Option<&'static str>);

#[test]
fn relay_response_cases() {
    let ok: &[(&str, N4)] = &[
        (
            "1.2.3.4,40001,40002,2024-10-24T10:20:30.123456",
            ("1.2.3.4", 40001, 40002, Some("2024-10-24T10:20:30.123456")),
        ),
        ("rv.example.com,1,65535", ("rv.example.com", 1, 65535, None)),
        ("h,10,20,null", ("h", 10, 20, None)),
        ("h,10,20,a,b", ("h", 10, 20, Some("a,b"))),
        ("h,10,20,", ("h", 10, 20, Some(""))),
        ("  h,10,20,n\n", ("h", 10, 20, Some("n"))),
    ];
    for (text, (host, a, b, nonce)) in ok {
        let r = RelayResponse::parse(text).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port_a, r.port_b, r.rvd_nonce.as_deref()),
            (*host, *a, *b, *nonce),
            "{text:?}"
        );
    }
    let bad: &[(&str, RelayMsgError)] = &[
        ("", RelayMsgError::Missing("host")),
        (",1,2", RelayMsgError::Missing("host")),
        ("h", RelayMsgError::Missing("portA")),
        ("h,1", RelayMsgError::Missing("portB")),
        ("h,,2", RelayMsgError::BadValue("portA")),
        ("h,0,2", RelayMsgError::BadValue("portA")),
        ("h,65536,2", RelayMsgError::BadValue("portA")),
        ("h,-1,2", RelayMsgError::BadValue("portA")),
        ("h,+1,2", RelayMsgError::BadValue("portA")),
        ("h,1, 2", RelayMsgError::BadValue("portB")),
        ("h,1,2x", RelayMsgError::BadValue("portB")),
        ("h,1,99999999999999999999", RelayMsgError::BadValue("portB")),
        ("a b,1,2", RelayMsgError::BadValue("host")),
    ];
    for (text, want) in bad {
        assert_eq!(RelayResponse::parse(text), Err(*want), "{text:?}");
    }
    let long = format!("h,1,2,{}", "n".repeat(relay_msg::MAX_RESPONSE_LEN));
    assert_eq!(RelayResponse::parse(&long), Err(RelayMsgError::TooLong));

    let r = RelayResponse {
        host: "10.0.0.1".into(),
        port_a: 5000,
        port_b: 5001,
        rvd_nonce: Some("nonce".into()),
    };
    assert_eq!(r.to_text(), "10.0.0.1,5000,5001,nonce");
    assert_eq!(RelayResponse::parse(&r.to_text()).unwrap(), r);
    let legacy = RelayResponse {
        rvd_nonce: None,
        ..r
    };
    assert_eq!(legacy.to_text(), "10.0.0.1,5000,5001,null");
}

// ---------------------------------------------------------------------------------------
// Auth line (noports.md §4.3)
// ---------------------------------------------------------------------------------------

const SID: &str = "6a0f2b1c-1111-4222-8333-944445555666";
const CN: &str = "2024-10-24T10:20:30.123456";
const RN: &str = "2024-10-24T10:20:31.654321";

#[test]
fn auth_line_layout_and_verify() {
    assert_eq!(
        auth_payload(SID, CN, RN).to_json(),
        format!(r#"{{"sessionId":"{SID}","clientNonce":"{CN}","rvdNonce":"{RN}"}}"#)
    );
    let line = auth_line(SID, CN, RN, client_key()).unwrap();
    assert!(line.ends_with("}\n"));
    assert_eq!(line.matches('\n').count(), 1);
    assert!(line.starts_with(&format!(
        r#"{{"payload":{{"sessionId":"{SID}","clientNonce":"{CN}","rvdNonce":"{RN}"}},"signature":""#
    )));
    // With or without the newline.
    verify_auth_line(&line, SID, CN, RN, &client_pub()).unwrap();
    verify_auth_line(line.trim_end(), SID, CN, RN, &client_pub()).unwrap();

    // The relay framing hands over the line and keeps what follows.
    let mut wire = line.clone().into_bytes();
    wire.extend_from_slice(b"\x01\x02encrypted");
    let (l, rest) = relay_msg::take_auth_line(&wire).unwrap().unwrap();
    verify_auth_line(l, SID, CN, RN, &client_pub()).unwrap();
    assert_eq!(rest, b"\x01\x02encrypted");
}

#[test]
fn auth_line_failures() {
    let line = auth_line(SID, CN, RN, client_key()).unwrap();
    let cpk = client_pub();
    // Check 3: the nonce the peer claims differs from this session's.
    assert_eq!(
        verify_auth_line(&line, SID, CN, "other-nonce", &cpk),
        Err(AuthLineError::NonceMismatch)
    );
    // Check 4: wrong session id or client nonce only shows up in the signature.
    assert_eq!(
        verify_auth_line(&line, "other-sid", CN, RN, &cpk),
        Err(AuthLineError::BadSignature)
    );
    assert_eq!(
        verify_auth_line(&line, SID, "other-cn", RN, &cpk),
        Err(AuthLineError::BadSignature)
    );
    // Attack: the device's auth line replayed on the client's port (A) must not verify
    // with the client's key.
    let device_line = auth_line(SID, CN, RN, device_key()).unwrap();
    assert_eq!(
        verify_auth_line(&device_line, SID, CN, RN, &cpk),
        Err(AuthLineError::BadSignature)
    );
    verify_auth_line(&device_line, SID, CN, RN, &device_key().public_key()).unwrap();
    // Attack: the payload claims the right values, but the signature covers a different
    // serialization (reordered members); the relay checks its own serialization only.
    let reordered = Object::new()
        .with("rvdNonce", RN)
        .with("sessionId", SID)
        .with("clientNonce", CN);
    let forged = envelope::sign(&reordered, client_key()).unwrap();
    assert_eq!(
        verify_auth_line(&forged, SID, CN, RN, &cpk),
        Err(AuthLineError::BadSignature)
    );
    // Check 1 and 2.
    assert!(matches!(
        verify_auth_line("garbage", SID, CN, RN, &cpk),
        Err(AuthLineError::Malformed(EnvelopeError::Json(_)))
    ));
    assert_eq!(
        verify_auth_line(&line.replace("\"rsa2048\"", "\"dsa\""), SID, CN, RN, &cpk),
        Err(AuthLineError::Malformed(EnvelopeError::UnknownSigningAlgo))
    );
    assert_eq!(
        verify_auth_line(&line.replace("\"sha256\"", "\"md5\""), SID, CN, RN, &cpk),
        Err(AuthLineError::Malformed(EnvelopeError::UnknownHashingAlgo))
    );
    assert_eq!(
        verify_auth_line(
            r#"{"payload":[],"signature":"QUJD","hashingAlgo":"sha256","signingAlgo":"rsa2048"}"#,
            SID,
            CN,
            RN,
            &cpk
        ),
        Err(AuthLineError::Malformed(EnvelopeError::WrongType(
            "payload"
        )))
    );
    // Missing rvdNonce in the payload.
    assert_eq!(
        verify_auth_line(
            r#"{"payload":{"sessionId":"x"},"signature":"QUJD","hashingAlgo":"sha256","signingAlgo":"rsa2048"}"#,
            SID,
            CN,
            RN,
            &cpk
        ),
        Err(AuthLineError::NonceMismatch)
    );
    // Oversized line.
    let long = "x".repeat(MAX_AUTH_LINE_LEN + 1);
    assert_eq!(
        verify_auth_line(&long, SID, CN, RN, &cpk),
        Err(AuthLineError::TooLong)
    );
    assert_eq!(
        relay_msg::take_auth_line(long.as_bytes()),
        Err(AuthLineError::TooLong)
    );
    assert_eq!(relay_msg::take_auth_line(&line.as_bytes()[..100]), Ok(None));
}

// ---------------------------------------------------------------------------------------
// Control messages (noports.md §5.4)
// ---------------------------------------------------------------------------------------

const K: &str = "1DPU9OP3CYvamnVBMwGgL7fm8yB1klAap0Uc5Z9R79g=";
const IV: &str = "MTIzNDU2Nzg5MEFCQ0RFRg==";

fn connect_k_iv() -> ControlMsg {
    ControlMsg::Connect {
        key_b64: K.into(),
        iv_b64: IV.into(),
    }
}

fn drain(d: &mut ControlDecoder) -> Vec<Result<ControlMsg, ControlError>> {
    std::iter::from_fn(|| d.next()).collect()
}

#[test]
fn control_encoding() {
    assert_eq!(connect_k_iv().to_line(), format!("connect:{K}:{IV}\n"));
    assert_eq!(
        ControlMsg::ConnectNoEncrypt.to_line(),
        "connect:no:encrypt\n"
    );
    let mut out = Vec::new();
    ControlMsg::ConnectNoEncrypt.encode(&mut out);
    assert_eq!(out, b"connect:no:encrypt\n");
    assert_eq!(ControlMsg::connect_b64(K, IV), Ok(connect_k_iv()));
    assert_eq!(ControlMsg::connect_b64(IV, IV), Err(ControlError::BadKey));
    assert_eq!(ControlMsg::connect_b64(K, "a:b"), Err(ControlError::BadIv));
    let m = ControlMsg::connect(&[7u8; 32], &[9u8; 16]);
    let line = m.to_line();
    assert_eq!(line.len(), 8 + 44 + 1 + 24 + 1);
    // Key material never shows in Debug output.
    assert!(!format!("{m:?}").contains(&b64::encode(&[7u8; 32])));
}

#[test]
fn control_split_across_feeds() {
    let wire = format!("connect:{K}:{IV}\nconnect:no:encrypt\n");
    let mut d = ControlDecoder::new();
    let mut got = Vec::new();
    for b in wire.as_bytes() {
        d.feed(std::slice::from_ref(b));
        got.extend(drain(&mut d));
    }
    assert_eq!(
        got,
        vec![Ok(connect_k_iv()), Ok(ControlMsg::ConnectNoEncrypt)]
    );
    assert_eq!(d.buffered(), 0);
}

#[test]
fn control_back_to_back_without_newline() {
    // Older clients omit the newline: messages arrive glued together, possibly split.
    let wire = format!("connect:{K}:{IV}connect:{K}:{IV}connect:no:encrypt");
    for split in [1, 10, 50, 77, 78, 100, wire.len()] {
        let mut d = ControlDecoder::new();
        let (a, b) = wire.as_bytes().split_at(split.min(wire.len()));
        d.feed(a);
        let mut got = drain(&mut d);
        d.feed(b);
        got.extend(drain(&mut d));
        assert_eq!(
            got,
            vec![
                Ok(connect_k_iv()),
                Ok(connect_k_iv()),
                Ok(ControlMsg::ConnectNoEncrypt)
            ],
            "split at {split}"
        );
    }
    // Two newline-terminated messages in one read (breaks the Dart daemon, not us).
    let mut d = ControlDecoder::new();
    d.feed(format!("connect:{K}:{IV}\nconnect:{K}:{IV}\r\n").as_bytes());
    assert_eq!(drain(&mut d), vec![Ok(connect_k_iv()), Ok(connect_k_iv())]);
    // A single unterminated message from an old client is delivered without waiting.
    let mut d = ControlDecoder::new();
    d.feed(format!("connect:{K}:{IV}").as_bytes());
    assert_eq!(drain(&mut d), vec![Ok(connect_k_iv())]);
    d.feed(b"\n");
    assert_eq!(drain(&mut d), vec![]);
}

#[test]
fn control_rejections() {
    let short_key = b64::encode(&[1u8; 31]);
    let long_iv = b64::encode(&[1u8; 17]);
    let wire = format!(
        "connect:{short_key}:{IV}\nconnect:{K}:{long_iv}\nconnect:!!notb64!!:{IV}\nconnect:{K}\nconnect:{K}:{IV}:x\nping:a:b\n\u{ff}\nconnect:{K}:{IV}\n"
    );
    let mut bytes = wire.into_bytes();
    // Replace the U+00FF character's encoding with a lone invalid byte.
    let pos = bytes
        .windows(2)
        .position(|w| w == "\u{ff}".as_bytes())
        .unwrap();
    bytes.splice(pos..pos + 2, [0xffu8]);
    let mut d = ControlDecoder::new();
    d.feed(&bytes);
    assert_eq!(
        drain(&mut d),
        vec![
            Err(ControlError::BadKey),
            Err(ControlError::BadIv),
            Err(ControlError::BadKey),
            Err(ControlError::Malformed),
            Err(ControlError::Malformed),
            Err(ControlError::UnknownRequest),
            Err(ControlError::NotText),
            Ok(connect_k_iv()),
        ]
    );
    assert!(!d.is_poisoned());
}

#[test]
fn control_oversize_is_final() {
    let mut d = ControlDecoder::new();
    d.feed(b"connect:");
    d.feed(&vec![b'A'; MAX_CONTROL_BUFFER]);
    assert_eq!(drain(&mut d), vec![Err(ControlError::TooLong)]);
    assert!(d.is_poisoned());
    d.feed(b"connect:no:encrypt\n");
    assert_eq!(drain(&mut d), vec![]);
    // A large burst of valid messages is not "oversize".
    let mut d = ControlDecoder::new();
    let burst = "connect:no:encrypt\n".repeat(1000);
    d.feed(burst.as_bytes());
    assert_eq!(drain(&mut d).len(), 1000);
    assert!(!d.is_poisoned());
}

// ---------------------------------------------------------------------------------------
// Typed payloads (noports.md §1.3, §1.4, §6.3, §6.7–§6.9)
// ---------------------------------------------------------------------------------------

fn npt_request() -> NptRequest {
    NptRequest {
        session_id: SID.into(),
        rvd_host: "1.2.3.4".into(),
        rvd_port: 40002,
        requested_port: 22,
        requested_host: "localhost".into(),
        authenticate_to_rvd: true,
        client_nonce: CN.into(),
        rvd_nonce: RN.into(),
        encrypt_rvd_traffic: true,
        client_ephemeral_pk: "MIIB".into(),
        client_ephemeral_pk_type: "rsa2048".into(),
        timeout_ms: 30000,
        suite: None,
        client_suite_pk: None,
        suite_aead: None,
        suite_binding: None,
        requested_at: None,
    }
}

#[test]
fn npt_request_exact_and_round_trip() {
    let r = npt_request();
    let text = r.to_object().to_json();
    assert_eq!(
        text,
        format!(
            r#"{{"sessionId":"{SID}","rvdHost":"1.2.3.4","rvdPort":40002,"requestedPort":22,"requestedHost":"localhost","authenticateToRvd":true,"clientNonce":"{CN}","rvdNonce":"{RN}","encryptRvdTraffic":true,"clientEphemeralPK":"MIIB","clientEphemeralPKType":"rsa2048","timeout":30000}}"#
        )
    );
    assert_eq!(
        NptRequest::from_object(&Object::parse(&text).unwrap()),
        Ok(r.clone())
    );

    let with_suite = NptRequest {
        suite: Some("x25519-chacha20poly1305".into()),
        client_suite_pk: Some("cGs=".into()),
        suite_aead: None,
        suite_binding: None,
        requested_at: None,
        ..r.clone()
    };
    let text = with_suite.to_object().to_json();
    assert!(text.ends_with(
        r#","timeout":30000,"suite":"x25519-chacha20poly1305","clientSuitePK":"cGs="}"#
    ));
    assert_eq!(
        NptRequest::from_object(&Object::parse(&text).unwrap()),
        Ok(with_suite.clone())
    );
    // The AEAD offer comes last, and only a string is accepted.
    let with_aead = NptRequest {
        suite_aead: Some("aes-256-gcm".into()),
        suite_binding: None,
        requested_at: None,
        ..with_suite
    };
    let text = with_aead.to_object().to_json();
    assert!(text.ends_with(r#","clientSuitePK":"cGs=","suiteAead":"aes-256-gcm"}"#));
    assert_eq!(
        NptRequest::from_object(&Object::parse(&text).unwrap()),
        Ok(with_aead)
    );
    let bad = text.replace(r#""aes-256-gcm""#, "1");
    assert!(NptRequest::from_object(&Object::parse(&bad).unwrap()).is_err());

    // timeout is optional (default 60000 ms).
    let mut o = Object::new();
    for (k, v) in r.to_object().iter() {
        if k != "timeout" {
            o.push(k, v.clone());
        }
    }
    assert_eq!(NptRequest::from_object(&o).unwrap().timeout_ms, 60000);

    // Signed and verified end to end.
    let env = envelope::sign(&r.to_object(), client_key()).unwrap();
    let payload = envelope::open(&env, &client_pub()).unwrap();
    assert_eq!(NptRequest::from_object(&payload), Ok(r));
}

#[test]
fn npt_request_type_checks() {
    let base = npt_request().to_object();
    let with = |k: &str, v: Value| {
        let mut o = base.clone();
        o.push(k, v);
        NptRequest::from_object(&o)
    };
    let without = |k: &str| {
        let mut o = Object::new();
        for (key, v) in base.iter() {
            if key != k {
                o.push(key, v.clone());
            }
        }
        NptRequest::from_object(&o)
    };
    assert_eq!(without("rvdNonce"), Err(MessageError::Missing("rvdNonce")));
    assert_eq!(
        without("clientEphemeralPK"),
        Err(MessageError::Missing("clientEphemeralPK"))
    );
    assert_eq!(
        with("rvdPort", Value::from("40002")),
        Err(MessageError::WrongType("rvdPort"))
    );
    assert_eq!(
        with("rvdPort", Value::Int(70000)),
        Err(MessageError::BadValue("rvdPort"))
    );
    assert_eq!(
        with("requestedPort", Value::Int(0)),
        Err(MessageError::BadValue("requestedPort"))
    );
    assert_eq!(
        with("encryptRvdTraffic", Value::Null),
        Err(MessageError::WrongType("encryptRvdTraffic"))
    );
    assert_eq!(
        with("timeout", Value::Int(-1)),
        Err(MessageError::BadValue("timeout"))
    );
    assert_eq!(
        with("timeout", Value::from("60")),
        Err(MessageError::WrongType("timeout"))
    );
    assert_eq!(
        with("suite", Value::Int(1)),
        Err(MessageError::WrongType("suite"))
    );
}

#[test]
fn ssh_request_exact_and_parse() {
    let r = SshRequest {
        session_id: SID.into(),
        host: "1.2.3.4".into(),
        port: 40002,
        authenticate_to_rvd: true,
        client_nonce: Some(CN.into()),
        rvd_nonce: Some(RN.into()),
        encrypt_rvd_traffic: true,
        client_ephemeral_pk: Some("MIIB".into()),
        client_ephemeral_pk_type: Some("rsa2048".into()),
        suite: None,
        client_suite_pk: None,
        suite_aead: None,
        suite_binding: None,
        requested_at: None,
    };
    let text = r.to_object().to_json();
    assert_eq!(
        text,
        format!(
            r#"{{"direct":true,"sessionId":"{SID}","host":"1.2.3.4","port":40002,"authenticateToRvd":true,"clientNonce":"{CN}","rvdNonce":"{RN}","encryptRvdTraffic":true,"clientEphemeralPK":"MIIB","clientEphemeralPKType":"rsa2048"}}"#
        )
    );
    assert_eq!(
        SshRequest::from_object(&Object::parse(&text).unwrap()),
        Ok(r)
    );

    // v4 client: only the four legacy members; booleans default to false.
    let v4 = Object::parse(r#"{"direct":true,"sessionId":"s","host":"h","port":1}"#).unwrap();
    let p = SshRequest::from_object(&v4).unwrap();
    assert!(!p.authenticate_to_rvd && !p.encrypt_rvd_traffic);
    assert_eq!(p.rvd_nonce, None);

    let reverse = Object::parse(r#"{"direct":false,"sessionId":"s","host":"h","port":1}"#).unwrap();
    assert_eq!(
        SshRequest::from_object(&reverse),
        Err(MessageError::Unsupported("direct"))
    );
    let no_direct = Object::parse(r#"{"sessionId":"s","host":"h","port":1}"#).unwrap();
    assert_eq!(
        SshRequest::from_object(&no_direct),
        Err(MessageError::Missing("direct"))
    );
}

#[test]
fn session_response_forms() {
    let npt = SessionResponse {
        session_id: SID.into(),
        session_aes_key: Some("a2V5".into()),
        session_iv: Some("aXY=".into()),
        ephemeral_private_key: None,
        suite: None,
        daemon_suite_pk: None,
        suite_aead: None,
        suite_binding: None,
    };
    let text = npt.to_object().to_json();
    assert_eq!(
        text,
        format!(
            r#"{{"status":"connected","sessionId":"{SID}","sessionAESKey":"a2V5","sessionIV":"aXY="}}"#
        )
    );
    assert_eq!(
        SessionResponse::from_object(&Object::parse(&text).unwrap()),
        Ok(npt.clone())
    );

    // Dart ssh form: ephemeralPrivateKey after sessionId; --no-et gives null key and IV.
    let ssh = SessionResponse {
        ephemeral_private_key: Some("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n".into()),
        session_aes_key: None,
        session_iv: None,
        ..npt.clone()
    };
    assert_eq!(
        ssh.to_object().to_json(),
        format!(
            r#"{{"status":"connected","sessionId":"{SID}","ephemeralPrivateKey":"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n","sessionAESKey":null,"sessionIV":null}}"#
        )
    );

    // Our suite members are appended last.
    let suite = SessionResponse {
        suite: Some("s1".into()),
        daemon_suite_pk: Some("cGs=".into()),
        suite_aead: None,
        suite_binding: None,
        ..npt.clone()
    };
    assert!(suite
        .to_object()
        .to_json()
        .ends_with(r#""sessionIV":"aXY=","suite":"s1","daemonSuitePK":"cGs="}"#));
    let chosen = SessionResponse {
        suite_aead: Some("aes-256-gcm".into()),
        suite_binding: None,
        ..suite
    };
    let text = chosen.to_object().to_json();
    assert!(text.ends_with(r#""daemonSuitePK":"cGs=","suiteAead":"aes-256-gcm"}"#));
    assert_eq!(
        SessionResponse::from_object(&Object::parse(&text).unwrap()),
        Ok(chosen)
    );

    // C daemon form: ephemeralPrivateKey null, last.
    let c = Object::parse(&format!(
        r#"{{"status":"connected","sessionId":"{SID}","sessionAESKey":"a2V5","sessionIV":"aXY=","ephemeralPrivateKey":null}}"#
    ))
    .unwrap();
    assert_eq!(SessionResponse::from_object(&c), Ok(npt));

    let bad = Object::parse(r#"{"status":"failed","sessionId":"s"}"#).unwrap();
    assert_eq!(
        SessionResponse::from_object(&bad),
        Err(MessageError::BadValue("status"))
    );
    let no_sid = Object::parse(r#"{"status":"connected"}"#).unwrap();
    assert_eq!(
        SessionResponse::from_object(&no_sid),
        Err(MessageError::Missing("sessionId"))
    );

    assert!(is_error_reply(
        "Daemon does not permit connections to localhost:22"
    ));
    assert!(!is_error_reply("{\"payload\":{}}"));
}

#[test]
fn ping_response_forms() {
    let dart = PingResponse {
        device_name: "rpi".into(),
        device_group_name: Some("__none__".into()),
        version: "5.6.3".into(),
        core_package_version: "6.2.0".into(),
        supported_features: PingResponse::standard_features(false),
        allowed_services: vec!["localhost:22".into(), "localhost:3389".into()],
    };
    let text = dart.to_json();
    assert_eq!(
        text,
        r#"{"devicename":"rpi","deviceGroupName":"__none__","version":"5.6.3","corePackageVersion":"6.2.0","supportedFeatures":{"srAuth":true,"srE2ee":true,"acceptsPublicKeys":false,"supportsPortChoice":true,"adjustableTimeout":true},"allowedServices":["localhost:22","localhost:3389"]}"#
    );
    assert_eq!(PingResponse::parse(&text), Ok(dart.clone()));
    assert_eq!(
        dart.first_missing(&[Feature::SrAuth, Feature::SrE2ee, Feature::AcceptsPublicKeys]),
        Some(Feature::AcceptsPublicKeys)
    );

    // C daemon variant: no deviceGroupName, no adjustableTimeout, wildcard port as 0.
    let c = PingResponse::parse(r#"{"devicename":"d","version":"0.2.0","corePackageVersion":"c0.1.0","supportedFeatures":{"srAuth":true,"srE2ee":true,"acceptsPublicKeys":true,"supportsPortChoice":true},"allowedServices":["*:0"]}"#).unwrap();
    assert_eq!(c.device_group_name, None);
    assert!(!c.supports("adjustableTimeout"));
    assert_eq!(c.allowed_services, ["*:0"]);

    // v4 daemon: no supportedFeatures means only acceptsPublicKeys (noports.md §1.6).
    let v4 =
        PingResponse::parse(r#"{"devicename":"d","version":"4.0.0","corePackageVersion":"4"}"#)
            .unwrap();
    assert!(v4.supports("acceptsPublicKeys"));
    assert!(!v4.supports("srAuth"));

    assert_eq!(
        PingResponse::parse("{}"),
        Err(MessageError::Missing("devicename"))
    );
    assert_eq!(
        PingResponse::parse(r#"{"devicename":"d","supportedFeatures":[]}"#),
        Err(MessageError::WrongType("supportedFeatures"))
    );

    let table = [
        (
            "acceptsPublicKeys",
            "accept ssh public keys from the client",
        ),
        ("srAuth", "authenticate to the socket rendezvous"),
        ("srE2ee", "encrypt traffic to the socket rendezvous"),
        (
            "supportsPortChoice",
            "support requests for specific device ports",
        ),
        (
            "adjustableTimeout",
            "support the 'timeout' value in npt session requests",
        ),
    ];
    for (name, desc) in table {
        assert_eq!(feature_description(name), Some(desc));
    }
    assert_eq!(
        Feature::AdjustableTimeout.missing_message(),
        "This device daemon does not support the 'timeout' value in npt session requests"
    );
}

#[test]
fn policy_rpc_forms() {
    let req = PolicyRequest {
        req_id: 1729765230123456,
        daemon_atsign: "@device".into(),
        daemon_device_name: "rpi".into(),
        daemon_device_group_name: "__none__".into(),
        client_atsign: "@client".into(),
    };
    let text = req.to_json();
    assert_eq!(
        text,
        r#"{"reqId":1729765230123456,"payload":{"daemonAtsign":"@device","daemonDeviceName":"rpi","daemonDeviceGroupName":"__none__","clientAtsign":"@client"}}"#
    );
    assert_eq!(PolicyRequest::parse(&text), Ok(req));

    let decision = PolicyDecision {
        authorized: true,
        message: None,
        permit_open: vec!["localhost:22".into(), "*:80".into()],
    };
    let resp = PolicyResponse {
        req_id: 42,
        resp_type: RpcRespType::Success,
        payload: decision.to_object(),
        message: None,
    };
    let text = resp.to_json();
    assert_eq!(
        text,
        r#"{"reqId":42,"respType":"success","payload":{"authorized":true,"message":null,"permitOpen":["localhost:22","*:80"]},"message":null}"#
    );
    let parsed = PolicyResponse::parse(&text).unwrap();
    assert_eq!(parsed, resp);
    assert_eq!(parsed.decision(), Ok(decision));

    let ack = PolicyResponse::parse(r#"{"reqId":42,"respType":"ack","payload":{},"message":null}"#)
        .unwrap();
    assert_eq!(ack.resp_type, RpcRespType::Ack);
    assert_eq!(ack.decision(), Err(MessageError::BadValue("respType")));

    let denied = PolicyResponse::parse(r#"{"reqId":1,"respType":"success","payload":{"authorized":false,"message":"Exception: x"},"message":null}"#).unwrap();
    let d = denied.decision().unwrap();
    assert!(!d.authorized);
    assert_eq!(d.message.as_deref(), Some("Exception: x"));
    assert!(d.permit_open.is_empty());

    assert_eq!(
        PolicyResponse::parse(r#"{"reqId":1,"respType":"maybe","payload":{}}"#),
        Err(MessageError::BadValue("respType"))
    );
    assert_eq!(
        PolicyResponse::parse(r#"{"reqId":"1","respType":"ack","payload":{}}"#),
        Err(MessageError::WrongType("reqId"))
    );
    let bad_po = PolicyResponse::parse(
        r#"{"reqId":1,"respType":"success","payload":{"authorized":true,"permitOpen":[1]}}"#,
    )
    .unwrap();
    assert_eq!(
        bad_po.decision(),
        Err(MessageError::WrongType("permitOpen"))
    );
}
