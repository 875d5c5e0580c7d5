//! The router: one `match` from method and path to a handler. Authentication, scope checks,
//! rate limits, CORS, error rendering and the access/audit log happen here once, never in
//! handlers.

use super::cors::Cors;
use super::error::ApiError;
use super::forwarded;
use super::handlers;
use super::request::Request;
use super::response::Response;
use super::server::Verdict;
use crate::auth::{Principal, Scope};
use crate::limiter::{RateLimited, Standing};
use crate::{App, Appliance};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
    OpenApi,
    Metrics,
}

/// Every route as `/openapi.json` writes it: path template and methods. A test holds this
/// list, `resolve` and the OpenAPI document to each other.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("/predict", POST),
    ("/v2/models/{name}/infer", POST),
    ("/v2/models/{name}/versions/{version}/infer", POST),
    ("/v2/models/{name}", GET),
    ("/v2/models/{name}/versions/{version}", GET),
    ("/v2/models/{name}/ready", GET),
    ("/v2/models/{name}/versions/{version}/ready", GET),
    ("/v2", GET),
    ("/v2/health/live", GET),
    ("/v2/health/ready", GET),
    ("/healthz", GET),
    ("/readyz", GET),
    ("/token", POST),
    ("/.well-known/jwks.json", GET),
    ("/openapi.json", GET),
    ("/metrics", GET),
];

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
            ["openapi.json"] => Some((Route::OpenApi, GET)),
            ["metrics"] => Some((Route::Metrics, GET)),
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
            Route::Metrics => Some(Scope::Metrics),
            Route::Predict => Some(Scope::Predict("")),
            // /token authenticates its client itself (client secret, RFC 6749 §2.3).
            Route::ServerMetadata
            | Route::Live
            | Route::Ready
            | Route::Healthz
            | Route::Readyz
            | Route::Token
            | Route::Jwks
            | Route::OpenApi => None,
        }
    }

    /// The largest body this route takes: none for every GET, a few KiB for `POST /token`
    /// (a client-credentials form is under 1 KiB, and the route is open), and for inference
    /// whatever `max_body_bytes` allows.
    fn max_body(self) -> usize {
        match self {
            Route::Predict | Route::Infer { .. } => usize::MAX,
            Route::Token => crate::auth::issue::MAX_FORM_BYTES,
            Route::ModelMetadata { .. }
            | Route::ModelReady { .. }
            | Route::ServerMetadata
            | Route::Live
            | Route::Ready
            | Route::Healthz
            | Route::Readyz
            | Route::Jwks
            | Route::OpenApi
            | Route::Metrics => 0,
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
            Route::OpenApi => "/openapi.json",
            Route::Metrics => "/metrics",
        }
    }
}

/// The server's `Handler`: the router with the appliance whose current app it routes into.
pub struct Router {
    pub appliance: Arc<Appliance>,
}

impl crate::http::Handler for Router {
    fn admit(&self, head: &mut Request) -> Verdict {
        let started = Instant::now();
        let Some(app) = self.appliance.app() else {
            return Verdict::Answer(self.starting(head, started));
        };
        let client = forwarded::client_addr(head, &app.trusted_proxies, app.proxy_header);
        let answer = match authorize(&app, head, client) {
            Ok(Decision::Proceed(mut admission, max_body)) => {
                admission.app = Some(app);
                head.admission = Some(admission);
                return Verdict::Proceed { max_body };
            }
            Ok(Decision::Answer(response, standing)) => {
                finish(&app, head, response, standing.as_ref(), client)
            }
            Err(e) => finish(&app, head, e.into_response(), None, client),
        };
        record(&app, head, &answer, None, client, started);
        Verdict::Answer(answer)
    }

