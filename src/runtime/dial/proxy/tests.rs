//! Unit tests of `proxy.rs`.
use super::*;

#[test]
fn parses_the_three_schemes_and_hides_credentials() {
    let p = Proxy::parse("http://proxy.corp:3128").unwrap();
    assert_eq!(
        (p.kind, p.host.as_str(), p.port),
        (Kind::Http, "proxy.corp", 3128)
    );
    assert!(p.auth.is_none());
    let p = Proxy::parse(" SOCKS5://al%40ice:s%3Acret@10.0.0.1:1080/ ").unwrap();
    assert_eq!(
        (p.kind, p.host.as_str(), p.port),
        (Kind::Socks5, "10.0.0.1", 1080)
    );
    assert_eq!(p.auth, Some(("al@ice".into(), "s:cret".into())));
    assert_eq!(p.to_string(), "socks5://10.0.0.1:1080");
    assert!(!format!("{p:?}").contains("cret"));
    let p = Proxy::parse("socks5h://[::1]:9050").unwrap();
    assert_eq!((p.kind, p.host.as_str()), (Kind::Socks5h, "::1"));
    assert_eq!(p.to_string(), "socks5h://[::1]:9050");
}

#[test]
fn refuses_malformed_urls_without_echoing_the_password() {
    for bad in [
        "",
        "proxy:3128",
        "ftp://h:1",
        "https://h:443",
        "http://h",
        "http://h:0",
        "http://h:99999",
        "http://h:x",
        "http://:80",
        "http://h:80/path",
        "http://h:80?q",
        "http://:pw@h:80",
        "http://u:p@:80",
        "http://h h:80",
        "http://[zz]:80",
        "http://u:%zz@h:80",
    ] {
        assert!(Proxy::parse(bad).is_err(), "{bad:?} should be refused");
    }
    let e = Proxy::parse("http://u:topsecret@h").unwrap_err();
    assert!(!e.contains("topsecret"), "{e}");
}

/// A scripted peer: replies are fixed bytes; everything written is recorded.
struct Script {
    reply: futures_lite::io::Cursor<Vec<u8>>,
    written: Vec<u8>,
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.reply).poll_read(cx, buf)
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn run(url: &str, target: Target<'_>, reply: &[u8]) -> (io::Result<()>, Vec<u8>, Vec<u8>) {
    let proxy = Proxy::parse(url).unwrap();
    let mut s = Script {
        reply: futures_lite::io::Cursor::new(reply.to_vec()),
        written: Vec::new(),
    };
    let r = futures_lite::future::block_on(handshake(&mut s, &proxy, target, 6464));
    let pos = usize::try_from(s.reply.position()).unwrap();
    let left = reply[pos..].to_vec();
    (r, s.written, left)
}

#[test]
fn http_connect_sends_basic_auth_and_stops_at_the_reply_head() {
    let (r, w, left) = run(
        "http://bob:pw@p:3128",
        Target::Name("atserver.example"),
        b"HTTP/1.1 200 Connection established\r\nX: y\r\n\r\nTLSBYTES",
    );
    r.unwrap();
    let w = String::from_utf8(w).unwrap();
    assert!(
        w.starts_with("CONNECT atserver.example:6464 HTTP/1.1\r\n"),
        "{w}"
    );
    assert!(w.contains("Proxy-Authorization: Basic Ym9iOnB3\r\n"), "{w}");
    assert!(w.ends_with("\r\n\r\n"));
    assert_eq!(left, b"TLSBYTES", "tunnel bytes must not be swallowed");
}

