//! Rate limits over real TLS: per-principal quotas with overrides, the per-address budget
//! for failed authentication, `POST /token` and open routes, trusted proxies, and the IETF
//! draft headers on 200s and 429s.

use crate::support::{Resp, TestServer, add_key};
use inferd::config::{Config, ProxyHeader, Rate};

fn rate(text: &str) -> Rate {
    Rate::parse(text).unwrap()
}

fn metadata(server: &TestServer, key: &str, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("X-API-Key", key)];
    all.extend_from_slice(headers);
    server.request("GET", "/v2/models/digits", &all, b"")
}

fn assert_429(r: &Resp, policy: &str, retry_after: u64) {
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.code(), "rate_limited");
    assert_eq!(
        r.header("retry-after"),
        Some(retry_after.to_string().as_str())
    );
    assert!(
        r.header("ratelimit-policy")
            .unwrap()
            .starts_with(&format!("\"{policy}\";")),
        "{:?}",
        r.header("ratelimit-policy")
    );
    assert!(r.header("ratelimit").unwrap().contains(";r=0;"));
}

#[test]
fn burst_then_429_with_retry_after() {
    let server = TestServer::start_with(|c| c.rate_limit.default = rate("3/minute"));
    for remaining in [2, 1, 0] {
        let r = metadata(&server, &server.key, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-policy"), Some(r#""default";q=3;w=60"#));
        let expected = format!(r#""default";r={remaining};t="#);
        assert!(
            r.header("ratelimit").unwrap().starts_with(&expected),
            "{r:?}"
        );
    }
    // One request every 20 s: the next one is allowed 20 s (less a few ms) after the third.
    let r = metadata(&server, &server.key, &[]);
    assert_429(&r, "default", 20);
    assert_eq!(r.header("ratelimit"), Some(r#""default";r=0;t=60"#));
    // Inference is refused the same way, before the body is read.
    let r = server.post_json("/v2/models/digits/infer", "{}");
    assert_429(&r, "default", 20);
}

#[test]
fn per_key_override_applies_to_that_key_only() {
    let mut other = String::new();
    let server = TestServer::start_with(|c: &mut Config| {
        c.rate_limit.default = rate("100/minute");
        c.rate_limit.keys.insert("admin".into(), rate("1/minute"));
        other = add_key(c, "reader", "predict");
    });
    assert_eq!(metadata(&server, &server.key, &[]).status, 200);
    assert_429(&metadata(&server, &server.key, &[]), "key", 60);
    for _ in 0..5 {
        let r = metadata(&server, &other, &[]);
        assert_eq!(r.status, 200);
        assert!(r.header("ratelimit").unwrap().starts_with("\"default\";"));
    }
}

#[test]
fn failed_authentication_is_throttled_per_address_before_the_check() {
    let server = TestServer::start_with(|c| c.rate_limit.failed_auth_per_ip = rate("2/minute"));
    let wrong = "inferd_0000000000000000000000000000000000000000000";
    for _ in 0..2 {
        assert_eq!(metadata(&server, wrong, &[]).status, 401);
    }
    // The third failure spends the budget: 429 from now on, even with the right key, which
    // is not even looked at, while open routes keep answering.
    assert_429(&metadata(&server, wrong, &[]), "failed_auth", 30);
    let r = metadata(&server, &server.key, &[]);
    assert_429(&r, "failed_auth", 30);
    let r = server.request("GET", "/v2/models/digits", &[], b"");
    assert_eq!(r.status, 429, "missing credentials are barred too");
    assert_eq!(
        server.request("GET", "/v2/health/live", &[], b"").status,
        200
    );
    let bearer = server.request(
        "GET",
        "/v2/models/digits",
        &[("Authorization", "Bearer e30.e30.AAAA")],
        b"",
    );
    assert_eq!(bearer.status, 429);
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let wrong = "inferd_0000000000000000000000000000000000000000000";
    let trusting = TestServer::start_with(|c| {
        c.rate_limit.failed_auth_per_ip = rate("1/minute");
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    });
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    assert_eq!(
        metadata(&trusting, wrong, &from("198.51.100.1")).status,
        401
    );
    assert_eq!(
        metadata(&trusting, wrong, &from("198.51.100.1")).status,
        429
    );
    // Another client behind the same proxy is not barred; neither is the proxy itself.
    assert_eq!(
        metadata(&trusting, &trusting.key, &from("198.51.100.2")).status,
        200
    );
    let forwarded = [("Forwarded", "for=\"[2001:db8::7]:4711\"")];
    assert_eq!(metadata(&trusting, &trusting.key, &forwarded).status, 200);
    assert_eq!(metadata(&trusting, &trusting.key, &[]).status, 200);

    let untrusting = TestServer::start_with(|c| c.rate_limit.failed_auth_per_ip = rate("1/minute"));
    assert_eq!(
        metadata(&untrusting, wrong, &from("198.51.100.1")).status,
        401
    );
    assert_eq!(
        metadata(&untrusting, wrong, &from("198.51.100.1")).status,
        429
    );
    // The header is the client's own claim: ignored, the peer (127.0.0.1) is barred.
    assert_eq!(
        metadata(&untrusting, &untrusting.key, &from("198.51.100.2")).status,
        429
    );
}

#[test]
fn token_endpoint_and_open_routes_have_their_own_per_address_quotas() {
    let server = TestServer::start_with(|c| {
        c.rate_limit.token_per_ip = rate("1/minute");
        c.rate_limit.anonymous_per_ip = rate("2/minute");
    });
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let first = server.request("POST", "/token", &form, b"grant_type=client_credentials");
    assert_eq!(first.status, 401, "no client credentials");
    let second = server.request("POST", "/token", &form, b"grant_type=client_credentials");
    assert_429(&second, "token", 60);
    for _ in 0..2 {
        let r = server.request("GET", "/healthz", &[], b"");
        assert_eq!(r.status, 200);
        assert!(r.header("ratelimit").unwrap().starts_with("\"anonymous\";"));
    }
    assert_429(
        &server.request("GET", "/healthz", &[], b""),
        "anonymous",
        30,
    );
    // Authenticated callers are counted by who they are, not by address.
    assert_eq!(metadata(&server, &server.key, &[]).status, 200);
}

#[test]
fn security_headers_on_every_answer() {
    let server = TestServer::start();
    for r in [
        metadata(&server, &server.key, &[]),
        metadata(&server, "nope", &[]),
        server.request("GET", "/nowhere", &[], b""),
    ] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000")
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("vary"), Some("origin"));
    }
    let plain = TestServer::start_with(|c| c.tls = None);
    let r = plain.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

/// `n` copies of the DIGIT input as one batch.
fn digits_batch(n: usize) -> String {
    let one: serde_json::Value = serde_json::from_str(crate::support::DIGIT).unwrap();
    let row = one["inputs"][0]["data"].as_array().unwrap().clone();
    let data: Vec<serde_json::Value> = (0..n).flat_map(|_| row.clone()).collect();
    serde_json::json!({"inputs": [{"name": "input", "shape": [n, 64], "datatype": "FP32", "data": data}]})
        .to_string()
}

#[test]
fn quota_is_charged_by_batch_items_not_by_request() {
    let server = TestServer::start_with(|c| c.rate_limit.default = rate("10/minute"));
    let infer = |n| server.post_json("/v2/models/digits/infer", &digits_batch(n));
    let r = infer(6);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit"), Some(r#""default";r=4;t=36"#));
    // 6 more items do not fit in the 4 left: 429, with the wait for the missing two.
    let r = infer(6);
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "rate_limited");
    assert_eq!(r.header("retry-after"), Some("12"));
    // A batch larger than the whole burst could never pass: 422, not a wait.
    let r = infer(11);
    assert_eq!((r.status, r.code().as_str()), (422, "cost_exceeds_quota"));
    assert_eq!(r.header("retry-after"), None);
    assert!(r.header("ratelimit-policy").is_some());
}

#[test]
fn text_costs_one_unit_per_started_32_tokens() {
    let server = TestServer::start_with(|c| {
        c.models.enabled = vec!["sentiment".into()];
        c.rate_limit.default = rate("10/minute");
    });
    let predict =
        |text: &str| server.post_json("/predict", &serde_json::json!({ "text": text }).to_string());
    // A short sentence: one unit, like any request.
    let r = predict("a fine film");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit"), Some(r#""default";r=9;t=6"#));
    // About 100 tokens: four units.
    let r = predict(&"a fine film with a good story ".repeat(14));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit"), Some(r#""default";r=5;t=30"#));
}

#[test]
fn only_the_named_forwarding_header_is_believed() {
    let wrong = "inferd_0000000000000000000000000000000000000000000";
    let start = |header: ProxyHeader| {
        TestServer::start_with(move |c| {
            c.rate_limit.failed_auth_per_ip = rate("1/minute");
            c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            c.trusted_proxy_header = header;
        })
    };
    // nginx appends to X-Forwarded-For and passes the client's own Forwarded through: a
    // client writing `Forwarded: for=<victim>` must not spend the victim's budget.
    let xff = start(ProxyHeader::XForwardedFor);
    let spoof = [
        ("Forwarded", "for=198.51.100.9"),
        ("X-Forwarded-For", "203.0.113.66"),
    ];
    assert_eq!(metadata(&xff, wrong, &spoof).status, 401);
    assert_eq!(metadata(&xff, wrong, &spoof).status, 429);
    let victim = [("X-Forwarded-For", "198.51.100.9")];
    assert_eq!(metadata(&xff, &xff.key, &victim).status, 200);
    // Named the other way round, Forwarded is the one believed.
    let fwd = start(ProxyHeader::Forwarded);
    let spoof = [
        ("Forwarded", "for=203.0.113.66"),
        ("X-Forwarded-For", "198.51.100.9"),
    ];
    assert_eq!(metadata(&fwd, wrong, &spoof).status, 401);
    assert_eq!(metadata(&fwd, wrong, &spoof).status, 429);
    let victim = [("Forwarded", "for=198.51.100.9")];
    assert_eq!(metadata(&fwd, &fwd.key, &victim).status, 200);
}

#[test]
fn a_limiter_out_of_room_says_so_to_the_client_and_in_metrics() {
    let server = TestServer::start_with(|c| {
        c.rate_limit.max_tracked_keys = 16;
        // A bucket that refills within the test is dropped by the purge at the cap.
        c.rate_limit.anonymous_per_ip = rate("600/minute");
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    });
    let mut codes = Vec::new();
    for i in 0..40 {
        let client = format!("198.51.100.{i}");
        let r = server.request("GET", "/healthz", &[("X-Forwarded-For", &client)], b"");
        codes.push((r.status, r.code()));
    }
    let refused: Vec<_> = codes.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!refused.is_empty(), "{codes:?}");
    assert!(
        refused.iter().all(|(_, c)| c == "too_many_clients"),
        "{codes:?}"
    );
    assert!(server.metrics().lines().any(|l| l.starts_with(
        "inferd_rate_limited_total{policy=\"anonymous\",reason=\"too_many_clients\"}"
    )));
}

#[test]
fn new_connections_beyond_an_address_share_are_closed_before_the_handshake() {
    let server = TestServer::start_with(|c| c.rate_limit.connections_per_ip = rate("3/minute"));
    let statuses: Vec<Option<u16>> = (0..5)
        .map(|_| {
            let mut conn = server.connect();
            conn.try_send(&crate::support::raw_request("GET", "/healthz", &[], b""))
                .ok()
                .and_then(|()| conn.try_response(false).ok())
                .map(|r| r.status)
        })
        .collect();
    assert_eq!(&statuses[..3], &[Some(200); 3]);
    assert_eq!(&statuses[3..], &[None, None], "closed without a handshake");
}

#[test]
fn refusal_log_lines_are_budgeted() {
    let server = TestServer::start_with(|c| {
        c.log.refusal_lines_per_s = 1;
        c.log.access = true;
    });
    let wrong = "inferd_0000000000000000000000000000000000000000000";
    let mut conn = server.connect();
    for _ in 0..30 {
        conn.send(&crate::support::raw_request(
            "GET",
            "/v2/models/digits",
            &[("X-API-Key", wrong)],
            b"",
        ));
        assert_eq!(conn.response().status, 401);
    }
    // 30 audit lines and 30 access lines asked for; a burst of 5 (and maybe a line or two
    // refilled while the test ran) written, the rest counted.
    let suppressed: f64 = server
        .metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix("inferd_log_lines_suppressed_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(suppressed >= 50.0, "{suppressed} suppressed");
}
