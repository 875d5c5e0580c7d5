//! Reload (what SIGHUP does): a whole new app, or none. Keys, CORS, rate limits, models and
//! the TLS certificate change together; a broken file (bad TOML, bad PEM, corrupt ONNX)
//! keeps the old state serving; requests in flight finish; a load running across good and
//! broken reloads loses nothing.

use crate::support::{Conn, DIGIT, TestServer, client_tls, copy_digits, raw_request};
use inferd::config::{Config, Rate};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn reloads(server: &TestServer, outcome: &str) -> usize {
    let text = server.metrics();
    let series = format!("inferd_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn reload_swaps_cors_and_limits_and_keeps_the_old_state_on_broken_files() {
    let server = TestServer::start();
    let origin = "https://dashboard.local";
    let get = |server: &TestServer| {
        server.request(
            "GET",
            "/v2/models/digits",
            &[("X-API-Key", &server.key), ("Origin", origin)],
            b"",
        )
    };
    let r = get(&server);
    assert_eq!(r.header("access-control-allow-origin"), None);

    let mut good = server.config.clone();
    good.cors.allowed_origins = vec![origin.into()];
    good.rate_limit.default = Rate::parse("1000/minute").unwrap();
    server.reload(good.clone()).unwrap();
    let r = get(&server);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""default";q=1000;w=60"#)
    );

    // A corrupt model, a bad certificate, a broken keys file: each refused whole.
    let broken = tempfile::tempdir().unwrap();
    copy_digits(broken.path());
    std::fs::write(broken.path().join("digits/model.onnx"), b"not onnx").unwrap();
    let mut bad_model = good.clone();
    bad_model.models.dir = broken.path().to_path_buf();
    bad_model.cors.allowed_origins = vec![];
    let e = server.reload(bad_model).unwrap_err().to_string();
    assert!(e.contains("model.onnx"), "{e}");

    let pem = broken.path().join("cert.pem");
    std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nnonsense\n").unwrap();
    let mut bad_cert = good.clone();
    bad_cert.tls.as_mut().unwrap().cert = pem;
    let e = server.reload(bad_cert).unwrap_err().to_string();
    assert!(e.contains("cert.pem"), "{e}");

    let keys = broken.path().join("keys.toml");
    std::fs::write(&keys, "[[key]\nid = ").unwrap();
    let mut bad_keys = good.clone();
    bad_keys.auth.api_keys_file = keys;
    let e = server.reload(bad_keys).unwrap_err().to_string();
    assert!(e.contains("keys.toml"), "{e}");

    // Still the good state: CORS on, key accepted, same limits.
    let r = get(&server);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert_eq!(reloads(&server, "failure"), 3);
    assert_eq!(reloads(&server, "success"), 1);
}

#[test]
fn reload_serves_a_new_certificate_to_new_connections() {
    let server = TestServer::start();
    let mut old = server.connect();
    old.send(&raw_request("GET", "/healthz", &[], b""));
    assert_eq!(old.response().status, 200);

    let fresh = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_string()];
    let (ca, cert, key) = inferd::provision::issue_tls(&names).unwrap();
    for (name, text) in [("ca.pem", &ca), ("cert.pem", &cert), ("key.pem", &key)] {
        std::fs::write(fresh.path().join(name), text).unwrap();
    }
    let mut config = server.config.clone();
    let tls = config.tls.as_mut().unwrap();
    tls.cert = fresh.path().join("cert.pem");
    tls.key = fresh.path().join("key.pem");
    server.reload(config).unwrap();

    let mut new = Conn::open(server.addr, Some(client_tls(&fresh.path().join("ca.pem"))));
    new.send(&raw_request("GET", "/healthz", &[], b""));
    assert_eq!(new.response().status, 200);
    // The connection opened before keeps its session.
    old.send(&raw_request("GET", "/healthz", &[], b""));
    assert_eq!(old.response().status, 200);
    // New clients that only trust the old CA are refused now.
    let mut stale = server.connect();
    assert!(
        stale
            .try_send(&raw_request("GET", "/healthz", &[], b""))
            .is_err()
            || stale.try_response(false).is_err()
    );
}

#[test]
fn a_load_across_good_and_broken_reloads_loses_no_request() {
    let server = Arc::new(TestServer::start());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop, ok, failed) =
                (server.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut conn = server.connect();
                while !stop.load(Ordering::SeqCst) {
                    conn.send(&raw_request(
                        "POST",
                        "/v2/models/digits/infer",
                        &[
                            ("X-API-Key", &server.key),
                            ("Content-Type", "application/json"),
                        ],
                        DIGIT.as_bytes(),
                    ));
                    match conn.try_response(false) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("lost: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    let broken = tempfile::tempdir().unwrap();
    copy_digits(broken.path());
    std::fs::write(broken.path().join("digits/model.onnx"), b"\x08\x07garbage").unwrap();
    let good: Config = server.config.clone();
    let mut bad = good.clone();
    bad.models.dir = broken.path().to_path_buf();
    let mut outcomes = Vec::new();
    for round in 0..6 {
        let target = ok.load(Ordering::SeqCst) + 20;
        while ok.load(Ordering::SeqCst) < target && failed.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let config = if round % 2 == 0 {
            good.clone()
        } else {
            bad.clone()
        };
        outcomes.push(server.reload(config).is_ok());
    }
    let target = ok.load(Ordering::SeqCst) + 20;
    while ok.load(Ordering::SeqCst) < target && failed.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(outcomes, [true, false, true, false, true, false]);
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(ok.load(Ordering::SeqCst) >= 140);
}
