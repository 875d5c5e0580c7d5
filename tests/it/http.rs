//! HTTP/1.1 behaviour of our own server: keep-alive, pipelining, HEAD, Expect, framing caps
//! and request-smuggling refusals, panic isolation.

use crate::support::{Conn, TestServer, raw_request};
use inferd::http::{ConnInfo, Request, Response, Server};
use std::sync::Arc;

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let server = TestServer::start();
    let mut conn = server.connect();
    let mut both = raw_request("GET", "/healthz", &[], b"");
    both.extend(raw_request("GET", "/nope", &[], b""));
    both.extend(raw_request("GET", "/v2", &[], b""));
    conn.send(&both);
    assert_eq!(conn.response().status, 200);
    assert_eq!(conn.response().status, 404);
    assert_eq!(conn.response().status, 200);
    // Same connection, later request.
    conn.send(&raw_request("GET", "/readyz", &[], b""));
    assert_eq!(conn.response().status, 200);
}

#[test]
fn head_has_length_but_no_body_and_connection_close_closes() {
    let server = TestServer::start();
    let mut conn = server.connect();
    conn.send(&raw_request("HEAD", "/v2", &[], b""));
    let r = conn.try_response(true).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    conn.send(&raw_request(
        "GET",
        "/healthz",
        &[("Connection", "close")],
        b"",
    ));
    let r = conn.response();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.closed_by_server());
}

#[test]
fn expect_100_continue_is_honoured() {
    let server = TestServer::start();
    let mut conn = server.connect();
    let body = br#"{"text": "hi"}"#;
    let head = format!(
        "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        server.key,
        body.len()
    );
    conn.send(head.as_bytes());
    assert_eq!(conn.response().status, 100);
    conn.send(body);
    assert_eq!(conn.response().status, 422);
}

#[test]
fn framing_caps_and_smuggling_shapes_are_refused() {
    let server = TestServer::start_with(|c| {
        c.limits.max_request_line_bytes = 1024;
        c.limits.max_header_bytes = 4096;
        c.limits.max_headers = 32;
    });
    let send = |raw: String| {
        let mut conn = server.connect();
        conn.send(raw.as_bytes());
        conn.response()
    };
    let r = send(format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(2000)
    ));
    assert_eq!((r.status, r.code().as_str()), (414, "uri_too_long"));
    let r = send(format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    ));
    assert_eq!(r.status, 431);
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = send(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n"));
    assert_eq!(r.status, 431);
    let r = send("POST /predict HTTP/1.1\r\nHost: x\r\n\r\n".into());
    assert_eq!((r.status, r.code().as_str()), (411, "length_required"));
    // Chunked bodies are decoded (RFC 9112 §7.1); this one has no credentials: 401 from
    // the head, before any chunk is read.
    let r = send(
        "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
    );
    assert_eq!(r.status, 401);
    let r = send(
        "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
    );
    assert_eq!((r.status, r.code().as_str()), (501, "not_implemented"));
    let r = send("POST /predict HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into());
    assert_eq!(r.status, 400);
    let r = send("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc".into());
    assert_eq!(r.status, 400);
    let r = send(
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
            .into(),
    );
    assert_eq!(r.status, 400);
    let r = send("GARBAGE\r\n\r\n".into());
    assert_eq!(r.status, 400);
    let r = send(
        "POST /predict HTTP/1.1\r\nHost: x\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx".into(),
    );
    assert_eq!(r.status, 417);
}

#[test]
fn huge_content_length_unauthenticated_is_413_and_server_lives() {
    let server = TestServer::start();
    let mut conn = server.connect();
    conn.send(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000\r\n\r\n");
    let r = conn.response();
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    assert!(conn.closed_by_server());
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn a_refused_head_request_gets_no_body() {
    let server = TestServer::start();
    let mut conn = server.connect();
    conn.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000\r\n\r\n");
    let r = conn.try_response(true).unwrap();
    assert_eq!(r.status, 413);
    assert!(conn.closed_by_server());
    assert!(
        conn.received().is_empty(),
        "a body followed the HEAD answer"
    );
}

#[test]
fn a_panicking_handler_answers_500_and_the_server_lives() {
    let handler = Arc::new(|req: &Request| {
        if req.path == "/panic" {
            panic!("handler bug");
        }
        Response::empty(200)
    });
    let settings = inferd::http_settings(&crate::support::provisioned().1);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), settings, None, handler).unwrap();
    let mut conn = Conn::open(server.local_addr(), None);
    conn.send(&raw_request("GET", "/panic", &[], b""));
    let r = conn.response();
    assert_eq!((r.status, r.code().as_str()), (500, "internal"));
    assert!(!String::from_utf8_lossy(&r.body).contains("handler bug"));
    conn.send(&raw_request("GET", "/fine", &[], b""));
    assert_eq!(conn.response().status, 200);
    server.stopper().stop();
    server.wait();
}

#[test]
fn request_type_splits_query() {
    let conn = ConnInfo {
        peer: "127.0.0.1:1".parse().unwrap(),
        tls: false,
        client_cert: None,
    };
    let r = Request::new("GET", "/v2?x=1", vec![], vec![], conn.clone());
    assert_eq!((r.path.as_str(), r.query.as_deref()), ("/v2", Some("x=1")));
    // Absolute form (RFC 9112 §3.2.2).
    for (target, path, query) in [
        (
            "http://localhost:8443/v2/health/live",
            "/v2/health/live",
            None,
        ),
        ("HTTPS://device/v2?x=1", "/v2", Some("x=1")),
        ("http://device", "/", None),
        ("http://device?q", "/", Some("q")),
    ] {
        let r = Request::new("GET", target, vec![], vec![], conn.clone());
        assert_eq!(
            (r.path.as_str(), r.query.as_deref()),
            (path, query),
            "{target}"
        );
    }
}

#[test]
fn absolute_form_targets_are_routed() {
    let server = TestServer::start();
    let r = server.request("GET", "https://localhost/v2/health/live", &[], b"");
    assert_eq!(r.status, 200);
}
