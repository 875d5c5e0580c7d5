//! CORS over real TLS: preflights answered without credentials for allowed origins only,
//! CORS headers on actual answers (refusals included) for allowed origins, none at all for
//! others, and `Vary: Origin` everywhere. scripts/cors_browser.sh proves the same in Chromium.

use crate::support::{Resp, TestServer};
use inferd::config::CorsConfig;
use std::time::Duration;

const APP: &str = "https://dashboard.local:8443";
const EVIL: &str = "https://evil.local:8443";

fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.cors = CorsConfig {
            allowed_origins: vec![APP.into()],
            allow_credentials: false,
            allowed_methods: vec!["GET".into(), "POST".into()],
            allowed_headers: vec!["content-type".into(), "x-api-key".into()],
            max_age: Duration::from_secs(600),
        }
    })
}

fn preflight(server: &TestServer, origin: &str, method: &str) -> Resp {
    server.request(
        "OPTIONS",
        "/predict",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", "x-api-key,content-type"),
        ],
        b"",
    )
}

fn cors_headers(r: &Resp) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.starts_with("access-control-"))
        .map(|(n, _)| n.as_str())
        .collect()
}

#[test]
fn preflight_from_an_allowed_origin_needs_no_credentials() {
    let server = server();
    let r = preflight(&server, APP, "POST");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, x-api-key")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    // One Vary field naming Origin and the preflight's request fields.
    let vary: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "vary")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        vary,
        ["origin, access-control-request-method, access-control-request-headers"]
    );
}

#[test]
fn other_origins_get_no_cors_headers_at_all() {
    let server = server();
    for r in [
        preflight(&server, EVIL, "POST"),
        preflight(&server, "null", "POST"),
        preflight(&server, APP, "DELETE"),
    ] {
        assert_eq!(r.status, 204);
        assert!(cors_headers(&r).is_empty(), "{:?}", r.headers);
    }
    let r = server.request(
        "POST",
        "/predict",
        &[
            ("Origin", EVIL),
            ("X-API-Key", &server.key),
            ("Content-Type", "application/json"),
        ],
        br#"{"text": "x", "model": "digits"}"#,
    );
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers);
    assert_eq!(r.header("vary"), Some("origin"));
}

#[test]
fn allowed_origin_reads_answers_and_refusals_with_rate_limit_headers() {
    let server = server();
    let ok = server.request(
        "GET",
        "/v2/models/digits",
        &[("Origin", APP), ("X-API-Key", &server.key)],
        b"",
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP));
    assert!(
        ok.header("access-control-expose-headers")
            .unwrap()
            .contains("ratelimit")
    );
    assert!(ok.header("ratelimit").is_some());
    // A refusal is readable by the page too, so it can show why.
    let refused = server.request("GET", "/v2/models/digits", &[("Origin", APP)], b"");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some(APP));
    assert_eq!(refused.header("vary"), Some("origin"));
}
