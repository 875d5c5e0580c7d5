//! Configuration: TOML file plus `INFERD_<SECTION>_<KEY>` environment overrides, parsed once
//! into typed fields, each key declared once (`keys!`). Unknown keys (file or environment)
//! are errors that name them; relative paths are relative to the config file's folder.

use ::log::LevelFilter; // `::`: `log` is also the `[log]` section's module
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("config {path}: {reason}")]
    Read { path: String, reason: String },
    /// Bad TOML, an unknown key, or a value of the wrong type.
    #[error("config {path}: {reason}")]
    Parse { path: String, reason: String },
    /// An environment override that cannot be used.
    #[error("environment {name}: {reason}")]
    Env { name: String, reason: String },
    /// A value of the right type that makes no sense (e.g. a zero timeout).
    #[error("config: {0}")]
    Invalid(String),
}

/// TLS certificate and key (PEM), and optional client-certificate authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Option<ClientAuthConfig>,
}

/// mTLS: client certificates signed by `ca` become principals with `scopes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthConfig {
    pub ca: PathBuf,
    /// `client_auth = "required"`: the handshake fails without a valid certificate.
    /// `"optional"`: a certificate is verified when presented, else other credentials apply.
    pub required: bool,
    pub scopes: Vec<String>,
    /// PEM certificate revocation lists (RFC 5280) of the client CA: a revoked client
    /// certificate fails its handshake. Re-read with the rest on SIGHUP.
    pub crl: Option<PathBuf>,
}

/// Caps and deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections one client address may hold (IPv6: per `[rate_limit] ipv6_prefix`);
    /// through a trusted proxy, requests in progress per forwarded client.
    pub max_connections_per_ip: usize,
    /// Bytes of request bodies read or held at once across all connections; a body that
    /// would exceed it is refused (503) before it is read.
    pub max_inflight_body_bytes: usize,
    /// Inference requests one caller may have running while other callers' wait: a free
    /// worker goes to callers below it first (alone, a caller may use every worker).
    pub max_in_flight_per_caller: usize,
    /// How long a request may wait for a worker before 503; it then never runs.
    pub queue_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_request_line_bytes: usize,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Inference worker threads (default: one per core).
    pub inference_threads: usize,
    /// Requests that may wait for a worker at once, one caller at most half of them
    /// (default: `max_connections`: waiting is bounded by time, `queue_timeout`).
    pub inference_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    /// The text model `/predict` uses by default.
    pub default: Option<String>,
    /// Model folders to load; all under `dir` when empty.
    pub enabled: Vec<String>,
    /// Which versions of a model are served, unless `version_policies` names the model.
    pub version_policy: VersionPolicy,
    /// Per model: which of its versions are served.
    pub version_policies: BTreeMap<String, VersionPolicy>,
    /// Public keys (`*.pem`, file stem = key id) whose model signatures are trusted.
    pub trusted_keys_dir: Option<PathBuf>,
    /// Refuse to load a model version without a valid signature by a trusted key.
    pub require_signed: bool,
}

/// Which of a model's numbered versions are served (Triton's and OpenVINO Model Server's
/// version policies): the newest `K`, the ones listed, or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    Latest(usize),
    Specific(Vec<u64>),
    All,
}

impl Default for VersionPolicy {
    fn default() -> VersionPolicy {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions to serve among those `found` (any order), ascending.
    pub fn select(&self, found: &[u64]) -> Vec<u64> {
        let mut all = found.to_vec();
        all.sort_unstable();
        all.dedup();
        match self {
            VersionPolicy::All => all,
            VersionPolicy::Latest(k) => all.split_off(all.len().saturating_sub(*k)),
            VersionPolicy::Specific(list) => all.into_iter().filter(|v| list.contains(v)).collect(),
        }
    }
}

impl std::fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionPolicy::All => write!(f, "all"),
            VersionPolicy::Latest(k) => write!(f, "latest {k}"),
            VersionPolicy::Specific(list) => {
                let list: Vec<String> = list.iter().map(u64::to_string).collect();
                write!(f, "specific {}", list.join(","))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub api_keys_file: PathBuf,
    /// Bearer-token verification, when `jwt_keys_dir` is set.
    pub tokens: Option<TokensConfig>,
    /// The OAuth2 token endpoint, when `signing_key` is set.
    pub issuing: Option<IssuingConfig>,
    pub clock_policy: ClockPolicy,
}

/// Verification of Ed25519 bearer tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensConfig {
    /// One `<kid>.pem` public key per trusted signer.
    pub keys_dir: PathBuf,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
    pub max_token_bytes: usize,
    pub revocations_file: Option<PathBuf>,
}

/// `POST /token`: the device signs short-lived tokens for known clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuingConfig {
    pub signing_key: PathBuf,
    pub clients_file: PathBuf,
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// What to do when the clock is obviously wrong (before the build date, or before the last
/// time inferd saw): boards without a real-time clock boot in the past, where expired
/// tokens would look valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockPolicy {
    /// Refuse bearer tokens (and do not issue them) until the clock is sane; API keys and
    /// client certificates keep working. The default.
    RefuseTokens,
    /// Trust the clock whatever it says.
    Ignore,
}

/// A rate limit: `count` requests per `window`, and up to `burst` at once. Written
/// `"10/minute"` (also `"10 per minute"`, `"100/5 minutes"`; units second, minute, hour, day),
/// the syntax of the seed's slowapi limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub window: Duration,
    /// Requests allowed back to back; defaults to `count`.
    pub burst: NonZeroU32,
}

impl Rate {
    /// Parses `"<count>/<window>"` with the burst defaulting to the count.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("{text:?} is not a rate like \"10/minute\"");
        let (count, window) = text
            .split_once('/')
            .or_else(|| text.split_once(" per "))
            .ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count =
            NonZeroU32::new(count).ok_or_else(|| format!("{text:?}: count must be above 0"))?;
        let window = window.trim();
        let (times, unit) = match window.split_once(' ') {
            Some((n, unit)) => (n.parse::<u32>().map_err(|_| bad())?, unit.trim()),
            None => (1, window),
        };
        let unit_s = match unit {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(bad()),
        };
        if times == 0 || times > 365 {
            return Err(format!("{text:?}: window must be 1..=365 units"));
        }
        let window = Duration::from_secs(u64::from(times) * unit_s);
        if window / count.get() < Duration::from_micros(1) {
            return Err(format!("{text:?}: at most 1000000 per second"));
        }
        Ok(Rate {
            count,
            window,
            burst: count,
        })
    }

    /// The same rate with another burst.
    pub fn with_burst(self, burst: u64) -> Result<Rate, String> {
        let burst = nonzero_u32(burst).map_err(|m| format!("burst {m}"))?;
        Ok(Rate { burst, ..self })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}s burst {}",
            self.count,
            self.window.as_secs(),
            self.burst
        )
    }
}

