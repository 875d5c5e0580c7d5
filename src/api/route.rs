//! The routes: resolved once per request from its path, with the methods, scope and body
//! size each takes.

use crate::auth::Scope;

/// A model named in a path, and the version when the path names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPath {
    pub name: String,
    pub version: Option<String>,
}

/// A resolved route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Predict,
    Infer(ModelPath),
    ModelMetadata(ModelPath),
    ModelReady(ModelPath),
    /// Triton's statistics extension: one model (or version), or every model (`None`).
    ModelStats(Option<ModelPath>),
    ModelConfig(ModelPath),
    /// Triton's model repository extension (scope `admin`).
    RepositoryIndex,
    RepositoryLoad(String),
    RepositoryUnload(String),
    ServerMetadata,
    Live,
    Ready,
    Healthz,
    Readyz,
    Token,
    Jwks,
    OpenApi,
    Metrics,
}

/// Every route as `/openapi.json` writes it: path template and methods. A test holds this
/// list, `resolve` and the OpenAPI document to each other.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("/predict", POST),
    ("/v2/models/{name}/infer", POST),
    ("/v2/models/{name}/versions/{version}/infer", POST),
    ("/v2/models/{name}", GET),
    ("/v2/models/{name}/versions/{version}", GET),
    ("/v2/models/{name}/ready", GET),
    ("/v2/models/{name}/versions/{version}/ready", GET),
    ("/v2/models/stats", GET),
    ("/v2/models/{name}/stats", GET),
    ("/v2/models/{name}/versions/{version}/stats", GET),
    ("/v2/models/{name}/config", GET),
    ("/v2/models/{name}/versions/{version}/config", GET),
    ("/v2/repository/index", POST),
    ("/v2/repository/models/{name}/load", POST),
    ("/v2/repository/models/{name}/unload", POST),
    ("/v2", GET),
    ("/v2/health/live", GET),
    ("/v2/health/ready", GET),
    ("/healthz", GET),
    ("/readyz", GET),
    ("/token", POST),
    ("/.well-known/jwks.json", GET),
    ("/openapi.json", GET),
    ("/metrics", GET),
];

pub const GET: &str = "GET, HEAD";
pub const POST: &str = "POST";

impl Route {
    /// Finds the route for a path and the methods it takes.
    pub fn resolve(path: &str) -> Option<(Route, &'static str)> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        match segments.as_slice() {
            ["predict"] => Some((Route::Predict, POST)),
            ["v2"] => Some((Route::ServerMetadata, GET)),
            ["v2", "health", "live"] => Some((Route::Live, GET)),
            ["v2", "health", "ready"] => Some((Route::Ready, GET)),
            ["healthz"] => Some((Route::Healthz, GET)),
            ["readyz"] => Some((Route::Readyz, GET)),
            ["token"] => Some((Route::Token, POST)),
            [".well-known", "jwks.json"] => Some((Route::Jwks, GET)),
            ["openapi.json"] => Some((Route::OpenApi, GET)),
            ["metrics"] => Some((Route::Metrics, GET)),
            // Before `/v2/models/{name}`: as in Triton, no model can be called "stats".
            ["v2", "models", "stats"] => Some((Route::ModelStats(None), GET)),
            ["v2", "repository", "index"] => Some((Route::RepositoryIndex, POST)),
            ["v2", "repository", "models", model, "load"] if !model.is_empty() => {
                Some((Route::RepositoryLoad((*model).to_owned()), POST))
            }
            ["v2", "repository", "models", model, "unload"] if !model.is_empty() => {
                Some((Route::RepositoryUnload((*model).to_owned()), POST))
            }
            ["v2", "models", model, "versions", version, rest @ ..]
                if !model.is_empty() && !version.is_empty() =>
            {
                model_route(model, Some(version), rest)
            }
            ["v2", "models", model, rest @ ..] if !model.is_empty() => {
                model_route(model, None, rest)
            }
            _ => None,
        }
    }

    /// The scope this route needs, or `None` for open routes. `/predict` names its model in
    /// the body, so its scope is checked once the handler knows the model.
    pub fn scope(&self) -> Option<Scope<'_>> {
        match self {
            Route::Infer(m)
            | Route::ModelMetadata(m)
            | Route::ModelReady(m)
            | Route::ModelStats(Some(m))
            | Route::ModelConfig(m) => Some(Scope::Predict(&m.name)),
            // Every model's statistics: each caller sees the models it may use.
            Route::ModelStats(None) => Some(Scope::Predict("")),
            Route::RepositoryIndex | Route::RepositoryLoad(_) | Route::RepositoryUnload(_) => {
                Some(Scope::Admin)
            }
            Route::Metrics => Some(Scope::Metrics),
            Route::Predict => Some(Scope::Predict("")),
            // /token authenticates its client itself (client secret, RFC 6749 §2.3).
            Route::ServerMetadata
            | Route::Live
            | Route::Ready
            | Route::Healthz
            | Route::Readyz
            | Route::Token
            | Route::Jwks
            | Route::OpenApi => None,
        }
    }

    /// The largest body this route takes: none for every GET, a few KiB for `POST /token`
    /// (a client-credentials form is under 1 KiB, and the route is open), and for inference
    /// whatever `max_body_bytes` allows.
    pub fn max_body(&self) -> usize {
        match self {
            Route::Predict | Route::Infer(_) => usize::MAX,
            Route::Token => crate::auth::issue::MAX_FORM_BYTES,
            Route::RepositoryIndex | Route::RepositoryLoad(_) | Route::RepositoryUnload(_) => {
                REPOSITORY_BODY
            }
            Route::ModelMetadata(_)
            | Route::ModelStats(_)
            | Route::ModelConfig(_)
            | Route::ModelReady(_)
            | Route::ServerMetadata
            | Route::Live
            | Route::Ready
            | Route::Healthz
            | Route::Readyz
            | Route::Jwks
            | Route::OpenApi
            | Route::Metrics => 0,
        }
    }

    /// A low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Predict => "/predict",
            Route::Infer(_) => "/v2/models/infer",
            Route::ModelMetadata(_) => "/v2/models",
            Route::ModelReady(_) => "/v2/models/ready",
            Route::ModelStats(Some(_)) => "/v2/models/stats",
            Route::ModelStats(None) => "/v2/models/all/stats",
            Route::ModelConfig(_) => "/v2/models/config",
            Route::RepositoryIndex => "/v2/repository/index",
            Route::RepositoryLoad(_) => "/v2/repository/models/load",
            Route::RepositoryUnload(_) => "/v2/repository/models/unload",
            Route::ServerMetadata => "/v2",
            Route::Live => "/v2/health/live",
            Route::Ready => "/v2/health/ready",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Token => "/token",
            Route::Jwks => "/.well-known/jwks.json",
            Route::OpenApi => "/openapi.json",
            Route::Metrics => "/metrics",
        }
    }
}

