//! The accept loop: one thread per connection, within a global cap and a cap per client
//! address; at either cap the connection that has waited longest for a request head makes
//! room, and only when all in the way are busy does a newcomer get a quick 503 (from a
//! small bounded set of rejector threads, else a plain close). Also the budget of request
//! bodies in flight, socket timeouts, and graceful shutdown that stops accepting and drains
//! in-flight requests within a deadline.

use super::conn::{self, Stream};
use super::error::HttpError;
use super::request::{ConnInfo, Request};
use super::response::Response;
use super::tls::TlsAcceptor;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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

/// Tells the handler a connection ended, however its thread ends.
struct Opened<'a, H: Handler>(&'a H);

impl<H: Handler> Drop for Opened<'_, H> {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
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

/// Caps and deadlines of the HTTP layer, from `[limits]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_connections: usize,
    /// Open connections one client address may hold (IPv6 grouped by `ipv6_prefix`).
    pub max_connections_per_ip: usize,
    /// Prefix length that groups IPv6 addresses into one client.
    pub ipv6_prefix: u8,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_request_line: usize,
    pub max_body_bytes: usize,
    /// Bytes of request bodies being read or held, across all connections.
    pub max_inflight_body_bytes: usize,
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
    registry: Mutex<Registry>,
    drained: Condvar,
    rejecting: AtomicUsize,
    next_id: AtomicU64,
    wake_addr: SocketAddr,
    /// Open connections above which idle keep-alive connections close to make room.
    soft_cap: usize,
    per_ip_cap: usize,
    ipv6_prefix: u8,
    /// Zero point of the waiting stamps in `Phase`.
    epoch: Instant,
    /// Bytes of request bodies that may still be taken.
    bodies: AtomicUsize,
}

/// A connection's phase, one atomic word the connection and the accept loop share:
/// `BUSY` between a complete head and the end of its response, `EVICTED` once the accept
/// loop closed it, else the time (nanoseconds after `epoch`, plus one) since which it has
/// been waiting for a request head: in its TLS handshake, mid-head, or idle between requests.
type Phase = Arc<AtomicU64>;
const BUSY: u64 = 0;
const EVICTED: u64 = u64::MAX;

/// Every open connection, and how many each client address holds.
#[derive(Default)]
struct Registry {
    conns: HashMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
}

struct Entry {
    tcp: TcpStream,
    /// The client address the connection counts against; `None` for a proxy's.
    client: Option<IpAddr>,
    phase: Phase,
}

impl Registry {
    fn held_by(&self, client: IpAddr) -> usize {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    fn count(&mut self, client: IpAddr) {
        *self.per_client.entry(client).or_insert(0) += 1;
    }

    fn uncount(&mut self, client: IpAddr) {
        if let Some(n) = self.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&client);
            }
        }
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.conns.remove(&id)?;
        if let Some(client) = entry.client {
            self.uncount(client);
        }
        Some(entry)
    }

    /// Closes the connection (of `client`, or any) that has waited longest without
    /// completing a request head. False when every candidate is busy with a request.
    fn evict_longest_waiting(&mut self, client: Option<IpAddr>) -> bool {
        loop {
            let oldest = self
                .conns
                .iter()
                .filter(|(_, e)| client.is_none() || e.client == client)
                .filter_map(|(id, e)| {
                    let phase = e.phase.load(Ordering::SeqCst);
                    (phase != BUSY && phase != EVICTED).then_some((phase, *id))
                })
                .min();
            let Some((since, id)) = oldest else {
                return false;
            };
            let won = self.conns[&id]
                .phase
                .compare_exchange(since, EVICTED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            // Lost the race: that connection has just completed a head; look again.
            if won {
                if let Some(entry) = self.remove(id) {
                    let _ = entry.tcp.shutdown(Shutdown::Both);
                }
                return true;
            }
        }
    }
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether the server is near its connection cap (within 10%).
    pub(crate) fn crowded(&self) -> bool {
        self.registry().conns.len() >= self.soft_cap
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A poisoned registry only means a thread panicked while holding it; the map is fine.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stamp(&self) -> u64 {
        // Nanoseconds fit in u64 for 584 years of uptime; +1 keeps BUSY (0) apart.
        (self.epoch.elapsed().as_nanos() as u64)
            .saturating_add(1)
            .min(EVICTED - 1)
    }

    /// The client key of an address: IPv4-mapped IPv6 as IPv4, IPv6 cut to its prefix.
    pub(crate) fn client_key(&self, ip: IpAddr) -> IpAddr {
        client_key(ip, self.ipv6_prefix)
    }

    /// Takes `n` bytes of the body budget, if that many are left.
    pub(crate) fn take_body(&self, n: usize) -> Option<BodyGrant<'_>> {
        let mut grant = BodyGrant {
            bodies: &self.bodies,
            held: 0,
        };
        grant.grow_to(n).then_some(grant)
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry; other IPv6 addresses
/// are grouped by their first `prefix` bits (one host usually holds a whole /64).
pub fn client_key(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
        v4 => v4,
    }
}

/// Bytes of the body budget held by one request, returned when it is dropped.
pub(crate) struct BodyGrant<'a> {
    bodies: &'a AtomicUsize,
    held: usize,
}

impl BodyGrant<'_> {
    /// Holds `total` bytes in all (never less than now); false if the budget lacks them.
    pub(crate) fn grow_to(&mut self, total: usize) -> bool {
        let more = total.saturating_sub(self.held);
        if more == 0 {
            return true;
        }
        let taken = self
            .bodies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(more)
            })
            .is_ok();
        if taken {
            self.held = total;
        }
        taken
    }
}

impl Drop for BodyGrant<'_> {
    fn drop(&mut self) {
        self.bodies.fetch_add(self.held, Ordering::SeqCst);
    }
}

