//! Fuzzes the policy service's parsers: the YAML subset of `npp_file`, the group rules built
//! from it, and the group records `npp_atserver` reads from its atServer. Never panics, and a
//! parsed group survives its record round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        noports::policy::fuzz_policy_text(text);
    }
});