/// `[rate_limit]`: per-principal quotas with overrides, and per-IP quotas for what comes
/// before (or instead of) authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `false` switches every limit off (benchmarks; a device behind its own limiter).
    pub enabled: bool,
    /// Each authenticated principal's quota unless an override applies.
    pub default: Rate,
    /// By principal id (API key id, token `sub`, certificate identity). First precedence.
    pub keys: BTreeMap<String, Rate>,
    /// By OAuth client, for tokens this device issued (their `client_id` claim). Second.
    pub clients: BTreeMap<String, Rate>,
    /// By scope: the first of the principal's scopes (in its credential's order) that has
    /// one. Third.
    pub scopes: BTreeMap<String, Rate>,
    /// Per client address, for routes without authentication and CORS preflights.
    pub anonymous_per_ip: Rate,
    /// Per client address, failed authentications; once spent, credentials from that
    /// address are refused (429) before they are even checked.
    pub failed_auth_per_ip: Rate,
    /// Per client address, `POST /token`.
    pub token_per_ip: Rate,
    /// Per client address, new connections (each a TLS handshake): beyond it a connection
    /// is closed at once, before any handshake work. Trusted proxies are exempt.
    pub connections_per_ip: Rate,
    /// Distinct keys each limiter tracks at most; beyond it, new keys are refused until
    /// old ones expire.
    pub max_tracked_keys: usize,
    /// IPv6 client addresses are grouped by this prefix length (a host holds a /64).
    pub ipv6_prefix: u8,
    /// Quota units a text costs: one per started `tokens_per_unit` tokens (a tensor
    /// request costs one per batch item).
    pub tokens_per_unit: u32,
}

impl Default for RateLimitConfig {
    /// The built-in limits (what an empty `[rate_limit]` means).
    fn default() -> Self {
        // The defaults are constants this module's tests parse.
        let keys = rate_limit::Raw::default().parse();
        rate_limit_config(keys.expect("built-in rate limits are valid"))
    }
}

/// `[cors]`: which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example:8443`), lower-case; `["*"]` allows any origin
    /// without credentials. Empty: no CORS headers at all.
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
    /// Upper-case methods for `Access-Control-Allow-Methods`.
    pub allowed_methods: Vec<String>,
    /// Lower-case header names for `Access-Control-Allow-Headers`.
    pub allowed_headers: Vec<String>,
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LevelFilter,
    /// One access line per request.
    pub access: bool,
    /// One JSON line per failed authentication.
    pub audit: bool,
    /// Lines a second that clients without valid credentials can cause (refusals, audit
    /// lines, their access lines), with a burst of five seconds' worth; 0: unbounded.
    pub refusal_lines_per_s: u32,
}

/// Which header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For`, which nginx, HAProxy, Traefik and Envoy append to.
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

/// The typed configuration. Holds paths to secrets, never secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where inferd keeps what it learns at run time (the last time it saw).
    pub state_dir: PathBuf,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers name the client address;
    /// from anyone else those headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// The one header trusted proxies name the client in; the other is ignored (a client
    /// could write it, and a proxy that appends to one passes the other through).
    pub trusted_proxy_header: ProxyHeader,
    /// `None` only when `[tls] enabled = false` says so explicitly.
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    pub models: ModelsConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub cors: CorsConfig,
    pub log: LogConfig,
}

impl Config {
    /// Reads `path` and applies environment overrides from `env`.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_sources(&text, &path.display().to_string(), base, env)
    }

    /// Environment variable names that look like ours but name no key.
    pub fn unknown_env_vars(names: impl Iterator<Item = String>) -> Vec<String> {
        let known: Vec<String> = KEYS
            .iter()
            .filter(|(_, _, kind)| *kind != Kind::Table)
            .map(|(section, key, _)| env_name(section, key))
            .collect();
        names
            .filter(|n| n.starts_with("INFERD_") && !known.contains(n))
            .collect()
    }

    /// Parses config text (`origin` names it in errors; `base` anchors relative paths).
    pub fn from_sources(
        text: &str,
        origin: &str,
        base: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let keys = raw(text, origin, env)?.parse()?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(Config {
            listen: keys.listen,
            state_dir: keys.state_dir.map_or_else(|| base.to_path_buf(), resolve),
            trusted_proxies: keys.trusted_proxies,
            trusted_proxy_header: keys.trusted_proxy_header,
            tls: tls_config(keys.tls, resolve)?,
            limits: limits_config(keys.limits)?,
            models: ModelsConfig {
                dir: resolve(
                    keys.models
                        .dir
                        .ok_or_else(|| ConfigError::Invalid("[models] dir is required".into()))?,
                ),
                default: keys.models.default,
                enabled: keys.models.enabled,
                version_policy: keys.models.version_policy,
                version_policies: keys.models.version_policies,
                trusted_keys_dir: keys.models.trusted_keys_dir.clone().map(resolve),
                require_signed: match (keys.models.require_signed, &keys.models.trusted_keys_dir) {
                    (true, None) => Err(ConfigError::Invalid(
                        "[models] require_signed needs trusted_keys_dir".into(),
                    ))?,
                    (required, _) => required,
                },
            },
            auth: auth_config(keys.auth, resolve)?,
            rate_limit: rate_limit_config(keys.rate_limit),
            cors: cors_config(keys.cors)?,
            log: LogConfig {
                level: keys.log.level,
                access: keys.log.access,
                audit: keys.log.audit,
                refusal_lines_per_s: keys.log.refusal_lines_per_s,
            },
        })
    }
}

/// The file's keys with the environment's on top: TOML syntax, key names and value types
/// checked, each value still as written.
fn raw(
    text: &str,
    origin: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<top::Raw, ConfigError> {
    let parse_err = |reason: String| ConfigError::Parse {
        path: origin.to_owned(),
        reason,
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| parse_err(toml_reason(text, &e)))?;
    for &(section, key, kind) in KEYS {
        let name = env_name(section, key);
        let Some(raw) = env(&name) else { continue };
        let env_err = |reason: &str| ConfigError::Env {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let value = match kind {
            Kind::Str => toml::Value::String(raw),
            Kind::Int => {
                toml::Value::Integer(raw.trim().parse().map_err(|_| env_err("not an integer"))?)
            }
            Kind::Bool => {
                toml::Value::Boolean(raw.trim().parse().map_err(|_| env_err("not true/false"))?)
            }
            Kind::List => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ),
            Kind::Table => continue,
        };
        let target = if section.is_empty() {
            &mut table
        } else {
            match table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                _ => return Err(parse_err(format!("[{section}] must be a table"))),
            }
        };
        target.insert(key.to_string(), value);
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| parse_err(toml_reason("", &e)))
}

