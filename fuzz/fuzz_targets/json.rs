//! Fuzzes the strict JSON parser (noports.md §2.2): never panics, and whatever it accepts
//! re-serializes canonically to text that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noports::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = json::parse(text) {
        let canonical = v.to_json();
        let again = json::parse(&canonical).expect("canonical output must parse");
        assert_eq!(again, v);
        assert_eq!(again.to_json(), canonical);
    }
});
