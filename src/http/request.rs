//! Our own request type: what a handler may see of a request that passed the HTTP layer.

use std::net::SocketAddr;
use std::sync::Arc;

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// DER of the client certificate's end-entity, when the TLS layer verified one.
    pub client_cert: Option<Arc<[u8]>>,
}

/// A complete request: head and body, read within their deadlines and caps.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub conn: ConnInfo,
}

impl Request {
    /// Builds a request from its parts (the server, tests and benches use this).
    pub fn new(
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        conn: ConnInfo,
    ) -> Self {
        // Absolute form (`GET http://host/path`), which RFC 9112 §3.2.2 says a server must
        // accept: the path is what follows the authority ("/" when nothing does).
        let absolute = ["http://", "https://"].iter().find_map(|scheme| {
            let head = target.get(..scheme.len())?;
            head.eq_ignore_ascii_case(scheme).then(|| {
                let rest = &target[scheme.len()..];
                match rest.find(['/', '?']) {
                    Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
                    Some(i) => format!("/{}", &rest[i..]),
                    None => "/".to_owned(),
                }
            })
        });
        let target = absolute.as_deref().unwrap_or(target);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        Request {
            method: method.to_owned(),
            path,
            query,
            headers,
            body,
            conn,
        }
    }

    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The media type of the body, lower-cased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}
