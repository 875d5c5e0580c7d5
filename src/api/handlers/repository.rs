//! Triton's model repository extension (scope `admin`): the index of every model version on
//! disk with its state, and load / unload of one model, swapped in atomically.

use super::super::error::ApiError;
use super::super::json;
use crate::App;
use crate::http::{Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// `POST /v2/repository/index` body: `{"ready": true}` lists only the versions served.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// `.../load` and `.../unload` bodies: Triton's `{"parameters": {...}}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ModelRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// The body as `T`; an empty body (what `tritonclient` sends to the index) as the default.
fn body<T: serde::de::DeserializeOwned + Default>(req: &Request) -> Result<T, ApiError> {
    match req.body.iter().all(u8::is_ascii_whitespace) {
        true => Ok(T::default()),
        false => json::parse(req),
    }
}

/// `POST /v2/repository/index`: every model version found on disk or served, with
/// `state` READY, UNAVAILABLE or LOADING and, when not served, the `reason`.
pub fn index(app: &App, req: &Request) -> Result<Response, ApiError> {
    let asked: IndexRequest = body(req)?;
    let entries: Vec<_> = app
        .models
        .index()
        .into_iter()
        .filter(|e| !asked.ready || e.state == crate::model::State::Ready)
        .collect();
    Ok(Response::json(200, &entries))
}

/// `POST /v2/repository/models/{name}/load`: loads the model's versions its policy selects
/// from the repository folder (signed, when required), replacing the served ones once all
/// loaded and ran; on failure the served versions stay and the index says why.
pub fn load(app: &App, req: &Request, name: &str) -> Result<Response, ApiError> {
    let asked: ModelRequest = body(req)?;
    if let Some(key) = asked.parameters.keys().next() {
        return Err(ApiError::BadInput {
            code: "unsupported_parameter",
            message: format!(
                "parameter {key:?} is not supported: inferd loads models only from its \
                 repository folder (config and file overrides are not taken over the API)"
            ),
        });
    }
    let versions = app.models.load_model(name).map_err(ApiError::load_failed)?;
    log::info!("model {name} loaded over the repository API: versions {versions:?}");
    Ok(Response::json(
        200,
        &json!({ "name": name, "state": "READY", "versions": versions_text(&versions) }),
    ))
}

/// `POST /v2/repository/models/{name}/unload`: stops serving every version of the model;
/// requests already running finish on it.
pub fn unload(app: &App, req: &Request, name: &str) -> Result<Response, ApiError> {
    let asked: ModelRequest = body(req)?;
    for (key, value) in &asked.parameters {
        // Triton's only unload parameter; inferd has no ensembles, so no dependents.
        if key != "unload_dependents" || !value.is_boolean() {
            return Err(ApiError::BadInput {
                code: "unsupported_parameter",
                message: format!("parameter {key:?} is not supported by unload"),
            });
        }
    }
    app.models.unload_model(name)?;
    Ok(Response::json(
        200,
        &json!({ "name": name, "state": "UNAVAILABLE", "reason": "unloaded" }),
    ))
}

fn versions_text(versions: &[u64]) -> Vec<String> {
    versions.iter().map(u64::to_string).collect()
}
