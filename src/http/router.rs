//! The router: one `match` from method and path to a handler. Authentication, scope checks,
//! panic-free error rendering and the access/audit log happen here once, never in handlers.

use super::error::ApiError;
use super::handlers;
use super::request::Request;
use super::response::Response;
use crate::App;
use crate::auth::{Principal, Scope};
use std::time::Instant;

/// A resolved route, borrowing names from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Predict,
    Infer {
        model: &'a str,
        version: Option<&'a str>,
    },
    ModelMetadata {
        model: &'a str,
        version: Option<&'a str>,
    },
    ModelReady {
        model: &'a str,
        version: Option<&'a str>,
    },
    ServerMetadata,
    Live,
    Ready,
    Healthz,
    Readyz,
    Token,
    Jwks,
}

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

impl<'a> Route<'a> {
    /// Finds the route for a path and the methods it takes.
    pub fn resolve(path: &'a str) -> Option<(Route<'a>, &'static str)> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let model_route = |model: &'a str, version: Option<&'a str>, rest: &[&str]| match rest {
            [] => Some((Route::ModelMetadata { model, version }, GET)),
            ["ready"] => Some((Route::ModelReady { model, version }, GET)),
            ["infer"] => Some((Route::Infer { model, version }, POST)),
            _ => None,
        };
        match segments.as_slice() {
            ["predict"] => Some((Route::Predict, POST)),
            ["v2"] => Some((Route::ServerMetadata, GET)),
            ["v2", "health", "live"] => Some((Route::Live, GET)),
            ["v2", "health", "ready"] => Some((Route::Ready, GET)),
            ["healthz"] => Some((Route::Healthz, GET)),
            ["readyz"] => Some((Route::Readyz, GET)),
            ["token"] => Some((Route::Token, POST)),
            [".well-known", "jwks.json"] => Some((Route::Jwks, GET)),
            ["v2", "models", model, "versions", version, rest @ ..]
                if !model.is_empty() && !version.is_empty() =>
            {
                model_route(model, Some(version), rest)
            }
            ["v2", "models", model, rest @ ..] if !model.is_empty() => {
                model_route(model, None, rest)
            }
            _ => None,
        }
    }

    /// The scope this route needs, or `None` for open routes. `/predict` names its model in
    /// the body, so its scope is checked once the handler knows the model.
    fn scope(self) -> Option<Scope<'a>> {
        match self {
            Route::Infer { model, .. }
            | Route::ModelMetadata { model, .. }
            | Route::ModelReady { model, .. } => Some(Scope::Predict(model)),
            Route::Predict => Some(Scope::Predict("")),
            // /token authenticates its client itself (client secret, RFC 6749 §2.3).
            Route::ServerMetadata
            | Route::Live
            | Route::Ready
            | Route::Healthz
            | Route::Readyz
            | Route::Token
            | Route::Jwks => None,
        }
    }

    /// A low-cardinality label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Route::Predict => "/predict",
            Route::Infer { .. } => "/v2/models/infer",
            Route::ModelMetadata { .. } => "/v2/models",
            Route::ModelReady { .. } => "/v2/models/ready",
            Route::ServerMetadata => "/v2",
            Route::Live => "/v2/health/live",
            Route::Ready => "/v2/health/ready",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Token => "/token",
            Route::Jwks => "/.well-known/jwks.json",
        }
    }
}

/// The server's `Handler`: the router with the app it routes into.
pub struct Router {
    pub app: std::sync::Arc<App>,
}

impl crate::http::Handler for Router {
    fn admit(&self, head: &Request) -> Option<Response> {
        let started = Instant::now();
        let error = authorize(&self.app, head).err()?;
        let response = error.into_response();
        access_log(&self.app, head, &response, None, started);
        Some(response)
    }

    fn handle(&self, req: &Request) -> Response {
        route(&self.app, req)
    }
}

/// Answers one request.
pub fn route(app: &App, req: &Request) -> Response {
    let started = Instant::now();
    let mut who: Option<Principal> = None;
    let response = dispatch(app, req, &mut who).unwrap_or_else(ApiError::into_response);
    access_log(app, req, &response, who.as_ref(), started);
    response
}

fn access_log(
    app: &App,
    req: &Request,
    response: &Response,
    who: Option<&Principal>,
    started: Instant,
) {
    if app.log.access {
        log::info!(
            target: "inferd::access",
            "{} {} {} {}us peer={} principal={}",
            req.method,
            req.path,
            response.status(),
            started.elapsed().as_micros(),
            req.conn.peer,
            who.map_or("-", |p| p.id.as_str())
        );
    }
}

