//! The accept loop: one thread per connection up to `max_connections` (beyond: a quick 503
//! from a small bounded set of rejector threads, else a plain close), socket timeouts, and
//! graceful shutdown that stops accepting and drains in-flight requests within a deadline.

use super::conn::{self, Stream};
use super::error::ApiError;
use super::request::{ConnInfo, Request};
use super::response::Response;
use super::tls::TlsAcceptor;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What answers requests. The router implements it; tests may plug in their own.
pub trait Handler: Send + Sync + 'static {
    /// Decides from the head alone (the body is still unread and empty) whether to refuse
    /// the request. A refusal is sent at once and the body is never read: unauthenticated
    /// clients cannot make the server buffer bodies or ask for `100 Continue`.
    /// May leave what it decided in `head.admission` for `handle`.
    fn admit(&self, _head: &mut Request) -> Option<Response> {
        None
    }

    fn handle(&self, req: &Request) -> Response;

    /// A connection was accepted (and counts against the cap) / has ended.
    fn connection_opened(&self) {}
    fn connection_closed(&self) {}

    /// A TLS handshake failed or did not finish in time.
    fn handshake_failed(&self) {}

    /// The HTTP layer answered `status` itself (malformed, too large, too slow, over the
    /// connection cap) without a route.
    fn refused(&self, _status: u16) {}
}

/// Tells the handler a connection ended, however its thread ends.
struct Opened<'a>(&'a dyn Handler);

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

impl<F: Fn(&Request) -> Response + Send + Sync + 'static> Handler for F {
    fn handle(&self, req: &Request) -> Response {
        self(req)
    }
}

/// Caps and deadlines of the HTTP layer, from `[limits]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_request_line: usize,
    pub max_body_bytes: usize,
    /// TLS handshake plus request head, as a whole.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

/// How many connections over the cap may be answered 503 at once; the rest are closed.
const MAX_REJECTORS: usize = 4;
/// Deadline for a rejector's handshake and write.
const REJECT_DEADLINE: Duration = Duration::from_secs(1);
const CONN_STACK: usize = 512 * 1024;

/// State shared by the accept loop, connection threads and stoppers.
pub(crate) struct Shared {
    stopping: AtomicBool,
    /// The accept loop is running (false once it returned, for whatever reason).
    accepting: AtomicBool,
    conns: Mutex<HashMap<u64, TcpStream>>,
    drained: Condvar,
    rejecting: AtomicUsize,
    next_id: AtomicU64,
    wake_addr: SocketAddr,
    /// Open connections above which idle keep-alive connections close to make room.
    soft_cap: usize,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether the server is near its connection cap (within 10%).
    pub(crate) fn crowded(&self) -> bool {
        self.conns().len() >= self.soft_cap
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        // A poisoned registry only means a thread panicked while holding it; the map is fine.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a connection from the registry when its thread ends, however it ends.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut conns = self.shared.conns();
        conns.remove(&self.id);
        if conns.is_empty() {
            self.shared.drained.notify_all();
        }
    }
}

/// Starts graceful shutdown from anywhere (a signal thread, a test).
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    /// Whether the server still accepts connections: not stopping, accept loop alive. The
    /// systemd watchdog pings only while this holds.
    pub fn is_serving(&self) -> bool {
        !self.shared.stopping() && self.shared.accepting.load(Ordering::SeqCst)
    }

    /// Stops accepting; in-flight requests finish, idle connections close.
    pub fn stop(&self) {
        if !self.shared.stopping.swap(true, Ordering::SeqCst) {
            // Wake the blocking accept() with a connection of our own.
            let _ = TcpStream::connect_timeout(&self.shared.wake_addr, Duration::from_secs(1));
        }
    }
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and starts accepting on a background thread.
    pub fn start(
        addr: SocketAddr,
        settings: Settings,
        tls: Option<TlsAcceptor>,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let wake_ip = match local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(a) if a.ip().is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            a => a.ip(),
        };
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            conns: Mutex::new(HashMap::new()),
            drained: Condvar::new(),
            rejecting: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            wake_addr: SocketAddr::new(wake_ip, local_addr.port()),
            soft_cap: settings.max_connections - settings.max_connections / 10,
        });
        let accept_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("inferd-accept".into())
            .spawn(move || accept_loop(listener, settings, tls, handler, accept_shared))?;
        Ok(Server {
            local_addr,
            shared,
            thread,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.shared.clone(),
        }
    }

    /// Blocks until the server has stopped and drained.
    pub fn wait(self) {
        let _ = self.thread.join();
    }
}

