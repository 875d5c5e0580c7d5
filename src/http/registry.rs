//! Every open connection: the registry the accept loop and the connection threads share
//! (caps per client address, eviction of the connection that has waited longest for a
//! request head), each connection's slot in it, and the budget of request bodies in flight.

use super::error::HttpError;
use super::settings::Settings;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// State shared by the accept loop, connection threads and stoppers.
pub(super) struct Shared {
    pub(super) stopping: AtomicBool,
    /// The accept loop is running (false once it returned, for whatever reason).
    pub(super) accepting: AtomicBool,
    registry: Mutex<Registry>,
    drained: Condvar,
    /// Rejector threads answering 503 now.
    pub(super) rejecting: AtomicUsize,
    next_id: AtomicU64,
    /// Where a stopper connects to wake the blocking accept.
    pub(super) wake_addr: SocketAddr,
    max_connections: usize,
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
    pub(super) fn new(settings: &Settings, wake_addr: SocketAddr) -> Shared {
        Shared {
            stopping: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            registry: Mutex::new(Registry::default()),
            drained: Condvar::new(),
            rejecting: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            wake_addr,
            max_connections: settings.max_connections,
            soft_cap: settings.max_connections - settings.max_connections / 10,
            per_ip_cap: settings.max_connections_per_ip,
            ipv6_prefix: settings.ipv6_prefix,
            epoch: Instant::now(),
            bodies: AtomicUsize::new(settings.max_inflight_body_bytes),
        }
    }

    /// Makes room for a new connection from `client` (`None`: a proxy's): one address
    /// holding its share gives up its own connection that has waited longest for a request
    /// head; at the global cap, the connection that has waited longest anywhere goes.
    /// `evicted` hears of each (`true`: the same address's). `Err` (which cap) when the
    /// connections in the way are all busy with requests.
    pub(super) fn make_room(
        &self,
        client: Option<IpAddr>,
        evicted: impl Fn(bool),
    ) -> Result<(), HttpError> {
        let mut registry = self.registry();
        if let Some(client) = client
            && registry.held_by(client) >= self.per_ip_cap
        {
            if !registry.evict_longest_waiting(Some(client)) {
                return Err(HttpError::TooManyFromAddress);
            }
            evicted(true);
        }
        if registry.conns.len() >= self.max_connections {
            if !registry.evict_longest_waiting(None) {
                return Err(HttpError::TooManyConnections);
            }
            evicted(false);
        }
        Ok(())
    }

    /// Waits up to `timeout` for connections to finish: each one completes its request in
    /// flight and closes, and idle ones notice the stop within their poll interval. Then
    /// cuts whatever is left.
    pub(super) fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut registry = self.registry();
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
            registry = match self.drained.wait_timeout(registry, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether the server is near its connection cap (within 10%).
    pub(super) fn crowded(&self) -> bool {
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
    pub(super) fn client_key(&self, ip: IpAddr) -> IpAddr {
        client_key(ip, self.ipv6_prefix)
    }

    /// Takes `n` bytes of the body budget, if that many are left.
    pub(super) fn take_body(&self, n: usize) -> Option<BodyGrant<'_>> {
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
pub(super) struct BodyGrant<'a> {
    bodies: &'a AtomicUsize,
    held: usize,
}

impl BodyGrant<'_> {
    /// Holds `total` bytes in all (never less than now); false if the budget lacks them.
    pub(super) fn grow_to(&mut self, total: usize) -> bool {
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
pub(super) struct Slot {
    shared: Arc<Shared>,
    id: u64,
    phase: Phase,
    /// Whether the connection is a proxy's (its requests count by forwarded client).
    proxy: bool,
}

impl Slot {
    /// Enters a new connection in the registry, counted against `client` (`None`: a
    /// proxy's connection, whose requests count by forwarded client instead).
    pub(super) fn register(
        shared: &Arc<Shared>,
        tcp: &TcpStream,
        client: Option<IpAddr>,
    ) -> std::io::Result<Slot> {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let phase: Phase = Arc::new(AtomicU64::new(shared.stamp()));
        let entry = Entry {
            tcp: tcp.try_clone()?,
            client,
            phase: phase.clone(),
        };
        let mut registry = shared.registry();
        registry.conns.insert(id, entry);
        if let Some(client) = client {
            registry.count(client);
        }
        Ok(Slot {
            shared: shared.clone(),
            id,
            phase,
            proxy: client.is_none(),
        })
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A complete head arrived: the connection is busy until `end_request`. False when the
    /// accept loop has just evicted it.
    pub(super) fn begin_request(&self) -> bool {
        let phase = self.phase.load(Ordering::SeqCst);
        phase != EVICTED
            && self
                .phase
                .compare_exchange(phase, BUSY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// The response is out: waiting for the next head from now on.
    pub(super) fn end_request(&self) {
        let _ = self.phase.compare_exchange(
            BUSY,
            self.shared.stamp(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// For a proxy's connection: counts one request in progress against the forwarded
    /// client's cap. `None` when that client holds its share already.
    pub(super) fn claim(&self, client: IpAddr) -> Option<Claim<'_>> {
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

    pub(super) fn is_proxy(&self) -> bool {
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
pub(super) struct Claim<'a> {
    shared: &'a Shared,
    client: IpAddr,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.shared.registry().uncount(self.client);
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