    fn handle(&self, req: &Request) -> Response {
        // The app the head was admitted with: a reload in between does not change it.
        match req
            .admission
            .as_ref()
            .and_then(|a| a.app.clone())
            .or_else(|| self.appliance.app())
        {
            Some(app) => route(&app, req),
            None => self.starting(req, Instant::now()),
        }
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

    fn refused(&self, status: u16, peer: std::net::SocketAddr, reason: &str) {
        let metrics = &self.appliance.metrics;
        if status != 0 {
            metrics.request("-", status, std::time::Duration::ZERO);
        }
        if let Some(n) = admit_line(&self.appliance.log_budget, metrics) {
            log::info!(
                target: "inferd::access",
                "- - {status} peer={peer} principal=- ({reason}){}",
                suppressed_note(n)
            );
        }
    }
}

impl Router {
    /// Answers while the first app loads: alive, not ready, nothing else yet.
    fn starting(&self, req: &Request, started: Instant) -> Response {
        let route = Route::resolve(&req.path);
        let response = match route {
            Some((Route::Live, _)) => Response::empty(200),
            Some((Route::Healthz, _)) => {
                Response::json(200, &serde_json::json!({ "status": "ok" }))
            }
            Some((Route::Ready, _)) => Response::empty(503).with_header("retry-after", "5"),
            Some((Route::Readyz, _)) => Response::json(
                503,
                &serde_json::json!({ "ready": false, "reason": "loading and warming up models" }),
            )
            .with_header("retry-after", "5"),
            _ => ApiError::Starting.into_response(),
        };
        let label = route.map_or("unmatched", |(r, _)| r.label());
        self.appliance
            .metrics
            .request(label, response.status(), started.elapsed());
        response
    }
}

/// What the router decided from a request's head, for the handling of the whole request.
pub struct Admission {
    /// The app snapshot the request was admitted with (set by the router's `admit`).
    pub app: Option<Arc<App>>,
    /// The authenticated caller; `None` on open routes.
    pub principal: Option<Principal>,
    /// The client address (the peer, or what trusted proxies say).
    pub client: IpAddr,
    /// Where the caller stands against its rate limit, updated when a handler charges the
    /// request's cost; `None` when limits are off.
    pub standing: Mutex<Option<Standing>>,
}

impl Clone for Admission {
    fn clone(&self) -> Self {
        Admission {
            app: self.app.clone(),
            principal: self.principal.clone(),
            client: self.client,
            standing: Mutex::new(self.standing()),
        }
    }
}

impl Admission {
    fn new(principal: Option<Principal>, client: IpAddr, standing: Option<Standing>) -> Self {
        Admission {
            app: None,
            principal,
            client,
            standing: Mutex::new(standing),
        }
    }

