//! `ApiError`: the one place that maps inferd's errors to HTTP statuses. Auth, limiter and
//! model errors (and the HTTP layer's own refusals) all become an `ApiError`, which renders
//! the JSON body `{"error": "<message>", "code": "<stable_snake_case>"}`.

use crate::auth::AuthError;
use crate::http::{HttpError, Response, error_response};
use crate::limiter::RateLimited;
use crate::model::ModelError;

/// An error answer to a request; `into_response` renders it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// No route, model or version by that name.
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not for this method; `Allow` lists the ones it takes.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// Missing or invalid credentials. Detail goes to the audit log, never to the client.
    #[error("unauthorized")]
    Unauthorized { bearer: bool },
    /// Valid credentials without the scope this route needs.
    #[error("forbidden: missing scope {0}")]
    Forbidden(String),
    /// A body that is not JSON by its Content-Type.
    #[error("unsupported media type: send application/json")]
    UnsupportedMediaType,
    /// A compressed body (`Content-Encoding` other than identity), which we do not inflate.
    #[error("unsupported Content-Encoding: send the body uncompressed")]
    UnsupportedEncoding,
    /// The body is not well-formed JSON, or not the shape of request this route takes.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Tensor data that contradicts its own declared shape or framing.
    #[error("{message}")]
    BadInput { code: &'static str, message: String },
    /// Well-formed input the model cannot take (datatype, shape, value, text length).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// Inference could not start in time (queue full, or the wait ran out); retry in
    /// `retry_after` seconds.
    #[error("server busy, retry in {retry_after} s")]
    Overloaded { retry_after: u32 },
    /// The appliance is still loading its models (the port opens before they are ready).
    #[error("starting: models are loading, retry shortly")]
    Starting,
    /// A rate limit was reached: per principal, per address, or failed authentications.
    #[error("rate limit reached, retry in {} s", .0.retry_after_secs())]
    RateLimited(Box<RateLimited>),
    /// An OAuth2 token endpoint error (RFC 6749 §5.2), rendered in that RFC's shape.
    #[error("{description}")]
    OAuth {
        status: u16,
        error: &'static str,
        description: String,
        /// Answer `WWW-Authenticate: Basic` (every `invalid_client`, whichever way the
        /// client sent its credentials: RFC 6749 §5.2 allows it and it tells clients how).
        basic_challenge: bool,
    },
    /// A model in the repository folder could not be loaded (repository API, scope
    /// `admin`): what was serving still serves.
    #[error("{0}")]
    LoadFailed(String),
    /// Something failed on our side; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// Status code, stable error code and client-facing message.
    fn parts(&self) -> (u16, &'static str, String) {
        use ApiError as E;
        match self {
            E::Http(h) => {
                let (status, code) = h.status_and_code();
                (status, code, h.message())
            }
            E::NotFound(m) => (404, "not_found", m.clone()),
            E::MethodNotAllowed { .. } => (405, "method_not_allowed", self.to_string()),
            E::Unauthorized { .. } => (401, "unauthorized", self.to_string()),
            E::Forbidden(_) => (403, "insufficient_scope", self.to_string()),
            E::UnsupportedMediaType => (415, "unsupported_media_type", self.to_string()),
            E::UnsupportedEncoding => (415, "unsupported_content_encoding", self.to_string()),
            E::Malformed(m) => (400, "malformed_json", m.clone()),
            E::BadInput { code, message } => (400, code, message.clone()),
            E::Unprocessable { code, message } => (422, code, message.clone()),
            E::Overloaded { .. } => (503, "overloaded", self.to_string()),
            E::Starting => (503, "starting", self.to_string()),
            E::RateLimited(l) => match l.reason {
                "too_many_clients" => (
                    429,
                    "too_many_clients",
                    format!(
                        "too many clients for the rate limiter to track, retry in {} s",
                        l.retry_after_secs()
                    ),
                ),
                // Waiting would not help: the request alone costs more than the burst.
                "cost_exceeds_burst" => (
                    422,
                    "cost_exceeds_quota",
                    format!(
                        "this request costs more quota units than the \"{}\" policy's \
                         burst allows at once; send a smaller batch or shorter texts",
                        l.standing.policy
                    ),
                ),
                _ => (429, "rate_limited", self.to_string()),
            },
            E::OAuth {
                status,
                error,
                description,
                ..
            } => (*status, error, description.clone()),
            E::LoadFailed(m) => (409, "load_failed", m.clone()),
            E::Internal(_) => (500, "internal", "internal error".to_owned()),
        }
    }

    /// A repository load's error: unknown names stay 404; a model that fails to load is
    /// 409 with the reason (the caller is an admin, who needs it; the log has it too).
    pub fn load_failed(e: ModelError) -> ApiError {
        match e {
            ModelError::UnknownModel(_) | ModelError::UnknownVersion { .. } => e.into(),
            other => ApiError::LoadFailed(format!(
                "load failed, the versions serving before still serve: {other}"
            )),
        }
    }

    /// The stable error code (for OAuth errors, RFC 6749's `error`).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        self.parts().0
    }

    /// Renders the error as a JSON response with the headers its status calls for.
    pub fn into_response(self) -> Response {
        let this = match self {
            ApiError::Http(http) => return http.into_response(),
            other => other,
        };
        if let ApiError::Internal(detail) = &this {
            log::error!("internal error: {detail}");
        }
        let (status, code, message) = this.parts();
        if let ApiError::OAuth {
            basic_challenge, ..
        } = &this
        {
            // RFC 6749 §5.2: "error" is the code; never cached (§5.1).
            let body = serde_json::json!({ "error": code, "error_description": message });
            let response = Response::json(status, &body)
                .with_header("cache-control", "no-store")
                .with_header("pragma", "no-cache");
            return match basic_challenge {
                true => response.with_header(
                    "www-authenticate",
                    r#"Basic realm="inferd", charset="UTF-8""#,
                ),
                false => response,
            };
        }
        let response = error_response(status, code, &message);
        match this {
            ApiError::MethodNotAllowed { allow } => response.with_header("allow", allow),
            // RFC 6750 §3: a challenge on every 401; error="invalid_token" when a token was
            // presented. Auth failures are never cached.
            ApiError::Unauthorized { bearer } => response
                .with_header("cache-control", "no-store")
                .with_header(
                    "www-authenticate",
                    if bearer {
                        r#"Bearer realm="inferd", error="invalid_token""#
                    } else {
                        r#"Bearer realm="inferd""#
                    },
                ),
            ApiError::Forbidden(scope) => response.with_header(
                "www-authenticate",
                format!(r#"Bearer realm="inferd", error="insufficient_scope", scope="{scope}""#),
            ),
            ApiError::Overloaded { retry_after } => {
                response.with_header("retry-after", retry_after.to_string())
            }
            ApiError::Starting => response.with_header("retry-after", "5"),
            ApiError::RateLimited(limited) if limited.reason == "cost_exceeds_burst" => {
                response.with_header("ratelimit-policy", limited.standing.policy_header())
            }
            // draft-ietf-httpapi-ratelimit-headers: the policy and where the client stands.
            ApiError::RateLimited(limited) => response
                .with_header("retry-after", limited.retry_after_secs().to_string())
                .with_header("ratelimit-policy", limited.standing.policy_header())
                .with_header("ratelimit", limited.standing.header()),
            _ => response,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized {
            bearer: e.was_bearer(),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        use ModelError as M;
        let message = e.to_string();
        match e {
            M::UnknownModel(_) | M::UnknownVersion { .. } => ApiError::NotFound(message),
            M::Invalid { code, .. } => ApiError::BadInput { code, message },
            M::Input { code, .. } => ApiError::Unprocessable { code, message },
            M::Busy { retry_after } => ApiError::Overloaded { retry_after },
            M::Inference(_)
            | M::Load { .. }
            | M::Manifest { .. }
            | M::Tokenizer { .. }
            | M::Signature(_) => ApiError::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_detail() {
        let r = ApiError::Internal("secret path /etc/x".into()).into_response();
        assert_eq!(r.status(), 500);
        assert!(!String::from_utf8_lossy(r.body()).contains("/etc/x"));
    }

    #[test]
    fn each_error_has_its_status_and_headers() {
        assert_eq!(ApiError::from(HttpError::PayloadTooLarge).status(), 413);
        let r = ApiError::MethodNotAllowed { allow: "GET, HEAD" }.into_response();
        assert_eq!((r.status(), r.header("allow")), (405, Some("GET, HEAD")));
        let r = ApiError::Overloaded { retry_after: 1 }.into_response();
        assert_eq!((r.status(), r.header("retry-after")), (503, Some("1")));
        let r = ApiError::Unauthorized { bearer: true }.into_response();
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );
    }
}
