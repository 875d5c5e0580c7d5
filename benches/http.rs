//! Per-request costs in front of inference: request-head parse and body framing under the
//! default `[limits]`, OIP infer body decode (JSON and Triton binary), and the API-key check
//! (SHA-256, then a constant-time compare with every stored hash) against 1, 100 and 10k keys.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inferd::auth::api_key::{self, KeyRing};
use inferd::config::Config;
use inferd::http::parse::{self, HeadLimits};
use inferd::model::tensor::Unchecked;
use inferd::oip;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The server's own defaults (`[limits]` left out), and its body cap.
fn limits() -> (HeadLimits, usize) {
    let text =
        "[tls]\nenabled = false\n[models]\ndir = \"models\"\n[auth]\napi_keys_file = \"k\"\n";
    let config =
        Config::from_sources(text, "bench.toml", Path::new("/"), |_| None).expect("minimal config");
    let s = inferd::http_settings(&config);
    let limits = HeadLimits {
        max_header_bytes: s.max_header_bytes,
        max_headers: s.max_headers,
        max_request_line: s.max_request_line,
    };
    (limits, s.max_body_bytes)
}

/// What tritonclient sends for `POST /v2/models/digits/infer`, with a bearer token of the
/// size `inferd token` mints.
fn kserve_head() -> String {
    let token = format!("eyJ{}", "a".repeat(330));
    format!(
        "POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\
         User-Agent: Python-urllib3/2.2\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\n\
         Connection: keep-alive\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 412\r\n\r\n"
    )
}

/// What `curl` sends for `POST /predict` with an API key.
fn predict_head() -> String {
    format!(
        "POST /predict HTTP/1.1\r\nHost: localhost:8443\r\nUser-Agent: curl/8.5.0\r\n\
         Accept: */*\r\nX-API-Key: inferd_{}\r\nContent-Type: application/json\r\n\
         Content-Length: 48\r\n\r\n",
        "0f".repeat(32)
    )
}

/// A head just inside every default cap: a 4 KiB target, 62 headers (the cap is 64), about
/// 15 KiB in all (the cap is 16 KiB), a Connection header of many tokens and a repeated
/// Content-Length list.
fn hostile_head(limits: &HeadLimits) -> String {
    let mut head = format!(
        "POST /v2/models/digits/infer?{} HTTP/1.1\r\nHost: a\r\n\
         Connection: {}keep-alive\r\nContent-Length: 64, 64\r\n",
        "q=1&".repeat(1024),
        "x, ".repeat(40)
    );
    for i in 0..59 {
        head.push_str(&format!("X-Pad-{i:02}: {}\r\n", "v".repeat(170)));
    }
    head.push_str("\r\n");
    assert!(head.len() < limits.max_header_bytes, "inside the byte cap");
    head
}

/// `limits.max_headers + 1` small headers: refused with 431.
fn too_many_headers(limits: &HeadLimits) -> String {
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..limits.max_headers {
        head.push_str(&format!("X-{i}: v\r\n"));
    }
    head + "\r\n"
}

/// Everything decided from the head before a body byte is read (what the connection does).
fn parse_and_frame(raw: &[u8], limits: &HeadLimits, max_body: usize) -> bool {
    let Ok(Some((head, _))) = parse::parse_head(raw, limits) else {
        return false;
    };
    parse::framing(&head, max_body).is_ok() && head.keep_alive() && head.expects_continue().is_ok()
}

/// What the connection does for a client that sends one line per TCP segment: it re-parses
/// the head from its start whenever a read brings a line end, so every prefix is parsed.
fn parse_line_per_read(raw: &[u8], limits: &HeadLimits) -> bool {
    let ends = raw
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1);
    for end in ends {
        match parse::parse_head(&raw[..end], limits) {
            Ok(None) => continue,
            Ok(Some(_)) => return true,
            Err(_) => return false,
        }
    }
    false
}

fn bench_parse(c: &mut Criterion) {
    let (limits, max_body) = limits();
    let heads = [
        ("kserve_infer_bearer", kserve_head()),
        ("predict_api_key", predict_head()),
        ("hostile_62_headers_15KiB", hostile_head(&limits)),
    ];
    let mut group = c.benchmark_group("http/parse");
    for (name, raw) in &heads {
        assert!(parse_and_frame(raw.as_bytes(), &limits, max_body), "{name}");
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| parse_and_frame(black_box(raw.as_bytes()), &limits, max_body))
        });
    }
    let hostile = &heads[2].1;
    assert!(parse_line_per_read(hostile.as_bytes(), &limits));
    group.throughput(Throughput::Bytes(hostile.len() as u64));
    group.bench_function("hostile_62_headers_15KiB_line_per_read", |b| {
        b.iter(|| parse_line_per_read(black_box(hostile.as_bytes()), &limits))
    });
    let refused = too_many_headers(&limits);
    assert!(parse::parse_head(refused.as_bytes(), &limits).is_err());
    group.throughput(Throughput::Bytes(refused.len() as u64));
    group.bench_function("too_many_headers_431", |b| {
        b.iter(|| parse::parse_head(black_box(refused.as_bytes()), &limits).is_err())
    });
    group.finish();
}

