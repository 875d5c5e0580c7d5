//! `POST /token` (OAuth2 client credentials, RFC 6749 §4.4) and
//! `GET /.well-known/jwks.json` (the token keys this device trusts, RFC 7517/8037).

use crate::App;
use crate::api::admission::Admission;
use crate::api::audit;
use crate::api::error::ApiError;
use crate::auth::issue::{ClientAuth, GrantError};
use crate::http::{Request, Response};
use ct_codecs::{Base64, Decoder};
use percent_encoding::percent_decode_str;
use serde_json::Value;

fn oauth(
    status: u16,
    error: &'static str,
    description: impl Into<String>,
    basic_challenge: bool,
) -> ApiError {
    ApiError::OAuth {
        status,
        error,
        description: description.into(),
        basic_challenge,
    }
}

/// Client id and secret from `Authorization: Basic`, each form-encoded (RFC 6749 §2.3.1).
fn basic_credentials(req: &Request) -> Result<Option<ClientAuth>, ApiError> {
    let Some(value) = req.header("authorization") else {
        return Ok(None);
    };
    let bad = || oauth(400, "invalid_request", "malformed Basic credentials", false);
    let Some(encoded) = value
        .as_bytes()
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case(b"basic "))
        .map(|_| value[6..].trim())
    else {
        return Err(oauth(
            400,
            "invalid_request",
            "client authentication must be HTTP Basic or in the body",
            false,
        ));
    };
    let mut buf = vec![0u8; encoded.len()];
    let decoded = Base64::decode(&mut buf, encoded.as_bytes(), None).map_err(|_| bad())?;
    let text = std::str::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    Ok(Some(ClientAuth {
        id: decode(id)?,
        secret: decode(secret)?,
        basic: true,
    }))
}

/// `POST /token`: client credentials grant. Errors in RFC 6749 §5.2 form; never cached.
pub fn token(app: &App, req: &Request, who: &Admission) -> Result<Response, ApiError> {
    let Some(issuer) = &app.issuer else {
        return Err(ApiError::NotFound(
            "this device issues no tokens (no signing_key configured)".into(),
        ));
    };
    if req.media_type().as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(oauth(
            400,
            "invalid_request",
            "send application/x-www-form-urlencoded",
            false,
        ));
    }
    let basic = basic_credentials(req)?;
    let granted = crate::auth::issue::form_params(&req.body)
        .and_then(|form| issuer.grant(&form, basic, &app.auth.clock));
    match granted {
        Ok(grant) => Ok(Response::json(200, &grant)
            .with_header("cache-control", "no-store")
            .with_header("pragma", "no-cache")),
        Err(e) => {
            let refusal = refusal(e);
            let at = who.origin(req);
            audit::audit_event(app, at, "client_secret", refusal.code(), Value::Null);
            Err(refusal)
        }
    }
}

/// A refused grant in RFC 6749 §5.2 form.
fn refusal(e: GrantError) -> ApiError {
    match e {
        GrantError::InvalidRequest(d) => oauth(400, "invalid_request", d, false),
        GrantError::InvalidClient { basic } => oauth(
            401,
            "invalid_client",
            format!(
                "client authentication failed{}",
                if basic { " (Basic)" } else { "" }
            ),
            true,
        ),
        GrantError::InvalidScope(d) => oauth(400, "invalid_scope", d, false),
        GrantError::UnsupportedGrantType => oauth(
            400,
            "unsupported_grant_type",
            "only client_credentials is supported",
            false,
        ),
        GrantError::Unavailable(d) => oauth(503, "temporarily_unavailable", d, false),
    }
}

/// `GET /.well-known/jwks.json`: the Ed25519 public keys this device trusts.
pub fn jwks(app: &App) -> Result<Response, ApiError> {
    let set = app.auth.jwks().ok_or_else(|| {
        ApiError::NotFound("this device verifies no tokens (no jwt_keys_dir configured)".into())
    })?;
    Ok(Response::json(200, &set).with_header("cache-control", "max-age=300"))
}
