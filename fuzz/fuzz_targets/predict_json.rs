//! The `/predict` body: `api::json::parse` (media-type check, then serde_json into the handler's
//! input type) on a hand-built `inferd::http::Request`, as the router passes it. Never panics;
//! a body accepted under a non-JSON media type is a bug; an accepted body round-trips.
//!
//! `PredictInput` is private to src/api/handlers/mod.rs; `Input` below mirrors it field for
//! field (`text`, optional `model`, unknown fields refused): keep the two in step.
//!
//! Input: an optional first line `Content-Type: <value>`, then the body.
#![no_main]

use inferd::api::{ApiError, json};
use inferd::http::{ConnInfo, Request};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Input {
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    let (headers, body) = match data.strip_prefix(b"Content-Type:") {
        Some(rest) => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let value = String::from_utf8_lossy(&rest[..end]).trim().to_owned();
            let body = rest.get(end + 1..).unwrap_or(&[]);
            (vec![("content-type".to_owned(), value)], body)
        }
        None => (Vec::new(), data),
    };
    let conn = ConnInfo {
        peer: ([127, 0, 0, 1], 40000).into(),
        tls: true,
        client_cert: None,
    };
    let req = Request::new("POST", "/predict", headers, body.to_vec(), conn);
    let json_type = json::require_json(&req).is_ok();
    match json::parse::<Input>(&req) {
        Ok(input) => {
            assert!(json_type, "a body accepted under {:?}", req.media_type());
            let again: Input =
                serde_json::from_slice(&serde_json::to_vec(&input).expect("serialize"))
                    .expect("round trip");
            assert_eq!(again, input);
        }
        Err(ApiError::UnsupportedMediaType) => assert!(!json_type),
        Err(ApiError::Malformed(_) | ApiError::Unprocessable { .. }) => assert!(json_type),
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
