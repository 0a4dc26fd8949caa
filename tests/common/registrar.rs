//! A test double of the atSign registrar's activation API (atprotocol.md §11.1) over HTTPS on
//! loopback: `POST …/authenticate/atsign` "sends" a code, `POST …/authenticate/atsign/activate`
//! answers the CRAM key for the right code and 403 otherwise. Its CA is written to a PEM file
//! for the client to trust. Every request is recorded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// One request as received: path, `Authorization` header, body.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

pub struct Registrar {
    /// `localhost:<port>`, for `-g`.
    pub address: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Registrar {
    /// Serves until the test process ends. `ca_out` receives the CA certificate (PEM) appended.
    pub fn start(code: &str, cramkey: &str, ca_out: &Path) -> Registrar {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ca_out)
            .unwrap();
        f.write_all(ca.pem().as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![leaf.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (code, cramkey, log) = (code.to_string(), cramkey.to_string(), seen.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                if let Some(req) = read_request(&mut tls) {
                    let (status, body) = answer(&req, &code, &cramkey);
                    log.lock().unwrap().push(req);
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        Registrar {
            address: format!("localhost:{port}"),
            seen,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(tls: &mut impl Read) -> Option<Seen> {
    let mut r = BufReader::new(tls);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().ok()?;
        } else if k.eq_ignore_ascii_case("authorization") {
            authorization = Some(v.trim().to_string());
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        path,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn answer(req: &Seen, code: &str, cramkey: &str) -> (&'static str, String) {
    match req.path.as_str() {
        "/api/app/v3/authenticate/atsign" => {
            ("200 OK", r#"{"message":"Sent Successfully"}"#.to_string())
        }
        "/api/app/v3/authenticate/atsign/activate"
            if req.body.contains(&format!("\"otp\":\"{code}\"")) =>
        {
            (
                "200 OK",
                format!(r#"{{"message":"Verified","cramkey":"{cramkey}"}}"#),
            )
        }
        "/api/app/v3/authenticate/atsign/activate" => {
            ("403 Forbidden", r#"{"message":"Invalid OTP"}"#.to_string())
        }
        _ => ("404 Not Found", r#"{"message":"no such path"}"#.to_string()),
    }
}
