//! inferd: a secure ML inference appliance for edge devices. Serves int8 ONNX models with
//! tract over our own small HTTP/1.1 + TLS layer, speaking the Open Inference Protocol, and
//! lets only authenticated callers in.
//!
//! `start(&Config)` builds the [`App`] once and runs the server; everything a test needs is
//! reachable from here.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod limiter;
pub mod model;
pub mod notify;
pub mod oip;
pub mod provision;

use auth::clock::Clock;
use auth::issue::TokenIssuer;
use auth::{AuthError, Authenticator};
use config::{Config, LogConfig};
use http::cors::Cors;
use http::{Server, Settings, Stopper, TlsAcceptor, TlsError};
use limiter::Limiter;
use model::pool::Pool;
use model::{ModelError, ModelRepository};
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a request may touch. Built once by `start`, shared read-only by the workers.
pub struct App {
    pub auth: Authenticator,
    /// `POST /token`, when the device holds a signing key.
    pub issuer: Option<TokenIssuer>,
    pub models: ModelRepository,
    pub limiter: Limiter,
    pub cors: Cors,
    /// Proxies whose forwarding headers name the client address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
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
}

impl App {
    /// Loads keys and models and runs one warm-up inference per model, so that a bad model
    /// fails here and not on the first request.
    pub fn load(config: &Config) -> Result<App, StartError> {
        let clock = Clock::system(config.auth.clock_policy, Some(config.state_dir.clone()));
        let auth = Authenticator::load(config, clock)?;
        let issuer = config
            .auth
            .issuing
            .as_ref()
            .map(TokenIssuer::load)
            .transpose()?;
        let pool = Pool::new(
            config.limits.inference_threads,
            config.limits.inference_queue,
        )
        .map_err(StartError::Workers)?;
        let models = ModelRepository::load(
            &config.models.dir,
            &config.models.enabled,
            config.models.default.as_deref(),
            pool,
        )?;
        models.warm_up()?;
        Ok(App {
            auth,
            issuer,
            models,
            limiter: Limiter::new(&config.rate_limit),
            cors: Cors::new(&config.cors),
            trusted_proxies: config.trusted_proxies.clone(),
            log: config.log.clone(),
        })
    }
}

/// A running appliance.
pub struct Running {
    server: Server,
    pub app: Arc<App>,
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
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_request_line: l.max_request_line_bytes,
        max_body_bytes: l.max_body_bytes,
        header_timeout: l.header_timeout,
        body_timeout: l.body_timeout,
        idle_timeout: l.idle_timeout,
        write_timeout: l.write_timeout,
        shutdown_timeout: l.shutdown_timeout,
    }
}

/// How often rate-limit state of clients that went quiet is dropped.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Background upkeep while the app lives: purges rate-limiter state on a schedule.
fn housekeeping(app: std::sync::Weak<App>) {
    let spawned = std::thread::Builder::new()
        .name("inferd-housekeeping".into())
        .spawn(move || {
            loop {
                std::thread::sleep(PURGE_EVERY);
                match app.upgrade() {
                    Some(app) => app.limiter.purge(),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("no housekeeping thread (rate-limit state purged only at its cap): {e}");
    }
}

/// Loads everything and starts serving; returns once the socket is listening.
pub fn start(config: &Config) -> Result<Running, StartError> {
    let tls = match &config.tls {
        Some(t) => Some(TlsAcceptor::load(&t.cert, &t.key, t.client.as_ref())?),
        None => None,
    };
    let app = Arc::new(App::load(config)?);
    housekeeping(Arc::downgrade(&app));
    let handler = Arc::new(http::router::Router { app: app.clone() });
    let server =
        Server::start(config.listen, http_settings(config), tls, handler).map_err(|e| {
            StartError::Bind {
                addr: config.listen,
                reason: e.to_string(),
            }
        })?;
    log::info!(
        "inferd {} listening on {}://{}",
        env!("CARGO_PKG_VERSION"),
        if config.tls.is_some() {
            "https"
        } else {
            "http"
        },
        server.local_addr()
    );
    Ok(Running { server, app })
}
