//! Who is calling, and may they: the `Authenticator` turns a request's credentials into a
//! `Principal` with scopes. API keys today; Ed25519 tokens and mTLS plug in here.

pub mod api_key;
pub mod jwt;

use crate::http::Request;
use api_key::KeyRing;

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
    /// The key id (later: token `sub`, certificate identity). Never a secret.
    pub id: String,
    pub method: Method,
    pub scopes: Vec<String>,
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

/// Checks credentials. Built once at start, shared read-only.
pub struct Authenticator {
    keys: KeyRing,
}

impl Authenticator {
    pub fn new(keys: KeyRing) -> Self {
        Authenticator { keys }
    }

    /// Finds the caller's principal from `X-API-Key` or `Authorization`.
    pub fn authenticate(&self, req: &Request) -> Result<Principal, AuthError> {
        if let Some(key) = req.header("x-api-key") {
            return self.keys.verify(key.trim(), std::time::SystemTime::now());
        }
        match req.header("authorization") {
            None => Err(AuthError::Missing),
            // Bytes, not str slicing: the value may hold any non-ASCII byte.
            Some(v)
                if v.as_bytes()
                    .get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer ")) =>
            {
                Err(AuthError::BearerUnsupported)
            }
            Some(_) => Err(AuthError::UnsupportedScheme),
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
