//! Rate limits: governor's GCRA, keyed by principal on authenticated routes and by client
//! address for open routes, `POST /token` and failed authentications. Every keyed state is
//! capped in count and purged on a schedule; governor's types stay in this file.

use crate::auth::Principal;
use crate::config::{Rate, RateLimitConfig};
use crate::http::client_key;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

type Keyed<C> = RateLimiter<u64, DefaultKeyedStateStore<u64>, C, StateInformationMiddleware>;

/// Where a request stands against the policy that applied to it: what the IETF draft
/// `RateLimit-Policy` and `RateLimit` fields say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The policy's name: `default`, `key`, `client`, `scope`, `anonymous`, `token`,
    /// `failed_auth`.
    pub policy: &'static str,
    /// Requests per window, and the window.
    pub count: u32,
    pub window: Duration,
    /// Requests that could be sent right now.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
}

impl Standing {
    /// `RateLimit-Policy: "default";q=600;w=60` (draft-ietf-httpapi-ratelimit-headers).
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.policy,
            self.count,
            self.window.as_secs()
        )
    }

    /// `RateLimit: "default";r=599;t=1`: remaining requests and whole seconds until the
    /// quota is fully restored.
    pub fn header(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.policy,
            self.remaining,
            ceil_secs(self.reset)
        )
    }
}

/// A refusal: wait `retry_after`, then try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    pub standing: Standing,
    pub retry_after: Duration,
    /// Why, for the log: `quota`, `failed_auth`, `too_many_clients`.
    pub reason: &'static str,
}

