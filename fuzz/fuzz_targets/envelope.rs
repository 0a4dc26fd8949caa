//! Fuzzes the signed-envelope parser (noports.md §2.1) and the relay's auth-line and
//! control-message decoders that sit in front of it (§4.3, §5.4): none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noports::noports::{envelope, relay_msg, ControlDecoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((line, _rest))) = relay_msg::take_auth_line(data) {
        let _ = envelope::parse(line);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(env) = envelope::parse(text) {
            let _ = env.payload.to_json();
            let _ = env.raw_payload();
        }
    }
    // The control stream arrives in pieces of any size: the first byte picks it (1-64).
    let mut d = ControlDecoder::new();
    let piece = 1 + usize::from(data.first().copied().unwrap_or(6) % 64);
    for chunk in data.chunks(piece) {
        d.feed(chunk);
        while d.next().is_some() {}
    }
});
