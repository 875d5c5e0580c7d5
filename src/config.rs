//! Configuration: TOML file plus `INFERD_<SECTION>_<KEY>` environment overrides, parsed
//! once into typed fields. Unknown keys (in the file or the environment) are errors that
//! name them; relative paths are relative to the config file's folder.

use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
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

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    List,
}

/// Every key that exists, with its type: the source of truth for env overrides.
const KEYS: &[(&str, &str, Kind)] = &[
    ("", "listen", Kind::Str),
    ("", "state_dir", Kind::Str),
    ("", "trusted_proxies", Kind::List),
    ("", "trusted_proxy_header", Kind::Str),
    ("tls", "enabled", Kind::Bool),
    ("tls", "cert", Kind::Str),
    ("tls", "key", Kind::Str),
    ("tls", "client_ca", Kind::Str),
    ("tls", "client_auth", Kind::Str),
    ("tls", "client_scopes", Kind::List),
    ("tls", "client_crl", Kind::Str),
    ("limits", "max_connections", Kind::Int),
    ("limits", "max_connections_per_ip", Kind::Int),
    ("limits", "max_inflight_body_bytes", Kind::Int),
    ("limits", "max_in_flight_per_caller", Kind::Int),
    ("limits", "queue_timeout_ms", Kind::Int),
    ("limits", "max_header_bytes", Kind::Int),
    ("limits", "max_headers", Kind::Int),
    ("limits", "max_request_line_bytes", Kind::Int),
    ("limits", "max_body_bytes", Kind::Int),
    ("limits", "header_timeout_ms", Kind::Int),
    ("limits", "body_timeout_ms", Kind::Int),
    ("limits", "idle_timeout_ms", Kind::Int),
    ("limits", "write_timeout_ms", Kind::Int),
    ("limits", "shutdown_timeout_ms", Kind::Int),
    ("limits", "inference_threads", Kind::Int),
    ("limits", "inference_queue", Kind::Int),
    ("models", "dir", Kind::Str),
    ("models", "default", Kind::Str),
    ("models", "enabled", Kind::List),
    ("auth", "api_keys_file", Kind::Str),
    ("auth", "jwt_keys_dir", Kind::Str),
    ("auth", "issuer", Kind::Str),
    ("auth", "audience", Kind::Str),
    ("auth", "leeway_s", Kind::Int),
    ("auth", "max_token_bytes", Kind::Int),
    ("auth", "revocations_file", Kind::Str),
    ("auth", "signing_key", Kind::Str),
    ("auth", "clients_file", Kind::Str),
    ("auth", "token_ttl_s", Kind::Int),
    ("auth", "clock_policy", Kind::Str),
    ("rate_limit", "enabled", Kind::Bool),
    ("rate_limit", "default", Kind::Str),
    ("rate_limit", "burst", Kind::Int),
    ("rate_limit", "anonymous_per_ip", Kind::Str),
    ("rate_limit", "failed_auth_per_ip", Kind::Str),
    ("rate_limit", "token_per_ip", Kind::Str),
    ("rate_limit", "connections_per_ip", Kind::Str),
    ("rate_limit", "max_tracked_keys", Kind::Int),
    ("rate_limit", "ipv6_prefix", Kind::Int),
    ("rate_limit", "tokens_per_unit", Kind::Int),
    ("cors", "allowed_origins", Kind::List),
    ("cors", "allow_credentials", Kind::Bool),
    ("cors", "allowed_methods", Kind::List),
    ("cors", "allowed_headers", Kind::List),
    ("cors", "max_age_s", Kind::Int),
    ("log", "level", Kind::Str),
    ("log", "access", Kind::Bool),
    ("log", "audit", Kind::Bool),
    ("log", "refusal_lines_per_s", Kind::Int),
];

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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    trusted_proxy_header: Option<String>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    models: RawModels,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    rate_limit: RawRateLimit,
    #[serde(default)]
    cors: RawCors,
    #[serde(default)]
    log: RawLog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    enabled: Option<bool>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_auth: Option<String>,
    client_scopes: Option<Vec<String>>,
    client_crl: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<u64>,
    max_connections_per_ip: Option<u64>,
    max_inflight_body_bytes: Option<u64>,
    max_in_flight_per_caller: Option<u64>,
    queue_timeout_ms: Option<u64>,
    max_header_bytes: Option<u64>,
    max_headers: Option<u64>,
    max_request_line_bytes: Option<u64>,
    max_body_bytes: Option<u64>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    write_timeout_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    inference_threads: Option<u64>,
    inference_queue: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawModels {
    dir: Option<PathBuf>,
    default: Option<String>,
    #[serde(default)]
    enabled: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    api_keys_file: Option<PathBuf>,
    jwt_keys_dir: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_s: Option<u64>,
    max_token_bytes: Option<u64>,
    revocations_file: Option<PathBuf>,
    signing_key: Option<PathBuf>,
    clients_file: Option<PathBuf>,
    token_ttl_s: Option<u64>,
    clock_policy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    enabled: Option<bool>,
    default: Option<String>,
    burst: Option<u64>,
    anonymous_per_ip: Option<RawRate>,
    failed_auth_per_ip: Option<RawRate>,
    token_per_ip: Option<RawRate>,
    connections_per_ip: Option<RawRate>,
    max_tracked_keys: Option<u64>,
    ipv6_prefix: Option<u64>,
    tokens_per_unit: Option<u64>,
    #[serde(default)]
    keys: BTreeMap<String, RawRate>,
    #[serde(default)]
    scopes: BTreeMap<String, RawRate>,
    #[serde(default)]
    clients: BTreeMap<String, RawRate>,
}

