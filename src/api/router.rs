//! The router: inferd's `Handler`. From a request's head it resolves the route once and
//! decides once — `OPTIONS` and CORS preflights, method, body encoding, rate limits,
//! credentials, scope — then one `match` dispatches the whole request to its handler.
//! Rate-limit fields, CORS, failed-authentication accounting, metrics and the access line
//! happen here for every answer, never in handlers.

use super::admission::Admission;
use super::audit::{self, Origin};
use super::cors::Cors;
use super::error::ApiError;
use super::forwarded;
use super::handlers;
use super::route::{Route, UNMATCHED};
use crate::auth::Scope;
use crate::http::{Handler, Request, Response, Verdict};
use crate::limiter::{RateLimited, Standing};
use crate::{App, Appliance};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's `Handler`: the router with the appliance whose current app it routes into.
pub struct Router {
    pub appliance: Arc<Appliance>,
}

/// A request the router let through from its head, for the handling of the whole request.
pub struct Admitted {
    /// The app the head was admitted with: a reload in between does not change it.
    app: Arc<App>,
    route: Route,
    who: Admission,
}

impl Handler for Router {
    type Admitted = Admitted;

    fn admit(&self, head: &Request) -> Verdict<Admitted> {
        let started = Instant::now();
        let Some(app) = self.appliance.app() else {
            return Verdict::Answer(self.starting(head, started));
        };
        let client = forwarded::client_addr(head, &app.trusted_proxies, app.proxy_header);
        let resolved = Route::resolve(&head.path);
        let at = Origin {
            req: head,
            client,
            route: resolved.as_ref().map(|(r, _)| r.label()),
        };
        let (response, standing) = match authorize(&app, at, resolved) {
            Ok(Decision::Proceed(route, who)) => {
                let max_body = route.max_body();
                let admitted = Admitted { app, route, who };
                return Verdict::Proceed { max_body, admitted };
            }
            Ok(Decision::Answer(response, standing)) => (response, standing),
            Err(e) => (e.into_response(), None),
        };
        let response = finish(&app, at, response, standing.as_ref());
        audit::record(&app, at, &response, None, started);
        Verdict::Answer(response)
    }

    fn handle(&self, req: &Request, admitted: Admitted) -> Response {
        let started = Instant::now();
        let Admitted {
            app,
            route,
            mut who,
        } = admitted;
        let response =
            dispatch(&app, req, &route, &mut who).unwrap_or_else(ApiError::into_response);
        let at = who.origin(req);
        let response = finish(&app, at, response, who.standing.as_ref());
        audit::record(&app, at, &response, who.principal.as_ref(), started);
        response
    }

    fn is_proxy(&self, peer: IpAddr) -> bool {
        self.appliance
            .app()
            .is_some_and(|app| forwarded::is_trusted(peer, &app.trusted_proxies))
    }

    fn admit_connection(&self, peer: IpAddr) -> bool {
        let Some(app) = self.appliance.app() else {
            return true;
        };
        match app.limiter.check_connection(peer) {
            Ok(_) => true,
            Err(limited) => {
                app.metrics
                    .rate_limited(limited.standing.policy, limited.reason);
                false
            }
        }
    }

    fn forwarded_client(&self, head: &Request) -> Option<IpAddr> {
        let app = self.appliance.app()?;
        let client = forwarded::client_addr(head, &app.trusted_proxies, app.proxy_header);
        (client != head.conn.peer.ip()).then_some(client)
    }

    fn connection_opened(&self) {
        self.appliance.metrics.connection_opened();
    }

    fn connection_closed(&self) {
        self.appliance.metrics.connection_closed();
    }

    fn connection_evicted(&self, per_address: bool) {
        self.appliance.metrics.connection_evicted(per_address);
    }

    fn handshake_failed(&self) {
        self.appliance.metrics.tls_handshake_failed();
    }

