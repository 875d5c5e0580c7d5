//! One connection's request loop: read a head within its caps and deadline, let the handler
//! admit or refuse it from the head alone (and name the body its route takes), only then
//! read the body (Content-Length or chunked, within the route's cap and the body budget),
//! run the handler, and write responses in order (keep-alive and pipelining).

use super::error::{HttpError, error_response};
use super::handler::{Handler, Verdict};
use super::parse::{self, ChunkedDecoder, Framing, Head, HeadLimits};
use super::registry::{BodyGrant, Claim, Shared, Slot};
use super::request::{ConnInfo, Request};
use super::response::Response;
use super::settings::Settings;
use super::stream::Stream;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Bytes on the wire a request head may take beyond its own bytes: TLS record framing,
/// and records that carry nothing (empty records, alerts, key updates). Beyond it the head
/// is refused like an oversized one (431).
fn head_wire_budget(settings: &Settings) -> u64 {
    2 * settings.max_header_bytes as u64 + 16 * 1024
}

/// Serves requests on one accepted connection until it closes, times out, is evicted or
/// the server shuts down (then it finishes the request in flight and closes).
pub(crate) fn serve(
    mut stream: Stream,
    conn: ConnInfo,
    accepted: Instant,
    settings: &Settings,
    handler: &impl Handler,
    slot: &Slot,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut first = true;
    loop {
        let waited = next_head(&mut stream, &mut buf, first, accepted, settings, slot);
        let head = match waited {
            Ok(Some(head)) => head,
            Ok(None) => return stream.close(),
            Err(err) => return reject(stream, err, &conn, settings, handler, false),
        };
        first = false;
        if !slot.begin_request() {
            // Evicted while its head arrived: the accept loop gave the slot away.
            return stream.close();
        }
        let head_only = head.method == "HEAD";
        match exchange(&mut stream, &mut buf, head, &conn, settings, handler, slot) {
            Ok(keep_alive) => {
                slot.end_request();
                if !keep_alive {
                    return stream.close();
                }
            }
            Err(err) => return reject(stream, err, &conn, settings, handler, head_only),
        }
        // Do not keep a large body's buffer for the life of an idle connection.
        buf.shrink_to(8192);
    }
}

/// Waits for the next request head and reads it. The first head shares its deadline with
/// the TLS handshake; later ones wait for their first byte up to the idle timeout, then get
/// a fresh header deadline. `Ok(None)`: close without an answer (the client closed, went
/// idle too long, or the server is stopping or making room).
fn next_head(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    first: bool,
    accepted: Instant,
    settings: &Settings,
    slot: &Slot,
) -> Result<Option<Head>, HttpError> {
    let wait_until = match first {
        true => accepted + settings.header_timeout,
        false => Instant::now() + settings.idle_timeout,
    };
    stream.limit_wire_bytes(head_wire_budget(settings));
    match await_request(stream, buf, wait_until, slot.shared(), !first) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            return Err(HttpError::HeadersTooLarge);
        }
        Err(_) if first => return Err(HttpError::Timeout),
        Err(_) => return Ok(None),
    }
    let head_deadline = match first {
        true => accepted + settings.header_timeout,
        false => Instant::now() + settings.header_timeout,
    };
    let limits = HeadLimits {
        max_header_bytes: settings.max_header_bytes,
        max_headers: settings.max_headers,
        max_request_line: settings.max_request_line,
    };
    read_head(stream, buf, head_deadline, &limits)
}

/// One request after its head: framing, the proxy's per-client cap, admission from the
/// head, then the body and the handler, and the answer. `Ok(keep_alive)`: the answer went
/// out, and whether the connection stays open.
///
/// Refusals decided from the head (unknown route, bad method, no credentials) are answered
/// before the body is read or 100-continue is sent. A refused request with a body ends the
/// connection: its unread body would be taken for the next request.
fn exchange(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    head: Head,
    conn: &ConnInfo,
    settings: &Settings,
    handler: &impl Handler,
    slot: &Slot,
) -> Result<bool, HttpError> {
    let head_only = head.method == "HEAD";
    let prepared = prepare(head, settings, conn)?;
    let _claim = claim_for_proxy(slot, handler, &prepared.request)?;
    let stopping = || slot.shared().stopping();
    let mut request = prepared.request;
    let (max_body, admitted) = match admit(handler, &request) {
        Verdict::Answer(response) => {
            let keep_alive = prepared.keep_alive && !prepared.framing.has_body() && !stopping();
            let written = write(stream, &response, head_only, keep_alive, settings);
            return Ok(written.is_ok() && keep_alive);
        }
        Verdict::Proceed { max_body, admitted } => (max_body, admitted),
    };
    let body = Body {
        framing: prepared.framing,
        max_body: max_body.min(settings.max_body_bytes),
        expects_continue: prepared.expects_continue,
    };
    let (body, grant) = read_body(stream, buf, body, settings, slot.shared())?;
    request.body = body;
    let response = guarded(&request, |r| handler.handle(r, admitted));
    // The body's memory goes back to the budget with the grant, once the request is gone.
    drop(request);
    drop(grant);
    let keep_alive = prepared.keep_alive && !stopping();
    let written = write(stream, &response, head_only, keep_alive, settings);
    Ok(written.is_ok() && keep_alive)
}

