//! The command line: `init`, `serve`, `check`, `demo`, `keygen`, `apikey new`; `sign`,
//! `verify` and `model sign|verify` live in [`sign`].

mod sign;

mod credentials;
pub mod model;

use crate::StartError;
use crate::config::Config;
use crate::provision::{self, InitOptions, ProvisionError};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `inferd --version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "inferd",
    version = VERSION,
    about = "A secure ML inference appliance for edge devices"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Provision a ready-to-run state folder (config, TLS, token keypair, admin API key).
    Init {
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// Names the TLS certificate covers (repeatable).
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1", "::1"])]
        names: Vec<String>,
        /// The models folder the config points at.
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Print {"config","api_key","ca_cert","token_private_key","token_key_id"} as JSON.
        #[arg(long)]
        json: bool,
        /// Load only model folders signed by a trusted key (`inferd model sign`).
        #[arg(long)]
        require_signed_models: bool,
        /// A public key (KID.pem) trusted to sign models (repeatable); without one, a new
        /// signing keypair is made and its private half left to move off the device.
        #[arg(long = "model-key", requires = "require_signed_models")]
        model_keys: Vec<PathBuf>,
    },
    /// Run the appliance.
    Serve {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        first_boot: crate::first_boot::FirstBoot,
    },
    /// Validate the config, load every model and run one inference each.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Provision ./inferd-demo if absent, print a fresh key and curl lines, and serve.
    Demo {
        #[arg(long, default_value = "inferd-demo")]
        dir: PathBuf,
        #[arg(long, default_value = "models")]
        models: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
    /// Make a new Ed25519 keypair (for a provisioning station): signs tokens, models, files.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a token offline (provisioning station), with a key from `init` or `keygen`.
    Token {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        sub: String,
        /// Space-separated scopes, e.g. "predict:digits metrics".
        #[arg(long)]
        scope: String,
        /// Lifetime: 90s, 15m, 1h, 30d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
        #[arg(long)]
        aud: Option<String>,
        #[arg(long)]
        iss: Option<String>,
        /// Token id, for revocation by jti (default: random).
        #[arg(long)]
        jti: Option<String>,
    },
    /// API key management.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// OAuth2 client management (POST /token).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    #[command(flatten)]
    Signing(sign::SignCommand),
    /// Bring your own ONNX model (inspect, add) and sign or verify model version folders.
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Print a fresh client secret once; with --config, add its entry to the clients
    /// file, else print the entry.
    New {
        #[arg(long)]
        id: String,
        /// Scopes the client may be granted (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Add the entry to this config's [auth] clients_file (atomically; the running
        /// server picks it up within a second).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Parses `90s`, `15m`, `1h`, `30d` (a bare number is seconds).
pub fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and s, m, h or d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    if seconds == 0 {
        return Err("ttl must be above 0".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

#[derive(Subcommand, Debug)]
pub enum ApikeyCommand {
    /// Print a fresh key once; with --config, add its entry to the keys file, else print
    /// the entry.
    New {
        #[arg(long)]
        id: String,
        /// Scopes: predict, predict:<model>, metrics, admin (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Add the entry to this config's [auth] api_keys_file (atomically; the running
        /// server picks it up within a second).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Why a command failed; `main` prints the chain.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// Unknown `INFERD_*` variables: probably a typo that would silently do nothing.
    #[error("unknown environment variable(s): {0}")]
    UnknownEnv(String),
    #[error("signal handling: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// `model inspect`: tract cannot load or optimise the file (the report says why).
    #[error("{path}: inferd cannot serve this model: {reason}")]
    NotServable { path: String, reason: String },
    /// A keys or clients file could not take a new entry (unreadable, invalid, the id
    /// taken, not configured).
    #[error("{path}: {reason}")]
    Entry { path: String, reason: String },
    /// An argument clap accepted but the command cannot use.
    #[error("{0}")]
    Usage(String),
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init {
            dir,
            listen,
            names,
            models,
            json,
            require_signed_models,
            model_keys,
        } => {
            let options = InitOptions {
                listen,
                names,
                models_dir: models,
                model_signing: sign::model_signing(require_signed_models, model_keys),
            };
            init(&dir, &options, json)
        }
        Command::Serve {
            config: path,
            first_boot,
        } => {
            let provisioned = first_boot.provision(&path)?;
            let config = load_config(&path)?;
            if let Some(p) = &provisioned {
                p.log();
            }
            serve(&path, &config)
        }
        Command::Check { config } => check(&load_config(&config)?),
        Command::Demo {
            dir,
            models,
            listen,
        } => demo(&dir, &models, &listen),
        Command::Keygen { out } => keygen(&out),
        Command::Token {
            key,
            sub,
            scope,
            ttl,
            aud,
            iss,
            jti,
        } => {
            let claims = crate::auth::jwt::Claims {
                client_id: None,
                sub,
                scopes: scope.split_whitespace().map(str::to_owned).collect(),
                ttl,
                issuer: iss,
                audience: aud,
                jti,
            };
            token(&key, claims)
        }
        Command::Client {
            command: ClientCommand::New { id, scopes, config },
        } => credentials::client_new(&id, scopes, config.as_deref()),
        Command::Apikey {
            command: ApikeyCommand::New { id, scopes, config },
        } => credentials::apikey_new(&id, scopes, config.as_deref()),
        Command::Signing(command) => sign::run(command),
        Command::Model { command } => model::run(command),
    }
}

/// `inferd init`: a new state folder, and what a client needs from it.
fn init(dir: &Path, options: &InitOptions, json: bool) -> Result<(), CliError> {
    init_logging(log::LevelFilter::Warn);
    let p = provision::init(dir, options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
        return Ok(());
    }
    println!("state folder ready: {}", dir.display());
    println!("config:    {}", p.config.display());
    println!("CA cert:   {}", p.ca_cert.display());
    println!("token kid: {}", p.token_key_id);
    println!(
        "audience:  {} (tokens must carry it: inferd token --aud)",
        p.audience
    );
    println!(
        "admin API key (shown once, stored only as a hash):\n  {}",
        p.api_key
    );
    sign::print_signed_models(&p);
    Ok(())
}

/// `inferd keygen`: an Ed25519 token key pair, named by its kid.
fn keygen(out: &Path) -> Result<(), CliError> {
    let (private_pem, public_pem, kid) = provision::token_keypair()?;
    std::fs::create_dir_all(out).map_err(|e| ProvisionError::Write {
        path: out.display().to_string(),
        reason: e.to_string(),
    })?;
    let private = out.join(format!("{kid}.key.pem"));
    let public = out.join(format!("{kid}.pem"));
    provision::write_atomic(&private, private_pem.as_bytes(), 0o600)?;
    provision::write_atomic(&public, public_pem.as_bytes(), 0o644)?;
    println!(
        "kid: {kid}\nprivate key: {}\npublic key (copy to devices' jwt_keys_dir for tokens, or \
         [models] trusted_keys_dir for model signatures): {}",
        private.display(),
        public.display()
    );
    Ok(())
}

/// `inferd token`: signs a token offline (a random jti unless one is given).
fn token(key: &Path, mut claims: crate::auth::jwt::Claims) -> Result<(), CliError> {
    let signer = crate::auth::jwt::TokenSigner::load(key)?;
    if claims.jti.is_none() {
        claims.jti = Some(crate::auth::jwt::random_jti()?);
    }
    println!("{}", signer.sign(&claims, std::time::SystemTime::now())?);
    Ok(())
}

fn load_config(path: &Path) -> Result<Config, CliError> {
    let unknown = Config::unknown_env_vars(std::env::vars().map(|(k, _)| k));
    if !unknown.is_empty() {
        return Err(CliError::UnknownEnv(unknown.join(", ")));
    }
    let config = Config::load(path, |k| std::env::var(k).ok())?;
    init_logging(config.log.level);
    Ok(config)
}

/// Logs to stderr (journald keeps it); `RUST_LOG` overrides the configured level.
fn init_logging(level: log::LevelFilter) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    let _ = builder.try_init();
}

/// Serves until SIGTERM/SIGINT. SIGHUP re-reads `path` (and the environment) and swaps in
/// a whole new app; a bad file keeps the old one serving.
fn serve(path: &Path, config: &Config) -> Result<(), CliError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let started = Instant::now();
    // Register before loading, so a signal during start-up is not fatal.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(CliError::Signals)?;
    let notify = crate::notify::Notifier::from_env();
    let running = crate::start(config)?;
    log::info!("ready in {} ms", started.elapsed().as_millis());
    let models = running.app().models.models().len();
    notify.ready(&format!(
        "serving {models} model(s) on {}",
        running.local_addr()
    ));
    let stopper = running.stopper();
    let serving = stopper.clone();
    notify.start_watchdog(move || serving.is_serving());
    let appliance = running.appliance.clone();
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("inferd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    notify.reloading();
                    notify.reloaded(reload(&appliance, &path));
                    continue;
                }
                log::info!("signal {signal}: draining in-flight requests, then exiting");
                notify.stopping();
                stopper.stop();
                break;
            }
        })
        .map_err(CliError::Signals)?;
    running.wait();
    log::info!("stopped");
    Ok(())
}

/// One SIGHUP: the config file and everything it names, or nothing. True when it took.
fn reload(appliance: &crate::Appliance, path: &Path) -> bool {
    log::info!("SIGHUP: reloading {}", path.display());
    let result = Config::load(path, |k| std::env::var(k).ok())
        .map_err(|e| {
            appliance.metrics.reload(false);
            e.to_string()
        })
        .and_then(|config| appliance.reload(config).map_err(|e| e.to_string()));
    match result {
        Ok(()) => true,
        Err(e) => {
            log::error!("reload failed, still serving the previous state: {e}");
            false
        }
    }
}

fn check(config: &Config) -> Result<(), CliError> {
    let started = Instant::now();
    let app = crate::App::load(config)?;
    if let Some(tls) = &config.tls {
        crate::tls_acceptor(tls).map_err(StartError::from)?;
    }
    for m in app.models.models() {
        println!(
            "ok  model {} v{} ({:?}): loaded and ran one inference",
            m.name(),
            m.manifest.version,
            m.manifest.task
        );
    }
    println!(
        "ok  config {} (TLS {}), {} ms",
        config.listen,
        if config.tls.is_some() { "on" } else { "OFF" },
        started.elapsed().as_millis()
    );
    Ok(())
}

/// sklearn's `load_digits().data[0]`, a handwritten zero, for the demo's curl line.
const DIGIT_ZERO: [u8; 64] = [
    0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0,
    8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6,
    13, 10, 0, 0, 0,
];

fn demo(dir: &Path, models: &Path, listen: &str) -> Result<(), CliError> {
    init_logging(log::LevelFilter::Info);
    if !dir.join("inferd.toml").exists() {
        let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        provision::init(
            dir,
            &InitOptions {
                listen: listen.into(),
                names,
                models_dir: models.into(),
                ..InitOptions::default()
            },
        )?;
    }
    let key = provision::rotate_key(
        &dir.join("api_keys.toml"),
        "demo",
        vec!["predict".into(), "metrics".into()],
    )?;
    let path = dir.join("inferd.toml");
    let config = load_config(&path)?;
    let base = format!("https://{}", config.listen);
    let ca = dir.join("tls/ca.pem");
    let digit: Vec<String> = DIGIT_ZERO.iter().map(|d| d.to_string()).collect();
    println!(
        "\ninferd demo: API key for this run (scopes predict, metrics):\n  {key}\n\nTry:\n  \
curl --cacert {ca} -H 'X-API-Key: {key}' -H 'Content-Type: application/json' -d '{{\"text\": \"I love this, it works wonderfully!\"}}' {base}/predict\n  \
curl --cacert {ca} -H 'X-API-Key: {key}' -H 'Content-Type: application/json' -d '{{\"inputs\": [{{\"name\": \"input\", \"shape\": [1, 64], \"datatype\": \"FP32\", \"data\": [{digits}]}}]}}' {base}/v2/models/digits/infer\n  \
curl --cacert {ca} {base}/v2/health/ready -i\n\nCtrl-C stops it.\n",
        ca = ca.display(),
        digits = digit.join(", "),
    );
    serve(&path, &config)
}
