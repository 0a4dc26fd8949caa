//! Issue 16: blocking name resolution runs on helper threads, never on the executor's two
//! threads, so slow resolvers do not stall other sessions.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use noports::runtime::dial::{resolve, Route};
use noports::runtime::{block_on, spawn, timeout, unblock};
use noports::tunnel::connect_tcp;

#[test]
fn slow_resolution_does_not_block_other_sessions() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut b = [0u8; 64];
                while let Ok(n) = c.read(&mut b) {
                    if n == 0 || c.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    block_on(async {
        // Eight resolutions stuck for 3 s each: more than the executor has threads.
        let slow: Vec<_> = (0..8)
            .map(|_| spawn(unblock(|| std::thread::sleep(Duration::from_secs(3)))))
            .collect();
        noports::runtime::sleep(Duration::from_millis(100)).await;
        // Meanwhile another session resolves a name, connects and moves data at once.
        let started = Instant::now();
        let s = connect_tcp(
            "localhost",
            port,
            "service",
            Route::Direct,
            Duration::from_secs(5),
        )
        .await
        .expect("connect by name");
        (&s).write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        timeout(Duration::from_secs(2), (&s).read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(&got, b"ping");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "blocked for {took:?}");
        for t in slow {
            assert!(t.await.is_some());
        }
        // Literal addresses need no helper; unknown names fail cleanly.
        assert_eq!(
            resolve("127.0.0.1", 9).await.unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(resolve("no-such-host.invalid", 9).await.is_err());
    });
}
