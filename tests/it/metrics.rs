//! `GET /metrics` over TLS: scope-protected, OpenMetrics text, and the series move with the
//! traffic the router, the server and the model workers see.

use crate::support::{Conn, DIGIT, TestServer};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[test]
fn metrics_need_the_metrics_scope() {
    let server = TestServer::start();
    assert_eq!(server.request("GET", "/metrics", &[], b"").status, 401);
    let (key, entry) = inferd::auth::api_key::generate("reader", vec!["predict".into()]).unwrap();
    let path = &server.config.auth.api_keys_file;
    let mut file: inferd::auth::api_key::KeysFile =
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file.key.push(entry);
    let mut config = server.config.clone();
    std::fs::write(path, toml::to_string(&file).unwrap()).unwrap();
    config.log.access = false;
    server.reload(config).unwrap();
    let r = server.request("GET", "/metrics", &[("X-API-Key", &key)], b"");
    assert_eq!(r.status, 403);
    let r = server.request("GET", "/metrics", &[("X-API-Key", &server.key)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    // What Prometheus sends.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let r = server.request(
        "GET",
        "/metrics",
        &[("X-API-Key", &server.key), ("Accept", accept)],
        b"",
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&r.body).ends_with("# EOF\n"));
}

#[test]
fn series_move_after_requests() {
    let server = TestServer::start();
    let before = server.metrics();
    assert_eq!(
        value(
            &before,
            "inferd_model{model=\"digits\",version=\"1\",task=\"tensor\"}"
        ),
        1.0
    );
    assert!(before.contains("inferd_build_info{version=\""));
    for _ in 0..3 {
        assert_eq!(
            server.post_json("/v2/models/digits/infer", DIGIT).status,
            200
        );
    }
    let bad = server.request("GET", "/v2/models/digits", &[("X-API-Key", "nope")], b"");
    assert_eq!(bad.status, 401);
    // A TLS handshake that fails: plain text on the TLS port.
    let mut plain = Conn::open(server.addr, None);
    plain.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.wait_closed(std::time::Duration::from_secs(10)));
    let after = server.metrics();
    let infer = "inferd_requests_total{route=\"/v2/models/infer\",status=\"200\"}";
    assert_eq!(value(&after, infer), 3.0);
    assert_eq!(
        value(
            &after,
            "inferd_request_duration_seconds_count{route=\"/v2/models/infer\"}"
        ),
        3.0
    );
    // The start-up warm-up ran once too.
    let runs = "inferd_inference_duration_seconds_count{model=\"digits\",bucket=\"-\"}";
    assert!(!before.contains(runs), "no inference before the requests");
    assert_eq!(value(&after, runs), 3.0);
    assert_eq!(
        value(&after, "inferd_auth_failures_total{reason=\"unknown_key\"}"),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "inferd_requests_total{route=\"/v2/models\",status=\"401\"}"
        ),
        1.0
    );
    assert!(value(&after, "inferd_tls_handshake_failures_total") >= 1.0);
    assert!(value(&after, "inferd_open_connections") >= 1.0);
    assert_eq!(value(&after, "inferd_inference_queue_depth"), 0.0);
    assert!(after.contains("# TYPE inferd_requests_total counter"));
}
