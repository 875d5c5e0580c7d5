//! Token verification cost: the first sighting of a token (Ed25519 signature and claims) against
//! a repeat sighting answered from the verifier's cache (SHA-256 of the token, one map lookup).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use inferd::auth::jwt::{
    Claims, Revocations, TokenPolicy, TokenSigner, TokenVerifier, TrustedKeys,
};
use std::hint::black_box;
use std::time::{Duration, SystemTime};

fn setup() -> (TokenSigner, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (private_pem, _, _) = inferd::provision::token_keypair().expect("keypair");
    let path = tmp.path().join("signing-key.pem");
    std::fs::write(&path, private_pem).expect("write key");
    (TokenSigner::load(&path).expect("load key"), tmp)
}

fn verifier(signer: &TokenSigner) -> TokenVerifier {
    let mut keys = TrustedKeys::empty();
    keys.add(signer.kid(), &signer.public_key()).expect("key");
    let policy = TokenPolicy {
        issuer: Some("https://issuer.test".into()),
        audience: Some("fleet".into()),
        ..TokenPolicy::default()
    };
    TokenVerifier::new(keys, policy, Revocations::empty())
}

fn bench(c: &mut Criterion) {
    let (signer, _tmp) = setup();
    let now = SystemTime::now();
    let claims = Claims {
        client_id: None,
        sub: "device-42".into(),
        scopes: vec!["predict".into(), "metrics".into()],
        ttl: Duration::from_secs(3600),
        issuer: Some("https://issuer.test".into()),
        audience: Some("fleet".into()),
        jti: Some("bench-jti".into()),
    };
    let token = signer.sign(&claims, now).expect("sign");

    c.bench_function("token_verify_first_sighting", |b| {
        b.iter_batched(
            || verifier(&signer),
            |v| black_box(v.verify(black_box(&token), now)),
            BatchSize::SmallInput,
        )
    });
    let warm = verifier(&signer);
    warm.verify(&token, now).expect("valid");
    c.bench_function("token_verify_repeat_cached", |b| {
        b.iter(|| black_box(warm.verify(black_box(&token), now)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
