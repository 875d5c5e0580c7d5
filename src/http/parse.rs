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
    /// `Transfer-Encoding: chunked` (RFC 9112 §7.1): the length is known only at the end.
    Chunked,
}

impl Framing {
    /// Whether a body follows the head.
    pub fn has_body(self) -> bool {
        self != Framing::NoBody
    }
}

/// Where the head that starts `buf` ends (just past its empty line), searching from
/// `from` on: callers pass how far they searched before, so that a head arriving in many
/// pieces is scanned once in all, not once per piece.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    let mut i = start;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// How many bytes of empty lines (CRLF or a bare LF) start `buf`: RFC 9112 §2.2 lets a
/// server skip them before a request line. A lone trailing CR is left for the next read.
pub fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match (buf.get(i), buf.get(i + 1)) {
            (Some(b'\n'), _) => i += 1,
            (Some(b'\r'), Some(b'\n')) => i += 2,
            _ => return i,
        }
    }
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
    if has_te && head.minor_version == 0 {
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        return Err(HttpError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request".into(),
        ));
    }
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
        (true, None) => transfer_coding(head),
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

/// The transfer codings of a request: exactly `chunked` is decoded; `chunked` after
/// another coding is one we do not implement (501); anything that does not end in
/// `chunked`, or applies it twice, leaves the body length unknowable (400, RFC 9112 §6.3).
fn transfer_coding(head: &Head) -> Result<Framing, HttpError> {
    let codings: Vec<String> = head
        .headers_named("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let chunked = codings.iter().filter(|c| c.as_str() == "chunked").count();
    match codings.last().map(String::as_str) {
        Some("chunked") if chunked == 1 && codings.len() == 1 => Ok(Framing::Chunked),
        Some("chunked") if chunked == 1 => Err(HttpError::NotImplemented(format!(
            "transfer coding {} (only chunked is decoded)",
            codings[0]
        ))),
        _ => Err(HttpError::BadRequest(
            "Transfer-Encoding must end in chunked, applied once".into(),
        )),
    }
}

/// Longest chunk-size line (size, extensions, CRLF) we wait for.
const MAX_CHUNK_LINE: usize = 1024;

/// An incremental decoder of a chunked request body (RFC 9112 §7.1): feed it bytes as they
/// arrive, it appends the chunk data to `out`. Caps: `max_body` decoded bytes (413),
/// `max_trailer` bytes of trailer fields (431, which are read and dropped), chunk-size lines
/// of at most 1 KiB. Work and memory are linear in the bytes fed; nothing is sized from a
/// chunk size before its bytes arrive.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    decoded: usize,
    trailer: usize,
    max_body: usize,
    max_trailer: usize,
    /// Bytes of the current unfinished line already searched for its end.
    searched: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields until an empty line.
    Trailer,
    Done,
}

impl ChunkedDecoder {
    pub fn new(max_body: usize, max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            decoded: 0,
            trailer: 0,
            max_body,
            max_trailer,
            searched: 0,
        }
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what it can of `input`, appending data to `out`; returns how many bytes of
    /// `input` it used. Bytes it did not use (an incomplete line) must be fed again, first,
    /// with more after them (the decoder remembers how far it searched them). Stops at the end of the body, leaving what follows unused.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                ChunkState::Done => return Ok(used),
                ChunkState::Data(left) => {
                    let n = left.min(rest.len());
                    if n == 0 {
                        return Ok(used);
                    }
                    out.extend_from_slice(&rest[..n]);
                    used += n;
                    self.state = match left - n {
                        0 => ChunkState::DataEnd,
                        more => ChunkState::Data(more),
                    };
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        used += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok(used),
                    _ => return Err(bad_chunk("chunk data not followed by CRLF")),
                },
                ChunkState::Size => {
                    let Some(eol) = self.line_end(rest, MAX_CHUNK_LINE) else {
                        if rest.len() >= MAX_CHUNK_LINE {
                            return Err(bad_chunk("chunk-size line too long"));
                        }
                        return Ok(used);
                    };
                    let line = &rest[..=eol];
                    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
                        return Err(bad_chunk("chunk-size line without a size"));
                    }
                    let size = match httparse::parse_chunk_size(line) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => return Err(bad_chunk("invalid chunk-size line")),
                    };
                    used += line.len();
                    self.state = match size {
                        0 => ChunkState::Trailer,
                        n if n > (self.max_body - self.decoded) as u64 => {
                            return Err(HttpError::PayloadTooLarge);
                        }
                        // At most max_body, so it fits.
                        n => {
                            self.decoded += n as usize;
                            ChunkState::Data(n as usize)
                        }
                    };
                }
                ChunkState::Trailer => {
                    let room = self.max_trailer.saturating_sub(self.trailer);
                    let Some(eol) = self.line_end(rest, room.saturating_add(1)) else {
                        if rest.len() > room {
                            return Err(HttpError::HeadersTooLarge);
                        }
                        return Ok(used);
                    };
                    let line = &rest[..=eol];
                    self.trailer += line.len();
                    used += line.len();
                    match line {
                        b"\r\n" => self.state = ChunkState::Done,
                        [.., b'\r', b'\n'] if !line.contains(&b':') => {
                            return Err(bad_chunk("malformed trailer field"));
                        }
                        [.., b'\r', b'\n'] => {}
                        _ => return Err(bad_chunk("trailer line not ended by CRLF")),
                    }
                }
            }
        }
    }
}

