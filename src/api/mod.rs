//! inferd's API on the generic HTTP server: the router (route, authorise and limit once,
//! from the head), the handlers, CORS, client addresses behind trusted proxies, the audit
//! and access log, `ApiError` (the one place that maps errors to statuses) and the OpenAPI
//! document.

pub mod admission;
pub mod audit;
pub mod cors;
pub mod error;
pub mod forwarded;
pub mod handlers;
pub mod json;
pub mod route;
pub mod router;

pub use error::ApiError;
pub use route::{CATALOGUE, Route};
pub use router::Router;
