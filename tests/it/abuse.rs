//! Hostile clients: slow heads, stalled bodies, idle handshakes, too many connections.
//! Every case ends with the right status or a clean close, and the server still serving.

use crate::support::{Conn, TestServer, raw_request};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn trickled_head_is_cut_at_the_header_deadline_while_others_are_served() {
    let server = TestServer::start_with(|c| c.limits.header_timeout = Duration::from_millis(1500));
    let started = Instant::now();
    let mut slow = server.connect();
    slow.handshake();
    let head = raw_request("GET", "/healthz", &[("X-Padding", &"p".repeat(200))], b"");
    let mut served_meanwhile = false;
    let mut closed = false;
    for byte in head.iter() {
        slow.send(&[*byte]);
        // The read timeout paces the trickle: one byte per 100 ms, far slower than the deadline.
        if slow.wait_closed(Duration::from_millis(100)) {
            closed = true;
            break;
        }
        if !served_meanwhile {
            served_meanwhile = server.request("GET", "/healthz", &[], b"").status == 200;
        }
    }
    let elapsed = started.elapsed();
    assert!(closed, "trickling client kept its connection");
    assert!(served_meanwhile);
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(4),
        "cut after {elapsed:?}"
    );
    assert!(String::from_utf8_lossy(slow.received()).contains(" 408 "));
}

#[test]
fn silent_connection_is_cut_at_the_header_deadline() {
    // No ClientHello at all: the handshake shares the header deadline.
    let server = TestServer::start_with(|c| c.limits.header_timeout = Duration::from_millis(800));
    let started = Instant::now();
    let mut silent = Conn::open(server.addr, None);
    assert!(silent.wait_closed(Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn stalled_body_is_408() {
    let server = TestServer::start_with(|c| c.limits.body_timeout = Duration::from_millis(800));
    let mut conn = server.connect();
    conn.send(format!("POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: 100\r\n\r\n{{\"text\":", server.key).as_bytes());
    let r = conn.response();
    assert_eq!((r.status, r.code().as_str()), (408, "request_timeout"));
    assert!(conn.closed_by_server());
}

#[test]
fn connections_over_the_cap_get_503() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2);
    // Two connections mid-request (head not finished) hold both slots.
    let mut held: Vec<Conn> = (0..2).map(|_| server.connect()).collect();
    for conn in &mut held {
        conn.handshake();
        conn.send(b"GET /healthz HTTP/1.1\r\n");
    }
    let r = server.request("GET", "/healthz", &[], b"");
    assert_eq!((r.status, r.code().as_str()), (503, "overloaded"));
    assert_eq!(r.header("retry-after"), Some("1"));
    // Finishing the held requests frees the slots again.
    for conn in &mut held {
        conn.send(b"Host: x\r\nConnection: close\r\n\r\n");
        assert_eq!(conn.response().status, 200);
    }
    drop(held);
    let resumed = (0..200).any(|_| server.request("GET", "/healthz", &[], b"").status == 200);
    assert!(resumed);
}

#[test]
fn idle_keep_alive_connections_make_room_at_the_cap() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2);
    let mut idle: Vec<Conn> = (0..2).map(|_| server.connect()).collect();
    for conn in &mut idle {
        conn.send(&raw_request("GET", "/healthz", &[], b""));
        assert_eq!(conn.response().status, 200);
    }
    // Both slots are taken by idle keep-alive connections: they close to make room.
    for conn in &mut idle {
        assert!(conn.wait_closed(Duration::from_secs(5)));
    }
    // Their threads end after a short lingering close; then a new client gets in.
    drop(idle);
    let served = (0..200).any(|_| server.request("GET", "/healthz", &[], b"").status == 200);
    assert!(served);
}

#[test]
fn unauthenticated_request_is_refused_before_its_body() {
    let server = TestServer::start();
    let mut conn = server.connect();
    // A 4 MB body is announced but never sent: the 401 must come from the head alone,
    // without 100 Continue, and the connection must close.
    conn.send(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4000000\r\n\r\n");
    let r = conn.response();
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert!(conn.closed_by_server());
    let mut conn = server.connect();
    conn.send(b"POST /v2/models/nope/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n");
    assert_eq!(conn.response().status, 401);
}

#[test]
fn non_ascii_authorization_is_401_not_500() {
    let server = TestServer::start();
    let mut conn = server.connect();
    let mut raw = b"GET /v2/models/digits HTTP/1.1\r\nHost: x\r\nAuthorization: abcdef".to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(b"\r\n\r\n");
    conn.send(&raw);
    assert_eq!(conn.response().status, 401);
}

#[test]
fn hundreds_of_slowloris_connections_do_not_starve_a_real_client() {
    let server = TestServer::start_with(|c| c.limits.header_timeout = Duration::from_secs(20));
    let slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            // Half a ClientHello-sized blob of nothing useful, then silence.
            let _ = s.write_all(&[0x16, 0x03, 0x01]);
            s
        })
        .collect();
    let started = Instant::now();
    let r = server.request("GET", "/v2/health/ready", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served after {:?}",
        started.elapsed()
    );
    drop(slow);
}