/// A connection's place in the registry, held by its thread; dropping it (however the
/// thread ends) removes the connection unless the accept loop evicted it already.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    id: u64,
    phase: Phase,
    /// Whether the connection is a proxy's (its requests count by forwarded client).
    proxy: bool,
}

impl Slot {
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A complete head arrived: the connection is busy until `end_request`. False when the
    /// accept loop has just evicted it.
    pub(crate) fn begin_request(&self) -> bool {
        let phase = self.phase.load(Ordering::SeqCst);
        phase != EVICTED
            && self
                .phase
                .compare_exchange(phase, BUSY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// The response is out: waiting for the next head from now on.
    pub(crate) fn end_request(&self) {
        let _ = self.phase.compare_exchange(
            BUSY,
            self.shared.stamp(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// For a proxy's connection: counts one request in progress against the forwarded
    /// client's cap. `None` when that client holds its share already.
    pub(crate) fn claim(&self, client: IpAddr) -> Option<Claim<'_>> {
        let client = self.shared.client_key(client);
        let mut registry = self.shared.registry();
        if registry.held_by(client) >= self.shared.per_ip_cap {
            return None;
        }
        registry.count(client);
        Some(Claim {
            shared: &self.shared,
            client,
        })
    }

    pub(crate) fn is_proxy(&self) -> bool {
        self.proxy
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut registry = self.shared.registry();
        registry.remove(self.id);
        if registry.conns.is_empty() {
            self.shared.drained.notify_all();
        }
    }
}

/// One request in progress through a proxy, counted against its client's cap.
pub(crate) struct Claim<'a> {
    shared: &'a Shared,
    client: IpAddr,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.shared.registry().uncount(self.client);
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
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            registry: Mutex::new(Registry::default()),
            drained: Condvar::new(),
            rejecting: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            wake_addr: SocketAddr::new(wake_ip, local_addr.port()),
            soft_cap: settings.max_connections - settings.max_connections / 10,
            per_ip_cap: settings.max_connections_per_ip,
            ipv6_prefix: settings.ipv6_prefix,
            epoch: Instant::now(),
            bodies: AtomicUsize::new(settings.max_inflight_body_bytes),
        });
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
        match make_room(&shared, &settings, client, handler.as_ref()) {
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
    drain(&shared, &settings);
}

/// Makes room for a new connection from `client`: one address holding its share gives
/// up its own connection that has waited longest for a request head; at the global cap,
/// the connection that has waited longest anywhere goes. `Err` (which cap) when the
/// connections in the way are all busy with requests.
fn make_room(
    shared: &Shared,
    settings: &Settings,
    client: Option<IpAddr>,
    handler: &impl Handler,
) -> Result<(), HttpError> {
    let mut registry = shared.registry();
    if let Some(client) = client
        && registry.held_by(client) >= settings.max_connections_per_ip
    {
        if !registry.evict_longest_waiting(Some(client)) {
            return Err(HttpError::TooManyFromAddress);
        }
        handler.connection_evicted(true);
    }
    if registry.conns.len() >= settings.max_connections {
        if !registry.evict_longest_waiting(None) {
            return Err(HttpError::TooManyConnections);
        }
        handler.connection_evicted(false);
    }
    Ok(())
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
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let phase: Phase = Arc::new(AtomicU64::new(shared.stamp()));
    match tcp.try_clone() {
        Ok(clone) => {
            let mut registry = shared.registry();
            registry.conns.insert(
                id,
                Entry {
                    tcp: clone,
                    client,
                    phase: phase.clone(),
                },
            );
            if let Some(client) = client {
                registry.count(client);
            }
        }
        Err(e) => return log::warn!("cannot track connection from {peer}: {e}"),
    }
    let slot = Slot {
        shared: shared.clone(),
        id,
        phase,
        proxy: client.is_none(),
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

/// Waits up to `shutdown_timeout` for connections to finish: each one completes its request
/// in flight and closes, and idle ones notice the stop within their poll interval. Then cuts
/// whatever is left.
fn drain(shared: &Shared, settings: &Settings) {
    let deadline = Instant::now() + settings.shutdown_timeout;
    let mut registry = shared.registry();
    while !registry.conns.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!(
                "shutdown: cutting {} connection(s) still busy",
                registry.conns.len()
            );
            for entry in registry.conns.values() {
                let _ = entry.tcp.shutdown(Shutdown::Both);
            }
            return;
        }
        registry = match shared.drained.wait_timeout(registry, left) {
            Ok((guard, _)) => guard,
            Err(p) => p.into_inner().0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_group_ipv6_by_prefix_and_unmap_ipv4() {
        let key = |ip: &str, prefix| client_key(ip.parse().unwrap(), prefix);
        assert_eq!(key("::ffff:10.0.0.7", 64), key("10.0.0.7", 64));
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), key("2001:db8:1:2::", 128));
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
        assert_ne!(key("2001:db8::1", 128), key("2001:db8::2", 128));
        assert_eq!(key("2001:db8::1", 0), key("::", 128));
        assert_eq!(key("192.0.2.1", 0), key("192.0.2.1", 128));
    }

    #[test]
    fn body_grants_share_one_budget_and_return_it() {
        let bodies = AtomicUsize::new(100);
        let mut a = BodyGrant {
            bodies: &bodies,
            held: 0,
        };
        assert!(a.grow_to(60));
        let mut b = BodyGrant {
            bodies: &bodies,
            held: 0,
        };
        assert!(!b.grow_to(41));
        assert!(b.grow_to(40));
        assert!(!a.grow_to(61));
        drop(a);
        assert!(b.grow_to(100));
        drop(b);
        assert_eq!(bodies.load(Ordering::SeqCst), 100);
    }
}