fn env_name(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("INFERD_{}", key.to_ascii_uppercase())
    } else {
        format!(
            "INFERD_{}_{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        )
    }
}

/// Declares each key once, as `name: toml_type => parsed_type [= default], parse;` where
/// `parse` turns the TOML value into the parsed one or says what is wrong with it. A key
/// without a default is an `Option` on both sides: its absence means something, or its
/// default depends on other keys. For the top level and each `[section]` this generates a
/// module holding `Raw` (what serde reads: defaults filled in, unknown keys refused) and
/// `Keys` (each value parsed, an error naming its key); and `KEYS`, the environment's view.
macro_rules! keys {
    (@section $prefix:expr;
        $($key:ident: $raw:ty => $typed:ty $(= $default:expr)?, $parse:expr;)*;
        $($sub:ident)*
    ) => {
        /// The keys as written (file, then environment); absent ones at their defaults.
        #[derive(Deserialize)]
        #[cfg_attr(test, derive(Debug, PartialEq))]
        #[serde(default, deny_unknown_fields)]
        pub(super) struct Raw {
            $(pub(super) $key: keys!(@type $raw $(, $default)?),)*
            $(pub(super) $sub: $sub::Raw,)*
        }

        impl Default for Raw {
            fn default() -> Raw {
                Raw {
                    $($key: keys!(@default $($default)?),)*
                    $($sub: Default::default(),)*
                }
            }
        }

        /// The keys parsed, each valid on its own.
        pub(super) struct Keys {
            $(pub(super) $key: keys!(@type $typed $(, $default)?),)*
            $(pub(super) $sub: $sub::Keys,)*
        }

        impl Raw {
            pub(super) fn parse(self) -> Result<Keys, ConfigError> {
                Ok(Keys {
                    $($key: keys!(@parse self.$key, $parse $(, $default)?).map_err(|reason| {
                        ConfigError::Invalid(format!("{}{}: {reason}", $prefix, stringify!($key)))
                    })?,)*
                    $($sub: self.$sub.parse()?,)*
                })
            }
        }
    };
    (@type $t:ty) => { Option<$t> };
    (@type $t:ty, $default:expr) => { $t };
    (@default) => { None };
    (@default $default:expr) => { $default };
    (@parse $value:expr, $parse:expr) => { $value.map(|v| parse_with($parse, v)).transpose() };
    (@parse $value:expr, $parse:expr, $default:expr) => { parse_with($parse, $value) };
    (
        $($key:ident: $raw:ty => $typed:ty $(= $default:expr)?, $parse:expr;)*
        $([$section:ident] {
            $($skey:ident: $sraw:ty => $styped:ty $(= $sdefault:expr)?, $sparse:expr;)*
        })*
    ) => {
        mod top {
            use super::*;
            keys!(@section ""; $($key: $raw => $typed $(= $default)?, $parse;)*; $($section)*);
        }
        $(mod $section {
            use super::*;
            keys!(@section concat!(stringify!($section), ".");
                $($skey: $sraw => $styped $(= $sdefault)?, $sparse;)*;);
        })*

        /// Every key: its section (empty at the top level), name, and environment form.
        const KEYS: &[(&str, &str, Kind)] = &[
            $(("", stringify!($key), <$raw as EnvValue>::KIND),)*
            $($((stringify!($section), stringify!($skey), <$sraw as EnvValue>::KIND),)*)*
        ];
    };
}

// Every key, its TOML type, parsed type, default and check. README's configuration section
// documents them; `[rate_limit]`'s tables of overrides have no environment form.
keys! {
    listen: String => SocketAddr = "127.0.0.1:8443".into(), address;
    state_dir: PathBuf => PathBuf, Ok; // default: the config file's folder
    trusted_proxies: Vec<String> => Vec<IpNet> = Vec::new(), networks;
    trusted_proxy_header: String => ProxyHeader = "x-forwarded-for".into(),
        one_of(&[("x-forwarded-for", ProxyHeader::XForwardedFor),
                 ("forwarded", ProxyHeader::Forwarded)]);
    [tls] {
        enabled: bool => bool = true, Ok;
        cert: PathBuf => PathBuf, Ok;
        key: PathBuf => PathBuf, Ok;
        client_ca: PathBuf => PathBuf, Ok;
        client_auth: String => bool, one_of(&[("optional", false), ("required", true)]);
        client_scopes: Vec<String> => Vec<String> = vec!["predict".into()], Ok;
        client_crl: PathBuf => PathBuf, Ok;
    }
    [limits] {
        max_connections: u64 => usize = 256, within(1..=100_000);
        // Keys without a default here take one from other keys (`limits_config`).
        max_connections_per_ip: u64 => usize, within(1..=100_000); // 64, <= half the above
        max_inflight_body_bytes: u64 => usize, within(1..=1 << 34); // 16 MiB, >= max_body
        max_in_flight_per_caller: u64 => usize, within(1..=100_000); // half the workers
        queue_timeout_ms: u64 => Duration = 10_000, millis;
        max_header_bytes: u64 => usize = 16 * 1024, within(1..=1 << 20);
        max_headers: u64 => usize = 64, within(1..=1024);
        max_request_line_bytes: u64 => usize = 8 * 1024, within(1..=1 << 20);
        max_body_bytes: u64 => usize = 4 << 20, within(1..=1 << 30);
        header_timeout_ms: u64 => Duration = 10_000, millis;
        body_timeout_ms: u64 => Duration = 30_000, millis;
        idle_timeout_ms: u64 => Duration = 30_000, millis;
        write_timeout_ms: u64 => Duration = 10_000, millis;
        shutdown_timeout_ms: u64 => Duration = 10_000, millis;
        inference_threads: u64 => usize, within(1..=256); // one per core
        inference_queue: u64 => usize, within(1..=100_000); // max_connections
    }
    [models] {
        dir: PathBuf => PathBuf, Ok;
        default: String => String, Ok;
        enabled: Vec<String> => Vec<String> = Vec::new(), Ok;
        version_policy: RawPolicy => VersionPolicy = RawPolicy::default(), policy;
        version_policies: BTreeMap<String, RawPolicy> => BTreeMap<String, VersionPolicy>
            = BTreeMap::new(), policies;
        trusted_keys_dir: PathBuf => PathBuf, Ok;
        require_signed: bool => bool = false, Ok;
    }
    [auth] {
        api_keys_file: PathBuf => PathBuf, Ok;
        jwt_keys_dir: PathBuf => PathBuf, Ok;
        issuer: String => String, Ok;
        audience: String => String, Ok;
        leeway_s: u64 => Duration = 60, seconds(0..=3600);
        max_token_bytes: u64 => usize = 4096, within(1..=64 * 1024);
        revocations_file: PathBuf => PathBuf, Ok;
        signing_key: PathBuf => PathBuf, Ok;
        clients_file: PathBuf => PathBuf, Ok;
        token_ttl_s: u64 => Duration = 900, seconds(1..=86_400);
        clock_policy: String => ClockPolicy = "refuse_tokens".into(),
            one_of(&[("refuse_tokens", ClockPolicy::RefuseTokens),
                     ("ignore", ClockPolicy::Ignore)]);
    }
    [rate_limit] {
        enabled: bool => bool = true, Ok;
        default: String => Rate = DEFAULT_RATE.into(), |text: String| Rate::parse(&text);
        burst: u64 => NonZeroU32, nonzero_u32;
        anonymous_per_ip: RawRate => Rate = "600/minute".into(), rate;
        failed_auth_per_ip: RawRate => Rate = "10/minute".into(), rate;
        token_per_ip: RawRate => Rate = "60/minute".into(), rate;
        connections_per_ip: RawRate => Rate = "1200/minute".into(), rate;
        max_tracked_keys: u64 => usize = 100_000, within(16..=10_000_000);
        ipv6_prefix: u64 => u8 = 64, within(1..=128);
        tokens_per_unit: u64 => u32 = 32, within(1..=65_536);
        keys: BTreeMap<String, RawRate> => BTreeMap<String, Rate> = BTreeMap::new(), rates;
        clients: BTreeMap<String, RawRate> => BTreeMap<String, Rate> = BTreeMap::new(), rates;
        scopes: BTreeMap<String, RawRate> => BTreeMap<String, Rate> = BTreeMap::new(), rates;
    }
    [cors] {
        allowed_origins: Vec<String> => Vec<String> = Vec::new(), origins;
        allow_credentials: bool => bool = false, Ok;
        allowed_methods: Vec<String> => Vec<String> = vec!["GET".into(), "POST".into()],
            |list| tokens(list, str::to_ascii_uppercase, "a method");
        allowed_headers: Vec<String> => Vec<String> = vec![
            "authorization".into(),
            "content-type".into(),
            "x-api-key".into(),
            "inference-header-content-length".into(),
        ], |list| tokens(list, str::to_ascii_lowercase, "a header name");
        max_age_s: u64 => Duration = 600, seconds(0..=86_400);
    }
    [log] {
        level: String => LevelFilter = "info".into(), level;
        access: bool => bool = true, Ok;
        audit: bool => bool = true, Ok;
        refusal_lines_per_s: u64 => u32 = 20, within(0..=100_000);
    }
}

