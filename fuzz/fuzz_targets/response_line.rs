#![no_main]
//! atProtocol response framing and line parsing (atprotocol.md §2.3–§2.5) on hostile bytes.
use libfuzzer_sys::fuzz_target;
use noports::at::framing::{LineReader, Response};

fuzz_target!(|data: &[u8]| {
    let mut r = LineReader::new();
    // Feed in two pieces to exercise reassembly.
    let cut = data.len() / 2;
    r.feed(&data[..cut]);
    while let Some(line) = r.next_line() {
        if let Ok(l) = line {
            let _ = Response::parse(&l);
        }
    }
    r.feed(&data[cut..]);
    while let Some(line) = r.next_line() {
        if let Ok(l) = line {
            let _ = Response::parse(&l);
        }
    }
});