    fn refused(&self, status: u16, peer: SocketAddr, reason: &str) {
        let metrics = &self.appliance.metrics;
        if status != 0 {
            metrics.request("-", status, Duration::ZERO);
        }
        if let Some(n) = audit::admit_line(&self.appliance.log_budget, metrics) {
            log::info!(
                target: "inferd::access",
                "- - {status} peer={peer} principal=- ({reason}){}",
                audit::suppressed_note(n)
            );
        }
    }
}

impl Router {
    /// Answers while the first app loads: alive, not ready, nothing else yet.
    fn starting(&self, req: &Request, started: Instant) -> Response {
        let route = Route::resolve(&req.path).map(|(r, _)| r);
        let response = match route {
            Some(Route::Live) => Response::empty(200),
            Some(Route::Healthz) => Response::json(200, &serde_json::json!({ "status": "ok" })),
            Some(Route::Ready) => Response::empty(503).with_header("retry-after", "5"),
            Some(Route::Readyz) => Response::json(
                503,
                &serde_json::json!({ "ready": false, "reason": "loading and warming up models" }),
            )
            .with_header("retry-after", "5"),
            _ => ApiError::Starting.into_response(),
        };
        self.appliance.metrics.request(
            route.as_ref().map_or(UNMATCHED, Route::label),
            response.status(),
            started.elapsed(),
        );
        response
    }
}

/// What `authorize` let through.
enum Decision {
    /// Answered from the head alone (`OPTIONS`, CORS preflights).
    Answer(Response, Option<Standing>),
    /// Read the route's body, then dispatch.
    Proceed(Route, Admission),
}