    fn standing(&self) -> Option<Standing> {
        self.standing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Charges what the request costs (batch items, text length) beyond the one unit its
    /// admission took: 429 when the caller's quota cannot pay it now, 422 when it never
    /// could (more than the burst).
    pub fn charge(&self, app: &App, req: &Request, cost: u32) -> Result<(), ApiError> {
        let Some(who) = &self.principal else {
            return Ok(());
        };
        match app.limiter.charge_principal(who, cost) {
            Ok(Some(standing)) => {
                *self.standing.lock().unwrap_or_else(|p| p.into_inner()) = Some(standing);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(limited) => Err(limited_error(app, req, self.client, limited)),
        }
    }

    /// Checks a scope known only from the body (`/predict` names its model there), with
    /// the audit line a refusal gets.
    pub fn require(&self, app: &App, req: &Request, scope: Scope) -> Result<(), ApiError> {
        match &self.principal {
            Some(p) if p.allows(scope) => Ok(()),
            Some(p) => {
                audit_scope(app, req, self.client, p);
                Err(ApiError::Forbidden(scope.to_string()))
            }
            None => Err(ApiError::Forbidden(scope.to_string())),
        }
    }

    /// Who the request is for, as the inference pool's per-caller cap counts: the
    /// principal, else the client address.
    pub fn caller(&self) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        match &self.principal {
            Some(p) => hasher.hash_one((p.method as u8, p.id.as_str())),
            None => hasher.hash_one(self.client),
        }
    }
}

/// What `authorize` let through.
enum Decision {
    /// Answered from the head alone (`OPTIONS`, CORS preflights).
    Answer(Response, Option<Standing>),
    /// Read a body of at most this many bytes, then dispatch.
    Proceed(Admission, usize),
}

/// Answers one request whose head `admit` let through (or, for requests built by hand,
/// decides admission now).
pub fn route(app: &App, req: &Request) -> Response {
    let started = Instant::now();
    let client = req.admission.as_ref().map_or_else(
        || forwarded::client_addr(req, &app.trusted_proxies, app.proxy_header),
        |a| a.client,
    );
    let admitted = match &req.admission {
        Some(a) => Ok(Decision::Proceed(a.clone(), usize::MAX)),
        None => authorize(app, req, client),
    };
    let (response, admission) = match admitted {
        Ok(Decision::Proceed(a, _)) => (dispatch(app, req, &a), Some(a)),
        Ok(Decision::Answer(response, _)) => (Ok(response), None),
        Err(e) => (Err(e), None),
    };
    let response = response.unwrap_or_else(ApiError::into_response);
    let standing = admission.as_ref().and_then(Admission::standing);
    let response = finish(app, req, response, standing.as_ref(), client);
    let who = admission.as_ref().and_then(|a| a.principal.as_ref());
    record(app, req, &response, who, client, started);
    response
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("principal", &self.principal)
            .field("client", &self.client)
            .field("standing", &self.standing())
            .finish_non_exhaustive()
    }
}

/// What every answer gets, refusals included: a failed authentication counts against the
/// client address (and turns into 429 once its budget is spent), rate-limit fields, CORS.
fn finish(
    app: &App,
    req: &Request,
    response: Response,
    standing: Option<&Standing>,
    client: IpAddr,
) -> Response {
    let response = if response.status() == 401 {
        match app.limiter.record_failure(client) {
            Ok(()) => response,
            Err(limited) => limited_error(app, req, client, limited).into_response(),
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
    if Cors::is_preflight(req) {
        response
    } else {
        app.cors.decorate(req, response)
    }
}

/// A rate-limit refusal, counted by policy and reason. The limiter running out of room
/// for new clients (`too_many_clients`) is also logged: it means the device is tracking
/// more addresses or callers than `max_tracked_keys`, which an operator should hear of.
pub(crate) fn limited_error(
    app: &App,
    req: &Request,
    client: IpAddr,
    limited: RateLimited,
) -> ApiError {
    app.metrics
        .rate_limited(limited.standing.policy, limited.reason);
    if limited.reason == "too_many_clients"
        && let Some(suppressed) = budgeted(app)
    {
        log::warn!(
            "rate limit {}: max_tracked_keys reached, new client {client} ({} {}) refused \
             until quiet ones are purged{}",
            limited.standing.policy,
            req.method,
            req.path,
            suppressed_note(suppressed)
        );
    }
    ApiError::RateLimited(Box::new(limited))
}

/// Whether a line that a client without valid credentials caused may be logged now;
/// `Some(n)`: yes, and `n` such lines were dropped before it.
fn budgeted(app: &App) -> Option<u64> {
    admit_line(&app.log_budget, &app.metrics)
}

/// `budgeted` for the HTTP layer's refusals, which have no app: the same budget and
/// metrics, which outlive every app.
fn admit_line(
    budget: &crate::limiter::LogBudget,
    metrics: &crate::metrics::Metrics,
) -> Option<u64> {
    let admitted = budget.admit();
    if admitted.is_none() {
        metrics.log_suppressed();
    }
    admitted
}

fn suppressed_note(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(" ({n} similar lines suppressed before this one)"),
    }
}

/// The request's metrics and access line.
fn record(
    app: &App,
    req: &Request,
    response: &Response,
    who: Option<&Principal>,
    client: IpAddr,
    started: Instant,
) {
    let route = Route::resolve(&req.path).map_or("unmatched", |(r, _)| r.label());
    app.metrics
        .request(route, response.status(), started.elapsed());
    if !app.log.access {
        return;
    }
    // Lines of callers without credentials are budgeted; a caller's own lines are bounded
    // by its quota.
    let suppressed = match who {
        Some(_) => 0,
        None => match budgeted(app) {
            Some(n) => n,
            None => return,
        },
    };
    let via = if client == req.conn.peer.ip() {
        String::new()
    } else {
        format!(" client={client}")
    };
    log::info!(
        target: "inferd::access",
        "{} {} {} {}us peer={}{via} principal={}{}",
        req.method,
        req.path,
        response.status(),
        started.elapsed().as_micros(),
        req.conn.peer,
        who.map_or("-", |p| p.id.as_str()),
        suppressed_note(suppressed)
    );
}

/// Everything decided from the head: route (404), `OPTIONS` and CORS preflights, method
/// (405), body encoding (415), rate limits (429), credentials (401) and path-scoped
/// permission (403). Runs before the body is read.
fn authorize(app: &App, req: &Request, client: IpAddr) -> Result<Decision, ApiError> {
    let limited = |l: RateLimited| limited_error(app, req, client, l);
    let (route, allow) = Route::resolve(&req.path)
        .ok_or_else(|| ApiError::NotFound(format!("no route {}", req.path)))?;
    let method = req.method.as_str();
    if method == "OPTIONS" {
        let standing = app.limiter.check_anonymous(client).map_err(limited)?;
        let response = match Cors::is_preflight(req) {
            true => app.cors.preflight(req, allow),
            false => Response::empty(204).with_header("allow", allow),
        };
        return Ok(Decision::Answer(response, standing));
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
    let max_body = route.max_body();
    let open = |standing| {
        Ok(Decision::Proceed(
            Admission::new(None, client, standing),
            max_body,
        ))
    };
    let Some(scope) = route.scope() else {
        if route == Route::Token {
            // Client secrets are credentials too: a spent failure budget bars them.
            app.limiter.check_barred(client).map_err(limited)?;
            return open(app.limiter.check_token(client).map_err(limited)?);
        }
        return open(app.limiter.check_anonymous(client).map_err(limited)?);
    };
    if let Err(barred) = app.limiter.check_barred(client) {
        audit_event(app, req, client, "-", "throttled", serde_json::Value::Null);
        return Err(limited(barred));
    }
    let principal = app.auth.authenticate(req).inspect_err(|e| {
        audit_event(
            app,
            req,
            client,
            e.credential(),
            e.reason(),
            e.identifiers(),
        )
    })?;
    if !matches!(scope, Scope::Predict("")) && !principal.allows(scope) {
        audit_scope(app, req, client, &principal);
        return Err(ApiError::Forbidden(scope.to_string()));
    }
    let standing = app.limiter.check_principal(&principal).map_err(limited)?;
    Ok(Decision::Proceed(
        Admission::new(Some(principal), client, standing),
        max_body,
    ))
}

fn dispatch(app: &App, req: &Request, admitted: &Admission) -> Result<Response, ApiError> {
    let (route, _) = Route::resolve(&req.path)
        .ok_or_else(|| ApiError::NotFound(format!("no route {}", req.path)))?;
    match route {
        Route::Predict => handlers::predict(app, req, admitted),
        Route::Infer { model, version } => handlers::infer(app, req, admitted, model, version),
        Route::ModelMetadata { model, version } => handlers::model_metadata(app, model, version),
        Route::ModelReady { model, version } => handlers::model_ready(app, model, version),
        Route::ServerMetadata => Ok(handlers::server_metadata()),
        Route::Live | Route::Ready => Ok(Response::empty(200)),
        Route::Healthz => Ok(Response::json(200, &serde_json::json!({ "status": "ok" }))),
        Route::Readyz => Ok(handlers::readyz(app)),
        Route::Token => handlers::token(app, req),
        Route::Jwks => handlers::jwks(app),
        Route::OpenApi => Ok(handlers::openapi()),
        Route::Metrics => Ok(handlers::metrics(app, req)),
    }
}

/// One JSON line per refused authentication or authorisation, on its own log target: time,
/// peer, route, credential kind, the key id / kid / sub when known, and a stable reason.
/// Never the credential itself.
pub(crate) fn audit_event(
    app: &App,
    req: &Request,
    client: IpAddr,
    credential: &str,
    reason: &str,
    ids: serde_json::Value,
) {
    app.metrics.auth_failure(reason);
    if !app.log.audit {
        return;
    }
    if let Some(suppressed) = budgeted(app) {
        let mut line = serde_json::json!({
            "time": httpdate::fmt_http_date(std::time::SystemTime::now()),
            "event": "auth_failure",
            "reason": reason,
            "credential": credential,
            "peer": req.conn.peer.to_string(),
            "client": client.to_string(),
            "method": req.method,
            "route": Route::resolve(&req.path).map_or("-", |(r, _)| r.label()),
        });
        if let (Some(line), serde_json::Value::Object(ids)) = (line.as_object_mut(), ids) {
            line.extend(ids.into_iter().filter(|(_, v)| !v.is_null()));
        }
        if suppressed > 0 {
            line["suppressed_before"] = suppressed.into();
        }
        log::warn!(target: "inferd::audit", "{line}");
    }
}

/// The client address admission settled on (the peer for requests built by hand).
pub(crate) fn client_of(req: &Request) -> IpAddr {
    req.admission
        .as_ref()
        .map_or_else(|| req.conn.peer.ip(), |a| a.client)
}

/// Audits a valid credential that lacks the route's scope.
pub(crate) fn audit_scope(app: &App, req: &Request, client: IpAddr, who: &Principal) {
    let credential = match who.method {
        crate::auth::Method::ApiKey => "api_key",
        crate::auth::Method::Token => "bearer",
        crate::auth::Method::Certificate => "certificate",
    };
    audit_event(
        app,
        req,
        client,
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
    fn catalogue_and_resolve_agree() {
        let mut labels = std::collections::BTreeSet::new();
        for (template, methods) in CATALOGUE {
            let path = template
                .replace("{name}", "digits")
                .replace("{version}", "1");
            let (route, allow) = Route::resolve(&path).unwrap_or_else(|| panic!("{template}"));
            assert_eq!(allow, *methods, "{template}");
            labels.insert((route.label(), template.contains("{version}")));
        }
        // Every route (each with and without a version where it takes one) is listed once.
        assert_eq!(labels.len(), CATALOGUE.len());
        let all = [
            Route::Predict,
            Route::Infer {
                model: "",
                version: None,
            },
            Route::ModelMetadata {
                model: "",
                version: None,
            },
            Route::ModelReady {
                model: "",
                version: None,
            },
            Route::ServerMetadata,
            Route::Live,
            Route::Ready,
            Route::Healthz,
            Route::Readyz,
            Route::Token,
            Route::Jwks,
            Route::OpenApi,
            Route::Metrics,
        ];
        for route in all {
            // Exhaustive: a new variant fails to compile here until it is listed.
            match route {
                Route::Predict
                | Route::Infer { .. }
                | Route::ModelMetadata { .. }
                | Route::ModelReady { .. }
                | Route::ServerMetadata
                | Route::Live
                | Route::Ready
                | Route::Healthz
                | Route::Readyz
                | Route::Token
                | Route::Jwks
                | Route::OpenApi
                | Route::Metrics => {}
            }
            assert!(
                labels.iter().any(|(l, _)| *l == route.label()),
                "{}",
                route.label()
            );
        }
    }

    #[test]
    fn while_loading_alive_but_not_ready() {
        use crate::http::{ConnInfo, Handler};
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
            let mut req = Request::new(method, path, Vec::new(), Vec::new(), conn.clone());
            let r = match router.admit(&mut req) {
                Verdict::Answer(r) => r,
                Verdict::Proceed { .. } => router.handle(&req),
            };
            assert_eq!(r.status(), status, "{method} {path}");
        }
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
