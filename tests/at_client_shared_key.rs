//! Shared keys made concurrently: callers for one peer at once get one key, the one stored for
//! that peer on the atServer (a second key made by a racing caller would leave values the peer
//! reads with the stored key undecryptable); callers for other peers go ahead meanwhile. Its own
//! test binary: the trust anchors (NOPORTS_CA_FILE) are per process.
#[path = "common/stack.rs"]
mod stack;

use std::path::Path;
use std::time::Duration;

use futures_lite::future::zip;
use noports::at::{AtKeys, AtSign, PutOptions};
use noports::crypto::{aes_ctr, b64};
use noports::json::Object;
use noports::runtime::{block_on, timeout};
use stack::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_noports"))
}

/// base64(RSA(base64(K))) -> K, with `who`'s private key.
fn unwrap_key(stack: &Stack, who: &str, wrapped: &str) -> [u8; 32] {
    let keys = AtKeys::load(&stack.keys(who)).unwrap();
    let text = keys
        .encrypt_private
        .decrypt(&b64::decode(wrapped.trim()).unwrap())
        .unwrap();
    let raw = b64::decode(std::str::from_utf8(&text).unwrap().trim()).unwrap();
    raw.as_slice().try_into().unwrap()
}

#[test]
fn concurrent_callers_for_one_peer_make_one_shared_key() {
    let stack = Stack::start(bin(), "at-shared-key", &[]);
    std::env::set_var("NOPORTS_CA_FILE", &stack.ca);
    block_on(timeout(Duration::from_secs(60), async {
        let alice = stack.at_client(CLIENT).await;
        alice.spread_requests(4);
        // Four connections open first, so the callers below run their look-ups side by side
        // (while extra connections log in, the first caller would finish alone).
        let noop = || async { alice.noop().await.unwrap() };
        zip(zip(noop(), noop()), zip(noop(), noop())).await;
        let (bob, relay) = (
            AtSign::parse(DEVICE).unwrap(),
            AtSign::parse(RELAY).unwrap(),
        );
        let put = |to: &AtSign, i: usize| {
            let (alice, to) = (alice.clone(), to.clone());
            async move {
                let value = format!("value {i} for {to}");
                let name = format!("v{i}.sharedkey");
                alice
                    .put_shared(&to, &name, &value, PutOptions::default())
                    .await
                    .unwrap();
            }
        };
        // Four at once for bob (none has a key yet), and two for the relay beside them.
        zip(
            zip(
                zip(put(&bob, 0), put(&bob, 1)),
                zip(put(&bob, 2), put(&bob, 3)),
            ),
            zip(put(&relay, 0), put(&relay, 1)),
        )
        .await;

        // The key bob reads from the server decrypts every value alice stored for him.
        let reader = stack.at_client(DEVICE).await;
        let wrapped = reader
            .request(&format!("lookup:shared_key{}", alice.atsign()))
            .await;
        let key = unwrap_key(&stack, DEVICE, &wrapped.unwrap());
        let mine = alice
            .llookup(&format!("shared_key.{}{}", bob.name(), alice.atsign()))
            .await
            .unwrap();
        assert_eq!(
            unwrap_key(&stack, CLIENT, &mine),
            key,
            "alice's copy is bob's"
        );
        for i in 0..4 {
            let all = reader
                .request(&format!("lookup:all:v{i}.sharedkey{}", alice.atsign()))
                .await
                .unwrap();
            let all = Object::parse(&all).unwrap();
            let iv = all
                .get_object("metaData")
                .unwrap()
                .get_str("ivNonce")
                .unwrap();
            let iv: [u8; 16] = b64::decode(iv).unwrap().as_slice().try_into().unwrap();
            let plain = aes_ctr::decrypt_b64(&key, &iv, all.get_str("data").unwrap());
            assert_eq!(
                plain.ok(),
                Some(format!("value {i} for {bob}")),
                "value {i}"
            );
        }
    }))
    .expect("shared-key creation stalled");
}