/// For a proxy's connection: counts the request against the cap of the client the proxy
/// names (503 when that client holds its share already).
fn claim_for_proxy<'s>(
    slot: &'s Slot,
    handler: &impl Handler,
    request: &Request,
) -> Result<Option<Claim<'s>>, HttpError> {
    if !slot.is_proxy() {
        return Ok(None);
    }
    match handler.forwarded_client(request) {
        None => Ok(None),
        Some(client) => slot
            .claim(client)
            .map(Some)
            .ok_or(HttpError::TooManyFromAddress),
    }
}

/// Runs handler code, turning a panic into a 500 that names nothing internal.
fn guarded(request: &Request, f: impl FnOnce(&Request) -> Response) -> Response {
    catch_unwind(AssertUnwindSafe(|| f(request))).unwrap_or_else(|_| panicked(request))
}

fn panicked(request: &Request) -> Response {
    log::error!("handler panicked on {} {}", request.method, request.path);
    error_response(500, "internal", "internal error")
}

/// The admission step; a panic is a 500.
fn admit<H: Handler>(handler: &H, request: &Request) -> Verdict<H::Admitted> {
    match catch_unwind(AssertUnwindSafe(|| handler.admit(request))) {
        Ok(verdict) => verdict,
        Err(_) => Verdict::Answer(panicked(request)),
    }
}

/// How often a connection waiting for a request checks whether the server is stopping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Waits until `buf` holds the first byte of a request. `Ok(false)`: the client closed, or
/// no request has started and either the server is stopping or (for a keep-alive wait,
/// `idle`) it is near its connection cap and this idle connection should make room. A
/// request whose bytes already arrived is always read and served. `Err`: nothing arrived
/// before `until`.
fn await_request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    until: Instant,
    shared: &Shared,
    idle: bool,
) -> io::Result<bool> {
    while buf.is_empty() {
        let slice = until.min(Instant::now() + STOP_POLL);
        match fill(stream, buf, slice, 1) {
            Ok(more) => return Ok(more),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if Instant::now() >= until {
                    return Err(e);
                }
                if shared.stopping() || (idle && shared.crowded()) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Answers a request the HTTP layer refused, lets the handler count and log it, and closes.
fn reject(
    mut stream: Stream,
    err: HttpError,
    conn: &ConnInfo,
    settings: &Settings,
    handler: &impl Handler,
    head_only: bool,
) {
    let reason = err.to_string();
    let response = err.into_response();
    handler.refused(response.status(), conn.peer, &reason);
    let _ = write(&mut stream, &response, head_only, false, settings);
    stream.close();
}

fn write(
    stream: &mut Stream,
    response: &Response,
    head_only: bool,
    keep_alive: bool,
    settings: &Settings,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + response.body().len());
    response.write_to(&mut out, head_only, keep_alive, stream.is_tls());
    stream.write_all(&out, Instant::now() + settings.write_timeout)
}

/// Reads more bytes into `buf` until it holds at least `want` bytes, never reading past
/// them. `Ok(false)` is a clean end of stream before that.
fn fill(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    want: usize,
) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    while buf.len() < want {
        let room = (want - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room], deadline)?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

fn io_error(e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::TimedOut => HttpError::Timeout,
        // The wire budget of a head (TLS records that carry little or nothing).
        io::ErrorKind::FileTooLarge => HttpError::HeadersTooLarge,
        _ => HttpError::BadRequest(format!("connection error: {e}")),
    }
}

fn body_io_error(e: io::Error) -> HttpError {
    match e.kind() {
        // The wire budget of a body: far more TLS bytes than the data they carry.
        io::ErrorKind::FileTooLarge => HttpError::PayloadTooLarge,
        _ => io_error(e),
    }
}

/// Reads one request head, leaving what follows it in `buf`. `Ok(None)`: the client closed
/// between requests.
///
/// Linear in the bytes received: empty lines before the request line (RFC 9112 §2.2) are
/// dropped as they arrive and count against the header cap; the end of the head is searched
/// for only in bytes not searched before; the head is parsed at most three times (when its
/// first bytes arrive and when its request line is complete, to refuse garbage early, and
/// once when it is whole).
fn read_head(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    limits: &HeadLimits,
) -> Result<Option<Head>, HttpError> {
    let mut chunk = [0u8; 8192];
    let mut skipped = 0usize;
    let mut searched = 0usize;
    let mut probed = false;
    let mut line_parsed = false;
    let mut line_ended = buf.contains(&b'\n');
    loop {
        let empty = parse::leading_empty_lines(buf);
        if empty > 0 {
            buf.drain(..empty);
            skipped += empty;
            searched = 0;
            line_ended = buf.contains(&b'\n');
        }
        if let Some(end) = parse::head_end(buf, searched) {
            let Some((head, len)) = parse::parse_head(&buf[..end], limits)? else {
                return Err(HttpError::BadRequest("incomplete request head".into()));
            };
            if skipped + len > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            buf.drain(..len);
            return Ok(Some(head));
        }
        searched = buf.len();
        // Parse what there is once when the first bytes arrive and once when the request
        // line is complete: garbage and overlong lines are refused then, not at the cap.
        if (!probed && !buf.is_empty()) || (line_ended && !line_parsed) {
            parse::parse_head(buf, limits)?;
            probed = !buf.is_empty();
            line_parsed = line_ended;
        } else if !line_ended && buf.len() > limits.max_request_line {
            return Err(HttpError::UriTooLong);
        }
        if skipped + buf.len() > limits.max_header_bytes {
            return Err(HttpError::HeadersTooLarge);
        }
        let n = stream.read(&mut chunk, deadline).map_err(io_error)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HttpError::BadRequest(
                    "connection closed mid-request".into(),
                ))
            };
        }
        line_ended |= chunk[..n].contains(&b'\n');
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request whose head is read and whose body is not yet.
struct Prepared {
    request: Request,
    framing: Framing,
    keep_alive: bool,
    expects_continue: bool,
}

