//! Body framing (`inferd::http::parse::framing`, RFC 9112 §6.3) on heads built directly,
//! so header values may hold anything a `String` can (httparse would refuse some bytes
//! before framing sees them), compared with an independent reading of the rules:
//! - Transfer-Encoding in an HTTP/1.0 request is 400 (RFC 9112 §6.1), whatever else;
//! - every Content-Length value, split on commas and stripped of SP/HTAB only, is 1*DIGIT,
//!   and all are equal, else 400;
//! - Transfer-Encoding with Content-Length is 400;
//! - Transfer-Encoding alone: its codings (every field's value split on commas, stripped of
//!   SP/HTAB, empty elements dropped, compared case-insensitively) frame the body as chunked
//!   when they are exactly `chunked`; `chunked` last and once after other codings (`gzip,
//!   chunked`) is 501; anything else (not ending in `chunked`, `chunked` twice, no coding)
//!   leaves the length unknowable: 400;
//! - a length above `max_body` is 413, 0 means no body; POST/PUT/PATCH without a length 411.
//!
//! Input: line 1 is the method, line 2 the version (`0` for HTTP/1.0), line 3 `max_body` in
//! decimal; then one `name:value` header per line (names lower-cased, as the parser does).
#![no_main]

use inferd::http::HttpError;
use inferd::http::parse::{Framing, Head, framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = inferd_fuzz::text(data);
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("").to_owned();
    let minor_version = u8::from(lines.next().unwrap_or("") != "0");
    let max_body = lines
        .next()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .unwrap_or(4 << 20);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let head = Head {
        method,
        target: "/".into(),
        minor_version,
        headers,
    };
    let got = framing(&head, max_body);
    let want = model(&head, max_body);
    match (&got, &want) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "framing disagrees with the rules"),
        (Err(HttpError::BadRequest(_)), Err(Expected::BadRequest))
        | (Err(HttpError::LengthRequired), Err(Expected::LengthRequired))
        | (Err(HttpError::PayloadTooLarge), Err(Expected::TooLarge))
        | (Err(HttpError::NotImplemented(_)), Err(Expected::NotImplemented)) => {}
        // Lengths beyond u64 saturate in inferd, so two different huge values are "too
        // large" there and "conflicting" here: both refuse before reading a byte.
        (Err(HttpError::PayloadTooLarge), Err(Expected::BadRequest)) if huge(&head) => {}
        _ => panic!("framing gave {got:?}, the rules say {want:?} for {head:?}"),
    }
    let _ = head.keep_alive();
    let _ = head.expects_continue();
});

#[derive(Debug)]
enum Expected {
    BadRequest,
    LengthRequired,
    TooLarge,
    NotImplemented,
}

fn huge(head: &Head) -> bool {
    head.headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .any(|(_, v)| v.split(',').any(|p| canonical(p).is_some_and(|d| d.len() >= 20)))
}

/// The digits of a Content-Length element without leading zeros, or None if not 1*DIGIT.
fn canonical(part: &str) -> Option<&str> {
    let part = part.trim_matches([' ', '\t']);
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = part.trim_start_matches('0');
    Some(if digits.is_empty() { "0" } else { digits })
}

fn model(head: &Head, max_body: usize) -> Result<Framing, Expected> {
    let te = head.headers.iter().any(|(n, _)| n == "transfer-encoding");
    if te && head.minor_version == 0 {
        return Err(Expected::BadRequest);
    }
    let mut length: Option<&str> = None;
    for (_, v) in head.headers.iter().filter(|(n, _)| n == "content-length") {
        for part in v.split(',') {
            let digits = canonical(part).ok_or(Expected::BadRequest)?;
            match length {
                Some(prev) if prev != digits => return Err(Expected::BadRequest),
                _ => length = Some(digits),
            }
        }
    }
    match (te, length) {
        (true, Some(_)) => Err(Expected::BadRequest),
        (true, None) => codings(head),
        (false, Some(d)) => {
            // Compare as decimal strings: no overflow in the model.
            let max = max_body.to_string();
            if d.len() > max.len() || (d.len() == max.len() && d > max.as_str()) {
                Err(Expected::TooLarge)
            } else if d == "0" {
                Ok(Framing::NoBody)
            } else {
                Ok(Framing::Length(d.parse().expect("at most max_body")))
            }
        }
        (false, None) if matches!(head.method.as_str(), "POST" | "PUT" | "PATCH") => {
            Err(Expected::LengthRequired)
        }
        (false, None) => Ok(Framing::NoBody),
    }
}

/// Framing by Transfer-Encoding alone (RFC 9112 §6.3 items 4 and 5, §7).
fn codings(head: &Head) -> Result<Framing, Expected> {
    let mut list: Vec<&str> = Vec::new();
    for (_, v) in head
        .headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
    {
        for element in v.split(',') {
            let coding = element.trim_matches([' ', '\t']);
            if !coding.is_empty() {
                list.push(coding);
            }
        }
    }
    let is_chunked = |c: &str| c.eq_ignore_ascii_case("chunked");
    let times = list.iter().filter(|c| is_chunked(c)).count();
    match list.split_last() {
        Some((last, [])) if is_chunked(last) => Ok(Framing::Chunked),
        // chunked is the final coding, applied once, after codings inferd does not decode.
        Some((last, _)) if is_chunked(last) && times == 1 => Err(Expected::NotImplemented),
        _ => Err(Expected::BadRequest),
    }
}
