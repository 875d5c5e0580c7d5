//! Triton's statistics extension and model configuration: what `tritonclient`'s
//! `get_inference_statistics` and `get_model_config`, and `perf_analyzer`, read.

use super::super::admission::Admission;
use super::super::error::ApiError;
use super::super::route::ModelPath;
use crate::App;
use crate::auth::Scope;
use crate::config::VersionPolicy;
use crate::http::Response;
use crate::model::Model;
use crate::model::manifest::TensorSpec;
use crate::model::tensor::DataType;
use serde_json::{Value, json};

/// `GET /v2/models/stats` (every served version the caller may use) or
/// `GET /v2/models/{name}[/versions/{v}]/stats` (that model's served versions, or one).
pub fn stats(app: &App, who: &Admission, path: Option<&ModelPath>) -> Result<Response, ApiError> {
    let models = match path {
        Some(p) => match &p.version {
            Some(_) => vec![app.models.get(&p.name, p.version.as_deref())?],
            None => {
                app.models.get(&p.name, None)?;
                app.models
                    .models()
                    .into_iter()
                    .filter(|m| m.name() == p.name)
                    .collect()
            }
        },
        None => app
            .models
            .models()
            .into_iter()
            .filter(|m| {
                who.principal
                    .as_ref()
                    .is_some_and(|p| p.allows(Scope::Predict(m.name())))
            })
            .collect(),
    };
    let stats: Vec<Value> = models
        .iter()
        .map(|m| m.stats.json(m.name(), &m.manifest.version))
        .collect();
    Ok(Response::json(200, &json!({ "model_stats": stats })))
}

/// `GET /v2/models/{name}[/versions/{v}]/config`: the part of Triton's model configuration
/// that applies (name, platform, batching, inputs and outputs, version policy).
pub fn config(app: &App, path: &ModelPath) -> Result<Response, ApiError> {
    let model = app.models.get(&path.name, path.version.as_deref())?;
    let policy = app.models.policy(model.name());
    Ok(Response::json(200, &model_config(&model, &policy)))
}

fn model_config(model: &Model, policy: &VersionPolicy) -> Value {
    let m = &model.manifest;
    let (max_batch, inputs, outputs) = if model.is_text() {
        let labels = m.labels.len() as i64;
        (
            m.max_batch,
            vec![per_item("text", DataType::Bytes, &[])],
            vec![
                per_item("probabilities", DataType::Fp32, &[labels]),
                per_item("label", DataType::Bytes, &[]),
            ],
        )
    } else {
        // Batched when every tensor's first axis is the batch axis (-1), as Triton's
        // `max_batch_size > 0` means; else the full shapes and no batching.
        let batched = m.inputs.iter().chain(&m.outputs).all(|t| t.shape[0] == -1);
        let skip = usize::from(batched);
        let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
            specs
                .iter()
                .map(|t| per_item(&t.name, t.datatype, &t.shape[skip..]))
                .collect()
        };
        let max_batch = if batched { m.max_batch } else { 0 };
        (max_batch, tensors(&m.inputs), tensors(&m.outputs))
    };
    json!({
        "name": m.name,
        "platform": "onnx_tract",
        "backend": "tract",
        "version_policy": triton_policy(policy),
        "max_batch_size": max_batch,
        "input": inputs,
        "output": outputs,
    })
}

/// A tensor's config entry: `dims` without the batch axis; a tensor of one value per batch
/// item has `dims: [1]` and Triton's `reshape` to no dims.
fn per_item(name: &str, datatype: DataType, dims: &[i64]) -> Value {
    let data_type = match datatype {
        DataType::Fp32 => "TYPE_FP32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Int32 => "TYPE_INT32",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Bool => "TYPE_BOOL",
        DataType::Bytes => "TYPE_STRING",
    };
    match dims {
        [] => json!({ "name": name, "data_type": data_type, "dims": [1],
                      "reshape": { "shape": [] } }),
        dims => json!({ "name": name, "data_type": data_type, "dims": dims }),
    }
}

fn triton_policy(policy: &VersionPolicy) -> Value {
    match policy {
        VersionPolicy::All => json!({ "all": {} }),
        VersionPolicy::Latest(k) => json!({ "latest": { "num_versions": k } }),
        VersionPolicy::Specific(list) => json!({ "specific": { "versions": list } }),
    }
}
