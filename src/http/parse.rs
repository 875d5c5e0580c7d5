//! Request-head parsing and body-framing rules: pure functions over bytes, so that they can be
//! unit-tested and fuzzed without a socket. httparse does the tokenising; the caps and the
//! request-smuggling rules (RFC 9112 §6.3) live here.

use super::error::HttpError;

/// Caps applied while a request head is still arriving.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Bytes of request line plus headers (431 beyond).
    pub max_header_bytes: usize,
    /// Number of header fields (431 beyond).
    pub max_headers: usize,
    /// Bytes of the request line (414 beyond).
    pub max_request_line: usize,
}

/// A parsed request head. Header names are lower-cased; values keep their bytes as text
/// (non-UTF-8 bytes are replaced, since no header we act on may contain them).
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection may carry another request after this one (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        let tokens = |v: &str, t: &str| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(t));
        let mut close = false;
        let mut keep = false;
        for v in self.headers_named("connection") {
            close |= tokens(v, "close");
            keep |= tokens(v, "keep-alive");
        }
        if self.minor_version == 0 {
            keep && !close
        } else {
            !close
        }
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub fn expects_continue(&self) -> Result<bool, HttpError> {
        match self.header("expect") {
            None => Ok(false),
            Some(v) if v.trim().eq_ignore_ascii_case("100-continue") => Ok(true),
            Some(_) => Err(HttpError::ExpectationFailed),
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    NoBody,
    Length(usize),
}

/// Tries to parse a complete head from the start of `buf`.
///
/// `Ok(None)` means "need more bytes"; the caps are enforced on partial input too, so a client
/// cannot make us buffer more than `max_header_bytes` while we wait for the blank line.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Option<(Head, usize)>, HttpError> {
    // Request line first: 414 must win over 431 for one overlong line.
    match buf.iter().position(|&b| b == b'\n') {
        Some(eol) if eol > limits.max_request_line => return Err(HttpError::UriTooLong),
        None if buf.len() > limits.max_request_line => return Err(HttpError::UriTooLong),
        _ => {}
    }
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut storage);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(e) => {
            return Err(HttpError::BadRequest(format!(
                "malformed request head: {e}"
            )));
        }
    };
    let len = match status {
        httparse::Status::Partial if buf.len() > limits.max_header_bytes => {
            return Err(HttpError::HeadersTooLarge);
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) if len > limits.max_header_bytes => {
            return Err(HttpError::HeadersTooLarge);
        }
        httparse::Status::Complete(len) => len,
    };
    // httparse guarantees these are set once the head is complete.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HttpError::BadRequest("incomplete request line".into()));
    };
    let headers = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        minor_version,
        headers,
    };
    let hosts = head.headers_named("host").count();
    if (head.minor_version == 1 && hosts == 0) || hosts > 1 {
        return Err(HttpError::BadRequest(
            "an HTTP/1.1 request needs exactly one Host (RFC 9112 §3.2)".into(),
        ));
    }
    Ok(Some((head, len)))
}

