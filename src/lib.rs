//! inferd: a secure ML inference appliance for edge devices. Serves int8 ONNX models with
//! tract over our own small HTTP/1.1 + TLS layer, speaking the Open Inference Protocol, and
//! lets only authenticated callers in.
//!
//! `start(&Config)` builds the [`App`] and runs the server; SIGHUP swaps in a new one
//! ([`Appliance::reload`]). Everything a test needs is
//! reachable from here.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod api;
pub mod atomic_file;
pub mod auth;
pub mod cli;
pub mod config;
pub mod first_boot;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod oip;
pub mod provision;
pub mod signing;

use api::cors::Cors;
use auth::clock::Clock;
use auth::issue::TokenIssuer;
use auth::{AuthError, Authenticator};
use config::{Config, LogConfig, RateLimitConfig};
use http::{Server, Settings, Stopper, TlsAcceptor, TlsError};
use limiter::{Limiter, LogBudget};
use metrics::Metrics;
use model::pool::Pool;
use model::{ModelError, ModelRepository};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

/// Everything a request may touch, as one consistent snapshot: a reload builds a new `App`
/// and swaps it in whole; requests in flight finish on the one they started with.
pub struct App {
    pub auth: Authenticator,
    /// `POST /token`, when the device holds a signing key.
    pub issuer: Option<TokenIssuer>,
    /// Shared by successive apps: a reload changes only the models whose files or settings
    /// changed, and the repository API loads and unloads models in place.
    pub models: Arc<ModelRepository>,
    /// Shared by successive apps while `[rate_limit]` is unchanged, so a reload does not
    /// refill everyone's bucket.
    pub limiter: Arc<Limiter>,
    pub cors: Cors,
    /// Proxies whose forwarding header names the client address, and which header.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub proxy_header: config::ProxyHeader,
    /// Log lines clients without valid credentials may cause (shared by successive apps).
    pub log_budget: Arc<LogBudget>,
    /// Shared by successive apps: series survive reloads.
    pub metrics: Metrics,
    pub log: LogConfig,
}

/// Why the appliance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The listen address cannot be bound (in use, no permission).
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    /// Worker threads could not be created.
    #[error("cannot start inference workers: {0}")]
    Workers(std::io::Error),
    /// A reload asked for before the first load finished.
    #[error("still loading: nothing to reload yet")]
    Loading,
}

/// What outlives a reload: the inference workers, the models and the metrics.
struct Lasting {
    pool: Arc<Pool>,
    models: Option<Arc<ModelRepository>>,
    metrics: Metrics,
    log_budget: Arc<LogBudget>,
    limiter: Option<(RateLimitConfig, Arc<Limiter>)>,
}

impl App {
    /// Files that reload by themselves (keys, token keys and revocations, OAuth clients)
    /// whose last reload failed: their previous contents are still in force. Also set as
    /// the `inferd_reload_failing` gauges.
    pub fn reload_failures(&self) -> Vec<&'static str> {
        let mut failing = self.auth.reload_failures();
        if self.issuer.as_ref().is_some_and(|i| i.reload_failing()) {
            failing.push("clients");
        }
        for file in ["api_keys", "token_keys_or_revocations", "clients"] {
            self.metrics.reload_failing(file, failing.contains(&file));
        }
        failing
    }

    /// Loads keys and models and runs one warm-up inference per model, so that a bad model
    /// fails here and not on the first request.
    pub fn load(config: &Config) -> Result<App, StartError> {
        let log_budget = Arc::new(LogBudget::new(config.log.refusal_lines_per_s));
        App::load_with(config, Metrics::new(), log_budget)
    }

    fn load_with(
        config: &Config,
        metrics: Metrics,
        log_budget: Arc<LogBudget>,
    ) -> Result<App, StartError> {
        let pool = Pool::with_limits(&config.limits).map_err(StartError::Workers)?;
        App::build(
            config,
            Lasting {
                pool: Arc::new(pool),
                models: None,
                metrics,
                log_budget,
                limiter: None,
            },
        )
    }

    fn build(config: &Config, lasting: Lasting) -> Result<App, StartError> {
        let clock = Clock::system(config.auth.clock_policy, Some(config.state_dir.clone()));
        let auth = Authenticator::load(config, clock)?;
        let issuer = config
            .auth
            .issuing
            .as_ref()
            .map(TokenIssuer::load)
            .transpose()?;
        let limiter = match lasting.limiter {
            Some((old, limiter)) if old == config.rate_limit => limiter,
            _ => Arc::new(Limiter::new(&config.rate_limit)),
        };
        let cors = Cors::new(&config.cors);
        // Last: a reload that changed models has changed them for every app from here on.
        let models = match lasting.models {
            Some(models) => {
                models.reload(&config.models)?;
                models
            }
            None => Arc::new(ModelRepository::open(
                &config.models,
                lasting.pool,
                lasting.metrics.clone(),
            )?),
        };
        Ok(App {
            auth,
            issuer,
            models,
            limiter,
            cors,
            trusted_proxies: config.trusted_proxies.clone(),
            proxy_header: config.trusted_proxy_header,
            log_budget: lasting.log_budget,
            metrics: lasting.metrics,
            log: config.log.clone(),
        })
    }
}

