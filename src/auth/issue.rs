//! The OAuth2 client credentials grant (RFC 6749 §4.4) behind `POST /token`: a known client
//! with the right secret gets a short-lived EdDSA token, signed with the device's key, for
//! the scopes it asked for (all it may have when it asked for none).

use super::client::Clients;
use super::jwt::{Claims, TokenSigner};
use super::watch::Watched;
use super::{AuthError, clock::Clock};
use crate::config::IssuingConfig;
use std::time::Duration;

/// Why a grant was refused, as RFC 6749 §5.2 names it.
#[derive(Debug, PartialEq, Eq)]
pub enum GrantError {
    /// Missing or repeated parameter, or two client authentication methods.
    InvalidRequest(String),
    /// Unknown client or wrong secret; `basic` when the client used HTTP Basic.
    InvalidClient { basic: bool },
    /// A scope the client may not have.
    InvalidScope(String),
    /// Any grant type other than client_credentials.
    UnsupportedGrantType,
    /// The device cannot issue now (its clock is untrusted, signing failed).
    Unavailable(String),
}

/// A granted access token (RFC 6749 §5.1).
#[derive(Debug, serde::Serialize)]
pub struct Grant {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

/// Issues tokens; present only when `signing_key` is configured.
pub struct TokenIssuer {
    signer: TokenSigner,
    clients: Watched<Clients>,
    ttl: Duration,
    issuer: Option<String>,
    audience: Option<String>,
}

/// The largest `POST /token` body taken: a client-credentials form is under 1 KiB.
pub const MAX_FORM_BYTES: usize = 4096;

/// The most form parameters a `POST /token` body may carry (it needs at most four).
pub const MAX_FORM_PAIRS: usize = 32;

/// The parameters of a client credentials request (RFC 6749 §4.4.2, §2.3.1).
const KNOWN: [&str; 4] = ["grant_type", "client_id", "client_secret", "scope"];

/// Parses a `POST /token` form body in bounded memory: at most `MAX_FORM_BYTES` and
/// `MAX_FORM_PAIRS` pairs; only the parameters the grant reads are kept (RFC 6749 §3.1:
/// others are ignored), each a copy of at most the body's bytes.
pub fn form_params(body: &[u8]) -> Result<Vec<(String, String)>, GrantError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(GrantError::InvalidRequest(format!(
            "form body over {MAX_FORM_BYTES} bytes"
        )));
    }
    let mut kept = Vec::new();
    for (i, (name, value)) in form_urlencoded::parse(body).enumerate() {
        if i == MAX_FORM_PAIRS {
            return Err(GrantError::InvalidRequest(format!(
                "more than {MAX_FORM_PAIRS} form parameters"
            )));
        }
        if KNOWN.contains(&name.as_ref()) {
            kept.push((name.into_owned(), value.into_owned()));
        }
    }
    Ok(kept)
}

/// Client credentials as presented: from HTTP Basic, or from the form body.
pub struct ClientAuth {
    pub id: String,
    pub secret: String,
    pub basic: bool,
}

impl TokenIssuer {
    pub fn load(config: &IssuingConfig) -> Result<TokenIssuer, AuthError> {
        let signer = TokenSigner::load(&config.signing_key)?;
        let path = config.clients_file.clone();
        let clients = Watched::new(
            "OAuth clients",
            vec![path.clone()],
            Box::new(move || Clients::load(&path)),
        )?;
        Ok(TokenIssuer {
            signer,
            clients,
            ttl: config.ttl,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    /// Whether the last reload of the clients file failed (its previous contents stay in
    /// force).
    pub fn reload_failing(&self) -> bool {
        self.clients.failure().is_some()
    }

    /// Decides a client credentials request. `form` holds the body's parameters in order;
    /// `basic` the credentials from an `Authorization: Basic` header.
    pub fn grant(
        &self,
        form: &[(String, String)],
        basic: Option<ClientAuth>,
        clock: &Clock,
    ) -> Result<Grant, GrantError> {
        let grant_type = param(form, "grant_type")?
            .ok_or_else(|| GrantError::InvalidRequest("grant_type is required".into()))?;
        let client = client_auth(form, basic)?;
        let clients = self.clients.get();
        let allowed =
            clients
                .verify(&client.id, &client.secret)
                .ok_or(GrantError::InvalidClient {
                    basic: client.basic,
                })?;
        if grant_type != "client_credentials" {
            return Err(GrantError::UnsupportedGrantType);
        }
        let scopes = granted_scopes(param(form, "scope")?, allowed)?;
        let access_token = self.sign(client.id, scopes.clone(), clock)?;
        Ok(Grant {
            access_token,
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
            scope: scopes.join(" "),
        })
    }

    /// A token for `client` with `scopes`, from this device's policy and trusted clock.
    fn sign(
        &self,
        client: String,
        scopes: Vec<String>,
        clock: &Clock,
    ) -> Result<String, GrantError> {
        let unavailable = |e: &dyn std::fmt::Display| GrantError::Unavailable(e.to_string());
        let now = clock.trusted_now().map_err(GrantError::Unavailable)?;
        let jti = super::jwt::random_jti().map_err(|e| unavailable(&e))?;
        let claims = Claims {
            client_id: Some(client.clone()),
            sub: client,
            scopes,
            ttl: self.ttl,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            jti: Some(jti),
        };
        self.signer.sign(&claims, now).map_err(|e| unavailable(&e))
    }

    /// Re-reads the clients file now (SIGHUP).
    pub fn reload_now(&self) {
        self.clients.reload_now();
    }
}

/// A form parameter, at most once (RFC 6749 §3.1: parameters must not be repeated).
fn param<'f>(form: &'f [(String, String)], name: &str) -> Result<Option<&'f str>, GrantError> {
    let mut values = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(GrantError::InvalidRequest(format!(
            "parameter {name} repeated"
        )));
    }
    Ok(first)
}

/// The client's credentials, from Basic or from the body, never both (RFC 6749 §2.3.1).
fn client_auth(
    form: &[(String, String)],
    basic: Option<ClientAuth>,
) -> Result<ClientAuth, GrantError> {
    match (
        basic,
        param(form, "client_id")?,
        param(form, "client_secret")?,
    ) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(GrantError::InvalidRequest(
            "use one client authentication method, not two".into(),
        )),
        (Some(auth), None, None) => Ok(auth),
        (None, Some(id), Some(secret)) => Ok(ClientAuth {
            id: id.into(),
            secret: secret.into(),
            basic: false,
        }),
        (None, _, _) => Err(GrantError::InvalidClient { basic: false }),
    }
}

/// The scopes to grant: those requested, each allowed to the client, else all it may have.
fn granted_scopes(requested: Option<&str>, allowed: &[String]) -> Result<Vec<String>, GrantError> {
    let scopes: Vec<String> = match requested {
        None => allowed.to_vec(),
        Some(requested) => requested
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    if let Some(bad) = scopes.iter().find(|s| !allowed.contains(s)) {
        return Err(GrantError::InvalidScope(format!(
            "scope {bad} is not allowed for this client"
        )));
    }
    if scopes.is_empty() {
        return Err(GrantError::InvalidScope("no scope to grant".into()));
    }
    Ok(scopes)
}
