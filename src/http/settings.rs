//! The HTTP layer's caps and deadlines.

use std::time::Duration;

/// Caps and deadlines of the HTTP layer, from `[limits]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_connections: usize,
    /// Open connections one client address may hold (IPv6 grouped by `ipv6_prefix`).
    pub max_connections_per_ip: usize,
    /// Prefix length that groups IPv6 addresses into one client.
    pub ipv6_prefix: u8,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_request_line: usize,
    pub max_body_bytes: usize,
    /// Bytes of request bodies being read or held, across all connections.
    pub max_inflight_body_bytes: usize,
    /// TLS handshake plus request head, as a whole.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
}
