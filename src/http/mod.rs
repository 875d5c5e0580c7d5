//! Our own small HTTP/1.1 server over TCP or TLS (httparse + rustls), with the router and
//! handlers that make it inferd's API.

mod conn;
pub mod cors;
pub mod error;
pub mod forwarded;
pub mod handlers;
pub mod parse;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod tls;

pub use error::{ApiError, HttpError};
pub use request::{ConnInfo, Request};
pub use response::Response;
pub use server::{Handler, Server, Settings, Stopper};
pub use tls::{TlsAcceptor, TlsError};
