//! `HttpError`: why the HTTP layer refused a request before any handler saw it, and the
//! answer each refusal gets: a status, the headers it calls for, and the JSON body
//! `{"error": "<message>", "code": "<stable_snake_case>"}` (the application renders its own
//! errors in the same shape).

use super::response::Response;

/// Why the HTTP layer refused a request before it reached a handler.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request head or framing is malformed, or smuggling-shaped.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request line is longer than `max_request_line_bytes`.
    #[error("request line too long")]
    UriTooLong,
    /// More header bytes or fields than the configured caps.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// A body without Content-Length (or with Transfer-Encoding, which we do not accept).
    #[error("Content-Length required")]
    LengthRequired,
    /// Content-Length above `max_body_bytes`; decided before reading the body.
    #[error("request body too large")]
    PayloadTooLarge,
    /// A body larger than its route takes (0: the route takes none, e.g. every GET);
    /// decided from Content-Length before reading, or while decoding a chunked body.
    #[error("{}", route_body_message(*.0))]
    RouteBodyTooLarge(usize),
    /// A transfer coding other than chunked (RFC 9112 §6.1: 501).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The server is at its connection cap and every connection is busy with a request.
    #[error("server at its connection cap, retry later")]
    TooManyConnections,
    /// The client's address already holds its share of connections (or, through a
    /// trusted proxy, of requests in progress), all busy with requests.
    #[error("too many connections from this address, retry later")]
    TooManyFromAddress,
    /// Request bodies in flight across all connections already hold the memory budget
    /// (`max_inflight_body_bytes`); decided before reading the body.
    #[error("server busy reading other requests, retry later")]
    BodyBudget,
    /// An `Expect` other than `100-continue`.
    #[error("unsupported Expect header")]
    ExpectationFailed,
    /// The head or body did not arrive before its deadline.
    #[error("request not complete in time")]
    Timeout,
}

fn route_body_message(limit: usize) -> String {
    match limit {
        0 => "this route takes no request body".into(),
        n => format!("request body too large: this route takes at most {n} bytes"),
    }
}

impl HttpError {
    /// Status code and stable error code.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        use HttpError as H;
        match self {
            H::BadRequest(_) => (400, "bad_request"),
            H::UriTooLong => (414, "uri_too_long"),
            H::HeadersTooLarge => (431, "headers_too_large"),
            H::LengthRequired => (411, "length_required"),
            H::PayloadTooLarge | H::RouteBodyTooLarge(_) => (413, "payload_too_large"),
            H::NotImplemented(_) => (501, "not_implemented"),
            H::TooManyConnections | H::TooManyFromAddress => (503, "too_many_connections"),
            H::BodyBudget => (503, "overloaded"),
            H::ExpectationFailed => (417, "expectation_failed"),
            H::Timeout => (408, "request_timeout"),
        }
    }

    /// The client-facing message (a bad request says what was bad).
    pub fn message(&self) -> String {
        match self {
            HttpError::BadRequest(m) => m.clone(),
            other => other.to_string(),
        }
    }

    /// The answer to this refusal: a busy server says when to retry.
    pub fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let response = error_response(status, code, &self.message());
        match self {
            HttpError::TooManyConnections
            | HttpError::TooManyFromAddress
            | HttpError::BodyBudget => response.with_header("retry-after", "1"),
            _ => response,
        }
    }
}

/// The JSON error body every refusal carries.
pub fn error_response(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &serde_json::json!({ "error": message, "code": code }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_code_and_headers() {
        let r = HttpError::PayloadTooLarge.into_response();
        assert_eq!(r.status(), 413);
        let r = HttpError::BodyBudget.into_response();
        assert_eq!((r.status(), r.header("retry-after")), (503, Some("1")));
        let r = HttpError::BadRequest("bare LF".into()).into_response();
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["code"], "bad_request");
        assert_eq!(body["error"], "bare LF");
    }
}
