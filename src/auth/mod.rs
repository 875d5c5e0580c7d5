//! Who is calling, and may they: the `Authenticator` turns a request's credentials (an API
//! key, an Ed25519 bearer token, or a verified client certificate) into a `Principal` with
//! scopes. The files behind it reload without a restart.

pub mod api_key;
pub mod client;
pub mod clock;
pub mod issue;
pub mod jwt;
pub mod mtls;
pub mod watch;

use crate::config::Config;
use crate::http::Request;
use api_key::KeyRing;
use clock::Clock;
use jwt::{Revocations, TokenPolicy, TokenVerifier, TrustedKeys};
use watch::Watched;

/// Why credentials were refused. The client only ever hears "unauthorized"; the audit log
/// records which of these it was.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all.
    #[error("no credentials")]
    Missing,
    /// An `X-API-Key` that matches no key in the keys file.
    #[error("unknown API key")]
    UnknownKey,
    /// A key past its `expires` time.
    #[error("expired API key {0}")]
    ExpiredKey(String),
    /// A bearer token, which this device is not configured to verify.
    #[error("bearer token not accepted: no token keys configured")]
    BearerUnsupported,
    /// A bearer token that failed verification; the failure says why for the audit log.
    #[error("invalid token: {}", .0.reason)]
    Token(TokenFailure),
    /// An `Authorization` header in a scheme we do not take.
    #[error("unsupported Authorization scheme")]
    UnsupportedScheme,
    /// The keys file is missing or malformed (at start or reload).
    #[error("API keys file {path}: {reason}")]
    KeysFile { path: String, reason: String },
    /// A token key file (trusted public key or signing key) is missing or unreadable, or a
    /// keys folder cannot be listed (at start or reload).
    #[error("token key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// The token revocations file is missing or malformed (at start or reload).
    #[error("revocations file {path}: {reason}")]
    RevocationsFile { path: String, reason: String },
    /// A token could not be signed: claims this device refuses to issue (empty `sub`, a
    /// scope with spaces, a TTL under a second), or a signing failure.
    #[error("cannot sign token: {0}")]
    Sign(String),
    /// A verified client certificate that names no identity (no SAN URI/DNS, no CN).
    #[error("client certificate without an identity")]
    CertificateWithoutIdentity,
}

impl AuthError {
    /// Whether the client tried a bearer token (the 401 then names `invalid_token`).
    pub fn was_bearer(&self) -> bool {
        matches!(self, AuthError::BearerUnsupported | AuthError::Token(_))
    }

    /// A stable reason for the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::UnknownKey => "unknown_key",
            AuthError::ExpiredKey(_) => "expired_key",
            AuthError::BearerUnsupported => "bearer_unsupported",
            AuthError::Token(f) => f.reason,
            AuthError::UnsupportedScheme => "unsupported_scheme",
            AuthError::KeysFile { .. } => "keys_file",
            AuthError::KeyFile { .. } => "key_file",
            AuthError::RevocationsFile { .. } => "revocations_file",
            AuthError::Sign(_) => "sign",
            AuthError::CertificateWithoutIdentity => "certificate_without_identity",
        }
    }

    /// The kind of credential that was presented, for the audit log.
    pub fn credential(&self) -> &'static str {
        match self {
            AuthError::Missing => "none",
            AuthError::UnknownKey | AuthError::ExpiredKey(_) => "api_key",
            AuthError::BearerUnsupported | AuthError::Token(_) => "bearer",
            AuthError::UnsupportedScheme => "other",
            AuthError::CertificateWithoutIdentity => "certificate",
            _ => "none",
        }
    }

    /// Key id, token kid and sub when known (never a secret), for the audit log.
    pub fn identifiers(&self) -> serde_json::Value {
        match self {
            AuthError::ExpiredKey(id) => serde_json::json!({ "key_id": id }),
            AuthError::Token(f) => serde_json::json!({ "kid": f.kid, "sub": f.sub }),
            _ => serde_json::Value::Null,
        }
    }
}

/// Why a token was refused: a stable audit reason (`expired`, `bad_signature`,
/// `unknown_kid`, `revoked`, `wrong_audience`, ...) and the `kid`/`sub` when they could be
/// read. Never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFailure {
    pub reason: &'static str,
    pub kid: Option<String>,
    pub sub: Option<String>,
}

impl TokenFailure {
    pub fn new(reason: &'static str) -> Self {
        TokenFailure {
            reason,
            kid: None,
            sub: None,
        }
    }
}