#[test]
fn http_refusals_and_hostile_replies_are_clear_errors() {
    let cases: [(&[u8], &str); 6] = [
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "407 Proxy Authentication Required",
        ),
        (
            b"HTTP/1.0 403 Forbidden\r\n\r\n",
            "refused CONNECT to [::1]:6464: HTTP/1.0 403 Forbidden",
        ),
        (
            b"HTTP/1.1 200 OK\r\n",
            "closed the connection during CONNECT",
        ),
        (b"", "closed the connection during CONNECT"),
        (b"SSH-2.0-nope\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 2000000000000 X\r\n\r\n", "not HTTP/1.x"),
    ];
    for (reply, want) in cases {
        let (r, _, _) = run("http://p:3128", Target::Ip("::1".parse().unwrap()), reply);
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
        assert!(e.contains("http://p:3128"), "{e}");
    }
    let huge = vec![b'A'; MAX_HTTP_HEAD + 10];
    let (r, _, _) = run("http://p:3128", Target::Name("h"), &huge);
    assert!(r.unwrap_err().to_string().contains("oversized"));
    let (r, w, _) = run("http://p:3128", Target::Name("h\r\nX: 1"), b"");
    assert!(r.unwrap_err().to_string().contains("invalid host name"));
    assert!(w.is_empty(), "nothing is sent for a hostile host name");
}

#[test]
fn socks5_with_and_without_auth() {
    // No auth, IPv4 target, bound address IPv4; trailing tunnel bytes untouched.
    let (r, w, left) = run(
        "socks5://p:1080",
        Target::Ip("10.1.2.3".parse().unwrap()),
        &[5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0, b'X'],
    );
    r.unwrap();
    assert_eq!(w, [5, 1, 0, 5, 1, 0, 1, 10, 1, 2, 3, 0x19, 0x40]);
    assert_eq!(left, b"X");
    // User/password, name target, bound address as a name.
    let (r, w, left) = run(
        "socks5h://u:pw@p:1080",
        Target::Name("ab"),
        &[5, 2, 1, 0, 5, 0, 0, 3, 2, b'z', b'z', 0, 1],
    );
    r.unwrap();
    assert_eq!(
        w,
        [5, 2, 0, 2, 1, 1, b'u', 2, b'p', b'w', 5, 1, 0, 3, 2, b'a', b'b', 0x19, 0x40]
    );
    assert!(left.is_empty());
}

#[test]
fn socks5_refusals_and_hostile_replies_are_clear_errors() {
    let cases: [(&str, &[u8], &str); 9] = [
        (
            "socks5://p:1",
            &[5, 0xff],
            "none of our authentication methods",
        ),
        ("socks5://p:1", &[4, 0], "not a SOCKS5 proxy"),
        (
            "socks5://p:1",
            &[5],
            "closed the connection during the SOCKS5 greeting",
        ),
        ("socks5://p:1", &[5, 2], "did not offer"),
        (
            "socks5://u:p@p:1",
            &[5, 2, 1, 1],
            "rejected the user name and password",
        ),
        (
            "socks5://p:1",
            &[5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0],
            "SOCKS5 reply 2 (connection not allowed by ruleset)",
        ),
        ("socks5://p:1", &[5, 0, 5, 0, 0, 9], "address type 9"),
        ("socks5://p:1", &[5, 0, 6, 0, 0, 1], "version byte 0x06"),
        (
            "socks5://p:1",
            &[5, 0, 5, 0, 0, 3, 200, 1, 2],
            "closed the connection during the SOCKS5 connect reply",
        ),
    ];
    for (url, reply, want) in cases {
        let (r, _, _) = run(url, Target::Ip("127.0.0.1".parse().unwrap()), reply);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(want),
            "{url} {reply:?}: {e:?} should contain {want:?}"
        );
        assert!(!e.contains("u:p@"), "{e}");
    }
    let long = "a".repeat(256);
    let (r, w, _) = run("socks5h://p:1", Target::Name(&long), &[5, 0]);
    assert!(r.is_err());
    assert!(w.is_empty());
}

#[test]
fn no_proxy_matching() {
    let list = vec!["corp.example".to_string(), "localhost".to_string()];
    assert!(exempt(&list, "corp.example"));
    assert!(exempt(&list, "A.Corp.Example."));
    assert!(exempt(&list, "localhost"));
    assert!(!exempt(&list, "evilcorp.example"));
    assert!(!exempt(&list, "root.atsign.org"));
    assert!(exempt(&["*".to_string()], "anything"));
    assert!(!exempt(&[], "anything"));
}