impl ChunkedDecoder {
    /// Where the line starting `rest` ends, looking at most `limit` bytes in. Bytes searched
    /// by an earlier call that found no end are not searched again: the caller feeds a line's
    /// unused bytes back with more after them, so a line trickled one byte per read costs
    /// linear time, not quadratic.
    fn line_end(&mut self, rest: &[u8], limit: usize) -> Option<usize> {
        let end = rest.len().min(limit);
        let from = self.searched.min(end);
        match rest[from..end].iter().position(|&b| b == b'\n') {
            Some(at) => {
                self.searched = 0;
                Some(from + at)
            }
            None => {
                self.searched = end;
                None
            }
        }
    }
}

fn bad_chunk(what: &str) -> HttpError {
    HttpError::BadRequest(format!("chunked body: {what}"))
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
        assert_eq!(
            framing_of("Transfer-Encoding: chunked\r\n", "POST").unwrap(),
            Framing::Chunked
        );
        assert_eq!(
            framing_of("Transfer-Encoding: Chunked , \r\n", "POST").unwrap(),
            Framing::Chunked
        );
        assert!(matches!(
            framing_of("Transfer-Encoding: gzip, chunked\r\n", "POST"),
            Err(HttpError::NotImplemented(_))
        ));
        for bad in [
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding: \r\n",
        ] {
            assert!(
                matches!(framing_of(bad, "POST"), Err(HttpError::BadRequest(_))),
                "{bad}"
            );
        }
        let http10 = complete("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(
            framing(&http10, 100),
            Err(HttpError::BadRequest(_))
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

    /// Feeds `input` in pieces of `step` bytes, as a socket might deliver it.
    fn dechunk(input: &[u8], step: usize, max: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = ChunkedDecoder::new(max, 64);
        let (mut out, mut pending, mut fed) = (Vec::new(), Vec::new(), 0);
        while !d.is_done() {
            if fed == input.len() {
                return Err(HttpError::BadRequest("ran out".into()));
            }
            let end = (fed + step).min(input.len());
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
            let used = d.feed(&pending, &mut out)?;
            pending.drain(..used);
        }
        Ok((out, input.len() - fed + pending.len()))
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 64] {
            let (out, left) = dechunk(body, step, 100).unwrap();
            assert_eq!(out, b"hello, world!!!", "step {step}");
            assert_eq!(
                left, 4,
                "the next request's bytes stay unread (step {step})"
            );
        }
    }

    #[test]
    fn chunked_framing_errors_and_caps() {
        let bad = |body: &[u8]| dechunk(body, 3, 100).unwrap_err();
        assert!(matches!(bad(b"\r\n0\r\n\r\n"), HttpError::BadRequest(_)));
        assert!(matches!(bad(b"x\r\n"), HttpError::BadRequest(_)));
        assert!(matches!(
            bad(b"5\nhello\r\n0\r\n\r\n"),
            HttpError::BadRequest(_)
        ));
        assert!(matches!(
            bad(b"5\r\nhelloXX0\r\n\r\n"),
            HttpError::BadRequest(_)
        ));
        assert!(matches!(
            bad(b"0\r\nno colon\r\n\r\n"),
            HttpError::BadRequest(_)
        ));
        assert!(matches!(bad(b"0\r\n\n"), HttpError::BadRequest(_)));
        // Over the body cap, refused from the size line before any data is taken.
        assert!(matches!(bad(b"65\r\n"), HttpError::PayloadTooLarge));
        assert!(matches!(
            bad(
                b"40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n40\r\n"
            ),
            HttpError::PayloadTooLarge
        ));
        assert!(matches!(
            bad(b"fffffffffffffff\r\n"),
            HttpError::PayloadTooLarge
        ));
        assert!(matches!(
            bad(b"ffffffffffffffff0\r\n"),
            HttpError::BadRequest(_)
        ));
        // Trailer fields beyond their cap, and a size line that never ends.
        let trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(80));
        assert!(matches!(
            bad(trailer.as_bytes()),
            HttpError::HeadersTooLarge
        ));
        let endless = format!("1;{}", "e".repeat(2000));
        assert!(matches!(bad(endless.as_bytes()), HttpError::BadRequest(_)));
    }

    #[test]
    fn lines_trickled_a_byte_at_a_time_and_unbounded_trailers() {
        // Long extensions and trailers fed one byte per call decode as when fed at once.
        let ext = format!(
            "3;{}\r\nabc\r\n0\r\nX-T: {}\r\n\r\n",
            "e".repeat(900),
            "t".repeat(5000)
        );
        let mut d = ChunkedDecoder::new(100, 8192);
        let (mut out, mut pending) = (Vec::new(), Vec::new());
        for &b in ext.as_bytes() {
            pending.push(b);
            let used = d.feed(&pending, &mut out).unwrap();
            pending.drain(..used);
        }
        assert!(d.is_done() && pending.is_empty());
        assert_eq!(out, b"abc");
        // A trailer cap of usize::MAX does not overflow.
        let mut d = ChunkedDecoder::new(100, usize::MAX);
        assert_eq!(d.feed(b"0\r\n\r\n", &mut Vec::new()).unwrap(), 5);
        assert!(d.is_done());
    }

    #[test]
    fn head_end_and_empty_lines() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.0\n\nrest", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        // Resuming a search just past where the last one stopped still finds a terminator
        // split across reads.
        let whole = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(head_end(whole, 26), Some(27));
        assert_eq!(leading_empty_lines(b"\r\n\n\r\nGET"), 5);
        assert_eq!(leading_empty_lines(b"\r\n\r"), 2);
        assert_eq!(leading_empty_lines(b"GET"), 0);
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
