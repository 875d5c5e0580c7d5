//! The `POST /token` form (`inferd::auth::issue::form_params`) on arbitrary bytes. Never
//! panics, and, against an independent reading of `application/x-www-form-urlencoded`
//! (WHATWG URL §5.1, what `form_urlencoded::parse` implements: split on `&`, empty pieces
//! skipped, name and value split at the first `=`, `+` as space, `%XX` decoded, invalid
//! UTF-8 replaced by U+FFFD):
//! - a body over `MAX_FORM_BYTES` is refused before it is parsed (no heap growth beyond the
//!   error);
//! - a body of more than `MAX_FORM_PAIRS` pairs is refused;
//! - any other body is accepted with exactly its `grant_type`, `client_id`, `client_secret`
//!   and `scope` pairs, in order, repeats included, decoded as above;
//! - the heap grows by at most a small multiple of the body (U+FFFD takes 3 bytes for 1).
//!
//! Input: the body.
#![no_main]

use inferd::auth::issue::{GrantError, MAX_FORM_BYTES, MAX_FORM_PAIRS, form_params};
use inferd_fuzz::Peak;
use libfuzzer_sys::fuzz_target;

/// The parameters a client credentials request uses (RFC 6749 §4.4.2, §2.3.1).
const KNOWN: [&str; 4] = ["grant_type", "client_id", "client_secret", "scope"];

/// Heap growth allowed per body byte (a copy for `+`, one for `%XX`, up to 3 bytes per
/// byte of replaced UTF-8, the kept copy), plus a constant (the pair list, an error).
const PER_BYTE: usize = 8;
const SLACK: usize = 16 << 10;
/// Heap growth allowed to refuse an oversized body: its error message.
const REFUSAL: usize = 1 << 10;

fuzz_target!(|body: &[u8]| {
    let peak = Peak::start();
    let got = form_params(body);
    let growth = peak.growth();
    if body.len() > MAX_FORM_BYTES {
        assert!(
            matches!(got, Err(GrantError::InvalidRequest(_))),
            "a form of {} bytes gave {got:?}",
            body.len()
        );
        assert!(
            growth <= REFUSAL,
            "refusing {} bytes grew the heap by {growth}",
            body.len()
        );
        return;
    }
    assert!(
        growth <= PER_BYTE * body.len() + SLACK,
        "parsing {} bytes grew the heap by {growth}",
        body.len()
    );
    let pairs = parse(body);
    if pairs.len() > MAX_FORM_PAIRS {
        assert!(
            matches!(got, Err(GrantError::InvalidRequest(_))),
            "a form of {} pairs gave {got:?}",
            pairs.len()
        );
        return;
    }
    let want: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(name, _)| KNOWN.contains(&name.as_str()))
        .collect();
    match got {
        Ok(kept) => assert_eq!(kept, want, "form parameters differ"),
        Err(e) => panic!(
            "a form of {} bytes within the caps refused: {e:?}",
            body.len()
        ),
    }
});

fn parse(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (decode(&piece[..eq]), decode(&piece[eq + 1..])),
            None => (decode(piece), String::new()),
        })
        .collect()
}

/// `+` is a space; `%` and two hex digits is that byte; any other `%` is itself.
fn decode(raw: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let digit = |at: usize| raw.get(at).and_then(|&b| char::from(b).to_digit(16));
                match (digit(i + 1), digit(i + 2)) {
                    (Some(hi), Some(lo)) => {
                        bytes.push((hi << 4 | lo) as u8);
                        i += 2;
                    }
                    _ => bytes.push(b'%'),
                }
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
