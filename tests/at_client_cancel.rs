//! A request cut off half-way (its task ended at a deadline, as the daemon's handlers are) must
//! not leave its late answer on the connection for the next request to read as its own. Its
//! own test binary: the trust anchors (NOPORTS_CA_FILE) are per process.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::Duration;

use noports::runtime::{block_on, timeout};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

#[test]
fn a_request_cut_off_half_way_leaves_no_answer_for_the_next() {
    let stack = Stack::start(bin(), "at-cancel", &[]);
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    block_on(timeout(Duration::from_secs(90), async {
        let c = stack.at_client(CLIENT).await;
        let key = |i: usize| format!("cut{i}.test{CLIENT}");
        for i in 0..2 {
            c.update_raw(&key(i), &format!("value{i}")).await.unwrap();
        }
        // Poll each request once: it takes a connection, sends its command and waits for the
        // answer; dropping it then leaves that answer on its way. The next request must read
        // its own.
        let (mut cut, mut whole) = (0, 0);
        for step in 0..50 {
            match futures_lite::future::poll_once(c.llookup(&key(0))).await {
                None => cut += 1,
                Some(r) => {
                    assert_eq!(r.unwrap().trim(), "value0");
                    whole += 1;
                }
            }
            let next = c.llookup(&key(1)).await.unwrap();
            assert_eq!(
                next.trim(),
                "value1",
                "step {step}: a cut request's answer was read"
            );
        }
        eprintln!("{cut} requests cut off, {whole} whole");
        assert!(
            cut > 0 && whole > 0,
            "{cut} cut, {whole} whole: no request was cut half-way"
        );
    }))
    .expect("test timed out");
}