/// The running appliance's state: the current [`App`], swapped whole by [`Appliance::reload`].
/// Empty while the first one loads: the port is open by then, liveness answers and readiness
/// says "not yet".
pub struct Appliance {
    current: RwLock<Option<Arc<App>>>,
    /// The configuration the current app was built from.
    config: Mutex<Config>,
    tls: Option<TlsAcceptor>,
    /// Outlives every app (series survive reloads).
    pub metrics: Metrics,
    /// Outlives every app: a reload does not refill it.
    pub log_budget: Arc<LogBudget>,
}

impl Appliance {
    /// The app new requests are admitted with; `None` until the models have loaded and
    /// run their warm-up.
    pub fn app(&self) -> Option<Arc<App>> {
        // A poisoned slot still holds a complete app.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// An appliance with no app yet (what the port serves while the first one loads).
    pub(crate) fn loading(config: &Config, tls: Option<TlsAcceptor>) -> Appliance {
        Appliance {
            current: RwLock::new(None),
            config: Mutex::new(config.clone()),
            tls,
            metrics: Metrics::new(),
            log_budget: Arc::new(LogBudget::new(config.log.refusal_lines_per_s)),
        }
    }

    fn install(&self, app: App) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(app));
    }

    /// Builds a complete new app from `config` (keys, revocations, OAuth clients, TLS
    /// certificate, CORS, rate limits, models — loaded and warmed up) and swaps it in; on
    /// any error the current app keeps serving and the error says which file. Settings
    /// that shape the listener (address, TLS on/off, `[limits]`, logging) are reported as
    /// needing a restart.
    pub fn reload(&self, config: Config) -> Result<(), StartError> {
        let started = std::time::Instant::now();
        let Some(current) = self.app() else {
            return Err(StartError::Loading);
        };
        let result = self.rebuild(&config, &current);
        self.metrics.reload(result.is_ok());
        let fresh = result?;
        let mut in_force = self.config.lock().unwrap_or_else(|p| p.into_inner());
        for (what, changed) in [
            ("listen", in_force.listen != config.listen),
            ("tls on/off", in_force.tls.is_some() != config.tls.is_some()),
            ("[limits]", in_force.limits != config.limits),
            ("state_dir", in_force.state_dir != config.state_dir),
            ("[log]", in_force.log != config.log),
        ] {
            if changed {
                log::warn!("reload: {what} changed; it takes effect at the next restart");
            }
        }
        self.install(fresh);
        *in_force = config;
        log::info!(
            "reload: keys, certificates, CORS, rate limits and models in force ({} ms)",
            started.elapsed().as_millis()
        );
        Ok(())
    }

    fn rebuild(&self, config: &Config, current: &App) -> Result<App, StartError> {
        let tls = match (&self.tls, &config.tls) {
            (Some(_), Some(t)) => Some(tls_acceptor(t)?),
            _ => None,
        };
        let in_force = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let fresh = App::build(
            config,
            Lasting {
                pool: current.models.pool().clone(),
                models: Some(current.models.clone()),
                metrics: current.metrics.clone(),
                log_budget: current.log_budget.clone(),
                limiter: Some((in_force.rate_limit, current.limiter.clone())),
            },
        )?;
        // Last, once everything else loaded: a certificate swap cannot be undone.
        if let (Some(acceptor), Some(fresh_tls)) = (&self.tls, tls) {
            acceptor.replace(&fresh_tls);
        }
        Ok(fresh)
    }
}