/// `rows` x `cols` FP32 values as Python's json.dumps writes them (nested rows).
fn json_infer(rows: usize, cols: usize) -> String {
    let row = |r: usize| {
        let values: Vec<String> = (0..cols)
            .map(|i| format!("{:?}", ((r * cols + i) * 7919 % 1601) as f32 / 100.0))
            .collect();
        format!("[{}]", values.join(", "))
    };
    let data: Vec<String> = (0..rows).map(row).collect();
    format!(
        "{{\"id\": \"bench\", \"inputs\": [{{\"name\": \"input\", \"shape\": [{rows}, {cols}], \
         \"datatype\": \"FP32\", \"data\": [{}]}}], \"outputs\": [{{\"name\": \"probabilities\", \
         \"parameters\": {{\"binary_data\": false}}}}]}}",
        data.join(", ")
    )
}

/// The same request in Triton's binary extension: JSON header, then little-endian floats.
fn binary_infer(rows: usize, cols: usize) -> (Vec<u8>, usize) {
    let header = format!(
        "{{\"inputs\":[{{\"name\":\"input\",\"shape\":[{rows},{cols}],\"datatype\":\"FP32\",\
         \"parameters\":{{\"binary_data_size\":{}}}}}]}}",
        rows * cols * 4
    );
    let mut body = header.clone().into_bytes();
    for i in 0..rows * cols {
        body.extend_from_slice(&((i * 7919 % 1601) as f32 / 100.0).to_le_bytes());
    }
    (body, header.len())
}

fn bench_decode(c: &mut Criterion) {
    let (_, max_body) = limits();
    let mut group = c.benchmark_group("oip/decode");
    let bodies = [
        ("digits_1x64_json", json_infer(1, 64)),
        ("digits_64x64_json", json_infer(64, 64)),
        // The largest JSON tensor under the default 4 MiB body cap, roughly.
        ("fp32_512x512_json", json_infer(512, 512)),
    ];
    for (name, body) in &bodies {
        assert!(body.len() <= max_body, "{name} fits the body cap");
        assert!(
            oip::decode(body.as_bytes(), None, &Unchecked).is_ok(),
            "{name}"
        );
        // Milliseconds per call for the ~2 MB body: 10 samples, not 100, fit in 3 s.
        group.sample_size(if body.len() > 1 << 20 { 10 } else { 100 });
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| oip::decode(black_box(body.as_bytes()), None, &Unchecked).is_ok())
        });
    }
    let (body, header_len) = binary_infer(64, 64);
    group.sample_size(100);
    assert!(oip::decode(&body, Some(header_len), &Unchecked).is_ok());
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("digits_64x64_binary", |b| {
        b.iter(|| oip::decode(black_box(&body), Some(header_len), &Unchecked).is_ok())
    });
    group.finish();
}

/// A key ring of `n` generated keys, and the last key (no early exit: position is moot).
fn key_ring(n: usize) -> (KeyRing, String) {
    let mut text = String::new();
    let mut last = String::new();
    for i in 0..n {
        let (key, entry) =
            api_key::generate(&format!("k{i}"), vec!["predict".into()]).expect("system RNG");
        text.push_str(&format!(
            "[[key]]\nid = \"{}\"\nsha256 = \"{}\"\nscopes = [\"predict\"]\n",
            entry.id, entry.sha256
        ));
        last = key;
    }
    let ring = KeyRing::parse(&text, Path::new("bench-keys.toml")).expect("keys file");
    (ring, last)
}

fn bench_api_key(c: &mut Criterion) {
    let now = SystemTime::now();
    let miss = format!("inferd_{}", "ab".repeat(32));
    let mut group = c.benchmark_group("api_key");
    for (label, n) in [("1", 1), ("100", 100), ("10k", 10_000)] {
        let (ring, hit) = key_ring(n);
        assert!(ring.verify(&hit, now).is_ok());
        assert!(ring.verify(&miss, now).is_err());
        group.bench_function(format!("hit/{label}_keys"), |b| {
            b.iter(|| ring.verify(black_box(&hit), now).is_ok())
        });
        group.bench_function(format!("miss/{label}_keys"), |b| {
            b.iter(|| ring.verify(black_box(&miss), now).is_err())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Everything here takes micro- to milliseconds: 1 s warm-up and 3 s of samples per bench
    // keep the whole run (15 benches) near a minute on a busy 2-core machine.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_parse, bench_decode, bench_api_key
}
criterion_main!(benches);
