//! The accept loop: one thread per connection, within a global cap and a cap per client
//! address; at either cap the connection that has waited longest for a request head makes
//! room, and only when all in the way are busy does a newcomer get a quick 503 (from a
//! small bounded set of rejector threads, else a plain close). Also the budget of request
//! bodies in flight, socket timeouts, and graceful shutdown that stops accepting and drains
//! in-flight requests within a deadline.

use super::conn;
use super::error::HttpError;
use super::handler::Handler;
use super::registry::{Shared, Slot};
use super::request::ConnInfo;
use super::settings::Settings;
use super::stream::Stream;
use super::tls::TlsAcceptor;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Tells the handler a connection ended, however its thread ends.
struct Opened<'a, H: Handler>(&'a H);

impl<H: Handler> Drop for Opened<'_, H> {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// How many connections over the cap may be answered 503 at once; the rest are closed.
const MAX_REJECTORS: usize = 4;
/// Deadline for a rejector's handshake and write.
const REJECT_DEADLINE: Duration = Duration::from_secs(1);
const CONN_STACK: usize = 512 * 1024;

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
    pub fn start<H: Handler>(
        addr: SocketAddr,
        settings: Settings,
        tls: Option<TlsAcceptor>,
        handler: Arc<H>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let wake_ip = match local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(a) if a.ip().is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            a => a.ip(),
        };
        let wake_addr = SocketAddr::new(wake_ip, local_addr.port());
        let shared = Arc::new(Shared::new(&settings, wake_addr));
        let accept_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("http-accept".into())
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

fn accept_loop<H: Handler>(
    listener: TcpListener,
    settings: Settings,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
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
        let client = (!handler.is_proxy(peer.ip())).then(|| shared.client_key(peer.ip()));
        if client.is_some() && !handler.admit_connection(peer.ip()) {
            // No handshake, no answer: a 503 would cost the handshake this limit saves.
            handler.refused(0, peer, "connection rate per address");
            let _ = tcp.shutdown(Shutdown::Both);
            continue;
        }
        let room = shared.make_room(client, |same_address| {
            handler.connection_evicted(same_address)
        });
        match room {
            Ok(()) => spawn_connection(
                tcp,
                peer,
                client,
                &settings,
                tls.as_ref(),
                &handler,
                &shared,
            ),
            Err(refusal) => {
                handler.refused(503, peer, &refusal.to_string());
                reject_over_cap(tcp, tls.clone(), &shared, refusal);
            }
        }
    }
    shared.accepting.store(false, Ordering::SeqCst);
    drop(listener);
    shared.drain(settings.shutdown_timeout);
}

fn spawn_connection<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    client: Option<IpAddr>,
    settings: &Arc<Settings>,
    tls: Option<&TlsAcceptor>,
    handler: &Arc<H>,
    shared: &Arc<Shared>,
) {
    let slot = match Slot::register(shared, &tcp, client) {
        Ok(slot) => slot,
        Err(e) => return log::warn!("cannot track connection from {peer}: {e}"),
    };
    let (settings, tls, handler) = (settings.clone(), tls.cloned(), handler.clone());
    let spawned = thread::Builder::new()
        .name("http-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
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
            conn::serve(stream, conn, accepted, &settings, handler.as_ref(), &slot);
        });
    if let Err(e) = spawned {
        // The closure, and the slot in it, were dropped: the registry entry is gone.
        log::warn!("cannot start a thread for {peer}: {e}");
    }
}

/// Answers a connection over a cap with 503, from a bounded number of short-lived
/// threads; when those are all busy the connection is simply closed.
fn reject_over_cap(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    shared: &Arc<Shared>,
    refusal: HttpError,
) {
    if shared.rejecting.fetch_add(1, Ordering::SeqCst) >= MAX_REJECTORS {
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
        let _ = tcp.shutdown(Shutdown::Both);
        return;
    }
    let thread_shared = shared.clone();
    let spawned = thread::Builder::new()
        .name("http-reject".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
            let _ = tcp.set_write_timeout(Some(REJECT_DEADLINE));
            if let Ok(mut stream) =
                Stream::open(tcp, tls.as_ref(), Instant::now() + REJECT_DEADLINE)
            {
                let response = refusal.into_response();
                let mut out = Vec::new();
                response.write_to(&mut out, false, false, tls.is_some());
                let _ = stream.write_all(&out, Instant::now() + REJECT_DEADLINE);
                stream.close();
            }
            thread_shared.rejecting.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        // The closure (and the socket) were dropped; undo the count it would have undone.
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
    }
}
