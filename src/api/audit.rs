//! What inferd logs and counts about a request: the access line, one JSON audit line per
//! refused authentication or authorisation, rate-limit refusals, and the budget that bounds
//! the lines clients without valid credentials can cause.

use super::error::ApiError;
use super::route::UNMATCHED;
use crate::App;
use crate::auth::Principal;
use crate::http::{Request, Response};
use crate::limiter::{LogBudget, RateLimited};
use crate::metrics::Metrics;
use std::net::IpAddr;
use std::time::Instant;

/// Where a request came from and where it went, for its log lines.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub req: &'a Request,
    /// The client address (the peer, or what trusted proxies say).
    pub client: IpAddr,
    /// The route's label; `None` when the path matched no route.
    pub route: Option<&'static str>,
}

/// A rate-limit refusal, counted by policy and reason. The limiter running out of room
/// for new clients (`too_many_clients`) is also logged: it means the device is tracking
/// more addresses or callers than `max_tracked_keys`, which an operator should hear of.
pub fn limited_error(app: &App, at: Origin, limited: RateLimited) -> ApiError {
    app.metrics
        .rate_limited(limited.standing.policy, limited.reason);
    if limited.reason == "too_many_clients"
        && let Some(suppressed) = admit_line(&app.log_budget, &app.metrics)
    {
        log::warn!(
            "rate limit {}: max_tracked_keys reached, new client {} ({} {}) refused \
             until quiet ones are purged{}",
            limited.standing.policy,
            at.client,
            at.req.method,
            at.req.path,
            suppressed_note(suppressed)
        );
    }
    ApiError::RateLimited(Box::new(limited))
}

/// Whether a line that a client without valid credentials caused may be logged now;
/// `Some(n)`: yes, and `n` such lines were dropped before it. The budget and metrics
/// outlive every app, so the HTTP layer's refusals share them.
pub fn admit_line(budget: &LogBudget, metrics: &Metrics) -> Option<u64> {
    let admitted = budget.admit();
    if admitted.is_none() {
        metrics.log_suppressed();
    }
    admitted
}

pub fn suppressed_note(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(" ({n} similar lines suppressed before this one)"),
    }
}

/// The request's metrics and access line.
pub fn record(
    app: &App,
    at: Origin,
    response: &Response,
    who: Option<&Principal>,
    started: Instant,
) {
    app.metrics.request(
        at.route.unwrap_or(UNMATCHED),
        response.status(),
        started.elapsed(),
    );
    if !app.log.access {
        return;
    }
    // Lines of callers without credentials are budgeted; a caller's own lines are bounded
    // by its quota.
    let suppressed = match who {
        Some(_) => 0,
        None => match admit_line(&app.log_budget, &app.metrics) {
            Some(n) => n,
            None => return,
        },
    };
    let req = at.req;
    let via = match at.client == req.conn.peer.ip() {
        true => String::new(),
        false => format!(" client={}", at.client),
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

/// One JSON line per refused authentication or authorisation, on its own log target: time,
/// peer, route, credential kind, the key id / kid / sub when known, and a stable reason.
/// Never the credential itself.
pub fn audit_event(app: &App, at: Origin, credential: &str, reason: &str, ids: serde_json::Value) {
    app.metrics.auth_failure(reason);
    if !app.log.audit {
        return;
    }
    let Some(suppressed) = admit_line(&app.log_budget, &app.metrics) else {
        return;
    };
    let mut line = serde_json::json!({
        "time": httpdate::fmt_http_date(std::time::SystemTime::now()),
        "event": "auth_failure",
        "reason": reason,
        "credential": credential,
        "peer": at.req.conn.peer.to_string(),
        "client": at.client.to_string(),
        "method": at.req.method,
        "route": at.route.unwrap_or("-"),
    });
    if let (Some(line), serde_json::Value::Object(ids)) = (line.as_object_mut(), ids) {
        line.extend(ids.into_iter().filter(|(_, v)| !v.is_null()));
    }
    if suppressed > 0 {
        line["suppressed_before"] = suppressed.into();
    }
    log::warn!(target: "inferd::audit", "{line}");
}

/// Audits a valid credential that lacks the route's scope.
pub fn audit_scope(app: &App, at: Origin, who: &Principal) {
    let credential = match who.method {
        crate::auth::Method::ApiKey => "api_key",
        crate::auth::Method::Token => "bearer",
        crate::auth::Method::Certificate => "certificate",
    };
    audit_event(
        app,
        at,
        credential,
        "insufficient_scope",
        serde_json::json!({ "principal": who.id }),
    )
}
