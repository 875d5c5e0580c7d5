//! Request-head parsing (`inferd::http::parse::parse_head`) and the decisions the server takes
//! from a parsed head (`framing`, `keep_alive`, `expects_continue`), on arbitrary bytes, under
//! the default caps and under tiny ones. Never panics, and:
//! - a complete head's length is within the input and the header-byte cap, ends a line, holds
//!   at most `max_headers` fields, a request line within its cap, lower-case names, exactly one
//!   Host for HTTP/1.1;
//! - parsing is incremental-safe: every prefix cut after a line end of a complete head is
//!   "need more bytes" (the server re-parses as bytes arrive);
//! - the framing of a parsed head agrees with its Content-Length/Transfer-Encoding headers
//!   (chunked only with Transfer-Encoding, on HTTP/1.1, without Content-Length; 501 only
//!   with Transfer-Encoding).
#![no_main]

use inferd::http::HttpError;
use inferd::http::parse::{Framing, HeadLimits, framing, parse_head};
use libfuzzer_sys::fuzz_target;

/// `[limits]` defaults (src/config.rs).
const DEFAULT: HeadLimits = HeadLimits {
    max_header_bytes: 16 * 1024,
    max_headers: 64,
    max_request_line: 8 * 1024,
};
const TINY: HeadLimits = HeadLimits {
    max_header_bytes: 96,
    max_headers: 3,
    max_request_line: 40,
};
const MAX_BODY: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    check(data, &DEFAULT);
    check(data, &TINY);
});

fn check(buf: &[u8], limits: &HeadLimits) {
    let parsed = parse_head(buf, limits);
    let (head, len) = match parsed {
        Ok(Some(done)) => done,
        Ok(None) => {
            // Waiting for more bytes is only allowed below both caps.
            assert!(buf.len() <= limits.max_header_bytes, "buffering past the cap");
            if let Some(eol) = buf.iter().position(|&b| b == b'\n') {
                assert!(eol <= limits.max_request_line);
            } else {
                assert!(buf.len() <= limits.max_request_line);
            }
            return;
        }
        Err(
            HttpError::BadRequest(_)
            | HttpError::UriTooLong
            | HttpError::HeadersTooLarge,
        ) => return,
        Err(other) => panic!("parse_head returned an unexpected error: {other:?}"),
    };
    assert!(len >= 1 && len <= buf.len(), "head length {len} of {}", buf.len());
    assert!(len <= limits.max_header_bytes, "head beyond the byte cap");
    assert_eq!(buf[len - 1], b'\n', "a head ends with a line end");
    assert!(head.headers.len() <= limits.max_headers, "more fields than the cap");
    let eol = buf.iter().position(|&b| b == b'\n').expect("a line end");
    assert!(eol <= limits.max_request_line, "request line beyond its cap");
    assert!(head.minor_version <= 1);
    for (name, _) in &head.headers {
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "name not lower-cased: {name:?}");
    }
    let hosts = head.headers.iter().filter(|(n, _)| n == "host").count();
    assert!(hosts <= 1 && (head.minor_version == 0 || hosts == 1));

    // The head alone parses to the same head; each prefix ending a line is incomplete.
    match parse_head(&buf[..len], limits) {
        Ok(Some((again, n))) => {
            assert_eq!(n, len);
            assert_eq!(again.method, head.method);
            assert_eq!(again.target, head.target);
            assert_eq!(again.headers, head.headers);
        }
        other => panic!("the head alone did not parse: {other:?}"),
    }
    for (i, _) in buf[..len - 1].iter().enumerate().filter(|(_, b)| **b == b'\n') {
        match parse_head(&buf[..=i], limits) {
            Ok(None) => {}
            other => panic!("prefix of {} bytes of a complete head gave {other:?}", i + 1),
        }
    }

    // What the server decides next (conn.rs `prepare`).
    let _ = head.keep_alive();
    let expect = head.expects_continue();
    match head.header("expect") {
        None => assert!(matches!(expect, Ok(false))),
        Some(v) if v.trim().eq_ignore_ascii_case("100-continue") => {
            assert!(matches!(expect, Ok(true)))
        }
        Some(_) => assert!(matches!(expect, Err(HttpError::ExpectationFailed))),
    }
    let has_te = head.headers.iter().any(|(n, _)| n == "transfer-encoding");
    match framing(&head, MAX_BODY) {
        Ok(Framing::Length(n)) => {
            assert!(n > 0 && n <= MAX_BODY);
            assert!(!has_te, "a body framed by length despite Transfer-Encoding");
            for (_, v) in head.headers.iter().filter(|(n, _)| n == "content-length") {
                for part in v.split(',') {
                    let part = part.trim_matches([' ', '\t']);
                    assert_eq!(part.parse::<usize>().ok(), Some(n), "disagreeing lengths");
                }
            }
        }
        Ok(Framing::NoBody) => assert!(!has_te),
        Ok(Framing::Chunked) => {
            assert!(has_te, "chunked framing without Transfer-Encoding");
            assert_eq!(head.minor_version, 1, "chunked framing in HTTP/1.0");
            assert!(
                !head.headers.iter().any(|(n, _)| n == "content-length"),
                "chunked framing despite Content-Length"
            );
        }
        Err(HttpError::NotImplemented(_)) => assert!(has_te, "501 without Transfer-Encoding"),
        Err(
            HttpError::BadRequest(_) | HttpError::LengthRequired | HttpError::PayloadTooLarge,
        ) => {}
        Err(other) => panic!("framing returned an unexpected error: {other:?}"),
    }
}
