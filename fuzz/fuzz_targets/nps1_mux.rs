//! Fuzzes the nps1 multiplexer's state machine (docs/suite-v1.md §5, issue 24): the daemon's
//! side of a session over loopback sockets against a peer holding the session keys that sends
//! OPEN, DATA, FIN, RESET, WINDOW and CLOSE frames (and malformed or unsealed ones) in any
//! order, under shrunk stream, window and queue limits. The session must end in time, keep its
//! windows and limits, and give back all the queued memory it counted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = noports::tunnel::fuzz_mux(data) {
        panic!("multiplexer property broken: {e}");
    }
});
