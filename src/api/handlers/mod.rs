//! Handlers: parse the request, call the domain, shape the reply. Auth, limits and logging
//! happened in the router already.

use super::admission::Admission;
use super::error::ApiError;
use super::json;
use super::route::ModelPath;
use crate::App;
use crate::auth::Scope;
use crate::http::{Request, Response};
use crate::model::tensor::{Data, DataType, Tensor};
use crate::model::{Model, ModelError, text_cost};
use crate::oip;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

pub mod repository;
mod stats;
mod token;
pub use stats::{config, stats};
pub use token::{jwks, token};

/// `GET /metrics`: the Prometheus exposition (scope `metrics`): OpenMetrics when the
/// scraper accepts it (Prometheus does), else the classic text format.
pub fn metrics(app: &App, req: &Request) -> Response {
    let depth = app.models.pool().depth();
    app.reload_failures();
    let openmetrics = req
        .header("accept")
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    match openmetrics {
        true => Response::bytes(
            200,
            crate::metrics::CONTENT_TYPE,
            app.metrics.render(depth).into_bytes(),
        ),
        false => Response::bytes(
            200,
            crate::metrics::CLASSIC_CONTENT_TYPE,
            app.metrics.render_classic(depth).into_bytes(),
        ),
    }
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of this API (a test holds it to the
/// router's `CATALOGUE`).
pub fn openapi() -> Response {
    Response::bytes(
        200,
        "application/json",
        include_bytes!("../openapi.json").to_vec(),
    )
    .with_header("cache-control", "max-age=3600")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictInput {
    text: String,
    model: Option<String>,
}

/// `POST /predict {"text": "..", "model"?: ".."}`: classify one text.
pub fn predict(app: &App, req: &Request, who: &mut Admission) -> Result<Response, ApiError> {
    let started = Instant::now();
    let input: PredictInput = json::parse(req)?;
    let model = match &input.model {
        Some(name) => app.models.get(name, None)?,
        None => app.models.default_text()?,
    };
    who.require(app, req, Scope::Predict(model.name()))?;
    let answer = predict_on(app, req, who, &model, input.text, started);
    model.stats.request(started.elapsed(), answer.is_ok());
    answer
}

fn predict_on(
    app: &App,
    req: &Request,
    who: &mut Admission,
    model: &Arc<Model>,
    text: String,
    started: Instant,
) -> Result<Response, ApiError> {
    let texts = model.encode_texts(&[text])?;
    model.stats.input(started.elapsed());
    who.charge(app, req, text_cost(&texts, app.limiter.tokens_per_unit()))?;
    let result = app.models.classify(model, texts, who.caller(), None)?;
    let Some(c) = result.into_iter().next() else {
        return Err(ApiError::Internal("classifier returned nothing".into()));
    };
    let encoding = Instant::now();
    let response = Response::json(
        200,
        &json!({
            "prediction": c.label,
            "score": c.score,
            "scores": c.scores,
            "model": model.name(),
            "model_version": model.manifest.version,
        }),
    );
    model.stats.output(encoding.elapsed());
    Ok(response)
}

/// `POST /v2/models/{name}[/versions/{v}]/infer`: Open Inference Protocol inference, JSON
/// or with Triton's binary tensor data.
pub fn infer(
    app: &App,
    req: &Request,
    who: &mut Admission,
    path: &ModelPath,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let model = app.models.get(&path.name, path.version.as_deref())?;
    let answer = infer_on(app, req, who, &model, started);
    model.stats.request(started.elapsed(), answer.is_ok());
    answer
}

/// `infer` once the model is resolved (its statistics count what this returns).
fn infer_on(
    app: &App,
    req: &Request,
    who: &mut Admission,
    model: &Arc<Model>,
    started: Instant,
) -> Result<Response, ApiError> {
    let header_len = binary_header_len(req)?;
    let mut request = match (header_len, model.manifest.inputs.as_slice()) {
        (Some(0), [only]) if !model.is_text() => oip::decode_raw(
            &req.body,
            &only.name,
            only.datatype,
            &only.shape,
            model.as_ref(),
        )?,
        (Some(0), _) => {
            return Err(ModelError::invalid(
                "raw_binary_unsupported",
                format!(
                    "model {} does not take raw binary requests (one fixed-width input only)",
                    model.name()
                ),
            )
            .into());
        }
        _ => oip::decode(&req.body, header_len, model.as_ref())?,
    };
    let inputs = std::mem::take(&mut request.inputs);
    let outputs = if model.is_text() {
        classify_tensor(app, req, who, model, inputs, (request.timeout, started))?
    } else {
        let checked = model.check(inputs)?;
        model.stats.input(started.elapsed());
        who.charge(app, req, checked.cost())?;
        app.models
            .infer(model, checked, who.caller(), request.timeout)?
    };
    let encoding = Instant::now();
    let encoded = oip::encode(model.name(), &model.manifest.version, &request, outputs)?;
    model.stats.output(encoding.elapsed());
    Ok(match encoded.header_len {
        Some(n) => Response::bytes(200, "application/octet-stream", encoded.body)
            .with_header("inference-header-content-length", n.to_string()),
        None => Response::bytes(200, "application/json", encoded.body),
    })
}

/// `Inference-Header-Content-Length` (Triton's binary tensor extension): how many bytes
/// of JSON precede the binary data. Without it the body is JSON.
fn binary_header_len(req: &Request) -> Result<Option<usize>, ApiError> {
    match req.header("inference-header-content-length") {
        Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
            ApiError::Malformed("Inference-Header-Content-Length must be a byte count".into())
        }),
        None => json::require_json(req).map(|()| None),
    }
}

/// OIP on a text model: one BYTES input `text` of shape `[n]` (or `[n, 1]`, checked while
/// decoding); outputs the probabilities `[n, labels]` and the winning `label` `[n]`.
fn classify_tensor(
    app: &App,
    req: &Request,
    who: &mut Admission,
    model: &Arc<Model>,
    inputs: Vec<Tensor>,
    (wait, started): (Option<std::time::Duration>, Instant),
) -> Result<Vec<Tensor>, ApiError> {
    let [input]: [Tensor; 1] = inputs.try_into().map_err(|_| {
        ModelError::input(
            "wrong_inputs",
            "a text model takes exactly one input, text (BYTES)".into(),
        )
    })?;
    let n = input.shape.first().copied().unwrap_or(0);
    let Data::Bytes(items) = input.data else {
        return Err(ModelError::input("wrong_datatype", "input text must be BYTES".into()).into());
    };
    let texts = items
        .into_iter()
        .map(|b| {
            String::from_utf8(b)
                .map_err(|_| ModelError::input("invalid_utf8", "text must be UTF-8".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let texts = model.encode_texts(&texts)?;
    model.stats.input(started.elapsed());
    who.charge(app, req, text_cost(&texts, app.limiter.tokens_per_unit()))?;
    let results = app.models.classify(model, texts, who.caller(), wait)?;
    let labels = model.manifest.labels.len();
    let probabilities = results
        .iter()
        .flat_map(|c| c.probabilities.iter().copied())
        .collect();
    let label = results
        .iter()
        .map(|c| c.label.clone().into_bytes())
        .collect();
    Ok(vec![
        Tensor {
            name: "probabilities".into(),
            shape: vec![n, labels],
            data: Data::F32(probabilities),
        },
        Tensor {
            name: "label".into(),
            shape: vec![n],
            data: Data::Bytes(label),
        },
    ])
}

fn tensor_meta(name: &str, datatype: DataType, shape: &[i64]) -> serde_json::Value {
    json!({ "name": name, "datatype": datatype.as_str(), "shape": shape })
}

/// `GET /v2/models/{name}[/versions/{v}]`: OIP model metadata.
pub fn model_metadata(app: &App, path: &ModelPath) -> Result<Response, ApiError> {
    let model = app.models.get(&path.name, path.version.as_deref())?;
    let m = &model.manifest;
    let (inputs, outputs): (Vec<_>, Vec<_>) = if model.is_text() {
        let n = m.labels.len() as i64;
        (
            vec![tensor_meta("text", DataType::Bytes, &[-1])],
            vec![
                tensor_meta("probabilities", DataType::Fp32, &[-1, n]),
                tensor_meta("label", DataType::Bytes, &[-1]),
            ],
        )
    } else {
        (
            m.inputs
                .iter()
                .map(|s| tensor_meta(&s.name, s.datatype, &s.shape))
                .collect(),
            m.outputs
                .iter()
                .map(|s| tensor_meta(&s.name, s.datatype, &s.shape))
                .collect(),
        )
    };
    Ok(Response::json(
        200,
        &json!({
            "name": m.name,
            "versions": app.models.versions(&m.name).iter().map(u64::to_string).collect::<Vec<_>>(),
            "platform": "onnx_tract",
            "inputs": inputs,
            "outputs": outputs,
        }),
    ))
}

/// `GET /v2/models/{name}[/versions/{v}]/ready`: 200 when loaded (every served model is).
pub fn model_ready(app: &App, path: &ModelPath) -> Result<Response, ApiError> {
    app.models.get(&path.name, path.version.as_deref())?;
    Ok(Response::empty(200))
}

/// `GET /v2`: OIP server metadata.
pub fn server_metadata() -> Response {
    Response::json(
        200,
        &json!({
            "name": "inferd",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data"],
        }),
    )
}

/// `GET /readyz`: readiness with detail per model, the clock and files that failed to
/// reload (an untrusted clock or a broken file leaves the appliance ready: it serves on
/// what it has, and says so).
pub fn readyz(app: &App) -> Response {
    let mut models = serde_json::Map::new();
    // Ascending by name then version: the last entry per name is its newest version.
    for m in app.models.models() {
        let versions = app.models.versions(m.name());
        let versions: Vec<String> = versions.iter().map(u64::to_string).collect();
        models.insert(
            m.name().to_owned(),
            json!({ "ready": true, "version": m.manifest.version, "versions": versions }),
        );
    }
    let clock = match app.auth.clock.problem() {
        None => json!({ "trusted": true }),
        Some(reason) => {
            json!({ "trusted": false, "reason": reason, "tokens": "refused until the clock is set" })
        }
    };
    // Files whose last reload failed: the device serves on their previous contents (a
    // revocation added to a broken file is not in force). The reason is in the log.
    let failing = app.reload_failures();
    Response::json(
        200,
        &json!({ "ready": true, "models": models, "clock": clock, "reload_failures": failing }),
    )
}