/// How an environment variable's text becomes a key's TOML value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Int,
    Bool,
    /// Comma-separated.
    List,
    /// A table of entries, which has no environment form.
    Table,
}

/// The TOML types keys are declared with.
trait EnvValue {
    const KIND: Kind;
}

macro_rules! env_value {
    ($($t:ty => $kind:ident),*) => {
        $(impl EnvValue for $t {
            const KIND: Kind = Kind::$kind;
        })*
    };
}

env_value!(String => Str, PathBuf => Str, RawRate => Str, RawPolicy => Str, u64 => Int, bool => Bool,
    Vec<String> => List);

impl<V> EnvValue for BTreeMap<String, V> {
    const KIND: Kind = Kind::Table;
}

/// Pins a key's `parse` to `String` errors (so that a bare `Ok` will do).
fn parse_with<R, T>(parse: impl FnOnce(R) -> Result<T, String>, value: R) -> Result<T, String> {
    parse(value)
}

fn within<T: TryFrom<u64>>(range: RangeInclusive<u64>) -> impl Fn(u64) -> Result<T, String> {
    move |n| {
        if !range.contains(&n) {
            return Err(format!("{n} must be {}..={}", range.start(), range.end()));
        }
        T::try_from(n).map_err(|_| format!("{n} is too large for this machine"))
    }
}

fn millis(n: u64) -> Result<Duration, String> {
    within(1..=86_400_000)(n).map(Duration::from_millis)
}

fn seconds(range: RangeInclusive<u64>) -> impl Fn(u64) -> Result<Duration, String> {
    let within = within(range);
    move |n| within(n).map(Duration::from_secs)
}

fn nonzero_u32(n: u64) -> Result<NonZeroU32, String> {
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("{n} must be 1..={}", u32::MAX))
}

/// A choice among names (case-insensitive).
fn one_of<T: Copy>(choices: &[(&str, T)]) -> impl Fn(String) -> Result<T, String> {
    move |text| {
        let lower = text.to_ascii_lowercase();
        match choices.iter().find(|(name, _)| *name == lower) {
            Some(&(_, value)) => Ok(value),
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
                Err(format!("{text:?} must be {}", names.join(" or ")))
            }
        }
    }
}

fn address(text: String) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an address:port"))
}

fn level(text: String) -> Result<LevelFilter, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not off/error/warn/info/debug/trace"))
}

/// `"10.0.0.1"` or `"10.0.0.0/8"` (IPv4 or IPv6).
fn networks(list: Vec<String>) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|text| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{text:?} is not an address or network"))
        })
        .collect()
}

/// `"10/minute"`, or `{ rate = "10/minute", burst = 20 }`.
#[cfg_attr(test, derive(Debug, PartialEq))]
enum RawRate {
    Short(String),
    Full(RateTable),
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[serde(deny_unknown_fields)]
struct RateTable {
    rate: String,
    burst: Option<u64>,
}

impl From<&str> for RawRate {
    fn from(text: &str) -> RawRate {
        RawRate::Short(text.to_owned())
    }
}

/// By hand rather than `#[serde(untagged)]`, whose one error ("did not match any variant")
/// would hide which key of an inline table is unknown.
impl<'de> Deserialize<'de> for RawRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawRate, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::String(text) => Ok(RawRate::Short(text)),
            table @ toml::Value::Table(_) => RateTable::deserialize(table)
                .map(RawRate::Full)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "{other} is not a rate like \"10/minute\" or {{ rate = \"10/minute\", burst = 20 }}"
            ))),
        }
    }
}

fn rate(raw: RawRate) -> Result<Rate, String> {
    match raw {
        RawRate::Short(text) => Rate::parse(&text),
        RawRate::Full(RateTable { rate, burst }) => {
            let parsed = Rate::parse(&rate)?;
            burst.map_or(Ok(parsed), |b| parsed.with_burst(b))
        }
    }
}