/// A running appliance.
pub struct Running {
    server: Server,
    pub appliance: Arc<Appliance>,
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A handle that starts graceful shutdown.
    pub fn stopper(&self) -> Stopper {
        self.server.stopper()
    }

    /// The app new requests see now.
    pub fn app(&self) -> Arc<App> {
        // `start` returns a `Running` only once the first app is in place, and reloads
        // only ever replace it.
        self.appliance
            .app()
            .expect("an app is installed before start returns")
    }

    /// Blocks until shutdown has finished draining.
    pub fn wait(self) {
        self.server.wait();
    }
}

/// The HTTP layer's settings from `[limits]`.
pub fn http_settings(config: &Config) -> Settings {
    let l = &config.limits;
    Settings {
        max_connections: l.max_connections,
        max_connections_per_ip: l.max_connections_per_ip,
        ipv6_prefix: config.rate_limit.ipv6_prefix,
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_request_line: l.max_request_line_bytes,
        max_body_bytes: l.max_body_bytes,
        max_inflight_body_bytes: l.max_inflight_body_bytes,
        header_timeout: l.header_timeout,
        body_timeout: l.body_timeout,
        idle_timeout: l.idle_timeout,
        write_timeout: l.write_timeout,
        shutdown_timeout: l.shutdown_timeout,
    }
}

/// Warns at start (not at the first token) when the state folder cannot be written: the
/// clock floor would then not survive a restart.
fn check_state_dir(dir: &std::path::Path) {
    let probe = dir.join(".inferd-write-check");
    match provision::write_atomic(&probe, b"ok\n", 0o600) {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => log::warn!(
            "state_dir {} is not writable ({e}): the last-seen time will not be kept, so after \
             a reboot with the clock set back tokens are judged against the build time only",
            dir.display()
        ),
    }
}

/// How often rate-limit state of clients that went quiet is dropped.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Background upkeep while the appliance lives: purges rate-limiter state on a schedule.
fn housekeeping(appliance: std::sync::Weak<Appliance>) {
    let spawned = std::thread::Builder::new()
        .name("inferd-housekeeping".into())
        .spawn(move || {
            loop {
                std::thread::sleep(PURGE_EVERY);
                match appliance.upgrade() {
                    Some(appliance) => {
                        if let Some(app) = appliance.app() {
                            app.limiter.purge();
                        }
                    }
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("no housekeeping thread (rate-limit state purged only at its cap): {e}");
    }
}

/// Loads the certificate, key and client CA that `[tls]` names.
pub fn tls_acceptor(tls: &config::TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let client = tls.client.as_ref().map(|c| http::ClientAuth {
        ca: c.ca.clone(),
        crl: c.crl.clone(),
        required: c.required,
    });
    TlsAcceptor::load(&tls.cert, &tls.key, client.as_ref())
}

/// Opens the port, then loads keys and models and runs their warm-up; returns once the
/// appliance is ready. Meanwhile the port answers liveness (200), readiness (503) and
/// everything else 503 `starting`, so a slow board (a minute under emulation) is
/// observable while it loads.
pub fn start(config: &Config) -> Result<Running, StartError> {
    let tls = match &config.tls {
        Some(t) => Some(tls_acceptor(t)?),
        None => None,
    };
    let appliance = Arc::new(Appliance::loading(config, tls.clone()));
    let handler = Arc::new(api::Router {
        appliance: appliance.clone(),
    });
    let server =
        Server::start(config.listen, http_settings(config), tls, handler).map_err(|e| {
            StartError::Bind {
                addr: config.listen,
                reason: e.to_string(),
            }
        })?;
    log::info!(
        "inferd {} listening on {}://{} (loading models)",
        env!("CARGO_PKG_VERSION"),
        if config.tls.is_some() {
            "https"
        } else {
            "http"
        },
        server.local_addr()
    );
    check_state_dir(&config.state_dir);
    match App::load_with(
        config,
        appliance.metrics.clone(),
        appliance.log_budget.clone(),
    ) {
        Ok(app) => appliance.install(app),
        Err(e) => {
            server.stopper().stop();
            server.wait();
            return Err(e);
        }
    }
    housekeeping(Arc::downgrade(&appliance));
    Ok(Running { server, appliance })
}