/// Everything decided from the head: route (404), `OPTIONS` and CORS preflights, method
/// (405), body encoding (415), rate limits (429), credentials (401) and path-scoped
/// permission (403). Runs before the body is read.
fn authorize(
    app: &App,
    at: Origin,
    resolved: Option<(Route, &'static str)>,
) -> Result<Decision, ApiError> {
    let req = at.req;
    let limited = |l: RateLimited| audit::limited_error(app, at, l);
    let (route, allow) =
        resolved.ok_or_else(|| ApiError::NotFound(format!("no route {}", req.path)))?;
    let method = req.method.as_str();
    if method == "OPTIONS" {
        let standing = app.limiter.check_anonymous(at.client).map_err(limited)?;
        return Ok(Decision::Answer(options(app, req, allow), standing));
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
    let label = route.label();
    let admitted = |principal, standing| Admission {
        principal,
        client: at.client,
        route: label,
        standing,
    };
    let Some(scope) = route.scope() else {
        let standing = open_standing(app, &route, at.client).map_err(limited)?;
        return Ok(Decision::Proceed(route, admitted(None, standing)));
    };
    let principal = authenticate(app, at)?;
    if !matches!(scope, Scope::Predict("")) && !principal.allows(scope) {
        audit::audit_scope(app, at, &principal);
        return Err(ApiError::Forbidden(scope.to_string()));
    }
    let standing = app.limiter.check_principal(&principal).map_err(limited)?;
    Ok(Decision::Proceed(
        route,
        admitted(Some(principal), standing),
    ))
}

/// `OPTIONS`: a CORS preflight's answer, else the methods the route allows.
fn options(app: &App, req: &Request, allow: &str) -> Response {
    match Cors::is_preflight(req) {
        true => app.cors.preflight(req, allow),
        false => Response::empty(204).with_header("allow", allow),
    }
}

/// The rate limit of an open route: per address, `POST /token` by its own policy.
fn open_standing(
    app: &App,
    route: &Route,
    client: IpAddr,
) -> Result<Option<Standing>, RateLimited> {
    if *route == Route::Token {
        // Client secrets are credentials too: a spent failure budget bars them.
        app.limiter.check_barred(client)?;
        return app.limiter.check_token(client);
    }
    app.limiter.check_anonymous(client)
}

/// The caller's credentials, unless its address spent its failed-authentication budget;
/// every refusal is audited.
fn authenticate(app: &App, at: Origin) -> Result<crate::auth::Principal, ApiError> {
    if let Err(barred) = app.limiter.check_barred(at.client) {
        audit::audit_event(app, at, "-", "throttled", serde_json::Value::Null);
        return Err(audit::limited_error(app, at, barred));
    }
    let principal = app.auth.authenticate(at.req).inspect_err(|e| {
        audit::audit_event(app, at, e.credential(), e.reason(), e.identifiers())
    })?;
    Ok(principal)
}

fn dispatch(
    app: &App,
    req: &Request,
    route: &Route,
    who: &mut Admission,
) -> Result<Response, ApiError> {
    match route {
        Route::Predict => handlers::predict(app, req, who),
        Route::Infer(model) => handlers::infer(app, req, who, model),
        Route::ModelMetadata(model) => handlers::model_metadata(app, model),
        Route::ModelReady(model) => handlers::model_ready(app, model),
        Route::ModelStats(model) => handlers::stats(app, who, model.as_ref()),
        Route::ModelConfig(model) => handlers::config(app, model),
        Route::RepositoryIndex => handlers::repository::index(app, req),
        Route::RepositoryLoad(name) => handlers::repository::load(app, req, name),
        Route::RepositoryUnload(name) => handlers::repository::unload(app, req, name),
        Route::ServerMetadata => Ok(handlers::server_metadata()),
        Route::Live | Route::Ready => Ok(Response::empty(200)),
        Route::Healthz => Ok(Response::json(200, &serde_json::json!({ "status": "ok" }))),
        Route::Readyz => Ok(handlers::readyz(app)),
        Route::Token => handlers::token(app, req, who),
        Route::Jwks => handlers::jwks(app),
        Route::OpenApi => Ok(handlers::openapi()),
        Route::Metrics => Ok(handlers::metrics(app, req)),
    }
}

/// What every answer gets, refusals included: a failed authentication counts against the
/// client address (and turns into 429 once its budget is spent), rate-limit fields, CORS.
fn finish(app: &App, at: Origin, response: Response, standing: Option<&Standing>) -> Response {
    let response = if response.status() == 401 {
        match app.limiter.record_failure(at.client) {
            Ok(()) => response,
            Err(limited) => audit::limited_error(app, at, limited).into_response(),
        }
    } else {
        response
    };
    let response = match standing {
        Some(s) if response.header("ratelimit").is_none() => response
            .with_header("ratelimit-policy", s.policy_header())
            .with_header("ratelimit", s.header()),
        _ => response,
    };
    if Cors::is_preflight(at.req) {
        response
    } else {
        app.cors.decorate(at.req, response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ConnInfo;

    #[test]
    fn while_loading_alive_but_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::from_sources(
            "[tls]\nenabled = false\n[models]\ndir = \"m\"\n[auth]\napi_keys_file = \"k\"\n",
            "test",
            dir.path(),
            |_| None,
        )
        .unwrap();
        let router = Router {
            appliance: Arc::new(Appliance::loading(&config, None)),
        };
        let conn = ConnInfo {
            peer: "127.0.0.1:9".parse().unwrap(),
            tls: false,
            client_cert: None,
        };
        for (method, path, status) in [
            ("GET", "/v2/health/live", 200),
            ("GET", "/healthz", 200),
            ("GET", "/v2/health/ready", 503),
            ("GET", "/readyz", 503),
            ("POST", "/predict", 503),
            ("GET", "/metrics", 503),
        ] {
            let req = Request::new(method, path, Vec::new(), Vec::new(), conn.clone());
            let r = match router.admit(&req) {
                Verdict::Answer(r) => r,
                Verdict::Proceed { admitted, .. } => router.handle(&req, admitted),
            };
            assert_eq!(r.status(), status, "{method} {path}");
        }
    }
}
