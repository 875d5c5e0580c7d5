//! One connection: the transport (plain TCP or TLS) with deadline-bound reads, and the
//! request loop that reads heads and bodies within their caps and deadlines, runs the
//! handler, and writes responses in order (keep-alive and pipelining).

use super::error::{ApiError, HttpError};
use super::parse::{self, Framing, HeadLimits};
use super::request::{ConnInfo, Request};
use super::response::Response;
use super::server::{Handler, Settings, Shared};
use super::tls::{TlsAcceptor, TlsStream};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Sets the socket's read timeout to what is left before `deadline`.
pub(crate) fn set_deadline(tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    tcp.set_read_timeout(Some(left))
}

/// Socket timeouts surface as WouldBlock on Unix; make them all TimedOut.
pub(crate) fn timeout_kind(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, e),
        _ => e,
    }
}

/// Plain TCP or TLS, behind one read/write surface.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Opens the transport; for TLS the handshake must end before `deadline`.
    pub(crate) fn open(
        tcp: TcpStream,
        tls: Option<&TlsAcceptor>,
        deadline: Instant,
    ) -> io::Result<Stream> {
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(acceptor) => Ok(Stream::Tls(Box::new(acceptor.accept(tcp, deadline)?))),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.tcp(),
        }
    }

    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => {
                set_deadline(tcp, deadline)?;
                tcp.read(buf).map_err(timeout_kind)
            }
            Stream::Tls(tls) => tls.read(buf, deadline),
        }
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.write_all(data),
            Stream::Tls(tls) => tls.write_all(data),
        }
    }

    /// Ends the connection politely: close_notify, half-close, then drain what the client
    /// still sends for a moment, so that a final error response is not lost to a TCP reset.
    pub(crate) fn close(mut self) {
        if let Stream::Tls(tls) = &mut self {
            tls.close();
        }
        let tcp = self.tcp();
        let _ = tcp.shutdown(Shutdown::Write);
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 256 * 1024 {
            if set_deadline(tcp, deadline).is_err() {
                break;
            }
            match (&mut &*tcp).read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// Serves requests on one accepted connection until it closes, times out or the server
/// shuts down (then it finishes the request in flight and closes).
pub(crate) fn serve(
    mut stream: Stream,
    conn: ConnInfo,
    accepted: Instant,
    settings: &Settings,
    handler: &dyn Handler,
    shared: &Shared,
) {
    let limits = HeadLimits {
        max_header_bytes: settings.max_header_bytes,
        max_headers: settings.max_headers,
        max_request_line: settings.max_request_line,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // The first head shares its deadline with the TLS handshake; later ones wait for their
    // first byte up to the idle timeout, then get a fresh header deadline.
    let mut first = true;
    loop {
        let wait_until = if first {
            accepted + settings.header_timeout
        } else {
            Instant::now() + settings.idle_timeout
        };
        match await_request(&mut stream, &mut buf, wait_until, shared) {
            Ok(true) => {}
            Ok(false) => return stream.close(),
            Err(_) if first => return reject(stream, HttpError::Timeout, &conn),
            Err(_) => return stream.close(),
        }
        let deadline = if first {
            accepted + settings.header_timeout
        } else {
            Instant::now() + settings.header_timeout
        };
        first = false;
        let (request, keep_alive, head_only) =
            match read_request(&mut stream, &mut buf, deadline, &limits, settings, &conn) {
                Ok(Some(r)) => r,
                Ok(None) => return stream.close(),
                Err(err) => return reject(stream, err, &conn),
            };
        let response =
            catch_unwind(AssertUnwindSafe(|| handler.handle(&request))).unwrap_or_else(|_| {
                ApiError::Internal(format!(
                    "handler panicked on {} {}",
                    request.method, request.path
                ))
                .into_response()
            });
        let keep_alive = keep_alive && !shared.stopping();
        if write(&mut stream, &response, head_only, keep_alive).is_err() || !keep_alive {
            return stream.close();
        }
    }
}

/// How often a connection waiting for a request checks whether the server is stopping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Waits until `buf` holds the first byte of a request. `Ok(false)`: the client closed, or
/// the server is stopping and no request has started (a request whose bytes already arrived
/// is always read and served). `Err`: nothing arrived before `until`.
fn await_request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    until: Instant,
    shared: &Shared,
) -> io::Result<bool> {
    while buf.is_empty() {
        let slice = until.min(Instant::now() + STOP_POLL);
        match fill(stream, buf, slice, 1) {
            Ok(more) => return Ok(more),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if Instant::now() >= until {
                    return Err(e);
                }
                if shared.stopping() {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Answers a request the HTTP layer refused, logs it, and closes.
fn reject(mut stream: Stream, err: HttpError, conn: &ConnInfo) {
    let reason = err.to_string();
    let response = ApiError::from(err).into_response();
    log::info!(target: "inferd::access", "- - {} peer={} principal=- ({reason})", response.status(), conn.peer);
    let _ = write(&mut stream, &response, false, false);
    stream.close();
}

fn write(
    stream: &mut Stream,
    response: &Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + response.body().len());
    response.write_to(&mut out, head_only, keep_alive);
    stream.write_all(&out)
}

/// Reads more bytes into `buf` until it holds at least `want` bytes. `Ok(false)` is a clean
/// end of stream before that.
fn fill(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    want: usize,
) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    while buf.len() < want {
        let room = (want - buf.len()).clamp(1, chunk.len());
        let n = stream.read(&mut chunk[..room], deadline)?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

type ReadOutcome = Result<Option<(Request, bool, bool)>, HttpError>;

/// Reads one request (head, then body) from `buf` and the stream. Leaves any pipelined
/// bytes that follow it in `buf`. `Ok(None)`: the client closed between requests.
fn read_request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    limits: &HeadLimits,
    settings: &Settings,
    conn: &ConnInfo,
) -> ReadOutcome {
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut => HttpError::Timeout,
        _ => HttpError::BadRequest(format!("connection error: {e}")),
    };
    let mut chunk = [0u8; 8192];
    let (head, head_len) = loop {
        if let Some(parsed) = parse::parse_head(buf, limits)? {
            break parsed;
        }
        let n = stream.read(&mut chunk, deadline).map_err(io_err)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HttpError::BadRequest(
                    "connection closed mid-request".into(),
                ))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..head_len);
    let framing = parse::framing(&head, settings.max_body_bytes)?;
    let keep_alive = head.keep_alive();
    let expects_continue = head.expects_continue()?;
    let body = match framing {
        Framing::NoBody => Vec::new(),
        Framing::Length(len) => {
            if expects_continue && buf.is_empty() {
                stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .map_err(io_err)?;
            }
            let body_deadline = Instant::now() + settings.body_timeout;
            if !fill(stream, buf, body_deadline, len).map_err(io_err)? {
                return Err(HttpError::BadRequest("connection closed mid-body".into()));
            }
            buf.drain(..len).collect()
        }
    };
    let head_only = head.method == "HEAD";
    let request = Request::new(&head.method, &head.target, head.headers, body, conn.clone());
    Ok(Some((request, keep_alive, head_only)))
}
