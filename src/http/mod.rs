//! A small generic HTTP/1.1 server over TCP or TLS (httparse + rustls): deadlines and byte
//! caps on every read, connection caps per address, a memory budget for bodies, graceful
//! shutdown. It knows nothing of inferd: what answers requests is a [`Handler`], which
//! admits or refuses each request from its head before the body is read.

mod conn;
pub mod error;
pub mod parse;
pub mod request;
pub mod response;
pub mod server;
pub mod tls;

pub use error::{HttpError, error_response};
pub use request::{ConnInfo, Request};
pub use response::Response;
pub use server::{Handler, Server, Settings, Stopper, Verdict, client_key};
pub use tls::{ClientAuth, TlsAcceptor, TlsError};