/// Turns a head into a body-less `Request`, with its framing and keep-alive decided.
fn prepare(head: Head, settings: &Settings, conn: &ConnInfo) -> Result<Prepared, HttpError> {
    let framing = parse::framing(&head, settings.max_body_bytes)?;
    let keep_alive = head.keep_alive();
    // 1xx responses are for HTTP/1.1 clients only (RFC 9110 §15.2).
    let expects_continue = head.expects_continue()? && head.minor_version >= 1;
    let request = Request::new(
        &head.method,
        &head.target,
        head.headers,
        Vec::new(),
        conn.clone(),
    );
    Ok(Prepared {
        request,
        framing,
        keep_alive,
        expects_continue,
    })
}

/// What the body of an admitted request may be.
struct Body {
    framing: Framing,
    /// The route's cap, within `max_body_bytes`.
    max_body: usize,
    expects_continue: bool,
}

/// Reads the body within its route's cap, the body budget and the body deadline, after
/// `100 Continue` if asked. The grant holds the body's bytes of the budget until dropped.
fn read_body<'s>(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    body: Body,
    settings: &Settings,
    shared: &'s Shared,
) -> Result<(Vec<u8>, Option<BodyGrant<'s>>), HttpError> {
    let deadline = Instant::now() + settings.body_timeout;
    match body.framing {
        Framing::NoBody => Ok((Vec::new(), None)),
        Framing::Length(len) if len > body.max_body => {
            Err(HttpError::RouteBodyTooLarge(body.max_body))
        }
        Framing::Length(len) => {
            let grant = shared.take_body(len).ok_or(HttpError::BodyBudget)?;
            send_continue(stream, buf, body.expects_continue, settings)?;
            stream.limit_wire_bytes(2 * len as u64 + 16 * 1024);
            buf.reserve_exact(len.saturating_sub(buf.len()));
            if !fill(stream, buf, deadline, len).map_err(body_io_error)? {
                return Err(HttpError::BadRequest("connection closed mid-body".into()));
            }
            // The body is the front of `buf`; what follows it (pipelined requests) stays.
            let rest = buf.split_off(len);
            Ok((std::mem::replace(buf, rest), Some(grant)))
        }
        Framing::Chunked => {
            let mut grant = shared.take_body(0).ok_or(HttpError::BodyBudget)?;
            send_continue(stream, buf, body.expects_continue, settings)?;
            stream.limit_wire_bytes(2 * body.max_body as u64 + 16 * 1024);
            let mut decoder = ChunkedDecoder::new(body.max_body, settings.max_header_bytes);
            let mut out = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                // Decoded data never outgrows its input: hold room for all of `buf` first,
                // doubling so that the copies stay linear.
                let need = (out.len() + buf.len()).min(body.max_body);
                if need > out.capacity() {
                    let room = need.max(2 * out.capacity()).min(body.max_body);
                    if !grant.grow_to(room) {
                        return Err(HttpError::BodyBudget);
                    }
                    out.reserve_exact(room - out.len());
                }
                let used = decoder.feed(buf, &mut out)?;
                buf.drain(..used);
                if decoder.is_done() {
                    return Ok((out, Some(grant)));
                }
                let n = stream.read(&mut chunk, deadline).map_err(body_io_error)?;
                if n == 0 {
                    return Err(HttpError::BadRequest("connection closed mid-body".into()));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Sends `100 Continue` when the client waits for it and has sent no body byte yet.
fn send_continue(
    stream: &mut Stream,
    buf: &[u8],
    expects_continue: bool,
    settings: &Settings,
) -> Result<(), HttpError> {
    if expects_continue && buf.is_empty() {
        stream
            .write_all(
                b"HTTP/1.1 100 Continue\r\n\r\n",
                Instant::now() + settings.write_timeout,
            )
            .map_err(io_error)?;
    }
    Ok(())
}
