//! Bearer-token verification (`inferd::auth::jwt::TokenVerifier::verify`) on arbitrary
//! strings, with the fixture key, policy (issuer, audience, 60 s leeway, 8 KiB), revocations
//! and clock of tests/fixtures/jwt. Never panics, and never accepts a token whose signed part
//! (`header.payload`) is not one of the fixture tokens this verifier must accept: accepting
//! anything else would be a forgery. An accepted token is accepted again (the cached path)
//! with the same principal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// `header.payload` of the fixture tokens expected to verify at the fixture clock.
const VALID: &[&str] = &[
    // valid
    "eyJhbGciOiJFZERTQSIsImtpZCI6IjJTLUNydEhwdHMzY0daRjFkR3FTdHRJYlpqRjBnWldhaGpTWTRkanRLVUkiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiZGV2aWNlLTQyIiwiYXVkIjoiaW5mZXJkLWZsZWV0IiwiaWF0IjoxNzQ5OTk5OTkwLCJuYmYiOjE3NDk5OTk5OTAsImV4cCI6MTc1MDAwMzYwMCwianRpIjoianRpLW9rLTEiLCJzY29wZSI6InByZWRpY3QgbWV0cmljcyJ9",
    // valid_aud_list
    "eyJhbGciOiJFZERTQSIsImtpZCI6IjJTLUNydEhwdHMzY0daRjFkR3FTdHRJYlpqRjBnWldhaGpTWTRkanRLVUkiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiZGV2aWNlLTQyIiwiYXVkIjpbIm90aGVyIiwiaW5mZXJkLWZsZWV0Il0sImlhdCI6MTc0OTk5OTk5MCwibmJmIjoxNzQ5OTk5OTkwLCJleHAiOjE3NTAwMDM2MDAsImp0aSI6Imp0aS1vay0xIiwic2NvcGUiOiJwcmVkaWN0IG1ldHJpY3MifQ",
    // valid_within_leeway_after_exp
    "eyJhbGciOiJFZERTQSIsImtpZCI6IjJTLUNydEhwdHMzY0daRjFkR3FTdHRJYlpqRjBnWldhaGpTWTRkanRLVUkiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiZGV2aWNlLTQyIiwiYXVkIjoiaW5mZXJkLWZsZWV0IiwiaWF0IjoxNzQ5OTk5OTkwLCJuYmYiOjE3NDk5OTk5OTAsImV4cCI6MTc0OTk5OTk3MCwianRpIjoianRpLW9rLTEiLCJzY29wZSI6InByZWRpY3QgbWV0cmljcyJ9",
    // valid_nbf_within_leeway
    "eyJhbGciOiJFZERTQSIsImtpZCI6IjJTLUNydEhwdHMzY0daRjFkR3FTdHRJYlpqRjBnWldhaGpTWTRkanRLVUkiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiZGV2aWNlLTQyIiwiYXVkIjoiaW5mZXJkLWZsZWV0IiwiaWF0IjoxNzUwMDAwMDAwLCJuYmYiOjE3NTAwMDAwMzAsImV4cCI6MTc1MDAwMzYwMCwianRpIjoianRpLW9rLTEiLCJzY29wZSI6InByZWRpY3QgbWV0cmljcyJ9",
    // valid_until_2100
    "eyJhbGciOiJFZERTQSIsImtpZCI6IjJTLUNydEhwdHMzY0daRjFkR3FTdHRJYlpqRjBnWldhaGpTWTRkanRLVUkiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiZGV2aWNlLTQyIiwiYXVkIjoiaW5mZXJkLWZsZWV0IiwiaWF0IjoxNzQ5OTk5OTkwLCJuYmYiOjE3NDk5OTk5OTAsImV4cCI6NDEwMjQ0NDgwMCwianRpIjoianRpLW9rLTEiLCJzY29wZSI6InByZWRpY3QgbWV0cmljcyJ9",
];

static VERIFIER: LazyLock<inferd::auth::jwt::TokenVerifier> =
    LazyLock::new(inferd_fuzz::fixture_verifier);

fuzz_target!(|data: &[u8]| {
    let token = inferd_fuzz::text(data);
    let now = inferd_fuzz::now();
    let Ok(principal) = VERIFIER.verify(&token, now) else {
        return;
    };
    let signed = token.rsplit_once('.').map_or("", |(signed, _)| signed);
    assert!(
        VALID.contains(&signed),
        "accepted a token whose signed part is not a fixture's: {token:?}"
    );
    assert_eq!(principal.id, "device-42");
    let again = VERIFIER.verify(&token, now).expect("accepted again from the cache");
    assert_eq!(again.id, principal.id);
    assert_eq!(again.scopes, principal.scopes);
});