/// Decides how the body is framed, before a byte of it is read (RFC 9112 §6.3).
///
/// Content-Length with Transfer-Encoding, or disagreeing Content-Lengths, are refused
/// outright: a proxy in front of us might frame them differently (request smuggling).
pub fn framing(head: &Head, max_body: usize) -> Result<Framing, HttpError> {
    let has_te = head.header("transfer-encoding").is_some();
    let mut length: Option<u64> = None;
    for value in head.headers_named("content-length") {
        for part in value.split(',') {
            // Only HTTP whitespace: str::trim would also strip Unicode spaces a proxy keeps.
            let part = part.trim_matches([' ', '\t']);
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::BadRequest("invalid Content-Length".into()));
            }
            // Digits only, so the only failure is overflow: larger than any cap anyway.
            let n = part.parse::<u64>().unwrap_or(u64::MAX);
            match length {
                Some(prev) if prev != n => {
                    return Err(HttpError::BadRequest("conflicting Content-Length".into()));
                }
                _ => length = Some(n),
            }
        }
    }
    match (has_te, length) {
        (true, Some(_)) => Err(HttpError::BadRequest(
            "Content-Length together with Transfer-Encoding".into(),
        )),
        (true, None) => Err(HttpError::LengthRequired),
        (false, Some(n)) if n > max_body as u64 => Err(HttpError::PayloadTooLarge),
        (false, Some(0)) => Ok(Framing::NoBody),
        // Bounded by max_body just above, so it fits in usize.
        (false, Some(n)) => Ok(Framing::Length(n as usize)),
        (false, None) if matches!(head.method.as_str(), "POST" | "PUT" | "PATCH") => {
            Err(HttpError::LengthRequired)
        }
        (false, None) => Ok(Framing::NoBody),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 1024,
        max_headers: 8,
        max_request_line: 128,
    };

    fn head(raw: &str) -> Result<Option<(Head, usize)>, HttpError> {
        parse_head(raw.as_bytes(), &LIMITS)
    }

    fn complete(raw: &str) -> Head {
        head(raw).expect("parses").expect("complete").0
    }

    #[test]
    fn partial_head_needs_more() {
        assert!(head("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    #[test]
    fn complete_head_reports_its_length() {
        let raw = "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\nBODY";
        let (h, len) = head(raw).unwrap().unwrap();
        assert_eq!(len, raw.len() - 4);
        assert_eq!(h.target, "/x?y=1");
        assert_eq!(h.header("x-a"), Some("b"));
    }

    #[test]
    fn long_request_line_is_414_even_before_it_ends() {
        let long = format!("GET /{} HTTP/1.1", "a".repeat(200));
        assert!(matches!(head(&long), Err(HttpError::UriTooLong)));
        assert!(matches!(
            head(&format!("{long}\r\n\r\n")),
            Err(HttpError::UriTooLong)
        ));
    }

    #[test]
    fn too_many_or_too_large_headers_are_431() {
        let many: String = (0..9).map(|i| format!("H{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert!(matches!(head(&raw), Err(HttpError::HeadersTooLarge)));
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "v".repeat(2000));
        assert!(matches!(head(&big), Err(HttpError::HeadersTooLarge)));
    }

    #[test]
    fn garbage_and_http09_are_400() {
        assert!(matches!(
            head("\x16\x03\x01garbage\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            head("GET /\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            head("GET / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
    }

    #[test]
    fn host_must_appear_exactly_once() {
        assert!(matches!(
            head("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(head("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(complete("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive());
        assert!(!complete("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!complete("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(complete("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    }

    fn framing_of(headers: &str, method: &str) -> Result<Framing, HttpError> {
        framing(
            &complete(&format!("{method} / HTTP/1.1\r\nHost: a\r\n{headers}\r\n")),
            100,
        )
    }

    #[test]
    fn framing_rules() {
        assert_eq!(framing_of("", "GET").unwrap(), Framing::NoBody);
        assert_eq!(
            framing_of("Content-Length: 5\r\n", "POST").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing_of("Content-Length: 5, 5\r\n", "POST").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing_of("Content-Length: 5\r\nContent-Length: 5\r\n", "POST").unwrap(),
            Framing::Length(5)
        );
        assert!(matches!(
            framing_of("", "POST"),
            Err(HttpError::LengthRequired)
        ));
        assert!(matches!(
            framing_of("Transfer-Encoding: chunked\r\n", "POST"),
            Err(HttpError::LengthRequired)
        ));
        assert!(matches!(
            framing_of(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "POST"
            ),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            framing_of("Content-Length: 5\r\nContent-Length: 6\r\n", "POST"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            framing_of("Content-Length: \u{a0}5\r\n", "POST"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            framing_of("Content-Length: -1\r\n", "POST"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            framing_of("Content-Length: 100000000000000000000000\r\n", "POST"),
            Err(HttpError::PayloadTooLarge)
        ));
        assert!(matches!(
            framing_of("Content-Length: 101\r\n", "POST"),
            Err(HttpError::PayloadTooLarge)
        ));
    }

    #[test]
    fn expect_header() {
        let h = complete("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
        assert!(h.expects_continue().unwrap());
        let h = complete("POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n");
        assert!(matches!(
            h.expects_continue(),
            Err(HttpError::ExpectationFailed)
        ));
    }
}
