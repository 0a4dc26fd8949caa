//! Fuzzes the atserver's request side: line framing with its size cap, the verb parser
//! (atprotocol.md §5–§11) and the key-name parser behind it. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    noports::atserver::fuzz_request_bytes(data);
});