/// `"10/minute"`, or `{ rate = "10/minute", burst = 20 }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRate {
    Short(String),
    Full { rate: String, burst: Option<u64> },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allowed_origins: Vec<String>,
    allow_credentials: Option<bool>,
    allowed_methods: Option<Vec<String>>,
    allowed_headers: Option<Vec<String>>,
    max_age_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    access: Option<bool>,
    audit: Option<bool>,
    refusal_lines_per_s: Option<u64>,
}

/// TLS certificate and key (PEM), and optional client-certificate authentication.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Option<ClientAuthConfig>,
}

/// mTLS: client certificates signed by `ca` become principals with `scopes`.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    /// The text model `/predict` uses by default.
    pub default: Option<String>,
    /// Model folders to load; all under `dir` when empty.
    pub enabled: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub api_keys_file: PathBuf,
    /// Bearer-token verification, when `jwt_keys_dir` is set.
    pub tokens: Option<TokensConfig>,
    /// The OAuth2 token endpoint, when `signing_key` is set.
    pub issuing: Option<IssuingConfig>,
    pub clock_policy: ClockPolicy,
}

/// Verification of Ed25519 bearer tokens.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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
        match u32::try_from(burst).ok().and_then(NonZeroU32::new) {
            Some(burst) => Ok(Rate { burst, ..self }),
            None => Err(format!("burst {burst} must be 1..={}", u32::MAX)),
        }
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
        rate_limit(RawRateLimit::default()).expect("built-in rate limits are valid")
    }
}