/// The metrics label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Largest body of a repository request (`{"parameters": {...}}`, `{"ready": true}`).
const REPOSITORY_BODY: usize = 4096;

fn model_route(name: &str, version: Option<&str>, rest: &[&str]) -> Option<(Route, &'static str)> {
    let model = || ModelPath {
        name: name.to_owned(),
        version: version.map(str::to_owned),
    };
    match rest {
        [] => Some((Route::ModelMetadata(model()), GET)),
        ["ready"] => Some((Route::ModelReady(model()), GET)),
        ["infer"] => Some((Route::Infer(model()), POST)),
        ["stats"] => Some((Route::ModelStats(Some(model())), GET)),
        ["config"] => Some((Route::ModelConfig(model()), GET)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, version: Option<&str>) -> ModelPath {
        ModelPath {
            name: name.into(),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn resolves_every_route_shape() {
        assert_eq!(Route::resolve("/predict"), Some((Route::Predict, POST)));
        assert_eq!(
            Route::resolve("/v2/models/digits/versions/1/infer"),
            Some((Route::Infer(model("digits", Some("1"))), POST))
        );
        assert_eq!(
            Route::resolve("/v2/models/digits"),
            Some((Route::ModelMetadata(model("digits", None)), GET))
        );
        assert_eq!(
            Route::resolve("/v2/models/digits/ready").map(|r| r.1),
            Some(GET)
        );
        assert_eq!(
            Route::resolve("/v2/health/ready"),
            Some((Route::Ready, GET))
        );
        assert_eq!(Route::resolve("/v2/models//infer"), None);
        assert_eq!(Route::resolve("/v2/models/digits/versions//infer"), None);
        assert_eq!(Route::resolve("/nope"), None);
        assert_eq!(Route::resolve("*"), None);
    }

    #[test]
    fn catalogue_and_resolve_agree() {
        let mut labels = std::collections::BTreeSet::new();
        for (template, methods) in CATALOGUE {
            let path = template
                .replace("{name}", "digits")
                .replace("{version}", "1");
            let (route, allow) = Route::resolve(&path).unwrap_or_else(|| panic!("{template}"));
            assert_eq!(allow, *methods, "{template}");
            labels.insert((route.label(), template.contains("{version}")));
        }
        // Every route (each with and without a version where it takes one) is listed once.
        assert_eq!(labels.len(), CATALOGUE.len());
        let m = || model("", None);
        let all = [
            Route::Predict,
            Route::Infer(m()),
            Route::ModelMetadata(m()),
            Route::ModelReady(m()),
            Route::ModelStats(Some(m())),
            Route::ModelStats(None),
            Route::ModelConfig(m()),
            Route::RepositoryIndex,
            Route::RepositoryLoad(String::new()),
            Route::RepositoryUnload(String::new()),
            Route::ServerMetadata,
            Route::Live,
            Route::Ready,
            Route::Healthz,
            Route::Readyz,
            Route::Token,
            Route::Jwks,
            Route::OpenApi,
            Route::Metrics,
        ];
        for route in all {
            // Exhaustive: a new variant fails to compile here until it is listed.
            match route {
                Route::Predict
                | Route::Infer(_)
                | Route::ModelMetadata(_)
                | Route::ModelReady(_)
                | Route::ModelStats(_)
                | Route::ModelConfig(_)
                | Route::RepositoryIndex
                | Route::RepositoryLoad(_)
                | Route::RepositoryUnload(_)
                | Route::ServerMetadata
                | Route::Live
                | Route::Ready
                | Route::Healthz
                | Route::Readyz
                | Route::Token
                | Route::Jwks
                | Route::OpenApi
                | Route::Metrics => {}
            }
            assert!(
                labels.iter().any(|(l, _)| *l == route.label()),
                "{}",
                route.label()
            );
        }
    }

    #[test]
    fn open_routes_need_no_scope() {
        for path in [
            "/v2",
            "/v2/health/live",
            "/v2/health/ready",
            "/healthz",
            "/readyz",
        ] {
            assert_eq!(Route::resolve(path).unwrap().0.scope(), None, "{path}");
        }
        let (infer, _) = Route::resolve("/v2/models/x/infer").unwrap();
        assert!(infer.scope().is_some());
    }
}
