//! Cost of one rate-limit check (governor GCRA over a DashMap) with 1 thousand and 1 million
//! tracked keys: a per-address check (open routes) and a per-principal check.

use criterion::{Criterion, criterion_group, criterion_main};
use inferd::auth::{Method, Principal};
use inferd::config::{Rate, RateLimitConfig};
use inferd::limiter::Limiter;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

fn limiter(keys: u32) -> Limiter {
    // A quota nobody reaches, so every check takes the same (accepting) path.
    let rate = Rate::parse("1000000/second").expect("rate");
    let config = RateLimitConfig {
        default: rate,
        anonymous_per_ip: rate,
        max_tracked_keys: 2_000_000,
        ..RateLimitConfig::default()
    };
    let limiter = Limiter::new(&config);
    for i in 0..keys {
        let _ = limiter.check_anonymous(ip(i));
        let _ = limiter.check_principal(&principal(i));
    }
    limiter
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn principal(i: u32) -> Principal {
    Principal {
        id: format!("device-{i}"),
        method: Method::ApiKey,
        scopes: vec!["predict".into()],
        client: None,
    }
}

fn bench(c: &mut Criterion) {
    for (label, keys) in [("1k", 1_000u32), ("1M", 1_000_000)] {
        let limiter = limiter(keys);
        let mut i = 0u32;
        c.bench_function(&format!("limiter/ip/{label}_keys"), |b| {
            b.iter(|| {
                i = (i + 7919) % keys;
                black_box(limiter.check_anonymous(black_box(ip(i))).is_ok())
            })
        });
        let who = principal(keys / 2);
        c.bench_function(&format!("limiter/principal/{label}_keys"), |b| {
            b.iter(|| black_box(limiter.check_principal(black_box(&who)).is_ok()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