/// `[cors]`: which browser origins may call the API.
#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: log::LevelFilter,
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
#[derive(Debug, Clone)]
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
        let known: Vec<String> = KEYS.iter().map(|(s, k, _)| env_name(s, k)).collect();
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
        let parse_err = |reason: String| ConfigError::Parse {
            path: origin.to_owned(),
            reason,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_err(toml_reason(text, &e)))?;
        for (section, key, kind) in KEYS {
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
        let raw: RawConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(toml_reason("", &e)))?;
        Config::from_raw(raw, base)
    }

    fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8443".into());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| invalid(format!("listen {listen_text:?} is not an address:port")))?;
        if raw.tls.client_ca.is_none() && raw.tls.client_crl.is_some() {
            return Err(invalid("tls.client_crl needs tls.client_ca".into()));
        }
        let client = match (raw.tls.client_ca, raw.tls.client_auth.as_deref()) {
            (None, None) => None,
            (Some(ca), mode) => Some(ClientAuthConfig {
                ca: resolve(ca),
                required: match mode.unwrap_or("optional") {
                    "optional" => false,
                    "required" => true,
                    other => {
                        return Err(invalid(format!(
                            "tls.client_auth {other:?} must be \"optional\" or \"required\""
                        )));
                    }
                },
                scopes: raw
                    .tls
                    .client_scopes
                    .unwrap_or_else(|| vec!["predict".into()]),
                crl: raw.tls.client_crl.map(resolve),
            }),
            (None, Some(_)) => return Err(invalid("tls.client_auth needs tls.client_ca".into())),
        };
        let tls = match (raw.tls.enabled.unwrap_or(true), raw.tls.cert, raw.tls.key) {
            (false, _, _) if client.is_some() => {
                return Err(invalid("tls.client_ca needs TLS on".into()));
            }
            (false, _, _) => None,
            (true, Some(cert), Some(key)) => Some(TlsConfig {
                cert: resolve(cert),
                key: resolve(key),
                client,
            }),
            (true, _, _) => {
                return Err(invalid(
                    "[tls] needs cert and key (plain HTTP only with an explicit `enabled = false`)"
                        .into(),
                ));
            }
        };
        let l = raw.limits;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count =
            |v: Option<u64>, default: usize, name: &str, max: u64| -> Result<usize, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(n) if n >= 1 && n <= max => Ok(n as usize),
                    Some(n) => Err(invalid(format!("limits.{name} = {n} must be 1..={max}"))),
                }
            };
        let ms = |v: Option<u64>, default: u64, name: &str| -> Result<Duration, ConfigError> {
            match v.unwrap_or(default) {
                0 => Err(invalid(format!("limits.{name} must be above 0"))),
                n if n > 86_400_000 => Err(invalid(format!("limits.{name} must be at most a day"))),
                n => Ok(Duration::from_millis(n)),
            }
        };
        let inference_threads = count(l.inference_threads, cores, "inference_threads", 256)?;
        let max_connections = count(l.max_connections, 256, "max_connections", 100_000)?;
        // By default every connection may have a request waiting: requests are refused by
        // the time they would wait (queue_timeout_ms), not by the depth of the queue, whose
        // memory is the bodies' (within max_inflight_body_bytes).
        let inference_queue = count(
            l.inference_queue,
            max_connections,
            "inference_queue",
            100_000,
        )?;
        let max_body_bytes = count(l.max_body_bytes, 4 << 20, "max_body_bytes", 1 << 30)?;
        let limits = Limits {
            max_connections,
            // Below the global cap by default, so that one address can never hold every
            // slot with connections that cannot be evicted (busy with a request); above it
            // means no cap of its own.
            max_connections_per_ip: count(
                l.max_connections_per_ip,
                64.min((max_connections / 2).max(1)),
                "max_connections_per_ip",
                100_000,
            )?
            .min(max_connections),
            max_inflight_body_bytes: count(
                l.max_inflight_body_bytes,
                (16 << 20).max(max_body_bytes),
                "max_inflight_body_bytes",
                1 << 34,
            )?,
            // Half the workers: a free worker goes to a caller below it first, so another
            // caller waits for at most one job of each; alone, a caller uses every worker.
            max_in_flight_per_caller: count(
                l.max_in_flight_per_caller,
                (inference_threads / 2).max(1),
                "max_in_flight_per_caller",
                100_000,
            )?,
            queue_timeout: ms(l.queue_timeout_ms, 10_000, "queue_timeout_ms")?,
            max_header_bytes: count(l.max_header_bytes, 16 * 1024, "max_header_bytes", 1 << 20)?,
            max_headers: count(l.max_headers, 64, "max_headers", 1024)?,
            max_request_line_bytes: count(
                l.max_request_line_bytes,
                8 * 1024,
                "max_request_line_bytes",
                1 << 20,
            )?,
            max_body_bytes,
            header_timeout: ms(l.header_timeout_ms, 10_000, "header_timeout_ms")?,
            body_timeout: ms(l.body_timeout_ms, 30_000, "body_timeout_ms")?,
            idle_timeout: ms(l.idle_timeout_ms, 30_000, "idle_timeout_ms")?,
            write_timeout: ms(l.write_timeout_ms, 10_000, "write_timeout_ms")?,
            shutdown_timeout: ms(l.shutdown_timeout_ms, 10_000, "shutdown_timeout_ms")?,
            inference_threads,
            inference_queue,
        };
        if limits.max_inflight_body_bytes < limits.max_body_bytes {
            return Err(invalid(format!(
                "limits.max_inflight_body_bytes = {} must be at least max_body_bytes = {}",
                limits.max_inflight_body_bytes, limits.max_body_bytes
            )));
        }
        let models = ModelsConfig {
            dir: resolve(
                raw.models
                    .dir
                    .ok_or_else(|| invalid("[models] dir is required".into()))?,
            ),
            default: raw.models.default,
            enabled: raw.models.enabled,
        };
        let a = raw.auth;
        let leeway_s = a.leeway_s.unwrap_or(60);
        if leeway_s > 3600 {
            return Err(invalid(format!(
                "auth.leeway_s = {leeway_s} must be at most 3600"
            )));
        }
        let tokens = match a.jwt_keys_dir {
            Some(dir) => Some(TokensConfig {
                keys_dir: resolve(dir),
                issuer: a.issuer.clone(),
                audience: a.audience.clone(),
                leeway: Duration::from_secs(leeway_s),
                max_token_bytes: count(a.max_token_bytes, 4096, "max_token_bytes", 64 * 1024)?,
                revocations_file: a.revocations_file.map(resolve),
            }),
            None if a.revocations_file.is_some() => {
                return Err(invalid(
                    "auth.revocations_file needs auth.jwt_keys_dir".into(),
                ));
            }
            None => None,
        };
        let ttl_s = a.token_ttl_s.unwrap_or(900);
        if !(1..=86_400).contains(&ttl_s) {
            return Err(invalid(format!(
                "auth.token_ttl_s = {ttl_s} must be 1..=86400"
            )));
        }
        let issuing = match (a.signing_key, a.clients_file) {
            (Some(key), Some(clients)) => Some(IssuingConfig {
                signing_key: resolve(key),
                clients_file: resolve(clients),
                ttl: Duration::from_secs(ttl_s),
                issuer: a.issuer,
                audience: a.audience,
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "auth.signing_key and auth.clients_file go together (POST /token)".into(),
                ));
            }
        };
        let clock_policy = match a.clock_policy.as_deref().unwrap_or("refuse_tokens") {
            "refuse_tokens" => ClockPolicy::RefuseTokens,
            "ignore" => ClockPolicy::Ignore,
            other => {
                return Err(invalid(format!(
                    "auth.clock_policy {other:?} must be \"refuse_tokens\" or \"ignore\""
                )));
            }
        };
        let auth = AuthConfig {
            api_keys_file: resolve(a.api_keys_file.ok_or_else(|| {
                invalid("[auth] api_keys_file is required: inferd is never open".into())
            })?),
            tokens,
            issuing,
            clock_policy,
        };
        let level_text = raw.log.level.unwrap_or_else(|| "info".into());
        let log = LogConfig {
            level: level_text.parse().map_err(|_| {
                invalid(format!(
                    "log.level {level_text:?} is not off/error/warn/info/debug/trace"
                ))
            })?,
            access: raw.log.access.unwrap_or(true),
            audit: raw.log.audit.unwrap_or(true),
            refusal_lines_per_s: match raw.log.refusal_lines_per_s.unwrap_or(20) {
                n if n <= 100_000 => n as u32,
                n => {
                    return Err(invalid(format!(
                        "log.refusal_lines_per_s = {n} must be at most 100000"
                    )));
                }
            },
        };
        let trusted_proxy_header = match raw
            .trusted_proxy_header
            .as_deref()
            .unwrap_or("x-forwarded-for")
            .to_ascii_lowercase()
            .as_str()
        {
            "x-forwarded-for" => ProxyHeader::XForwardedFor,
            "forwarded" => ProxyHeader::Forwarded,
            other => {
                return Err(invalid(format!(
                    "trusted_proxy_header {other:?} must be \"x-forwarded-for\" or \"forwarded\""
                )));
            }
        };
        Ok(Config {
            listen,
            state_dir: raw.state_dir.map_or_else(|| base.to_path_buf(), resolve),
            trusted_proxies: trusted_proxies(&raw.trusted_proxies)?,
            trusted_proxy_header,
            tls,
            limits,
            models,
            auth,
            rate_limit: rate_limit(raw.rate_limit)?,
            cors: cors(raw.cors)?,
            log,
        })
    }
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

