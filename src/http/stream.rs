//! The transport of one connection: plain TCP or TLS, with deadline- and byte-bound reads
//! and writes.

use super::deadline::{set_deadline, set_write_deadline, timeout_kind};
use super::tls::{TlsAcceptor, TlsStream};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Plain TCP or TLS, behind one read/write surface.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    pub(super) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Opens the transport; for TLS the handshake must end before `deadline`.
    pub(super) fn open(
        tcp: TcpStream,
        tls: Option<&TlsAcceptor>,
        deadline: Instant,
    ) -> io::Result<Stream> {
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(acceptor) => Ok(Stream::Tls(Box::new(acceptor.accept(tcp, deadline)?))),
        }
    }

    /// Caps the bytes read off the wire from now on (TLS records included, so records that
    /// carry little or no data count); past it reads fail with `FileTooLarge`. Plain TCP
    /// needs no such cap: every byte it reads is one the caller counts.
    pub(super) fn limit_wire_bytes(&mut self, budget: u64) {
        if let Stream::Tls(tls) = self {
            tls.limit_wire_bytes(budget);
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.tcp(),
        }
    }

    pub(super) fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => loop {
                set_deadline(tcp, deadline)?;
                match tcp.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other.map_err(timeout_kind),
                }
            },
            Stream::Tls(tls) => tls.read(buf, deadline),
        }
    }

    /// Sends all of `data` before `deadline`, however slowly the client reads.
    pub(super) fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => {
                while !data.is_empty() {
                    set_write_deadline(tcp, deadline)?;
                    match tcp.write(data) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(timeout_kind(e)),
                    }
                }
                Ok(())
            }
            Stream::Tls(tls) => tls.write_all(data, deadline),
        }
    }

    /// Ends the connection politely: close_notify, half-close, then drain what the client
    /// still sends for a moment, so that a final error response is not lost to a TCP reset.
    pub(super) fn close(mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        if let Stream::Tls(tls) = &mut self {
            tls.close(deadline);
        }
        let tcp = self.tcp();
        let _ = tcp.shutdown(Shutdown::Write);
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 256 * 1024 {
            if set_deadline(tcp, deadline).is_err() {
                break;
            }
            match (&mut &*tcp).read(&mut sink) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}