/// What `authorize` let through.
enum Admitted<'a> {
    /// `OPTIONS`: answered with the path's methods, no credentials needed.
    Options(&'static str),
    Route(Route<'a>, Option<Principal>),
}

/// Everything decided from the head: route (404), method (405), body encoding (415),
/// credentials (401) and path-scoped permission (403). Run before the body is read, and
/// again (cheaply: one SHA-256) when the request is dispatched.
fn authorize<'a>(app: &App, req: &'a Request) -> Result<Admitted<'a>, ApiError> {
    let (route, allow) = Route::resolve(&req.path)
        .ok_or_else(|| ApiError::NotFound(format!("no route {}", req.path)))?;
    let method = req.method.as_str();
    if method == "OPTIONS" {
        return Ok(Admitted::Options(allow));
    }
    if !allow.split(", ").any(|m| m == method) {
        return Err(ApiError::MethodNotAllowed { allow });
    }
    if req
        .header("content-encoding")
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
    {
        return Err(ApiError::UnsupportedEncoding);
    }
    let Some(scope) = route.scope() else {
        return Ok(Admitted::Route(route, None));
    };
    let principal = app
        .auth
        .authenticate(req)
        .inspect_err(|e| audit_event(app, req, e.credential(), e.reason(), e.identifiers()))?;
    if !matches!(scope, Scope::Predict("")) && !principal.allows(scope) {
        audit_scope(app, req, &principal);
        return Err(ApiError::Forbidden(scope.to_string()));
    }
    Ok(Admitted::Route(route, Some(principal)))
}

fn dispatch(app: &App, req: &Request, who: &mut Option<Principal>) -> Result<Response, ApiError> {
    let route = match authorize(app, req)? {
        Admitted::Options(allow) => return Ok(Response::empty(204).with_header("allow", allow)),
        Admitted::Route(route, principal) => {
            *who = principal;
            route
        }
    };
    match route {
        Route::Predict => handlers::predict(app, req, who.as_ref()),
        Route::Infer { model, version } => handlers::infer(app, req, model, version),
        Route::ModelMetadata { model, version } => handlers::model_metadata(app, model, version),
        Route::ModelReady { model, version } => handlers::model_ready(app, model, version),
        Route::ServerMetadata => Ok(handlers::server_metadata()),
        Route::Live | Route::Ready => Ok(Response::empty(200)),
        Route::Healthz => Ok(Response::json(200, &serde_json::json!({ "status": "ok" }))),
        Route::Readyz => Ok(handlers::readyz(app)),
        Route::Token => handlers::token(app, req),
        Route::Jwks => handlers::jwks(app),
    }
}

/// One JSON line per refused authentication or authorisation, on its own log target: time,
/// peer, route, credential kind, the key id / kid / sub when known, and a stable reason.
/// Never the credential itself.
pub(crate) fn audit_event(
    app: &App,
    req: &Request,
    credential: &str,
    reason: &str,
    ids: serde_json::Value,
) {
    if app.log.audit {
        let mut line = serde_json::json!({
            "time": httpdate::fmt_http_date(std::time::SystemTime::now()),
            "event": "auth_failure",
            "reason": reason,
            "credential": credential,
            "peer": req.conn.peer.to_string(),
            "method": req.method,
            "route": Route::resolve(&req.path).map_or("-", |(r, _)| r.label()),
        });
        if let (Some(line), serde_json::Value::Object(ids)) = (line.as_object_mut(), ids) {
            line.extend(ids.into_iter().filter(|(_, v)| !v.is_null()));
        }
        log::warn!(target: "inferd::audit", "{line}");
    }
}

/// Audits a valid credential that lacks the route's scope.
pub(crate) fn audit_scope(app: &App, req: &Request, who: &Principal) {
    let credential = match who.method {
        crate::auth::Method::ApiKey => "api_key",
        crate::auth::Method::Token => "bearer",
        crate::auth::Method::Certificate => "certificate",
    };
    audit_event(
        app,
        req,
        credential,
        "insufficient_scope",
        serde_json::json!({ "principal": who.id }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_route_shape() {
        assert_eq!(Route::resolve("/predict"), Some((Route::Predict, POST)));
        assert_eq!(
            Route::resolve("/v2/models/digits/versions/1/infer"),
            Some((
                Route::Infer {
                    model: "digits",
                    version: Some("1")
                },
                POST
            ))
        );
        assert_eq!(
            Route::resolve("/v2/models/digits"),
            Some((
                Route::ModelMetadata {
                    model: "digits",
                    version: None
                },
                GET
            ))
        );
        assert_eq!(
            Route::resolve("/v2/models/digits/ready").map(|r| r.1),
            Some(GET)
        );
        assert_eq!(
            Route::resolve("/v2/health/ready"),
            Some((Route::Ready, GET))
        );
        assert_eq!(Route::resolve("/v2/models//infer"), None);
        assert_eq!(Route::resolve("/v2/models/digits/versions//infer"), None);
        assert_eq!(Route::resolve("/nope"), None);
        assert_eq!(Route::resolve("*"), None);
    }

    #[test]
    fn open_routes_need_no_scope() {
        for path in [
            "/v2",
            "/v2/health/live",
            "/v2/health/ready",
            "/healthz",
            "/readyz",
        ] {
            assert_eq!(Route::resolve(path).unwrap().0.scope(), None, "{path}");
        }
        assert!(
            Route::resolve("/v2/models/x/infer")
                .unwrap()
                .0
                .scope()
                .is_some()
        );
    }
}