/// `"10.0.0.1"` or `"10.0.0.0/8"` (IPv4 or IPv6).
fn trusted_proxies(raw: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    raw.iter()
        .map(|text| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::Invalid(format!(
                        "trusted_proxies: {text:?} is not an address or network"
                    ))
                })
        })
        .collect()
}

fn rate_limit(raw: RawRateLimit) -> Result<RateLimitConfig, ConfigError> {
    let invalid = |key: &str, m: String| ConfigError::Invalid(format!("rate_limit.{key}: {m}"));
    let one = |key: &str, raw: Option<RawRate>, default: &str| -> Result<Rate, ConfigError> {
        let (text, burst) = match raw {
            None => (default.to_owned(), None),
            Some(RawRate::Short(text)) => (text, None),
            Some(RawRate::Full { rate, burst }) => (rate, burst),
        };
        let rate = Rate::parse(&text).map_err(|m| invalid(key, m))?;
        match burst {
            None => Ok(rate),
            Some(b) => rate.with_burst(b).map_err(|m| invalid(key, m)),
        }
    };
    let table = |name: &str, raw: BTreeMap<String, RawRate>| {
        raw.into_iter()
            .map(|(k, v)| Ok((k.clone(), one(&format!("{name}.{k}"), Some(v), "")?)))
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()
    };
    let default = one("default", raw.default.map(RawRate::Short), DEFAULT_RATE)?;
    let default = match raw.burst {
        Some(b) => default.with_burst(b).map_err(|m| invalid("burst", m))?,
        None => default,
    };
    let max_tracked_keys = raw.max_tracked_keys.unwrap_or(100_000);
    if !(16..=10_000_000).contains(&max_tracked_keys) {
        return Err(invalid(
            "max_tracked_keys",
            format!("{max_tracked_keys} must be 16..=10000000"),
        ));
    }
    Ok(RateLimitConfig {
        enabled: raw.enabled.unwrap_or(true),
        default,
        keys: table("keys", raw.keys)?,
        clients: table("clients", raw.clients)?,
        scopes: table("scopes", raw.scopes)?,
        anonymous_per_ip: one("anonymous_per_ip", raw.anonymous_per_ip, "600/minute")?,
        failed_auth_per_ip: one("failed_auth_per_ip", raw.failed_auth_per_ip, "10/minute")?,
        token_per_ip: one("token_per_ip", raw.token_per_ip, "60/minute")?,
        connections_per_ip: one("connections_per_ip", raw.connections_per_ip, "1200/minute")?,
        max_tracked_keys: max_tracked_keys as usize,
        ipv6_prefix: match raw.ipv6_prefix.unwrap_or(64) {
            n @ 1..=128 => n as u8,
            n => return Err(invalid("ipv6_prefix", format!("{n} must be 1..=128"))),
        },
        tokens_per_unit: match raw.tokens_per_unit.unwrap_or(32) {
            n @ 1..=65_536 => n as u32,
            n => return Err(invalid("tokens_per_unit", format!("{n} must be 1..=65536"))),
        },
    })
}

