//! Chunked request bodies (`inferd::http::parse::ChunkedDecoder`, RFC 9112 §7.1), fed as
//! `conn.rs` feeds it: whatever bytes have arrived, the unused ones kept and fed again with
//! the next read. Never panics, and:
//! - decoded data never exceeds `max_body`, nor (per feed and in all) the bytes consumed;
//! - when it waits for more, the bytes it left are bounded (a partial chunk-size line, a
//!   partial trailer line within the trailer cap, or a CR), and feeding them again alone
//!   makes no progress;
//! - the result does not depend on how the input is split: fed in fuzzer-chosen pieces it
//!   ends as fed at once (done, waiting or refused with the same status), with the same
//!   data and the same bytes consumed; once done, it takes nothing more;
//! - when done, what it consumed ends with CRLF; an independent strict decoder (below) of
//!   the RFC grammar within inferd's caps agrees: a body it accepts is accepted with the
//!   same data, and the bytes left over are exactly those after its final CRLF.
//!
//! Input: byte 0 picks the caps (bits 0-2 `max_body`, bits 3-5 `max_trailer`, from the
//! tables below); byte 1 mod 17 is the number `k` of piece-size bytes that follow; then the
//! chunked body, fed in pieces of those sizes, cycling (0: feed again with no new byte;
//! `k = 0` or all zero: one byte at a time).
#![no_main]

use inferd::http::HttpError;
use inferd::http::parse::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

/// `max_body`: a route taking none, tiny caps, `/token`'s 4 KiB, the 4 MiB default, the
/// largest `max_body_bytes` (1 GiB).
const MAX_BODY: [usize; 8] = [0, 1, 5, 16, 100, 4096, 4 << 20, 1 << 30];
/// `max_trailer` (conn.rs passes `max_header_bytes`: 16 KiB default, 1 MiB at most).
const MAX_TRAILER: [usize; 8] = [0, 1, 2, 3, 16, 96, 16 * 1024, 1 << 20];
/// Longest chunk-size line, CRLF included, that the decoder waits for (parse.rs, private).
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The body ended after this many bytes.
    Done(usize),
    /// All input fed; this many bytes used, the rest awaits more.
    Waiting(usize),
    /// 400
    Malformed,
    /// 413
    TooLarge,
    /// 431 (trailer section)
    TrailerTooLarge,
}

fuzz_target!(|data: &[u8]| {
    let [caps, k, rest @ ..] = data else {
        return;
    };
    let max_body = MAX_BODY[usize::from(caps & 7)];
    let max_trailer = MAX_TRAILER[usize::from((caps >> 3) & 7)];
    let k = usize::from(k % 17);
    if rest.len() < k {
        return;
    }
    let (pieces, input) = rest.split_at(k);
    let limits = Limits {
        max_body,
        max_trailer,
    };

    let (whole, whole_out) = at_once(input, &limits);
    let (split, split_out) = in_pieces(input, pieces, &limits);
    assert_eq!(
        whole, split,
        "outcome depends on the split (pieces {pieces:?}, caps {limits:?})"
    );
    assert!(
        whole_out == split_out,
        "data depends on the split (pieces {pieces:?}, caps {limits:?}): {} vs {} bytes",
        whole_out.len(),
        split_out.len()
    );
    if let Outcome::Done(used) = whole {
        assert!(
            input[..used].ends_with(b"\r\n"),
            "a body ended without its final CRLF"
        );
    }
    if let Some((data, len)) = reference(input, &limits) {
        assert_eq!(
            whole,
            Outcome::Done(len),
            "a valid chunked body of {len} bytes (caps {limits:?}) was not decoded"
        );
        assert!(
            whole_out == data,
            "a valid chunked body decoded to other data"
        );
    }
});

#[derive(Debug)]
struct Limits {
    max_body: usize,
    max_trailer: usize,
}

impl Limits {
    /// Most bytes a waiting decoder may leave unused: a chunk-size line short of its cap, or
    /// a trailer line within the trailer cap.
    fn max_left(&self) -> usize {
        (MAX_CHUNK_LINE - 1).max(self.max_trailer)
    }
}

fn refused(e: HttpError) -> Outcome {
    match e {
        HttpError::BadRequest(_) => Outcome::Malformed,
        HttpError::PayloadTooLarge => Outcome::TooLarge,
        HttpError::HeadersTooLarge => Outcome::TrailerTooLarge,
        other => panic!("the chunked decoder returned an unexpected error: {other:?}"),
    }
}

/// One `feed`, checking what holds for any call: used within the input, data within the
/// bytes used and within the cap; when it waits, few bytes left and no progress without more.
fn feed(
    d: &mut ChunkedDecoder,
    input: &[u8],
    out: &mut Vec<u8>,
    limits: &Limits,
) -> Result<usize, Outcome> {
    let before = out.len();
    let used = d.feed(input, out).map_err(refused);
    assert!(out.len() <= limits.max_body, "data beyond max_body");
    let used = used?;
    assert!(used <= input.len(), "used {used} of {} bytes", input.len());
    assert!(out.len() - before <= used, "more data than bytes used");
    let left = &input[used..];
    let mut more = Vec::new();
    if d.is_done() {
        // Done is final: what follows the body (a pipelined request) is left alone.
        assert!(
            matches!(d.feed(left, &mut more), Ok(0)),
            "took bytes after the end"
        );
    } else {
        assert!(
            left.len() <= limits.max_left(),
            "waits with {} bytes unused (caps {limits:?})",
            left.len()
        );
        assert!(
            matches!(d.feed(left, &mut more), Ok(0)),
            "progress on a second feed of the same bytes"
        );
        assert!(!d.is_done());
    }
    assert!(more.is_empty());
    Ok(used)
}

