//! A small generic HTTP/1.1 server over TCP or TLS (httparse + rustls): deadlines and byte
//! caps on every read, connection caps per address, a memory budget for bodies, graceful
//! shutdown. It knows nothing of inferd: what answers requests is a [`Handler`], which
//! admits or refuses each request from its head before the body is read.

mod conn;
mod deadline;
pub mod error;
pub mod handler;
pub mod parse;
mod registry;
pub mod request;
pub mod response;
pub mod server;
pub mod settings;
mod stream;
pub mod tls;

pub use error::{HttpError, error_response};
pub use handler::{Handler, Verdict};
pub use registry::client_key;
pub use request::{ConnInfo, Request};
pub use response::Response;
pub use server::{Server, Stopper};
pub use settings::Settings;
pub use tls::{ClientAuth, TlsAcceptor, TlsError};