/// How a principal proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ApiKey,
    /// An Ed25519 bearer token (`id` is its `sub`).
    Token,
    /// A client certificate verified against the device CA.
    Certificate,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key id, token `sub` or certificate identity. Never a secret.
    pub id: String,
    pub method: Method,
    pub scopes: Vec<String>,
    /// The OAuth client a token was issued to (its `client_id` claim), for per-client
    /// rate limits.
    pub client: Option<String>,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Inference or metadata on one model: `predict` or `predict:<model>`.
    Predict(&'a str),
    Metrics,
    Admin,
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Predict(model) => write!(f, "predict:{model}"),
            Scope::Metrics => f.write_str("metrics"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

impl Principal {
    /// Whether the principal holds `scope` (`admin` holds every scope).
    pub fn allows(&self, scope: Scope<'_>) -> bool {
        self.scopes.iter().any(|s| match (s.as_str(), scope) {
            ("admin", _) => true,
            ("predict", Scope::Predict(_)) => true,
            ("metrics", Scope::Metrics) => true,
            (s, Scope::Predict(model)) => s.strip_prefix("predict:") == Some(model),
            _ => false,
        })
    }
}

/// Checks credentials. Built once at start, shared by the workers; its files reload.
pub struct Authenticator {
    keys: Watched<KeyRing>,
    tokens: Option<Watched<TokenVerifier>>,
    /// Scopes of certificate principals, when mTLS is configured.
    certificate_scopes: Option<Vec<String>>,
    pub clock: Clock,
}

impl Authenticator {
    /// Loads keys, token keys and revocations as configured; an error names the file.
    pub fn load(config: &Config, clock: Clock) -> Result<Authenticator, AuthError> {
        let keys_path = config.auth.api_keys_file.clone();
        let keys = Watched::new(
            "API keys",
            vec![keys_path.clone()],
            Box::new(move || KeyRing::load(&keys_path)),
        )?;
        let tokens = match config.auth.tokens.clone() {
            None => None,
            Some(t) => {
                let mut paths = vec![t.keys_dir.clone()];
                paths.extend(t.revocations_file.clone());
                let load = move || {
                    let keys = TrustedKeys::load_dir(&t.keys_dir)?;
                    let revocations = match &t.revocations_file {
                        Some(path) => Revocations::load(path)?,
                        None => Revocations::empty(),
                    };
                    let policy = TokenPolicy {
                        issuer: t.issuer.clone(),
                        audience: t.audience.clone(),
                        leeway: t.leeway,
                        max_token_bytes: t.max_token_bytes,
                    };
                    Ok(TokenVerifier::new(keys, policy, revocations))
                };
                Some(Watched::new(
                    "token keys and revocations",
                    paths,
                    Box::new(load),
                )?)
            }
        };
        let certificate_scopes = config
            .tls
            .as_ref()
            .and_then(|t| t.client.as_ref())
            .map(|c| c.scopes.clone());
        Ok(Authenticator {
            keys,
            tokens,
            certificate_scopes,
            clock,
        })
    }

    /// Finds the caller's principal: `X-API-Key`, else `Authorization: Bearer`, else a
    /// verified client certificate.
    pub fn authenticate(&self, req: &Request) -> Result<Principal, AuthError> {
        if let Some(key) = req.header("x-api-key") {
            return self.keys.get().verify(key.trim(), self.clock.now());
        }
        match req.header("authorization") {
            // Bytes, not str slicing: the value may hold any non-ASCII byte. The first seven
            // bytes are ASCII when they match, so index 7 is a char boundary.
            Some(v)
                if v.as_bytes()
                    .get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer ")) =>
            {
                let tokens = self.tokens.as_ref().ok_or(AuthError::BearerUnsupported)?;
                let now = self
                    .clock
                    .trusted_now()
                    .map_err(|_| AuthError::Token(TokenFailure::new("clock_untrusted")))?;
                tokens.get().verify(v[7..].trim(), now)
            }
            Some(_) => Err(AuthError::UnsupportedScheme),
            None => match (&req.conn.client_cert, &self.certificate_scopes) {
                (Some(der), Some(scopes)) => {
                    let id = mtls::identity(der).ok_or(AuthError::CertificateWithoutIdentity)?;
                    Ok(Principal {
                        id,
                        method: Method::Certificate,
                        scopes: scopes.clone(),
                        client: None,
                    })
                }
                _ => Err(AuthError::Missing),
            },
        }
    }

    /// The trusted token keys as a JWK set, when tokens are configured.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.tokens.as_ref().map(|t| t.get().jwks())
    }

    /// The auth files whose last reload failed (their previous contents stay in force),
    /// by name: `api_keys`, `token_keys_or_revocations`.
    pub fn reload_failures(&self) -> Vec<&'static str> {
        let mut failing = Vec::new();
        if self.keys.failure().is_some() {
            failing.push("api_keys");
        }
        if self.tokens.as_ref().is_some_and(|t| t.failure().is_some()) {
            failing.push("token_keys_or_revocations");
        }
        failing
    }

    /// Re-reads every auth file now (SIGHUP); a broken one keeps its old state.
    pub fn reload_now(&self) {
        self.keys.reload_now();
        if let Some(t) = &self.tokens {
            t.reload_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            id: "p".into(),
            method: Method::ApiKey,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client: None,
        }
    }

    #[test]
    fn scopes_grant_what_they_name() {
        assert!(principal(&["predict"]).allows(Scope::Predict("digits")));
        assert!(principal(&["predict:digits"]).allows(Scope::Predict("digits")));
        assert!(!principal(&["predict:digits"]).allows(Scope::Predict("sentiment")));
        assert!(!principal(&["predict"]).allows(Scope::Metrics));
        assert!(principal(&["admin"]).allows(Scope::Metrics));
        assert!(!principal(&["predict:"]).allows(Scope::Predict("digits")));
    }
}
