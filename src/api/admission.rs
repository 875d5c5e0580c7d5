//! What the router decided from a request's head — the caller, its client address and
//! where it stands against its rate limit — carried to the handler with the whole request.

use super::audit::{self, Origin};
use super::error::ApiError;
use crate::App;
use crate::auth::{Principal, Scope};
use crate::http::Request;
use crate::limiter::Standing;
use std::net::IpAddr;

#[derive(Debug)]
pub struct Admission {
    /// The authenticated caller; `None` on open routes.
    pub principal: Option<Principal>,
    /// The client address (the peer, or what trusted proxies say).
    pub client: IpAddr,
    /// The route's label, for log lines.
    pub route: &'static str,
    /// Where the caller stands against its rate limit, updated when a handler charges the
    /// request's cost; `None` when limits are off.
    pub standing: Option<Standing>,
}

impl Admission {
    /// Where the request came from, for its log lines.
    pub fn origin<'a>(&self, req: &'a Request) -> Origin<'a> {
        Origin {
            req,
            client: self.client,
            route: Some(self.route),
        }
    }

    /// Charges what the request costs (batch items, text length) beyond the one unit its
    /// admission took: 429 when the caller's quota cannot pay it now, 422 when it never
    /// could (more than the burst).
    pub fn charge(&mut self, app: &App, req: &Request, cost: u32) -> Result<(), ApiError> {
        let Some(who) = &self.principal else {
            return Ok(());
        };
        match app.limiter.charge_principal(who, cost) {
            Ok(Some(standing)) => {
                self.standing = Some(standing);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(limited) => Err(audit::limited_error(app, self.origin(req), limited)),
        }
    }

    /// Checks a scope known only from the body (`/predict` names its model there), with
    /// the audit line a refusal gets.
    pub fn require(&self, app: &App, req: &Request, scope: Scope) -> Result<(), ApiError> {
        match &self.principal {
            Some(p) if p.allows(scope) => Ok(()),
            Some(p) => {
                audit::audit_scope(app, self.origin(req), p);
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
