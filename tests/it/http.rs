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

/// Chunks `body` into pieces of `size` bytes, with an extension and a trailer field.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(size) {
        out.extend_from_slice(format!("{:x};piece=1\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Checksum: none\r\n\r\n");
    out
}

#[test]
fn chunked_request_bodies_are_decoded_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut conn = server.connect();
    let head = format!(
        "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        server.key
    );
    // As Go, Java and `curl -T -` send it: small chunks, then a keep-alive request after it.
    let mut raw = format!("{head}\r\n").into_bytes();
    raw.extend_from_slice(&chunked(crate::support::DIGIT.as_bytes(), 7));
    raw.extend_from_slice(&raw_request("GET", "/healthz", &[], b""));
    conn.send(&raw);
    let r = conn.response();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outputs"][0]["shape"], serde_json::json!([1, 10]));
    assert_eq!(
        conn.response().status,
        200,
        "the pipelined request after it"
    );
    // With 100-continue, the server asks for the chunks once the head is admitted.
    conn.send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes());
    assert_eq!(conn.response().status, 100);
    conn.send(&chunked(crate::support::DIGIT.as_bytes(), 4096));
    assert_eq!(conn.response().status, 200);
}

#[test]
fn token_bodies_over_a_few_kib_are_refused_before_they_are_read() {
    let server = TestServer::start();
    let form = "grant_type=client_credentials&".repeat(200);
    assert!(form.len() > inferd::auth::issue::MAX_FORM_BYTES);
    let mut conn = server.connect();
    // Only the head is sent: the answer comes without the body.
    conn.send(
        format!(
            "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            form.len()
        )
        .as_bytes(),
    );
    let r = conn.response();
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    assert!(String::from_utf8_lossy(&r.body).contains("4096"));
    assert!(conn.closed_by_server());
    // Chunked, the same cap holds while decoding.
    let mut conn = server.connect();
    let mut raw = b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(&chunked(form.as_bytes(), 1000));
    conn.send(&raw);
    assert_eq!(conn.response().status, 413);
    // Within the cap but with too many pairs: the form parser stops at 32.
    let pairs = "a=1&".repeat(40);
    let r = server.request(
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        pairs.as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
}

#[test]
fn bodies_beyond_the_in_flight_budget_wait_for_none_and_get_503_before_reading() {
    let server = TestServer::start_with(|c| {
        c.limits.max_body_bytes = 64 * 1024;
        c.limits.max_inflight_body_bytes = 64 * 1024;
    });
    let key = server.key.clone();
    let post = |len: usize| {
        format!(
            "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
        )
    };
    // One request holds 40 KiB of the 64 KiB budget while its body trickles in.
    let mut holder = server.connect();
    holder.send(post(40 * 1024).as_bytes());
    assert_eq!(holder.response().status, 100);
    let mut second = server.connect();
    second.send(post(30 * 1024).as_bytes());
    let r = second.response();
    assert_eq!((r.status, r.code().as_str()), (503, "overloaded"));
    assert_eq!(r.header("retry-after"), Some("1"));
    // What is left still fits a small body.
    let r = server.post_json("/v2/models/digits/infer", crate::support::DIGIT);
    assert_eq!(r.status, 200);
    // Once the holder's body is in and answered, its share returns to the budget.
    holder.send(&vec![b' '; 40 * 1024]);
    assert_eq!(holder.response().status, 400);
    let mut third = server.connect();
    third.send(post(60 * 1024).as_bytes());
    assert_eq!(third.response().status, 100);
}
