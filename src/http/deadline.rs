//! Socket deadlines: a read or write may take what is left before its deadline, no more.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What is left before `deadline`, or a TimedOut error once it has passed.
pub(super) fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(left)
}

/// Sets the socket's read timeout to what is left before `deadline`.
pub(super) fn set_deadline(tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    tcp.set_read_timeout(Some(remaining(deadline)?))
}

/// Sets the socket's write timeout to what is left before `deadline`: `SO_SNDTIMEO` bounds
/// one write call, so every call gets the rest of the response's deadline, not a fresh one.
pub(super) fn set_write_deadline(tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    tcp.set_write_timeout(Some(remaining(deadline)?))
}

/// Socket timeouts surface as WouldBlock on Unix; make them all TimedOut.
pub(super) fn timeout_kind(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, e),
        _ => e,
    }
}
