//! Fuzzes what the relay does with a socket's first bytes (noports.md §4.3): split the auth
//! line off, then the full check (envelope parse, nonce, signature against a fixed key), and the
//! relay request/response decoders (§4.1). None may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use noports::crypto::rsa::RsaPublicKey;
use noports::noports::relay_msg::{self, RelayRequest, RelayResponse};

/// A throw-away RSA-2048 public key (SPKI); no private half exists anywhere.
const SPKI: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnZwNWrytRsDBUI0ha8WhwO+t2NlLvzTRJvk74kF0v/g5UeLfpVm5hm2bcUDz5DewA0jhCMmftJuMoeKC96N148gN1s6Eu7PfGoVI01vOKYExmhyVGP3DGU5l4uvk0Nrf3T+TjbqtYcuzexwsqjGzXZL/KDFtnuUaKp36vnQCeAEsO1lRi1Dr7FpndJJIOTKKaNDuqV5cNihVQtiyOtGB7R64VppqCA2t/88xNYhDAWqPmJidyjdimAoxTBZ/I5Z4Lz4idNEgUrhE9k57zVAVKYd3mMDb/UKuTVIJ0ziqW6/cScpfterlV27UlHPHCLa3IBD+DOrRSk+XiFv0q3RBiwIDAQAB";

fn key() -> &'static RsaPublicKey {
    static K: OnceLock<RsaPublicKey> = OnceLock::new();
    K.get_or_init(|| RsaPublicKey::from_spki_b64(SPKI).expect("fixed key"))
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Several lines in one read, as a socket may deliver them.
    for _ in 0..4 {
        match relay_msg::take_auth_line(rest) {
            Ok(Some((line, tail))) => {
                let _ = relay_msg::verify_auth_line(line, "s-1", "c-1", "r-1", key());
                rest = tail;
            }
            _ => break,
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RelayRequest::parse(text);
        let _ = RelayResponse::parse(text);
    }
});
