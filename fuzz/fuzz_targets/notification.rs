#![no_main]
//! Monitor notification JSON (atprotocol.md §8.3) on hostile input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = noports::at::notification::parse_notification_id(text);
    }
});