/// `[rate_limit.keys]` and the like: a rate per name.
fn rates(table: BTreeMap<String, RawRate>) -> Result<BTreeMap<String, Rate>, String> {
    table
        .into_iter()
        .map(|(name, raw)| match rate(raw) {
            Ok(rate) => Ok((name, rate)),
            Err(m) => Err(format!("{name}: {m}")),
        })
        .collect()
}

/// A version policy as written: `"all"`, `{ latest = K }`, `{ specific = [1, 3] }`, or the
/// same as one string (the environment's form): `"latest 2"`, `"specific 1,3"`.
#[cfg_attr(test, derive(Debug, PartialEq))]
enum RawPolicy {
    Text(String),
    Latest(u64),
    Specific(Vec<u64>),
}

impl Default for RawPolicy {
    fn default() -> RawPolicy {
        RawPolicy::Latest(1)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyTable {
    latest: Option<u64>,
    specific: Option<Vec<u64>>,
}

impl<'de> Deserialize<'de> for RawPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawPolicy, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::String(text) => Ok(RawPolicy::Text(text)),
            table @ toml::Value::Table(_) => match PolicyTable::deserialize(table) {
                Ok(PolicyTable {
                    latest: Some(k),
                    specific: None,
                }) => Ok(RawPolicy::Latest(k)),
                Ok(PolicyTable {
                    latest: None,
                    specific: Some(list),
                }) => Ok(RawPolicy::Specific(list)),
                Ok(_) => Err(D::Error::custom(
                    "a version policy has exactly one of latest or specific",
                )),
                Err(e) => Err(D::Error::custom(e)),
            },
            other => Err(D::Error::custom(format!(
                "{other} is not a version policy like \"all\", {{ latest = 2 }} or \
                 {{ specific = [1, 3] }}"
            ))),
        }
    }
}

fn policy(raw: RawPolicy) -> Result<VersionPolicy, String> {
    let (latest, specific) = match raw {
        RawPolicy::Latest(k) => (Some(k), None),
        RawPolicy::Specific(list) => (None, Some(list)),
        RawPolicy::Text(text) => {
            let lower = text.trim().to_ascii_lowercase();
            match lower.split_once(' ') {
                _ if lower == "all" => return Ok(VersionPolicy::All),
                Some(("latest", k)) => (k.trim().parse().ok().or(Some(0)), None),
                Some(("specific", list)) => {
                    let parsed: Result<Vec<u64>, _> =
                        list.split(',').map(|v| v.trim().parse()).collect();
                    (
                        None,
                        Some(parsed.map_err(|_| format!("{text:?}: versions are numbers"))?),
                    )
                }
                _ => {
                    return Err(format!(
                        "{text:?} is not \"all\", \"latest K\" or \"specific 1,3\""
                    ));
                }
            }
        }
    };
    match (latest, specific) {
        (Some(k @ 1..=1000), _) => Ok(VersionPolicy::Latest(k as usize)),
        (Some(k), _) => Err(format!("latest = {k} must be 1..=1000")),
        (None, Some(list)) if list.is_empty() || list.contains(&0) => {
            Err("specific lists versions 1 or above, at least one".into())
        }
        (None, Some(list)) => Ok(VersionPolicy::Specific(list)),
        (None, None) => Err("empty version policy".into()),
    }
}

/// `[models.version_policies]`: a policy per model name.
fn policies(table: BTreeMap<String, RawPolicy>) -> Result<BTreeMap<String, VersionPolicy>, String> {
    table
        .into_iter()
        .map(|(name, raw)| {
            policy(raw)
                .map(|p| (name.clone(), p))
                .map_err(|m| format!("{name}: {m}"))
        })
        .collect()
}

/// Exact origins, lower-case, or `"*"` alone.
fn origins(list: Vec<String>) -> Result<Vec<String>, String> {
    let origins: Vec<String> = list.iter().map(|o| o.trim().to_ascii_lowercase()).collect();
    if let Some(bad) = origins.iter().find(|o| *o != "*" && !is_origin(o)) {
        return Err(format!(
            "{bad:?} is not an exact origin like \"https://app.example:8443\" \
             (scheme and host, optional port, no path, no wildcard, not \"null\")"
        ));
    }
    if origins.len() > 1 && origins.iter().any(|o| o == "*") {
        return Err("\"*\" cannot be combined with other origins".into());
    }
    Ok(origins)
}

/// HTTP tokens (RFC 9110 §5.6.2) in one case, for the CORS allow lists; `*` refused.
fn tokens(list: Vec<String>, case: fn(&str) -> String, what: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = list.iter().map(|t| case(t.trim())).collect();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match list.iter().find(|t| !token(t) || t.as_str() == "*") {
        Some(bad) => Err(format!("{bad:?} is not {what}")),
        None => Ok(list),
    }
}

/// `[tls]`: the keys that only make sense together (cert and key, the client CA and what
/// goes with it).
fn tls_config(
    k: tls::Keys,
    resolve: impl Fn(PathBuf) -> PathBuf,
) -> Result<Option<TlsConfig>, ConfigError> {
    let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
    if k.client_ca.is_none() && k.client_crl.is_some() {
        return invalid("tls.client_crl needs tls.client_ca");
    }
    let client = match (k.client_ca, k.client_auth) {
        (None, None) => None,
        (Some(ca), required) => Some(ClientAuthConfig {
            ca: resolve(ca),
            required: required.unwrap_or(false),
            scopes: k.client_scopes,
            crl: k.client_crl.map(&resolve),
        }),
        (None, Some(_)) => return invalid("tls.client_auth needs tls.client_ca"),
    };
    match (k.enabled, k.cert, k.key) {
        (false, _, _) if client.is_some() => invalid("tls.client_ca needs TLS on"),
        (false, _, _) => Ok(None),
        (true, Some(cert), Some(key)) => Ok(Some(TlsConfig {
            cert: resolve(cert),
            key: resolve(key),
            client,
        })),
        (true, _, _) => {
            invalid("[tls] needs cert and key (plain HTTP only with an explicit `enabled = false`)")
        }
    }
}

