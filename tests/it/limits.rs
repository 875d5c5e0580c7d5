//! Rate limits over real TLS: per-principal quotas with overrides, the per-address budget
//! for failed authentication, `POST /token` and open routes, trusted proxies, and the IETF
//! draft headers on 200s and 429s.

use crate::support::{Resp, TestServer};
use inferd::config::{Config, Rate};

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

/// Adds an API key with one scope to the keys file before the server starts.
fn add_key(c: &Config, id: &str, scope: &str) -> String {
    use inferd::auth::api_key::{self, KeysFile};
    let (key, entry) = api_key::generate(id, vec![scope.into()]).unwrap();
    let path = &c.auth.api_keys_file;
    let mut file: KeysFile = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file.key.push(entry);
    std::fs::write(path, toml::to_string(&file).unwrap()).unwrap();
    key
}
