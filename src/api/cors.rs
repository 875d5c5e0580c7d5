//! CORS (the Fetch standard's CORS protocol) as an exact-origin allowlist: preflights are
//! answered without credentials, allowed origins get their headers on every response, and
//! any other origin gets no CORS header at all, so the browser blocks it.

use crate::config::CorsConfig;
use crate::http::Request;
use crate::http::Response;

/// Response headers a page may read besides the CORS-safelisted ones.
const EXPOSED: &str =
    "ratelimit, ratelimit-policy, retry-after, www-authenticate, inference-header-content-length";

/// Which origins may call, with what. Built once from `[cors]`.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Origins,
    allow_credentials: bool,
    methods: Vec<String>,
    headers: Vec<String>,
    max_age_s: u64,
}

#[derive(Debug, Clone)]
enum Origins {
    /// No `[cors]` origins: no CORS headers.
    None,
    /// `allowed_origins = ["*"]` (never with credentials).
    Any,
    Exact(Vec<String>),
}

impl Cors {
    pub fn new(config: &CorsConfig) -> Cors {
        let origins = match config.allowed_origins.as_slice() {
            [] => Origins::None,
            [any] if any == "*" => Origins::Any,
            list => Origins::Exact(list.to_vec()),
        };
        Cors {
            origins,
            allow_credentials: config.allow_credentials,
            methods: config.allowed_methods.clone(),
            headers: config.allowed_headers.clone(),
            max_age_s: config.max_age.as_secs(),
        }
    }

    /// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn is_preflight(req: &Request) -> bool {
        req.method == "OPTIONS"
            && req.header("origin").is_some()
            && req.header("access-control-request-method").is_some()
    }

    /// The `Access-Control-Allow-Origin` value for this request's origin, if it is allowed.
    fn allowed_origin(&self, req: &Request) -> Option<String> {
        let origin = req.header("origin")?;
        match &self.origins {
            Origins::None => None,
            Origins::Any => Some("*".into()),
            // Browsers serialise origins in lower case; compare exactly, byte for byte.
            Origins::Exact(list) => list.iter().find(|o| *o == origin).cloned(),
        }
    }

    /// Answers a preflight for a path that takes the methods in `allow`. Only an allowed
    /// origin asking for an allowed method (one the route takes) and allowed headers gets
    /// CORS headers; anything else gets a bare 204, which the browser treats as a refusal.
    pub fn preflight(&self, req: &Request, allow: &str) -> Response {
        let response = Response::empty(204)
            .with_header("allow", allow)
            .with_header(
                "vary",
                "access-control-request-method, access-control-request-headers",
            );
        let Some(origin) = self.allowed_origin(req) else {
            return response;
        };
        let method = req
            .header("access-control-request-method")
            .unwrap_or("")
            .trim();
        let method_ok =
            self.methods.iter().any(|m| m == method) && allow.split(", ").any(|m| m == method);
        let headers_ok = req
            .header("access-control-request-headers")
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| self.headers.contains(&h));
        if !method_ok || !headers_ok {
            return response;
        }
        // The allowed methods this path takes (the request's method is among them).
        let methods: Vec<&str> = self
            .methods
            .iter()
            .map(String::as_str)
            .filter(|m| allow.split(", ").any(|a| a == *m))
            .collect();
        let response = response
            .with_header("access-control-allow-origin", origin)
            .with_header("access-control-allow-methods", methods.join(", "))
            .with_header("access-control-max-age", self.max_age_s.to_string());
        let response = if self.headers.is_empty() {
            response
        } else {
            response.with_header("access-control-allow-headers", self.headers.join(", "))
        };
        self.credentials(response)
    }

    /// Adds CORS headers to an actual (non-preflight) response when the origin is allowed.
    pub fn decorate(&self, req: &Request, response: Response) -> Response {
        match self.allowed_origin(req) {
            Some(origin) => self.credentials(
                response
                    .with_header("access-control-allow-origin", origin)
                    .with_header("access-control-expose-headers", EXPOSED),
            ),
            None => response,
        }
    }

    fn credentials(&self, response: Response) -> Response {
        if self.allow_credentials {
            response.with_header("access-control-allow-credentials", "true")
        } else {
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ConnInfo;
    use std::time::Duration;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_credentials: false,
            allowed_methods: vec!["GET".into(), "POST".into()],
            allowed_headers: vec!["content-type".into(), "x-api-key".into()],
            max_age: Duration::from_secs(600),
        })
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        Request::new(
            method,
            "/predict",
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            Vec::new(),
            ConnInfo {
                peer: "127.0.0.1:1".parse().unwrap(),
                tls: true,
                client_cert: None,
            },
        )
    }

    const APP: &str = "https://app.local:8443";

    #[test]
    fn allowed_origin_preflight_gets_every_header() {
        let req = request(
            "OPTIONS",
            &[
                ("origin", APP),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "X-API-Key, content-type"),
            ],
        );
        assert!(Cors::is_preflight(&req));
        let r = cors(&[APP]).preflight(&req, "POST");
        assert_eq!(r.status(), 204);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("content-type, x-api-key")
        );
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert_eq!(r.header("access-control-allow-credentials"), None);
    }

    #[test]
    fn other_origins_methods_and_headers_get_no_cors_headers() {
        let c = cors(&[APP]);
        for (origin, method, headers) in [
            ("https://evil.local", "POST", "x-api-key"),
            ("https://app.local:8444", "POST", "x-api-key"),
            ("HTTPS://APP.LOCAL:8443", "POST", "x-api-key"),
            ("null", "POST", "x-api-key"),
            (APP, "DELETE", "x-api-key"),
            (APP, "GET", "x-api-key"), // /predict takes POST only
            (APP, "POST", "x-api-key, cookie"),
        ] {
            let req = request(
                "OPTIONS",
                &[
                    ("origin", origin),
                    ("access-control-request-method", method),
                    ("access-control-request-headers", headers),
                ],
            );
            let r = c.preflight(&req, "POST");
            assert_eq!(r.status(), 204);
            assert_eq!(
                r.header("access-control-allow-origin"),
                None,
                "{origin} {method} {headers}"
            );
            assert_eq!(r.header("access-control-allow-methods"), None);
            let actual = c.decorate(
                &request("POST", &[("origin", origin)]),
                Response::empty(200),
            );
            if origin != APP {
                assert_eq!(actual.header("access-control-allow-origin"), None);
            }
        }
    }

    #[test]
    fn actual_responses_expose_rate_limit_headers_to_allowed_origins() {
        let c = cors(&[APP]);
        let r = c.decorate(&request("POST", &[("origin", APP)]), Response::empty(200));
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert!(
            r.header("access-control-expose-headers")
                .unwrap()
                .contains("ratelimit")
        );
        let none = cors(&[]).decorate(&request("POST", &[("origin", APP)]), Response::empty(200));
        assert_eq!(none.header("access-control-allow-origin"), None);
        let any = cors(&["*"]).decorate(&request("GET", &[("origin", APP)]), Response::empty(200));
        assert_eq!(any.header("access-control-allow-origin"), Some("*"));
    }
}