impl RateLimited {
    /// `Retry-After` in whole seconds, at least one.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after).max(1)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One quota and the keyed GCRA state of everyone it applies to.
struct Policy<C: Clock> {
    name: &'static str,
    rate: Rate,
    limiter: Keyed<C>,
}

impl<C: Clock + Clone> Policy<C> {
    fn new(name: &'static str, rate: Rate, clock: &C) -> Policy<C> {
        // Config parsing keeps window / count at one microsecond or more, so the period is
        // never zero; fall back to that floor all the same.
        let period = (rate.window / rate.count.get()).max(Duration::from_micros(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(nonzero_ext::nonzero!(1_000_000u32)))
            .allow_burst(rate.burst);
        Policy {
            name,
            rate,
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
        }
    }

    fn period(&self) -> Duration {
        self.rate.window / self.rate.count.get()
    }

    fn standing(&self, remaining: u32) -> Standing {
        let missing = self.rate.burst.get().saturating_sub(remaining);
        Standing {
            policy: self.name,
            count: self.rate.count.get(),
            window: self.rate.window,
            remaining,
            reset: self.period() * missing,
        }
    }

    /// Takes one request from `key`'s bucket. Beyond `max_keys` tracked keys a new key is
    /// refused (an existing one too: the map cannot tell them apart without a lookup) until
    /// the purge makes room.
    fn check(&self, key: u64, max_keys: usize, clock: &C) -> Result<Standing, RateLimited> {
        if self.limiter.len() >= max_keys {
            self.purge();
            if self.limiter.len() >= max_keys {
                return Err(RateLimited {
                    standing: self.standing(0),
                    retry_after: self.period(),
                    reason: "too_many_clients",
                });
            }
        }
        match self.limiter.check_key(&key) {
            Ok(snapshot) => Ok(self.standing(snapshot.remaining_burst_capacity())),
            Err(not_until) => Err(self.over_quota(not_until.wait_time_from(clock.now()))),
        }
    }

    /// A refusal for a bucket that allows the next request after `wait`.
    fn over_quota(&self, wait: Duration) -> RateLimited {
        let mut standing = self.standing(0);
        standing.reset = wait + self.period() * (self.rate.burst.get() - 1);
        RateLimited {
            standing,
            retry_after: wait,
            reason: "quota",
        }
    }

    /// Takes `cost` cells at once from a key already tracked.
    fn charge(
        &self,
        key: u64,
        cost: std::num::NonZeroU32,
        clock: &C,
    ) -> Result<Standing, RateLimited> {
        match self.limiter.check_key_n(&key, cost) {
            Ok(Ok(snapshot)) => Ok(self.standing(snapshot.remaining_burst_capacity())),
            Ok(Err(not_until)) => Err(self.over_quota(not_until.wait_time_from(clock.now()))),
            Err(_) => Err(RateLimited {
                standing: self.standing(0),
                retry_after: self.rate.window,
                reason: "cost_exceeds_burst",
            }),
        }
    }

    fn purge(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// All of inferd's rate limits. Built once from `[rate_limit]`.
pub struct Limiter<C: Clock = DefaultClock> {
    enabled: bool,
    clock: C,
    hasher: RandomState,
    max_keys: usize,
    default: Policy<C>,
    keys: HashMap<String, Policy<C>>,
    clients: HashMap<String, Policy<C>>,
    scopes: HashMap<String, Policy<C>>,
    anonymous: Policy<C>,
    token: Policy<C>,
    connections: Policy<C>,
    failed: Policy<C>,
    /// Addresses whose failed-authentication budget is spent, until when.
    barred: Mutex<HashMap<u64, C::Instant>>,
    /// IPv6 addresses are one client per this prefix.
    ipv6_prefix: u8,
    tokens_per_unit: u32,
}

impl Limiter<DefaultClock> {
    pub fn new(config: &RateLimitConfig) -> Limiter {
        Limiter::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    /// A limiter on another clock (tests use governor's `FakeRelativeClock`).
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Limiter<C> {
        let table = |name: &'static str, rates: &BTreeMap<String, Rate>| {
            rates
                .iter()
                .map(|(k, rate)| (k.clone(), Policy::new(name, *rate, &clock)))
                .collect()
        };
        Limiter {
            enabled: config.enabled,
            hasher: RandomState::new(),
            max_keys: config.max_tracked_keys,
            default: Policy::new("default", config.default, &clock),
            keys: table("key", &config.keys),
            clients: table("client", &config.clients),
            scopes: table("scope", &config.scopes),
            anonymous: Policy::new("anonymous", config.anonymous_per_ip, &clock),
            token: Policy::new("token", config.token_per_ip, &clock),
            connections: Policy::new("connections", config.connections_per_ip, &clock),
            failed: Policy::new("failed_auth", config.failed_auth_per_ip, &clock),
            barred: Mutex::new(HashMap::new()),
            ipv6_prefix: config.ipv6_prefix,
            tokens_per_unit: config.tokens_per_unit,
            clock,
        }
    }

    fn key(&self, parts: impl Hash) -> u64 {
        self.hasher.hash_one(parts)
    }

    /// The policy for a principal: its own override, its OAuth client's, its first scope's
    /// with one, else the default.
    fn policy_for(&self, who: &Principal) -> &Policy<C> {
        self.keys
            .get(&who.id)
            .or_else(|| who.client.as_ref().and_then(|c| self.clients.get(c)))
            .or_else(|| who.scopes.iter().find_map(|s| self.scopes.get(s)))
            .unwrap_or(&self.default)
    }

    /// One request by an authenticated principal. `None`: limits are off.
    pub fn check_principal(&self, who: &Principal) -> Result<Option<Standing>, RateLimited> {
        if !self.enabled {
            return Ok(None);
        }
        let key = self.key((who.method as u8, who.id.as_str()));
        self.policy_for(who)
            .check(key, self.max_keys, &self.clock)
            .map(Some)
    }

    /// Quota units a text costs: one per started this many tokens.
    pub fn tokens_per_unit(&self) -> u32 {
        self.tokens_per_unit
    }

    /// Charges a request's whole `cost` to a principal that was admitted: admission took
    /// one unit, this takes the rest. A request's quota is what it costs (batch items, text
    /// length), not one per request. A cost larger than the policy's burst can never be
    /// paid: `Err` with reason `cost_exceeds_burst` (no wait would help).
    pub fn charge_principal(
        &self,
        who: &Principal,
        cost: u32,
    ) -> Result<Option<Standing>, RateLimited> {
        if !self.enabled {
            return Ok(None);
        }
        let policy = self.policy_for(who);
        if cost > policy.rate.burst.get() {
            return Err(RateLimited {
                standing: policy.standing(0),
                retry_after: policy.rate.window,
                reason: "cost_exceeds_burst",
            });
        }
        let Some(extra) = std::num::NonZeroU32::new(cost.saturating_sub(1)) else {
            return Ok(None);
        };
        let key = self.key((who.method as u8, who.id.as_str()));
        policy.charge(key, extra, &self.clock).map(Some)
    }

    /// One request to a route without authentication (or a CORS preflight) from `ip`.
    pub fn check_anonymous(&self, ip: IpAddr) -> Result<Option<Standing>, RateLimited> {
        self.check_ip(&self.anonymous, ip)
    }

    /// One `POST /token` from `ip`.
    pub fn check_token(&self, ip: IpAddr) -> Result<Option<Standing>, RateLimited> {
        self.check_ip(&self.token, ip)
    }

    /// One new connection from `ip` (a TLS handshake to come).
    pub fn check_connection(&self, ip: IpAddr) -> Result<Option<Standing>, RateLimited> {
        self.check_ip(&self.connections, ip)
    }

    fn check_ip(&self, policy: &Policy<C>, ip: IpAddr) -> Result<Option<Standing>, RateLimited> {
        if !self.enabled {
            return Ok(None);
        }
        policy
            .check(
                self.key(client_key(ip, self.ipv6_prefix)),
                self.max_keys,
                &self.clock,
            )
            .map(Some)
    }

    /// Refuses credentials from an address whose failed-authentication budget is spent,
    /// before any of the (costly) credential checks run.
    pub fn check_barred(&self, ip: IpAddr) -> Result<(), RateLimited> {
        if !self.enabled {
            return Ok(());
        }
        let key = self.key(client_key(ip, self.ipv6_prefix));
        let now = self.clock.now();
        let mut barred = lock(&self.barred);
        match barred.get(&key) {
            Some(until) if *until > now => Err(RateLimited {
                standing: self.failed.standing(0),
                retry_after: until.duration_since(now).into(),
                reason: "failed_auth",
            }),
            Some(_) => {
                barred.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip`. Over budget, the address is barred until
    /// its bucket allows another attempt, and this failure is answered 429 as well.
    pub fn record_failure(&self, ip: IpAddr) -> Result<(), RateLimited> {
        if !self.enabled {
            return Ok(());
        }
        let key = self.key(client_key(ip, self.ipv6_prefix));
        match self.failed.check(key, self.max_keys, &self.clock) {
            Ok(_) => Ok(()),
            Err(mut limited) => {
                limited.reason = "failed_auth";
                let mut barred = lock(&self.barred);
                if barred.len() >= self.max_keys {
                    let now = self.clock.now();
                    barred.retain(|_, until| *until > now);
                }
                if barred.len() < self.max_keys {
                    barred.insert(key, self.clock.now() + limited.retry_after.into());
                }
                Err(limited)
            }
        }
    }

    /// Forgets keys whose buckets are full again and returns memory to the allocator.
    /// Runs on a schedule (`start` spawns it) and when a limiter reaches its key cap.
    pub fn purge(&self) {
        let policies = [
            &self.default,
            &self.anonymous,
            &self.token,
            &self.connections,
            &self.failed,
        ];
        for policy in policies
            .into_iter()
            .chain(self.keys.values())
            .chain(self.clients.values())
            .chain(self.scopes.values())
        {
            policy.purge();
        }
        let now = self.clock.now();
        let mut barred = lock(&self.barred);
        barred.retain(|_, until| *until > now);
        barred.shrink_to_fit();
    }

    /// Keys tracked across all limiters (for tests and metrics).
    pub fn tracked(&self) -> usize {
        [
            &self.default,
            &self.anonymous,
            &self.token,
            &self.connections,
            &self.failed,
        ]
        .into_iter()
        .chain(self.keys.values())
        .chain(self.clients.values())
        .chain(self.scopes.values())
        .map(|p| p.limiter.len())
        .sum()
    }
}

/// A budget of log lines that clients without valid credentials can cause (refusals,
/// audit lines, their access lines): a flood of bad requests costs at most this many lines
/// a second, plus a burst; the rest are counted and reported with the next line written.
pub struct LogBudget {
    limiter: Option<
        RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>,
    >,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogBudget {
    /// `per_second` lines a second, a burst of five seconds' worth; 0: no limit.
    pub fn new(per_second: u32) -> LogBudget {
        let limiter = std::num::NonZeroU32::new(per_second).map(|n| {
            let burst = n.saturating_mul(nonzero_ext::nonzero!(5u32));
            RateLimiter::direct(Quota::per_second(n).allow_burst(burst))
        });
        LogBudget {
            limiter,
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now; `Some(n)`: yes, and `n` lines were suppressed
    /// since the last one written. `None`: suppressed (and counted).
    pub fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        match &self.limiter {
            Some(limiter) if limiter.check().is_err() => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => Some(self.suppressed.swap(0, Ordering::Relaxed)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means a thread panicked while holding it; the data is fine.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;
    use governor::clock::FakeRelativeClock;

    fn config(default: &str) -> RateLimitConfig {
        RateLimitConfig {
            default: Rate::parse(default).unwrap(),
            ..RateLimitConfig::default()
        }
    }

    fn who(id: &str, scopes: &[&str]) -> Principal {
        Principal {
            id: id.into(),
            method: Method::ApiKey,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client: None,
        }
    }

    #[test]
    fn burst_then_refusal_with_the_right_wait() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(&config("10/minute"), clock.clone());
        let cam = who("cam", &["predict"]);
        for expected in (0..10).rev() {
            let s = limiter.check_principal(&cam).unwrap().unwrap();
            assert_eq!(s.remaining, expected);
            assert_eq!(s.policy_header(), r#""default";q=10;w=60"#);
        }
        let refused = limiter.check_principal(&cam).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        assert_eq!(refused.retry_after_secs(), 6);
        assert_eq!(refused.standing.header(), r#""default";r=0;t=60"#);
        // Another principal has its own bucket.
        assert!(limiter.check_principal(&who("other", &[])).is_ok());
        clock.advance(Duration::from_millis(5_999));
        let refused = limiter.check_principal(&cam).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(1));
        assert_eq!(refused.retry_after_secs(), 1);
        clock.advance(Duration::from_millis(1));
        let s = limiter.check_principal(&cam).unwrap().unwrap();
        assert_eq!(
            (s.remaining, s.header()),
            (0, r#""default";r=0;t=60"#.into())
        );
        clock.advance(Duration::from_secs(60));
        let s = limiter.check_principal(&cam).unwrap().unwrap();
        assert_eq!(s.remaining, 9);
        assert_eq!(s.header(), r#""default";r=9;t=6"#);
    }

    #[test]
    fn overrides_by_key_then_client_then_scope() {
        let mut c = config("100/second");
        c.keys
            .insert("cam".into(), Rate::parse("1/second").unwrap());
        c.clients
            .insert("gw".into(), Rate::parse("2/second").unwrap());
        c.scopes
            .insert("metrics".into(), Rate::parse("3/second").unwrap());
        let limiter = Limiter::with_clock(&c, FakeRelativeClock::default());
        let count = |p: &Principal| {
            (0..200)
                .take_while(|_| limiter.check_principal(p).is_ok())
                .count()
        };
        let mut from_gw = who("gw", &["predict"]);
        from_gw.client = Some("gw".into());
        assert_eq!(count(&who("cam", &["metrics"])), 1);
        assert_eq!(count(&from_gw), 2);
        assert_eq!(count(&who("scraper", &["predict", "metrics"])), 3);
        assert_eq!(count(&who("plain", &["predict"])), 100);
        let policy = limiter.check_principal(&who("cam", &[])).unwrap_err();
        assert_eq!(policy.standing.policy, "key");
    }

    #[test]
    fn failed_authentications_bar_the_address_until_the_bucket_allows_one_more() {
        let clock = FakeRelativeClock::default();
        let mut c = config("100/second");
        c.failed_auth_per_ip = Rate::parse("3/minute").unwrap();
        let limiter = Limiter::with_clock(&c, clock.clone());
        let bad: IpAddr = "192.0.2.7".parse().unwrap();
        let good: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check_barred(bad).is_ok());
            assert!(limiter.record_failure(bad).is_ok());
        }
        let over = limiter.record_failure(bad).unwrap_err();
        assert_eq!(
            (over.reason, over.retry_after),
            ("failed_auth", Duration::from_secs(20))
        );
        let barred = limiter.check_barred(bad).unwrap_err();
        assert_eq!(barred.retry_after_secs(), 20);
        assert!(limiter.check_barred(good).is_ok());
        // The same address as an IPv4-mapped IPv6 peer is the same client.
        assert!(
            limiter
                .check_barred("::ffff:192.0.2.7".parse().unwrap())
                .is_err()
        );
        clock.advance(Duration::from_secs(20));
        assert!(limiter.check_barred(bad).is_ok());
        assert!(limiter.record_failure(bad).is_ok());
        assert!(limiter.record_failure(bad).is_err());
    }

    #[test]
    fn key_count_is_capped_and_purged() {
        let clock = FakeRelativeClock::default();
        let mut c = config("1/second");
        c.anonymous_per_ip = Rate::parse("1/second").unwrap();
        c.max_tracked_keys = 16;
        let limiter = Limiter::with_clock(&c, clock.clone());
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        for i in 0..16 {
            assert!(limiter.check_anonymous(ip(i)).is_ok());
        }
        let full = limiter.check_anonymous(ip(100)).unwrap_err();
        assert_eq!(full.reason, "too_many_clients");
        assert_eq!(limiter.tracked(), 16);
        // Once their buckets have refilled, the old keys are forgotten and new ones fit.
        clock.advance(Duration::from_secs(2));
        assert!(limiter.check_anonymous(ip(100)).is_ok());
        assert_eq!(limiter.tracked(), 1);
        limiter.purge();
        clock.advance(Duration::from_secs(2));
        limiter.purge();
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_prefix() {
        let mut c = config("100/second");
        c.anonymous_per_ip = Rate::parse("2/minute").unwrap();
        let limiter = Limiter::with_clock(&c, FakeRelativeClock::default());
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        // Two addresses of one /64: one budget.
        assert!(limiter.check_anonymous(v6("2001:db8:1:2::1")).is_ok());
        assert!(limiter.check_anonymous(v6("2001:db8:1:2:ffff::9")).is_ok());
        assert!(limiter.check_anonymous(v6("2001:db8:1:2::77")).is_err());
        // The next /64 has its own.
        assert!(limiter.check_anonymous(v6("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn cost_is_charged_after_the_admission_unit_and_never_beyond_the_burst() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(&config("10/minute"), clock.clone());
        let cam = who("cam", &[]);
        assert_eq!(limiter.check_principal(&cam).unwrap().unwrap().remaining, 9);
        let s = limiter.charge_principal(&cam, 6).unwrap().unwrap();
        assert_eq!(s.remaining, 4);
        // A cost of one was paid at admission: nothing more to take.
        assert_eq!(limiter.charge_principal(&cam, 1), Ok(None));
        let refused = limiter.charge_principal(&cam, 6).unwrap_err();
        assert_eq!(
            (refused.reason, refused.retry_after),
            ("quota", Duration::from_secs(6))
        );
        let never = limiter.charge_principal(&cam, 11).unwrap_err();
        assert_eq!(never.reason, "cost_exceeds_burst");
    }

    #[test]
    fn log_budget_suppresses_and_counts_beyond_its_rate() {
        let budget = LogBudget::new(2);
        let admitted: Vec<Option<u64>> = (0..12).map(|_| budget.admit()).collect();
        // A burst of five seconds' worth (10), then suppression.
        assert!(admitted[..10].iter().all(|a| *a == Some(0)));
        assert_eq!(&admitted[10..], &[None, None]);
        assert_eq!(LogBudget::new(0).admit(), Some(0), "0: no limit");
    }

    #[test]
    fn switched_off_limits_say_nothing() {
        let mut c = config("1/minute");
        c.enabled = false;
        let limiter = Limiter::with_clock(&c, FakeRelativeClock::default());
        for _ in 0..5 {
            assert_eq!(limiter.check_principal(&who("a", &[])), Ok(None));
            assert!(limiter.record_failure(IpAddr::from([1, 2, 3, 4])).is_ok());
        }
        assert!(limiter.check_barred(IpAddr::from([1, 2, 3, 4])).is_ok());
    }

    /// Memory for one million tracked keys, measured in a child process that runs only
    /// this test (the parent's other tests would disturb its RSS).
    #[test]
    fn one_million_keys_memory() {
        const CHILD: &str = "LIMITER_MEMORY_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "limiter::tests::one_million_keys_memory",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let at = text.find("limiter memory:").unwrap();
            let line = text[at..].lines().next().unwrap();
            println!("{line}");
            let per_key: f64 = line
                .split("bytes_per_key=")
                .nth(1)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(per_key < 200.0, "{line}");
            return;
        }
        let mut c = config("1/second");
        c.anonymous_per_ip = Rate::parse("1/second").unwrap();
        c.max_tracked_keys = 2_000_000;
        let limiter = Limiter::with_clock(&c, FakeRelativeClock::default());
        let before = rss_bytes();
        for i in 0..1_000_000u32 {
            assert!(
                limiter
                    .check_anonymous(IpAddr::from(i.to_be_bytes()))
                    .is_ok()
            );
        }
        let after = rss_bytes();
        assert_eq!(limiter.tracked(), 1_000_000);
        let used = after.saturating_sub(before);
        println!(
            "limiter memory: keys=1000000 rss_growth_bytes={used} bytes_per_key={:.1}",
            used as f64 / 1e6
        );
    }

    fn rss_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }
}