/// `[limits]`: defaults that follow other keys, and the body budgets' order.
fn limits_config(k: limits::Keys) -> Result<Limits, ConfigError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let inference_threads = k.inference_threads.unwrap_or(cores);
    let max_connections = k.max_connections;
    let limits = Limits {
        max_connections,
        // Below the global cap by default, so that one address can never hold every slot
        // with connections that cannot be evicted (busy with a request); above it means no
        // cap of its own.
        max_connections_per_ip: k
            .max_connections_per_ip
            .unwrap_or(64.min((max_connections / 2).max(1)))
            .min(max_connections),
        max_inflight_body_bytes: k
            .max_inflight_body_bytes
            .unwrap_or((16 << 20).max(k.max_body_bytes)),
        // Half the workers: a free worker goes to a caller below it first, so another
        // caller waits for at most one job of each; alone, a caller uses every worker.
        max_in_flight_per_caller: k
            .max_in_flight_per_caller
            .unwrap_or((inference_threads / 2).max(1)),
        queue_timeout: k.queue_timeout_ms,
        max_header_bytes: k.max_header_bytes,
        max_headers: k.max_headers,
        max_request_line_bytes: k.max_request_line_bytes,
        max_body_bytes: k.max_body_bytes,
        header_timeout: k.header_timeout_ms,
        body_timeout: k.body_timeout_ms,
        idle_timeout: k.idle_timeout_ms,
        write_timeout: k.write_timeout_ms,
        shutdown_timeout: k.shutdown_timeout_ms,
        inference_threads,
        // By default every connection may have a request waiting: requests are refused by
        // the time they would wait (queue_timeout_ms), not by the depth of the queue, whose
        // memory is the bodies' (within max_inflight_body_bytes).
        inference_queue: k.inference_queue.unwrap_or(max_connections),
    };
    if limits.max_inflight_body_bytes < limits.max_body_bytes {
        return Err(ConfigError::Invalid(format!(
            "limits.max_inflight_body_bytes = {} must be at least max_body_bytes = {}",
            limits.max_inflight_body_bytes, limits.max_body_bytes
        )));
    }
    Ok(limits)
}

/// `[auth]`: token verification and issuing, each on when its keys are set.
fn auth_config(
    k: auth::Keys,
    resolve: impl Fn(PathBuf) -> PathBuf,
) -> Result<AuthConfig, ConfigError> {
    let invalid = |m: &str| ConfigError::Invalid(m.into());
    let tokens = match k.jwt_keys_dir {
        Some(dir) => Some(TokensConfig {
            keys_dir: resolve(dir),
            issuer: k.issuer.clone(),
            audience: k.audience.clone(),
            leeway: k.leeway_s,
            max_token_bytes: k.max_token_bytes,
            revocations_file: k.revocations_file.map(&resolve),
        }),
        None if k.revocations_file.is_some() => {
            return Err(invalid("auth.revocations_file needs auth.jwt_keys_dir"));
        }
        None => None,
    };
    let issuing = match (k.signing_key, k.clients_file) {
        (Some(key), Some(clients)) => Some(IssuingConfig {
            signing_key: resolve(key),
            clients_file: resolve(clients),
            ttl: k.token_ttl_s,
            issuer: k.issuer,
            audience: k.audience,
        }),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "auth.signing_key and auth.clients_file go together (POST /token)",
            ));
        }
    };
    let api_keys_file = k
        .api_keys_file
        .ok_or_else(|| invalid("[auth] api_keys_file is required: inferd is never open"))?;
    Ok(AuthConfig {
        api_keys_file: resolve(api_keys_file),
        tokens,
        issuing,
        clock_policy: k.clock_policy,
    })
}

/// `[rate_limit]`: `burst` applies to `default`.
fn rate_limit_config(k: rate_limit::Keys) -> RateLimitConfig {
    RateLimitConfig {
        enabled: k.enabled,
        default: match k.burst {
            Some(burst) => Rate { burst, ..k.default },
            None => k.default,
        },
        keys: k.keys,
        clients: k.clients,
        scopes: k.scopes,
        anonymous_per_ip: k.anonymous_per_ip,
        failed_auth_per_ip: k.failed_auth_per_ip,
        token_per_ip: k.token_per_ip,
        connections_per_ip: k.connections_per_ip,
        max_tracked_keys: k.max_tracked_keys,
        ipv6_prefix: k.ipv6_prefix,
        tokens_per_unit: k.tokens_per_unit,
    }
}

/// `[cors]`: any origin never with credentials.
fn cors_config(k: cors::Keys) -> Result<CorsConfig, ConfigError> {
    if k.allow_credentials && k.allowed_origins.iter().any(|o| o == "*") {
        return Err(ConfigError::Invalid(
            "cors.allowed_origins: \"*\" with allow_credentials = true is refused: browsers \
             would send credentials to any site's requests"
                .into(),
        ));
    }
    Ok(CorsConfig {
        allowed_origins: k.allowed_origins,
        allow_credentials: k.allow_credentials,
        allowed_methods: k.allowed_methods,
        allowed_headers: k.allowed_headers,
        max_age: k.max_age_s,
    })
}

/// A TOML error as one line (the `toml` crate's own text spans several lines with a
/// snippet of the file, which journald would split into separate entries). `text` is the
/// document the error's span points into, or empty when there is none.
pub(crate) fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span().and_then(|span| text.get(..span.start)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", flat(e.message()))
        }
        None => flat(&e.to_string()),
    }
}

/// Each principal's quota when nothing else is configured: generous enough for a client
/// library's conformance run or a camera at 10 fps, small enough that one runaway client
/// cannot hold the inference pool.
pub const DEFAULT_RATE: &str = "600/minute";

