//! TLS: on by default, 1.2 and 1.3, the RUSTSEC-2024-0336 pattern, plain HTTP only on request.

use crate::support::{Conn, TestServer, raw_request};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn client_hello_then_close_notify_does_not_pin_a_thread() {
    // A long header deadline: the connection must end because the peer closed, not by timeout.
    let server =
        TestServer::start_with(|c| c.limits.header_timeout = std::time::Duration::from_secs(30));
    let config = server.tls.clone().unwrap();
    let mut client =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    // A plaintext close_notify alert record (TLS 1.2 framing), right behind the ClientHello.
    hello.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00]);
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.write_all(&hello).unwrap();
    let started = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = [0u8; 4096];
    let closed = loop {
        match tcp.read(&mut sink) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break false;
            }
            Err(_) => break true,
        }
    };
    assert!(closed, "server kept the connection after close_notify");
    assert!(started.elapsed() < Duration::from_secs(2));
    // And the server is fine.
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn tls_1_2_and_1_3_both_work() {
    let server = TestServer::start();
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_file_iter(
            server.dir.path().join("state/tls/ca.pem"),
        )
        .unwrap()
        {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    };
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        let mut conn = Conn::open(server.addr, Some(Arc::new(config)));
        conn.send(&raw_request("GET", "/healthz", &[], b""));
        assert_eq!(conn.response().status, 200, "{version:?}");
    }
}

#[test]
fn plaintext_to_a_tls_port_is_refused() {
    let server = TestServer::start();
    let mut conn = Conn::open(server.addr, None);
    conn.send(&raw_request("GET", "/healthz", &[], b""));
    assert!(
        conn.try_response(false).is_err(),
        "a TLS port answered plaintext HTTP"
    );
}

#[test]
fn plain_http_only_when_configured() {
    let server = TestServer::start_with(|c| c.tls = None);
    assert!(server.tls.is_none());
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
}
