//! The seam between the server and the application: a `Handler` admits each request from
//! its head (the body still unread) and answers the whole request with what it decided.

use super::request::Request;
use super::response::Response;
use std::net::{IpAddr, SocketAddr};

/// What the handler decided from a request's head.
#[derive(Debug)]
pub enum Verdict<A> {
    /// Answer this at once; the body (if any) is never read.
    Answer(Response),
    /// Read a body of at most `max_body` bytes (0: the route takes none), then `handle`
    /// the request with what admission decided.
    Proceed { max_body: usize, admitted: A },
}

/// What answers requests: an application plugs in here (a plain closure serves too).
pub trait Handler: Send + Sync + 'static {
    /// What admission decided from the head (the route, the caller, ...), handed back to
    /// `handle` with the complete request.
    type Admitted: Send;

    /// Decides from the head alone (the body is still unread and empty) whether to refuse
    /// the request, and how large a body it takes. A refusal is sent at once and the body
    /// is never read: unauthenticated clients cannot make the server buffer bodies or ask
    /// for `100 Continue`.
    fn admit(&self, head: &Request) -> Verdict<Self::Admitted>;

    /// Answers a request that `admit` let through, its body read.
    fn handle(&self, req: &Request, admitted: Self::Admitted) -> Response;

    /// Whether connections from `peer` are a proxy's, shared by many clients: they are not
    /// held to the per-address connection cap; each request on them counts against the
    /// cap of the client `forwarded_client` names instead.
    fn is_proxy(&self, _peer: IpAddr) -> bool {
        false
    }

    /// Whether a new connection from `peer` (not a proxy) may proceed to its handshake:
    /// false closes it at once (a client opening connections faster than its share).
    fn admit_connection(&self, _peer: IpAddr) -> bool {
        true
    }

    /// The client a proxy's request is for, when its head says.
    fn forwarded_client(&self, _head: &Request) -> Option<IpAddr> {
        None
    }

    /// A connection was accepted (and counts against the cap) / has ended.
    fn connection_opened(&self) {}
    fn connection_closed(&self) {}

    /// A connection still waiting for a request head was closed to make room for a new
    /// one (`per_address`: from the same address, else at the global cap).
    fn connection_evicted(&self, _per_address: bool) {}

    /// A TLS handshake failed or did not finish in time.
    fn handshake_failed(&self) {}

    /// The HTTP layer answered `status` itself (malformed, too large, too slow, over a
    /// connection cap or the body budget) without a route, or closed the connection without
    /// an answer (`status` 0); `reason` says why, for the log.
    fn refused(&self, _status: u16, _peer: SocketAddr, _reason: &str) {}
}

/// A closure answers every request, with a body of any size the server's caps allow.
impl<F: Fn(&Request) -> Response + Send + Sync + 'static> Handler for F {
    type Admitted = ();

    fn admit(&self, _head: &Request) -> Verdict<()> {
        Verdict::Proceed {
            max_body: usize::MAX,
            admitted: (),
        }
    }

    fn handle(&self, req: &Request, _: ()) -> Response {
        self(req)
    }
}
