//! Our own response type: status, headers, a body held in memory (bodies are small and
//! bounded), and its serialisation to HTTP/1.1.

use serde::Serialize;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `Date` field's value for now: formatted once per second per thread, not per response.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
}

/// A response as handlers build it; the server adds framing headers when writing it.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response. Serialising our own types cannot fail; if it ever did, the client
    /// gets a 500 rather than a truncated body.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::bytes(status, "application/json", body),
            Err(e) => {
                log::error!("response serialisation failed: {e}");
                Response::bytes(
                    500,
                    "application/json",
                    br#"{"error":"internal error","code":"internal"}"#.to_vec(),
                )
            }
        }
    }

    /// A response with a body of the given media type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response::empty(status)
            .with_header("content-type", content_type)
            .with_body(body)
    }

    /// Adds a header (names are lower-case `'static` strings: we only send headers we know).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Serialises status line, headers and (unless `head_only`) the body.
    /// Every response also carries `X-Content-Type-Options: nosniff`, `Vary: Origin` (CORS
    /// answers differ by origin), `Cache-Control: no-store` unless the handler chose a
    /// policy (answers are per caller and often secret), and on TLS
    /// `Strict-Transport-Security`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>, head_only: bool, keep_alive: bool, tls: bool) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            // Values are ours, but never let one break the framing.
            let value: std::borrow::Cow<str> = match value.contains(['\r', '\n']) {
                true => value.chars().filter(|c| *c != '\r' && *c != '\n').collect(),
                false => value.into(),
            };
            match &**name {
                // One Vary field, always naming Origin (a preflight adds its own fields).
                "vary" if !value.split(',').any(|v| v.trim() == "origin") => {
                    let _ = write!(out, "vary: origin, {value}\r\n");
                }
                _ => {
                    let _ = write!(out, "{name}: {value}\r\n");
                }
            }
        }
        // No Content-Length on 1xx and 204 (RFC 9110 §8.6).
        if self.status >= 200 && self.status != 204 {
            let _ = write!(out, "content-length: {}\r\n", self.body.len());
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        if self.header("cache-control").is_none() {
            out.extend_from_slice(b"cache-control: no-store\r\n");
        }
        if tls {
            out.extend_from_slice(b"strict-transport-security: max-age=31536000\r\n");
        }
        if self.header("vary").is_none() {
            out.extend_from_slice(b"vary: origin\r\n");
        }
        out.extend_from_slice(b"x-content-type-options: nosniff\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_only_keeps_content_length_but_drops_body() {
        let r = Response::bytes(200, "text/plain", b"hello".to_vec());
        let mut out = Vec::new();
        r.write_to(&mut out, true, true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("content-length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let r = Response::empty(200).with_header("x-a", "a\r\nset-cookie: b");
        let mut out = Vec::new();
        r.write_to(&mut out, false, false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("x-a: aset-cookie: b\r\n"));
        assert!(text.contains("strict-transport-security: max-age=31536000\r\n"));
        assert!(text.contains("cache-control: no-store\r\n"));
        assert!(text.contains("connection: close\r\n"));
    }
}