fn at_once(input: &[u8], limits: &Limits) -> (Outcome, Vec<u8>) {
    let mut d = ChunkedDecoder::new(limits.max_body, limits.max_trailer);
    let mut out = Vec::new();
    let outcome = match feed(&mut d, input, &mut out, limits) {
        Ok(used) if d.is_done() => Outcome::Done(used),
        Ok(used) => Outcome::Waiting(used),
        Err(refusal) => refusal,
    };
    (outcome, out)
}

/// Feeds `input` as conn.rs does: each read appended to the unused bytes, which are fed again.
fn in_pieces(input: &[u8], pieces: &[u8], limits: &Limits) -> (Outcome, Vec<u8>) {
    let mut d = ChunkedDecoder::new(limits.max_body, limits.max_trailer);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let (mut fed, mut consumed) = (0, 0);
    let steps: Vec<usize> = if pieces.iter().all(|&p| p == 0) {
        vec![1]
    } else {
        pieces.iter().map(|&p| usize::from(p)).collect()
    };
    for &step in steps.iter().cycle() {
        let end = (fed + step).min(input.len());
        pending.extend_from_slice(&input[fed..end]);
        fed = end;
        let used = match feed(&mut d, &pending, &mut out, limits) {
            Ok(used) => used,
            Err(refusal) => return (refusal, out),
        };
        pending.drain(..used);
        consumed += used;
        assert!(out.len() <= consumed, "more data than bytes consumed");
        if d.is_done() {
            return (Outcome::Done(consumed), out);
        }
        if fed == input.len() {
            return (Outcome::Waiting(consumed), out);
        }
    }
    unreachable!("steps is never empty")
}

// --- An independent, strict reading of RFC 9112 §7.1 ----------------------------------------

/// The data of the chunked body at the start of `input` and its length through the final
/// CRLF, or None unless it is a complete, well-formed body within inferd's caps: chunk-size
/// 1 to 16 HEXDIG, extensions `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`,
/// size lines of at most 1 KiB with their CRLF, data totalling at most `max_body`, trailer
/// fields `token ":" *( SP / HTAB / VCHAR / obs-text ) CRLF` that, with the final CRLF, take
/// at most `max_trailer` bytes. Stricter than the decoder has to be (no bare LF, no
/// whitespace before CRLF, no obs-fold), never more lenient.
fn reference(input: &[u8], limits: &Limits) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut data = Vec::new();
    loop {
        let line = at;
        let digits = input[at..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 || digits > 16 {
            return None;
        }
        let size = input[at..at + digits]
            .iter()
            .fold(0u64, |n, &b| n << 4 | u64::from(hex(b)));
        at = extensions(input, at + digits);
        at = crlf(input, at)?;
        if at - line > MAX_CHUNK_LINE {
            return None;
        }
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).ok()?;
        if size > limits.max_body - data.len() {
            return None;
        }
        data.extend_from_slice(input.get(at..at.checked_add(size)?)?);
        at = crlf(input, at + size)?;
    }
    let trailer = at;
    while !input[at..].starts_with(b"\r\n") {
        at = field_line(input, at)?;
    }
    at += 2;
    (at - trailer <= limits.max_trailer).then_some((data, at))
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

fn crlf(input: &[u8], at: usize) -> Option<usize> {
    input[at..].starts_with(b"\r\n").then_some(at + 2)
}

fn ws(input: &[u8], mut at: usize) -> usize {
    while matches!(input.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token(input: &[u8], at: usize) -> usize {
    at + input[at..].iter().take_while(|&&b| tchar(b)).count()
}

/// Past the chunk extensions starting at `at` (possibly none); a malformed extension ends
/// them where it starts, so the CRLF check that follows fails.
fn extensions(input: &[u8], mut at: usize) -> usize {
    loop {
        let semi = ws(input, at);
        if input.get(semi) != Some(&b';') {
            return at;
        }
        let name = ws(input, semi + 1);
        let name_end = token(input, name);
        if name_end == name {
            return at;
        }
        let eq = ws(input, name_end);
        if input.get(eq) != Some(&b'=') {
            at = name_end;
            continue;
        }
        let value = ws(input, eq + 1);
        let value_end = token(input, value);
        if value_end > value {
            at = value_end;
        } else if let Some(end) = quoted(input, value) {
            at = end;
        } else {
            return at;
        }
    }
}

/// Past the quoted-string at `at`, if there is a complete one.
fn quoted(input: &[u8], at: usize) -> Option<usize> {
    if input.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match *input.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *input.get(i + 1)? {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => i += 2,
                _ => return None,
            },
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
}

/// Past one trailer field line `token ":" value CRLF`.
fn field_line(input: &[u8], at: usize) -> Option<usize> {
    let name_end = token(input, at);
    if name_end == at || input.get(name_end) != Some(&b':') {
        return None;
    }
    let value = name_end + 1;
    let len = input[value..]
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | 0x21..=0x7e | 0x80..=0xff))
        .count();
    crlf(input, value + len)
}