/// Each principal's quota when nothing else is configured: generous enough for a client
/// library's conformance run or a camera at 10 fps, small enough that one runaway client
/// cannot hold the inference pool.
pub const DEFAULT_RATE: &str = "600/minute";

fn cors(raw: RawCors) -> Result<CorsConfig, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(format!("cors.{m}"));
    let allow_credentials = raw.allow_credentials.unwrap_or(false);
    let mut origins = Vec::new();
    for origin in raw.allowed_origins {
        let origin = origin.trim().to_ascii_lowercase();
        if origin == "*" {
            if allow_credentials {
                return Err(invalid(
                    "allowed_origins: \"*\" with allow_credentials = true is refused: \
                     browsers would send credentials to any site's requests"
                        .into(),
                ));
            }
        } else if !is_origin(&origin) {
            return Err(invalid(format!(
                "allowed_origins: {origin:?} is not an exact origin like \"https://app.example:8443\" \
                 (scheme and host, optional port, no path, no wildcard, not \"null\")"
            )));
        }
        origins.push(origin);
    }
    if origins.len() > 1 && origins.iter().any(|o| o == "*") {
        return Err(invalid(
            "allowed_origins: \"*\" cannot be combined with other origins".into(),
        ));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let methods: Vec<String> = raw
        .allowed_methods
        .unwrap_or_else(|| vec!["GET".into(), "POST".into()])
        .iter()
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    if let Some(bad) = methods.iter().find(|m| !token(m) || m.as_str() == "*") {
        return Err(invalid(format!("allowed_methods: {bad:?} is not a method")));
    }
    let headers: Vec<String> = raw
        .allowed_headers
        .unwrap_or_else(|| {
            [
                "authorization",
                "content-type",
                "x-api-key",
                "inference-header-content-length",
            ]
            .map(String::from)
            .to_vec()
        })
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = headers.iter().find(|h| !token(h) || h.as_str() == "*") {
        return Err(invalid(format!(
            "allowed_headers: {bad:?} is not a header name"
        )));
    }
    let max_age_s = raw.max_age_s.unwrap_or(600);
    if max_age_s > 86_400 {
        return Err(invalid(format!(
            "max_age_s = {max_age_s} must be at most 86400"
        )));
    }
    Ok(CorsConfig {
        allowed_origins: origins,
        allow_credentials,
        allowed_methods: methods,
        allowed_headers: headers,
        max_age: Duration::from_secs(max_age_s),
    })
}

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
    }
}
