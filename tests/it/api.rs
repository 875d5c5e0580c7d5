//! Authentication, routing and content-type statuses from real requests.

use crate::support::{DIGIT, TestServer};
use inferd::provision;
use serde_json::json;
use std::sync::Mutex;

#[test]
fn missing_or_wrong_key_is_401_and_health_is_open() {
    let server = TestServer::start();
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[("Content-Type", "application/json")],
        DIGIT.as_bytes(),
    );
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert!(r.header("www-authenticate").is_some());
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[("X-API-Key", "inferd_guess")],
        DIGIT.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[("Authorization", "Bearer abc.def.ghi")],
        DIGIT.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="inferd", error="invalid_token""#)
    );
    for path in [
        "/healthz",
        "/readyz",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
    ] {
        assert_eq!(server.request("GET", path, &[], b"").status, 200, "{path}");
    }
    assert_eq!(
        server.request("GET", "/v2", &[], b"").json()["name"],
        "inferd"
    );
    let r = server.post_json("/v2/models/digits/infer", DIGIT);
    assert_eq!(r.status, 200);
}

#[test]
fn key_without_the_scope_is_403() {
    let narrow = Mutex::new(String::new());
    let server = TestServer::start_with(|c| {
        *narrow.lock().unwrap() = provision::rotate_key(
            &c.auth.api_keys_file,
            "narrow",
            vec!["predict:sentiment".into()],
        )
        .unwrap();
    });
    let key = narrow.into_inner().unwrap();
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[("X-API-Key", &key)],
        DIGIT.as_bytes(),
    );
    assert_eq!((r.status, r.code().as_str()), (403, "insufficient_scope"));
    let r = server.request("GET", "/v2/models/digits", &[("X-API-Key", &key)], b"");
    assert_eq!(r.status, 403);
}

#[test]
fn unknown_route_is_404_and_wrong_method_is_405_with_allow() {
    let server = TestServer::start();
    let r = server.request("GET", "/nope", &[], b"");
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = server.request("GET", "/predict", &[("X-API-Key", &server.key)], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = server.request("DELETE", "/v2/models/digits", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = server.request("POST", "/healthz", &[], b"");
    assert_eq!(r.status, 405);
}

#[test]
fn non_json_content_type_is_415() {
    let server = TestServer::start();
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[("X-API-Key", &server.key), ("Content-Type", "text/plain")],
        DIGIT.as_bytes(),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (415, "unsupported_media_type")
    );
    // Clients that send no Content-Type (some OIP clients) are taken as JSON.
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[("X-API-Key", &server.key)],
        DIGIT.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[
            ("X-API-Key", &server.key),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        json!({"inputs": []}).to_string().as_bytes(),
    );
    assert_eq!((r.status, r.code().as_str()), (422, "missing_input"));
}
