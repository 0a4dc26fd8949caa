//! Fuzzes the nps1 record layer receiver (docs/suite-v1.md §4–§5): length headers, AEAD open
//! of hostile ciphertext, and the frame parser on arbitrary authenticated plaintext; a sealed
//! record must open to the bytes that were sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = noports::noports::suite::fuzz_records(data) {
        panic!("record layer property broken: {e}");
    }
});
