//! Structured token tampering: a valid token signed by the fixture key (`TokenSigner`) has
//! one part replaced or overwritten with the fuzzer's bytes, then goes to
//! `TokenVerifier::verify`. The property: a tampered token is never accepted unless what it
//! signs (`header.payload`) is byte-identical to the original and its signature decodes to
//! the original's 64 bytes. This reaches the Ed25519 check on nearly every input (header
//! intact: payload and signature modes), so it runs far slower than the other targets.
//!
//! Input: byte 0 picks the mode, the rest is data:
//! - 0: the header becomes base64url(data) (JSON, e.g. alg/kid games);
//! - 1: the payload becomes base64url(data) (claims JSON);
//! - 2: the signature becomes base64url(data) (raw signature bytes);
//! - 3: bytes 1..3 (u16 LE) are an offset into the token text, overwritten with the rest.
#![no_main]

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use inferd::auth::jwt::{Claims, TokenVerifier};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::Duration;

struct Fixture {
    verifier: TokenVerifier,
    token: String,
    signed: String,
    signature: Vec<u8>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let signer = inferd_fuzz::fixture_signer();
    let claims = Claims {
        sub: "device-42".into(),
        scopes: vec!["predict".into(), "metrics".into()],
        ttl: Duration::from_secs(3600),
        issuer: Some("https://issuer.example".into()),
        audience: Some("inferd-fleet".into()),
        jti: Some("jti-fuzz-1".into()),
        client_id: Some("fuzz-client".into()),
    };
    let token = signer
        .sign(&claims, inferd_fuzz::now() - Duration::from_secs(10))
        .expect("sign");
    let verifier = inferd_fuzz::fixture_verifier();
    verifier
        .verify(&token, inferd_fuzz::now())
        .expect("the original token verifies");
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    let signature = Base64UrlSafeNoPadding::decode_to_vec(signature, None).expect("base64url");
    Fixture {
        signed: signed.to_owned(),
        signature,
        verifier,
        token,
    }
});

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).expect("sized")
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let parts: Vec<&str> = f.token.split('.').collect();
    let tampered = match mode % 4 {
        0 => format!("{}.{}.{}", b64(rest), parts[1], parts[2]),
        1 => format!("{}.{}.{}", parts[0], b64(rest), parts[2]),
        2 => format!("{}.{}.{}", parts[0], parts[1], b64(rest)),
        _ => {
            if rest.len() < 2 {
                return;
            }
            let at = u16::from_le_bytes([rest[0], rest[1]]) as usize % (f.token.len() + 1);
            let mut bytes = f.token.as_bytes().to_vec();
            let patch = &rest[2..];
            let end = (at + patch.len()).min(bytes.len());
            bytes.splice(at..end, patch.iter().copied());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let verdict = f.verifier.verify(&tampered, inferd_fuzz::now());
    if verdict.is_err() {
        return;
    }
    let (signed, signature) = tampered.rsplit_once('.').expect("an accepted token has parts");
    assert_eq!(signed, f.signed, "accepted a token signing something else: {tampered:?}");
    let signature = Base64UrlSafeNoPadding::decode_to_vec(signature, None).ok();
    assert_eq!(
        signature.as_deref(),
        Some(f.signature.as_slice()),
        "accepted a different signature: {tampered:?}"
    );
});