fn accept_loop(
    listener: TcpListener,
    settings: Settings,
    tls: Option<TlsAcceptor>,
    handler: Arc<dyn Handler>,
    shared: Arc<Shared>,
) {
    let settings = Arc::new(settings);
    loop {
        let (tcp, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if shared.stopping() {
                    break;
                }
                // EMFILE and friends: keep listening (never give up on accept), but do not spin.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.stopping() {
            break;
        }
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_write_timeout(Some(settings.write_timeout));
        if shared.conns().len() >= settings.max_connections {
            handler.refused(503);
            reject_over_cap(tcp, peer, tls.clone(), &shared);
            continue;
        }
        spawn_connection(tcp, peer, &settings, tls.as_ref(), &handler, &shared);
    }
    shared.accepting.store(false, Ordering::SeqCst);
    drop(listener);
    drain(&shared, &settings);
}

fn spawn_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    settings: &Arc<Settings>,
    tls: Option<&TlsAcceptor>,
    handler: &Arc<dyn Handler>,
    shared: &Arc<Shared>,
) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    match tcp.try_clone() {
        Ok(clone) => {
            shared.conns().insert(id, clone);
        }
        Err(e) => return log::warn!("cannot track connection from {peer}: {e}"),
    }
    let (settings, tls, handler, thread_shared) = (
        settings.clone(),
        tls.cloned(),
        handler.clone(),
        shared.clone(),
    );
    let spawned = thread::Builder::new()
        .name("inferd-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
            let shared = thread_shared;
            let _registration = Registration {
                shared: &shared,
                id,
            };
            handler.connection_opened();
            let _opened = Opened(handler.as_ref());
            let accepted = Instant::now();
            let stream = match Stream::open(tcp, tls.as_ref(), accepted + settings.header_timeout) {
                Ok(stream) => stream,
                Err(e) => {
                    if tls.is_some() {
                        handler.handshake_failed();
                    }
                    return log::debug!("connection from {peer} closed before a request: {e}");
                }
            };
            let conn = ConnInfo {
                peer,
                tls: tls.is_some(),
                client_cert: match &stream {
                    Stream::Tls(t) => t.client_cert(),
                    Stream::Plain(_) => None,
                },
            };
            conn::serve(stream, conn, accepted, &settings, handler.as_ref(), &shared);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a thread for {peer}: {e}");
        shared.conns().remove(&id);
    }
}

/// Answers a connection over the cap with 503, from a bounded number of short-lived
/// threads; when those are all busy the connection is simply closed.
fn reject_over_cap(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: &Arc<Shared>,
) {
    if shared.rejecting.fetch_add(1, Ordering::SeqCst) >= MAX_REJECTORS {
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
        let _ = tcp.shutdown(Shutdown::Both);
        return;
    }
    let thread_shared = shared.clone();
    let spawned = thread::Builder::new()
        .name("inferd-reject".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
            let _ = tcp.set_write_timeout(Some(REJECT_DEADLINE));
            if let Ok(mut stream) = Stream::open(tcp, tls.as_ref(), Instant::now() + REJECT_DEADLINE) {
                let response = ApiError::Overloaded.into_response();
                let mut out = Vec::new();
                response.write_to(&mut out, false, false, tls.is_some());
                let _ = stream.write_all(&out, Instant::now() + REJECT_DEADLINE);
                log::info!(target: "inferd::access", "- - 503 peer={peer} principal=- (connection cap)");
                stream.close();
            }
            thread_shared.rejecting.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        // The closure (and the socket) were dropped; undo the count it would have undone.
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits up to `shutdown_timeout` for connections to finish: each one completes its request
/// in flight and closes, and idle ones notice the stop within their poll interval. Then cuts
/// whatever is left.
fn drain(shared: &Shared, settings: &Settings) {
    let deadline = Instant::now() + settings.shutdown_timeout;
    let mut conns = shared.conns();
    while !conns.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!("shutdown: cutting {} connection(s) still busy", conns.len());
            for tcp in conns.values() {
                let _ = tcp.shutdown(Shutdown::Both);
            }
            return;
        }
        conns = match shared.drained.wait_timeout(conns, left) {
            Ok((guard, _)) => guard,
            Err(p) => p.into_inner().0,
        };
    }
}