/// `scheme://host[:port]` as browsers serialise an origin (RFC 6454 §6.1), lower-case.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, "")) => (addr, None),
            Some((addr, port)) => match port.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return false,
            },
            None => return false,
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    scheme_ok && port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:0"
[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
[models]
dir = "/opt/models"
[auth]
api_keys_file = "keys.toml"
"#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(text, "test.toml", Path::new("/state"), |k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.tls.unwrap().cert, PathBuf::from("/state/tls/cert.pem"));
        assert_eq!(c.models.dir, PathBuf::from("/opt/models"));
        assert_eq!(c.limits.max_connections, 256);
        assert_eq!(c.limits.inference_queue, 256);
        assert_eq!(
            c.limits.max_in_flight_per_caller,
            (c.limits.inference_threads / 2).max(1)
        );
        assert_eq!(c.limits.max_connections_per_ip, 64);
        assert_eq!(c.limits.max_inflight_body_bytes, 16 << 20);
        assert_eq!(c.trusted_proxy_header, ProxyHeader::XForwardedFor);
        assert_eq!(c.rate_limit.ipv6_prefix, 64);
    }

    #[test]
    fn per_address_cap_stays_below_the_global_cap_unless_set() {
        let limits = |extra: &str| {
            parse(&format!("{MINIMAL}\n[limits]\n{extra}\n"), &[])
                .unwrap()
                .limits
        };
        assert_eq!(limits("max_connections = 32").max_connections_per_ip, 16);
        assert_eq!(limits("max_connections = 1").max_connections_per_ip, 1);
        let both = limits("max_connections = 32\nmax_connections_per_ip = 100");
        assert_eq!(both.max_connections_per_ip, 32);
        assert!(
            parse(
                &format!(
                    "{MINIMAL}\n[limits]\nmax_body_bytes = 1000\nmax_inflight_body_bytes = 999\n"
                ),
                &[]
            )
            .is_err()
        );
        let header = |value: &str| {
            parse(
                &format!("trusted_proxy_header = \"{value}\"\n{MINIMAL}"),
                &[],
            )
            .map(|c| c.trusted_proxy_header)
        };
        assert_eq!(header("Forwarded").unwrap(), ProxyHeader::Forwarded);
        assert_eq!(
            header("x-forwarded-for").unwrap(),
            ProxyHeader::XForwardedFor
        );
        assert!(header("via").is_err());
    }

    #[test]
    fn env_overrides_file() {
        let c = parse(
            MINIMAL,
            &[
                ("INFERD_LIMITS_MAX_CONNECTIONS", "7"),
                ("INFERD_LISTEN", "0.0.0.0:9"),
                ("INFERD_MODELS_ENABLED", "a, b"),
            ],
        )
        .unwrap();
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.listen.port(), 9);
        assert_eq!(c.models.enabled, vec!["a", "b"]);
        assert!(matches!(
            parse(MINIMAL, &[("INFERD_LIMITS_MAX_CONNECTIONS", "x")]),
            Err(ConfigError::Env { .. })
        ));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(&format!("{MINIMAL}\n[limits]\nmax_conections = 3\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let unknown = Config::unknown_env_vars(
            ["INFERD_LISTEN".to_string(), "INFERD_LISTN".to_string()].into_iter(),
        );
        assert_eq!(unknown, vec!["INFERD_LISTN"]);
    }

    #[test]
    fn tls_is_on_unless_switched_off_explicitly() {
        let no_tls = MINIMAL.replace("cert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n", "");
        assert!(
            parse(&no_tls, &[])
                .unwrap_err()
                .to_string()
                .contains("enabled = false")
        );
        let plain = no_tls.replace("[tls]\n", "[tls]\nenabled = false\n");
        assert!(parse(&plain, &[]).unwrap().tls.is_none());
    }

    #[test]
    fn token_and_mtls_settings() {
        let c = parse(
            MINIMAL,
            &[
                ("INFERD_AUTH_JWT_KEYS_DIR", "trusted"),
                ("INFERD_AUTH_AUDIENCE", "device-7"),
                ("INFERD_AUTH_SIGNING_KEY", "signing.pem"),
                ("INFERD_AUTH_CLIENTS_FILE", "clients.toml"),
                ("INFERD_TLS_CLIENT_CA", "ca.pem"),
                ("INFERD_TLS_CLIENT_AUTH", "required"),
            ],
        )
        .unwrap();
        let tokens = c.auth.tokens.unwrap();
        assert_eq!(
            (tokens.keys_dir, tokens.leeway),
            (PathBuf::from("/state/trusted"), Duration::from_secs(60))
        );
        assert_eq!(
            c.auth.issuing.unwrap().audience.as_deref(),
            Some("device-7")
        );
        let client = c.tls.unwrap().client.unwrap();
        assert!(client.required);
        assert_eq!(client.scopes, vec!["predict"]);
        assert_eq!(c.auth.clock_policy, ClockPolicy::RefuseTokens);
        assert!(parse(MINIMAL, &[("INFERD_AUTH_SIGNING_KEY", "s.pem")]).is_err());
        assert!(
            parse(
                MINIMAL,
                &[
                    ("INFERD_TLS_CLIENT_AUTH", "maybe"),
                    ("INFERD_TLS_CLIENT_CA", "c")
                ]
            )
            .is_err()
        );
        assert!(parse(MINIMAL, &[("INFERD_AUTH_CLOCK_POLICY", "trust")]).is_err());
    }

    #[test]
    fn rates_parse_in_the_seeds_syntax() {
        let r = Rate::parse("10/minute").unwrap();
        assert_eq!(
            (r.count.get(), r.window, r.burst.get()),
            (10, Duration::from_secs(60), 10)
        );
        assert_eq!(
            Rate::parse("5 per second").unwrap().window,
            Duration::from_secs(1)
        );
        assert_eq!(
            Rate::parse("100/5 minutes").unwrap().window,
            Duration::from_secs(300)
        );
        assert_eq!(
            Rate::parse("1/day").unwrap().window,
            Duration::from_secs(86_400)
        );
        for bad in [
            "",
            "10",
            "0/minute",
            "-1/minute",
            "10/fortnight",
            "10/0 minutes",
            "x/s",
            "2000000/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limit_section_with_overrides() {
        let c = parse(
            &format!(
                "{MINIMAL}\n[rate_limit]\ndefault = \"20/second\"\nburst = 40\n\
                 failed_auth_per_ip = {{ rate = \"3/minute\", burst = 1 }}\n\
                 [rate_limit.keys]\ncam = \"5/second\"\n[rate_limit.scopes]\nadmin = {{ rate = \"1/second\", burst = 9 }}\n\
                 [rate_limit.clients]\ngw = \"7/minute\"\n"
            ),
            &[("INFERD_RATE_LIMIT_TOKEN_PER_IP", "2/hour")],
        )
        .unwrap();
        let r = &c.rate_limit;
        assert_eq!((r.default.count.get(), r.default.burst.get()), (20, 40));
        assert_eq!(r.failed_auth_per_ip.burst.get(), 1);
        assert_eq!(r.keys["cam"].count.get(), 5);
        assert_eq!(r.scopes["admin"].burst.get(), 9);
        assert_eq!(r.clients["gw"].window, Duration::from_secs(60));
        assert_eq!(
            (r.token_per_ip.count.get(), r.token_per_ip.window),
            (2, Duration::from_secs(3600))
        );
        let defaults = parse(MINIMAL, &[]).unwrap().rate_limit;
        assert_eq!(defaults.default, Rate::parse(DEFAULT_RATE).unwrap());
        assert!(defaults.enabled);
        assert!(parse(MINIMAL, &[("INFERD_RATE_LIMIT_DEFAULT", "lots")]).is_err());
        assert!(parse(MINIMAL, &[("INFERD_RATE_LIMIT_BURST", "0")]).is_err());
    }

    #[test]
    fn cors_origins_are_exact_and_star_never_goes_with_credentials() {
        let ok = parse(
            MINIMAL,
            &[(
                "INFERD_CORS_ALLOWED_ORIGINS",
                "https://App.local:8443, http://[::1]:3000",
            )],
        )
        .unwrap()
        .cors;
        assert_eq!(
            ok.allowed_origins,
            vec!["https://app.local:8443", "http://[::1]:3000"]
        );
        assert!(ok.allowed_headers.contains(&"x-api-key".to_string()));
        let star = parse(MINIMAL, &[("INFERD_CORS_ALLOWED_ORIGINS", "*")]).unwrap();
        assert_eq!(star.cors.allowed_origins, vec!["*"]);
        let refused = parse(
            MINIMAL,
            &[
                ("INFERD_CORS_ALLOWED_ORIGINS", "*"),
                ("INFERD_CORS_ALLOW_CREDENTIALS", "true"),
            ],
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("allow_credentials"),
            "{refused}"
        );
        for bad in [
            "null",
            "https://app.local/",
            "https://app.local/path",
            "app.local",
            "https://*.local",
            "https://app.local:99999",
            "*, https://a.b",
        ] {
            assert!(
                parse(MINIMAL, &[("INFERD_CORS_ALLOWED_ORIGINS", bad)]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        let c = parse(
            MINIMAL,
            &[(
                "INFERD_TRUSTED_PROXIES",
                "10.0.0.1, 192.168.0.0/16, fd00::/8",
            )],
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert!(parse(MINIMAL, &[("INFERD_TRUSTED_PROXIES", "proxy.local")]).is_err());
    }

    #[test]
    fn nonsense_values_are_refused() {
        assert!(parse(&MINIMAL.replace("127.0.0.1:0", "localhost"), &[]).is_err());
        assert!(
            parse(
                &format!("{MINIMAL}\n[limits]\nheader_timeout_ms = 0\n"),
                &[]
            )
            .is_err()
        );
        assert!(parse(&format!("{MINIMAL}\n[log]\nlevel = \"loud\"\n"), &[]).is_err());
        let e = parse(MINIMAL, &[("INFERD_LIMITS_HEADER_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(e.to_string().contains("limits.header_timeout_ms"), "{e}");
    }

    #[test]
    fn unknown_keys_in_inline_rate_tables_are_named() {
        for key in ["[rate_limit.keys]\ncam", "[rate_limit]\nanonymous_per_ip"] {
            let text = format!("{MINIMAL}\n{key} = {{ rate = \"50/second\", brust = 100 }}\n");
            let e = parse(&text, &[]).unwrap_err();
            assert!(e.to_string().contains("brust"), "{e}");
        }
        let e = parse(&format!("{MINIMAL}\n[rate_limit]\ntoken_per_ip = 3\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("rate_limit.token_per_ip"), "{e}");
    }

    #[test]
    fn every_key_round_trips_through_its_env_var() {
        let raw = |text: &str, env: &[(String, &str)]| {
            super::raw(text, "test.toml", |name| {
                env.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap()
        };
        let defaults = raw("", &[]);
        let mut names = Vec::new();
        for &(section, key, kind) in KEYS {
            let values: &[(&str, &str)] = match kind {
                Kind::Str => &[("x", "\"x\"")],
                Kind::Int => &[("7", "7")],
                Kind::Bool => &[("true", "true"), ("false", "false")],
                Kind::List => &[(" a, b,", "[\"a\", \"b\"]")],
                Kind::Table => continue,
            };
            let header = match section {
                "" => String::new(),
                section => format!("[{section}]\n"),
            };
            let name = env_name(section, key);
            let mut changed = false;
            for (env_value, toml_value) in values {
                let from_env = raw("", &[(name.clone(), env_value)]);
                let from_file = raw(&format!("{header}{key} = {toml_value}\n"), &[]);
                assert_eq!(from_env, from_file, "{name}");
                changed |= from_env != defaults;
            }
            assert!(changed, "{name} changes nothing");
            names.push(name);
        }
        assert_eq!(names.len(), 63);
        assert!(Config::unknown_env_vars(names.into_iter()).is_empty());
        assert_eq!(
            Config::unknown_env_vars(["INFERD_RATE_LIMIT_KEYS".to_string()].into_iter()),
            vec!["INFERD_RATE_LIMIT_KEYS"]
        );
    }

    #[test]
    fn version_policies_parse_in_toml_and_env_forms_and_select() {
        let text = format!(
            "{MINIMAL}\n[models.version_policies]\na = \"all\"\nb = {{ latest = 2 }}\n\
             c = {{ specific = [1, 3] }}\n"
        );
        let c = parse(&text, &[("INFERD_MODELS_VERSION_POLICY", "latest 3")]).unwrap();
        let p = &c.models.version_policies;
        assert_eq!(p["a"], VersionPolicy::All);
        assert_eq!(p["b"], VersionPolicy::Latest(2));
        assert_eq!(p["c"], VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(c.models.version_policy, VersionPolicy::Latest(3));
        assert_eq!(
            parse(MINIMAL, &[]).unwrap().models.version_policy,
            VersionPolicy::Latest(1)
        );
        let found = [3, 1, 2, 5];
        assert_eq!(VersionPolicy::Latest(2).select(&found), vec![3, 5]);
        assert_eq!(VersionPolicy::Latest(9).select(&found), vec![1, 2, 3, 5]);
        assert_eq!(p["c"].select(&found), vec![1, 3]);
        for bad in [
            "{ latest = 0 }",
            "{ latest = 1, specific = [1] }",
            "{ specific = [] }",
            "\"newest\"",
            "{ lates = 1 }",
        ] {
            let text = format!("{MINIMAL}\n[models.version_policies]\nx = {bad}\n");
            assert!(parse(&text, &[]).is_err(), "{bad}");
        }
        for bad in ["latest", "latest 0", "specific", "specific 1,x", "newest 2"] {
            let env = [("INFERD_MODELS_VERSION_POLICY", bad)];
            assert!(parse(MINIMAL, &env).is_err(), "{bad}");
        }
        let e = parse(MINIMAL, &[("INFERD_MODELS_REQUIRE_SIGNED", "true")]).unwrap_err();
        assert!(e.to_string().contains("trusted_keys_dir"), "{e}");
    }

    #[test]
    fn equality_sees_a_changed_key() {
        let before = parse(MINIMAL, &[]).unwrap();
        assert_eq!(before, parse(MINIMAL, &[]).unwrap());
        let slower = parse(MINIMAL, &[("INFERD_LIMITS_IDLE_TIMEOUT_MS", "5000")]).unwrap();
        assert_ne!(before.limits, slower.limits);
        assert_eq!(before.log, slower.log);
        let quiet = parse(MINIMAL, &[("INFERD_LOG_ACCESS", "false")]).unwrap();
        assert_ne!(before.log, quiet.log);
        assert_eq!(before.limits, quiet.limits);
        assert_ne!(before, quiet);
    }
}
